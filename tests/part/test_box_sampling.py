"""``part.core.sampling``: k-D boxes for any k (1, 2 and 3 here), checked against numpy."""
import numpy as np
import pytest
import torch

from part.core.sampling import STRATEGIES, extract_boxes, grid_patches, log_uniform, sample_boxes


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_volumes_k3_boxes_stay_inside(strategy):
    extent, cell = (10.0, 8.0, 6.0), (2.0, 4.0, 3.0)  # geometry order x, y, z
    boxes, starts = sample_boxes(2, extent, cell, 7, strategy, generator=torch.Generator().manual_seed(0))
    n = 7 if strategy == "random" else 5 * 2 * 2
    assert boxes.shape == (2, n, 6) and starts.shape == (2, n, 3)
    limit = torch.tensor(extent)
    assert torch.all(starts >= 0) and torch.all(starts + boxes[..., 3:] <= limit + 1e-5)
    torch.testing.assert_close(starts + boxes[..., 3:] / 2, boxes[..., :3])


def test_volume_crops_are_exact_for_aligned_boxes_and_the_grid():
    x = torch.randn(2, 3, 6, 8, 10)                                   # (B, C, D, H, W)
    box = torch.tensor([[[3 + 1.0, 2 + 2.0, 1 + 1.5, 2.0, 4.0, 3.0]]]).expand(2, 1, 6)  # x0=3, y0=2, z0=1
    patch = extract_boxes(x, box, (3, 4, 2))                           # raster (z, y, x)
    assert torch.equal(patch, x[:, :, 1:4, 2:6, 3:5].reshape(2, 1, -1))
    grid = grid_patches(x, (3, 4, 2))
    assert grid.shape == (2, 2 * 2 * 5, 3 * 24)
    # cell (z=1, y=0, x=3) is raster index 1 * 10 + 0 * 5 + 3 = 13
    assert torch.equal(grid[:, 13], x[:, :, 3:6, 0:4, 6:8].reshape(2, -1))


def test_one_axis_matches_numpy_linear_interpolation():
    x = torch.randn(1, 2, 50, dtype=torch.float64)
    boxes = torch.tensor([[[20.3, 7.4], [9.9, 13.0]]], dtype=torch.float64)   # (centre, length)
    out = extract_boxes(x, boxes, (5,)).view(2, 2, 5)
    for i, (c, size) in enumerate(boxes[0].tolist()):
        coords = c - size / 2 + (np.arange(5) + 0.5) * size / 5 - 0.5   # element i centred at i
        for ch in range(2):
            np.testing.assert_allclose(out[i, ch].numpy(), np.interp(coords, np.arange(50), x[0, ch].numpy()),
                                       rtol=0, atol=1e-12)


def test_log_uniform_sizes_cover_the_range_evenly_in_log():
    v = log_uniform((20000,), 2.0, 8.0, generator=torch.Generator().manual_seed(0))
    assert v.min() >= 2.0 and v.max() <= 8.0
    counts = np.histogram(np.log(v.numpy()), bins=4, range=(np.log(2), np.log(8)))[0]
    assert np.all(np.abs(counts - 5000) < 300)   # 4 equal bins in log: about 5000 each


def test_a_subclass_giving_mismatched_axes_is_told_at_setup():
    from part.core.box_modality import BoxModality
    from part.core.box_options import BoxOptions

    class Broken(BoxModality):
        def __init__(self):
            self.setup(BoxOptions(), 1, (8, 8), (2,))

    with pytest.raises(ValueError, match=r"^Broken\.setup: extent \(8, 8\) and patch \(2,\) need one value per axis"):
        Broken()
