"""Paired statistics for comparing two methods evaluated on the same test units (the numbers of
``part-compare``'s "Paired differences" section).

Units are test subjects (per-subject kappas, the EEG protocol), test items (0/1 correctness
per image, where a run has no subjects) or finetune draws (repeat k of every run uses the same
seed ``run.seed + k``, so draws pair by index). For a vector of paired differences
``d = score_a - score_b`` (n,):

- ``mean``: the mean difference;
- ``ci_low`` / ``ci_high``: the paired bootstrap percentile interval (default 95 %): one
  ``(resamples, n)`` index draw from ``numpy.random.default_rng(seed)``, the mean of ``d`` over
  each resample, the 2.5 and 97.5 percentiles of those means (``numpy.percentile``, linear);
- ``p_wilcoxon``: the two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``, zero
  differences dropped as Wilcoxon's original test does), None with a note when every difference
  is 0; with fewer than 6 non-zero differences a note says that the exact test cannot reach
  p < 0.05 (its smallest two-sided p is 2 / 2^n);
- ``significant``: False when the CI holds 0 (the comparison's "not significant" mark).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
SMALL_N = 6  # below: the exact two-sided Wilcoxon test cannot give p < 0.05


def bootstrap_ci(diff, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Paired bootstrap percentile CI of the mean of ``diff`` (n,): one (resamples, n) index draw."""
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise ValueError("bootstrap_ci: no paired differences (n = 0)")
    index = np.random.default_rng(seed).integers(0, d.size, size=(resamples, d.size))
    means = d[index].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def wilcoxon_p(diff) -> tuple[Optional[float], str]:
    """(two-sided Wilcoxon signed-rank p-value or None, note) for paired differences (n,)."""
    from scipy.stats import wilcoxon

    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return None, "all differences are 0: no Wilcoxon test"
    p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    if nonzero < SMALL_N:
        return p, (f"only {nonzero} non-zero differences: the exact Wilcoxon test cannot reach "
                   f"p < 0.05 (smallest p = 2/2^{nonzero} = {2.0 / 2 ** nonzero:.3g})")
    return p, ""


def paired_difference(a, b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """Statistics of ``a - b`` for paired scores a, b (n,) (same units in the same order)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.size} scores against {b.size}; pair them unit by unit")
    d = a - b
    low, high = bootstrap_ci(d, resamples, seed, level)
    p, note = wilcoxon_p(d)
    return {"n": int(d.size), "mean": float(d.mean()), "ci_low": low, "ci_high": high,
            "level": level, "resamples": resamples, "seed": seed, "p_wilcoxon": p,
            "significant": not (low <= 0.0 <= high), "note": note}


# ----------------------------------------------------------------------------- units of a run

def subject_kappas(report: Mapping) -> Optional[dict]:
    """{subject id: kappa} of a report's ``per_subject`` groups (undefined kappas left out)."""
    groups = ((report.get("per_subject") or {}).get("groups")) if isinstance(report, Mapping) else None
    if not isinstance(groups, Mapping):
        return None
    return {str(k): float(v["kappa"]) for k, v in groups.items()
            if isinstance(v, Mapping) and v.get("kappa") is not None}


def repeat_scores(report: Mapping, key: str = "kappa") -> Optional[dict]:
    """{repeat index: metric} over a report's finetune repeats (None without repeats)."""
    rows = ((report.get("repeats") or {}).get("repeats")) if isinstance(report, Mapping) else None
    if not isinstance(rows, list) or len(rows) < 2:
        return None
    return {int(r["repeat"]): float(r[key]) for r in rows if isinstance(r, Mapping) and r.get(key) is not None}


def item_correct(predictions: Mapping) -> np.ndarray:
    """(n,) float 0/1: whether each labelled test item was classified right (y_true, y_pred)."""
    y, p = np.asarray(predictions["y_true"]), np.asarray(predictions["y_pred"])
    keep = y >= 0
    return (y[keep] == p[keep]).astype(np.float64)


def match_units(a: Mapping, b: Mapping, what: str, names: Sequence[str]) -> tuple[list, str]:
    """(common unit keys in sorted order, note) of two {unit: score} maps.

    Where the maps hold different units, the comparison is restricted to their intersection and
    the note says how many of each run's units were dropped; no common unit raises ValueError.
    """
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"runs {names[0]} and {names[1]} share no test {what}; a paired comparison "
                         f"needs the same test {what}: evaluate both on the same test split")
    note = ""
    if len(common) != len(a) or len(common) != len(b):
        note = (f"different test {what}: restricted to the {len(common)} in common "
                f"({len(a) - len(common)} of {names[0]}'s and {len(b) - len(common)} of {names[1]}'s left out)")
    return common, note
