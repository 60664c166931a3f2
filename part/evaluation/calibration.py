"""Calibrated probabilities: temperature scaling (Guo et al., 2017) and calibration scores.

One temperature ``T > 0`` divides a classifier's logits before the softmax:
``p = softmax(logits / T)``. It is fitted by minimising the negative log-likelihood on held-out
labelled items (a bounded search over ``log T``, deterministic), and it never changes the argmax,
hence never the accuracy, kappa or F1. Scores (items with label ``-1`` are left out):

- ECE: the items are binned by their top-class probability into ``n_bins`` equal-width bins of
  [0, 1] (bin b holds confidences in ((b-1)/n, b/n], the first bin also 0);
  ``ECE = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|``;
- NLL: ``mean_i -log p_i[y_i]`` (natural log; probabilities clipped at 1e-12);
- Brier: ``mean_i sum_c (p_i[c] - [y_i == c])^2`` (multi-class, 0 best, 2 worst).

A model predicting the uniform distribution over K classes scores NLL ``log K`` and Brier
``1 - 1/K``: reports give those as the reference that chance gives.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

N_BINS = 10
T_BOUNDS = (0.05, 20.0)  # the temperatures the fit searches
EPS = 1e-12


def softmax(logits: Any, temperature: float | None = 1.0) -> np.ndarray:
    """Probabilities (n, K) float64 of ``logits`` (n, K) divided by ``temperature`` (None: 1)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature or 1.0)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _labelled(probs: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != y.size:
        raise ValueError(f"probs of shape {probs.shape} for {y.size} labels; expected (items, classes)")
    keep = y >= 0
    return probs[keep], y[keep].astype(np.int64)


def reliability_bins(probs: Any, y: Any, n_bins: int = N_BINS) -> dict:
    """Per equal-width bin of the top-class probability: ``count``, ``accuracy`` and
    ``confidence`` (mean top-class probability; None for empty bins), and the bin ``edges``."""
    p, y = _labelled(probs, y)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(index, correct, minlength=n_bins) / count
        mean_conf = np.bincount(index, conf, minlength=n_bins) / count
    none = lambda a: [None if c == 0 else float(v) for v, c in zip(a, count)]  # noqa: E731
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(), "count": count.tolist(),
            "accuracy": none(acc), "confidence": none(mean_conf)}


