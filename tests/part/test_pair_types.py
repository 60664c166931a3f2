"""Pair types of the relative pretext (issue 26 item 5): hand-placed boxes and the per-type errors
against a numpy computation."""
import numpy as np
import pytest
import torch

from part.evaluation.pair_types import PAIR_TYPES, pair_types, split_errors, type_sums


def test_pair_types_of_hand_placed_windows_and_boxes():
    ref = torch.tensor([[50.0, 100.0]]).expand(5, 2)  # 1-D: centre 50, length 100 samples
    tgt = torch.tensor([[50.0, 100.0], [120.0, 100.0], [200.0, 100.0], [249.0, 100.0], [400.0, 100.0]])
    # gaps |dc| - 100: self, -30 (overlap), 50 (< one patch: adjacent), 99 (adjacent), 250 (far)
    assert pair_types(ref, tgt, 1).tolist() == [0, 1, 2, 2, 3]
    box = torch.tensor([10.0, 10.0, 4.0, 4.0])  # 2-D: overlapping only when both axes overlap
    others = torch.tensor([[12.0, 12.0, 4.0, 4.0], [12.0, 17.0, 4.0, 4.0], [30.0, 10.0, 4.0, 4.0]])
    codes = pair_types(box.expand(3, 4), others, 2).tolist()
    assert [PAIR_TYPES[c] for c in codes] == ["overlapping", "adjacent", "far"]


def test_split_errors_match_numpy():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    types = rng.integers(1, 4, 40)
    types[:3] = 1
    sums = type_sums(torch.tensor(pred), torch.tensor(target), torch.tensor(types))
    half = {k: v / 2 for k, v in sums.items()}  # two chunks of the same pairs sum to the same means
    out = split_errors({k: half[k] + half[k] for k in sums})
    mean = target.mean(0)
    for code, name in enumerate(PAIR_TYPES):
        rows = types == code
        if not rows.any():
            assert out[name] == {"pairs": 0, "mse": None, "mse_chance": None}
            continue
        assert out[name]["pairs"] == rows.sum()
        assert out[name]["mse"] == pytest.approx(((pred[rows] - target[rows]) ** 2).mean())
        assert out[name]["mse_chance"] == pytest.approx(((target[rows] - mean) ** 2).mean())
