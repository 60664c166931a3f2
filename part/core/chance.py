"""Chance levels of pretext objectives: what the loss is for a model that learnt nothing.

A pretext method may define ``pretext_chance(x, batch_size, generator) -> dict`` (see
docs/architecture.md, "Chance levels"): ``x`` a batch of held-out inputs (B, ...), ``batch_size``
the pretraining batch per step (CPC's number of candidates), ``generator`` a seeded
``torch.Generator`` on x's device for every random draw. It returns ``chance(metric, value, how)``
plus optional extras; ``metric`` names the loss the value is comparable with ("mse",
"cross_entropy", "bce"), in the units of the method's training loss.

Helpers here:
- ``mean_predictor_chance``: the error of always predicting the mean target (regression
  pretexts: PART's relative offsets, MAE's patches), per target value and overall;
- ``log_chance``: ln K for a uniform guess among K classes (RP, TS: K = 2; CPC: K candidates;
  MP3 / DropPos: K = N grid positions).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def chance(metric: str, value: float, how: str, **extra) -> dict:
    """The chance record: {"metric", "value", "how", **extra}, value a Python float."""
    return {"metric": metric, "value": float(value), "how": how, **extra}


def mean_predictor_chance(targets: torch.Tensor, names: Sequence[str] | None = None) -> dict:
    """Errors of predicting the mean of ``targets`` (M, T) for every row (float64 sums).

    Returns {"value": mean over T of the per-value MSE (the MSE loss of that constant),
    "per_target": {name: MSE} (names default to t0, t1, ...), "mean": {name: mean target},
    "rows": M}.
    """
    t = targets.detach().double().reshape(-1, targets.shape[-1])
    names = list(names) if names is not None else [f"t{i}" for i in range(t.shape[1])]
    mean = t.mean(0)
    mse = (t - mean).pow(2).mean(0)
    return {"value": float(mse.mean()), "per_target": dict(zip(names, mse.tolist())),
            "mean": dict(zip(names, mean.tolist())), "rows": int(t.shape[0])}


def log_chance(k: int, metric: str, how: str, **extra) -> dict:
    """ln k: the cross-entropy of a uniform guess among k classes (k >= 2)."""
    if k < 2:
        raise ValueError(f"log_chance: need at least 2 classes, got {k}")
    return chance(metric, math.log(k), how, classes=int(k), **extra)
