"""Pair types of PART's relative pretext: what a pair's prediction could be learnt from.

For a pair of boxes (the geometry convention of ``part.core.geometry``: k centres then k sizes
in the input's units), per axis the gap is ``|c_tgt - c_ref| - (s_ref + s_tgt) / 2`` (negative:
the boxes overlap on that axis). Types (codes in ``PAIR_TYPES`` order):

- ``self``: the same patch (identical boxes; target 0 by construction);
- ``overlapping``: the boxes share samples / pixels (every axis' gap < 0), so their contents
  can be matched;
- ``adjacent``: no overlap, and the largest gap is under one reference-patch size (continuity
  across the gap can still be used);
- ``far``: a gap of one reference patch or more on some axis (only content that depends on
  absolute position tells where they are).

``split_errors`` gives, per type, the model's mean squared error (over pairs and target values)
and that of always predicting the mean target of all pairs (the chance predictor), so a model can
be seen to beat chance on overlapping pairs only. ``split_r2``: R^2 per type.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

PAIR_TYPES = ("self", "overlapping", "adjacent", "far")


def pair_types(geom_ref: torch.Tensor, geom_tgt: torch.Tensor, k: int) -> torch.Tensor:
    """Codes (...,) long in PAIR_TYPES order for boxes geom_ref, geom_tgt (..., 2k)."""
    c_r, s_r = geom_ref[..., :k].double(), geom_ref[..., k:2 * k].double()
    c_t, s_t = geom_tgt[..., :k].double(), geom_tgt[..., k:2 * k].double()
    gap = (c_t - c_r).abs() - (s_r + s_t) / 2
    same = (geom_ref == geom_tgt).all(-1)
    overlapping = (gap < 0).all(-1)
    adjacent = (gap < s_r).all(-1)
    code = torch.full(same.shape, 3, dtype=torch.long, device=geom_ref.device)
    code[adjacent] = 2
    code[overlapping] = 1
    code[same] = 0
    return code


def type_sums(pred: torch.Tensor, target: torch.Tensor, types: torch.Tensor) -> dict:
    """Per-type sums over pairs: {"n" (4,), "sq" (4,) squared errors summed over target values,
    "t" (4, T) targets, "t2" (4, T) squared targets}, float64, for ``split_errors``."""
    T = target.shape[-1]
    t = target.double().reshape(-1, T)
    err = (pred.double().reshape(-1, T) - t).pow(2).sum(-1)
    codes = types.reshape(-1)
    n = torch.zeros(len(PAIR_TYPES), dtype=torch.float64, device=t.device)
    return {"n": n.index_add(0, codes, torch.ones_like(err)), "sq": n.index_add(0, codes, err),
            "t": torch.zeros(len(PAIR_TYPES), T, dtype=torch.float64, device=t.device).index_add(0, codes, t),
            "t2": torch.zeros(len(PAIR_TYPES), T, dtype=torch.float64, device=t.device).index_add(0, codes, t * t)}


def split_errors(sums: dict) -> dict:
    """{type: {"pairs", "mse", "mse_chance"}} from ``type_sums`` (summed over chunks).

    mse: the model's squared error per target value; mse_chance: the same for always predicting
    the mean target over ALL pairs (the chance level's predictor); None for a type with no pair.
    """
    n, T = sums["n"], sums["t"].shape[1]
    mean = sums["t"].sum(0) / n.sum().clamp(min=1)
    # sum (t - m)^2 = sum t^2 - 2 m sum t + n m^2, per type and target value
    chance_sq = (sums["t2"] - 2 * mean * sums["t"] + n[:, None] * mean ** 2).sum(-1)
    out = {}
    for i, name in enumerate(PAIR_TYPES):
        count = int(n[i])
        out[name] = {"pairs": count,
                     "mse": float(sums["sq"][i] / (count * T)) if count else None,
                     "mse_chance": float(chance_sq[i] / (count * T)) if count else None}
    return out


def split_r2(pred: np.ndarray, true: np.ndarray, types: np.ndarray) -> dict:
    """{type: {"pairs", "r2"}}: pooled R^2 (``analysis.r_squared``) of the pairs of each type;
    pred, true (M, T), types (M,) codes. SS_tot around each type's own target mean; None where a
    type has fewer than 2 pairs or targets that do not vary."""
    from part.evaluation.analysis import r_squared

    out = {}
    for i, name in enumerate(PAIR_TYPES):
        rows = types == i
        r2: Optional[float] = r_squared(pred[rows], true[rows]) if rows.sum() >= 2 else None
        out[name] = {"pairs": int(rows.sum()), "r2": r2}
    return out