def expected_calibration_error(probs: Any, y: Any, n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-width bins of the top-class probability (module docstring)."""
    bins = reliability_bins(probs, y, n_bins)
    n = sum(bins["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"])
                     if c)) if n else float("nan")


def negative_log_likelihood(probs: Any, y: Any) -> float:
    """Mean -log p[y] over the labelled items (natural log, p clipped at 1e-12)."""
    p, y = _labelled(probs, y)
    return float(-np.log(np.clip(p[np.arange(y.size), y], EPS, None)).mean())


def brier_score(probs: Any, y: Any) -> float:
    """Mean over items of sum over classes (p_c - [y == c])^2."""
    p, y = _labelled(probs, y)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def calibration_scores(probs: Any, y: Any, n_bins: int = N_BINS) -> dict:
    """``ece``, ``nll``, ``brier``, ``accuracy``, ``mean_confidence``, ``n`` and the reliability
    ``bins`` of probabilities (n, K) against labels (n,) (-1 left out)."""
    p, labels = _labelled(probs, y)
    return {"ece": expected_calibration_error(p, labels, n_bins), "nll": negative_log_likelihood(p, labels),
            "brier": brier_score(p, labels), "accuracy": float((p.argmax(1) == labels).mean()),
            "mean_confidence": float(p.max(1).mean()), "n": int(labels.size),
            "bins": reliability_bins(p, labels, n_bins)}


def fit_temperature(logits: Any, y: Any, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature in ``bounds`` minimising the NLL of ``softmax(logits / T)`` on the
    labelled items: Brent's bounded search over log T (scipy), deterministic. Logits (n, K)."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    keep = np.asarray(y).reshape(-1) >= 0
    z, labels = z[keep], np.asarray(y).reshape(-1)[keep].astype(np.int64)
    if labels.size == 0:
        raise ValueError("fit_temperature: no labelled item (all labels are -1)")
    rows = np.arange(labels.size)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[rows, labels]).mean())

    result = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))


def holdout_split(n_items: int, groups: Sequence | None, fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Split items into (train, calibration) index arrays (sorted int64) and the held-out group
    ids: ``round(fraction * n_groups)`` groups (at least 1) drawn by ``seed`` when ``groups``
    (one id per item, e.g. subjects) is given, else that fraction of the items. None when the
    split would leave the training or the calibration part empty (fewer than 2 groups/items)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        ids = np.arange(n_items).astype(str)
        keys = ids
    else:
        keys = np.asarray([str(g) for g in groups])
        if keys.size != n_items:
            raise ValueError(f"{keys.size} group ids for {n_items} items; give one per item")
        ids = np.unique(keys)
    n_cal = max(1, int(round(fraction * ids.size)))
    if ids.size < 2 or n_cal >= ids.size:
        return None
    held = np.sort(rng.permutation(ids)[:n_cal])
    is_cal = np.isin(keys, held)
    return np.flatnonzero(~is_cal), np.flatnonzero(is_cal), held.tolist() if groups is not None else []


def calibration_section(logits: Any, y: Any, temperature: float | None, n_bins: int = N_BINS) -> dict:
    """The report's ``calibration`` entry: scores before (T = 1) and after (the card's T; None:
    the model is uncalibrated and only ``before`` is given), and the uniform-prediction reference."""
    k = np.asarray(logits).shape[1]
    out = {"temperature": temperature, "n_bins": n_bins,
           "uniform_reference": {"nll": math.log(k), "brier": 1.0 - 1.0 / k,
                                 "note": f"what predicting 1/{k} for every class scores"},
           "before": calibration_scores(softmax(logits), y, n_bins)}
    if temperature is not None:
        out["after"] = calibration_scores(softmax(logits, temperature), y, n_bins)
    return out


def plot_reliability(path: str | Path, section: Mapping, title: str) -> Path:
    """Reliability diagram ``path`` (PNG): per bin the accuracy against the mean confidence,
    before and (when calibrated) after temperature scaling, with the diagonal of perfect
    calibration and each curve's ECE."""
    from matplotlib.figure import Figure

    from part.evaluation.report import save_png

    fig = Figure(figsize=(5.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for key, style, label in (("before", "o-", "before (T = 1)"), ("after", "s-", "after (T = {t:.2f})")):
        scores = section.get(key)
        if not scores:
            continue
        b = scores["bins"]
        pts = [(f, a) for f, a in zip(b["confidence"], b["accuracy"]) if f is not None]
        ax.plot([f for f, _ in pts], [a for _, a in pts], style,
                label=f"{label.format(t=section.get('temperature') or 1.0)}: ECE {scores['ece']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-class probability (bin)")
    ax.set_ylabel("accuracy (bin)")
    ax.set_title(f"{title}\nreliability on the test split, {section.get('n_bins', N_BINS)} equal-width bins")
    ax.legend(loc="upper left", fontsize=8)
    return save_png(fig, path)


def markdown_section(section: Mapping) -> list[str]:
    """Report lines: ECE, NLL, Brier before and after temperature scaling."""
    from part.evaluation.report import fmt_value, markdown_table

    t = section.get("temperature")
    ref = section.get("uniform_reference") or {}
    intro = (f"Temperature T = {fmt_value(t)} fitted on held-out finetune items (never test items); "
             "probabilities = softmax(logits / T); T never changes the predicted class."
             if t is not None else
             "The model is uncalibrated (its checkpoint has no temperature): probabilities are the raw softmax.")
    rows = [(name, section["before"][key], (section.get("after") or {}).get(key, "n/a"))
            for name, key in (("ECE (10 bins, top class)", "ece"), ("NLL", "nll"), ("Brier", "brier"),
                              ("mean top-class probability", "mean_confidence"), ("accuracy", "accuracy"))]
    return (["## Calibration", "", intro, f"Uniform prediction gives NLL {fmt_value(ref.get('nll'))} and "
             f"Brier {fmt_value(ref.get('brier'))}; a calibrated model has ECE near 0.", ""]
            + markdown_table(["score", "before (T = 1)", "after"], rows)
            + ["Plot: `calibration.png` (reliability diagram).", ""])
