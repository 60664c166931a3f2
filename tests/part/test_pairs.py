import pytest
import torch

from part.core.pairs import gather_tokens, sample_pairs


def test_pairs_shapes_range_and_per_item():
    g = torch.Generator().manual_seed(1)
    ref, tgt = sample_pairs(4, 9, 500, generator=g)
    assert ref.shape == tgt.shape == (4, 500)
    assert ref.min() >= 0 and ref.max() < 9 and tgt.max() < 9
    assert not torch.equal(ref[0], ref[1])  # each item its own pairs
    assert (ref == tgt).any()  # self pairs allowed by default


def test_exclude_self_pairs_uniform_over_others():
    g = torch.Generator().manual_seed(2)
    ref, tgt = sample_pairs(2, 5, 20000, exclude_self=True, generator=g)
    assert not (ref == tgt).any()
    counts = torch.bincount(tgt[ref == 0], minlength=5).float()
    assert counts[0] == 0
    assert (counts[1:] / counts[1:].sum() - 0.25).abs().max() < 0.03


@pytest.mark.parametrize("n,m,msg", [(1, 4, "num_patches"), (5, 0, "num_pairs")])
def test_bad_sizes(n, m, msg):
    with pytest.raises(ValueError, match=msg):
        sample_pairs(2, n, m)


def test_gather_tokens():
    x = torch.arange(2 * 3 * 2).view(2, 3, 2)
    idx = torch.tensor([[2, 0], [1, 1]])
    assert gather_tokens(x, idx).tolist() == [[[4, 5], [0, 1]], [[8, 9], [8, 9]]]
