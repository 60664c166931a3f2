"""A scoring checked before it is trusted: Cohen's kappa of staged epochs against a reference
scoring shifted over a range of lags, and the two warnings it can raise.

``kappa(lag)`` compares the stage of each staged epoch [t, t + epoch) with the reference's stage
of [t + lag, t + lag + epoch) (the reference on the staged hypnogram's clock, after the start-time
alignment), on the epochs staged and scored at that lag. A lag compares only when it keeps at
least :data:`MIN_OVERLAP` of lag 0's compared epochs (else null: too few to judge).
All lags are one batched computation: one labelling of (lags x epochs) onsets and one
``bincount`` of (lag, reference stage, staged stage) triples into (lags, 5, 5) confusions.

Thresholds (the one place they live; documented in the README's "Checked scorings"):

- :data:`LAG_RANGE_S` / :data:`LAG_STEP_S`: lags of -60 .. +60 min in 30-s steps (241 lags);
- ``lag_warning``: the best lag's kappa exceeds lag 0's by more than :data:`LAG_GAIN_KAPPA`
  (0.1): the scoring (or the recording's clock) is probably off by that lag;
- ``low_agreement``: kappa at the best lag is below :data:`LOW_KAPPA` (0.2): the scoring may
  belong to another recording (no flag where kappa is undefined at every lag: a single stage in
  both, where kappa says nothing).

Nothing is ever shifted here: the scan reports, the user decides (``Hypnogram.moved_by``).
"""
from __future__ import annotations

import numpy as np

from part.evaluation.metrics import kappa_from_confusion
from part.modalities.eeg.recordings.constants import EPOCH_S

LAG_RANGE_S = 3600.0  # s: lags scanned on each side of 0
LAG_STEP_S = EPOCH_S  # s: lag step (one scoring epoch)
LAG_GAIN_KAPPA = 0.1  # a lag whose kappa beats lag 0's by more than this raises lag_warning
LOW_KAPPA = 0.2  # best kappa below this raises low_agreement
MIN_OVERLAP = 0.5  # a lag counts when it compares at least this fraction of lag 0's epochs


class ScoringWarning(UserWarning):
    """A reference scoring that agrees better at another lag, or hardly at all."""


def kappa_by_lag(truth: np.ndarray, staged: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa per row of ``truth`` (L, n) int stage codes (-1 excluded) against ``staged``
    (n,) int (-1 excluded): (kappa (L,) float64, NaN where undefined; n_compared (L,) int64).
    Same formula as scikit-learn's ``cohen_kappa_score``: (p_o - p_e) / (1 - p_e)."""
    truth = np.asarray(truth, np.int64)
    staged = np.broadcast_to(np.asarray(staged, np.int64), truth.shape)
    valid = (truth >= 0) & (staged >= 0)
    lag = np.broadcast_to(np.arange(truth.shape[0])[:, None], truth.shape)
    cell = (lag * n_classes + truth) * n_classes + staged
    confusion = np.bincount(cell[valid], minlength=truth.shape[0] * n_classes * n_classes).reshape(
        truth.shape[0], n_classes, n_classes).astype(np.float64)
    return kappa_from_confusion(confusion), confusion.sum((1, 2)).astype(np.int64)


def lag_scan(staged, reference, n_classes: int = 5) -> dict:
    """The scan of the module docstring for ``staged`` (a Hypnogram) against ``reference`` (a
    Hypnogram already on ``staged``'s clock). Returns {"lag_scan": {lags_s, kappa (null where
    too few epochs compare), n_compared, best_lag_s, best_kappa, kappa_at_0, thresholds},
    "flags": {lag_warning, low_agreement}, "warnings": [one line each]}."""
    n_side = int(round(LAG_RANGE_S / LAG_STEP_S))
    lags = LAG_STEP_S * np.arange(-n_side, n_side + 1)
    onsets = staged.onsets_s[None, :] + lags[:, None]
    truth = reference.labels_at(onsets.reshape(-1), staged.epoch_s).reshape(onsets.shape)
    kappa, n = kappa_by_lag(truth, staged.stages, n_classes)
    kappa[n < MIN_OVERLAP * n[n_side]] = np.nan
    k0 = kappa[n_side]
    finite = np.isfinite(kappa)
    if finite.any():  # the best lag; ties go to the lag nearest 0
        top = np.flatnonzero(finite & (kappa >= np.nanmax(kappa) - 1e-12))
        best = int(top[np.argmin(np.abs(lags[top]))])
        best_lag, best_kappa = float(lags[best]), float(kappa[best])
    else:
        best_lag, best_kappa = 0.0, float("nan")
    lag_warning = bool(np.isfinite(best_kappa) and best_lag != 0.0
                       and (not np.isfinite(k0) or best_kappa - k0 > LAG_GAIN_KAPPA))
    low = bool(np.isfinite(best_kappa) and best_kappa < LOW_KAPPA)  # undefined everywhere: one class, no verdict
    scan = {"lags_s": lags.tolist(), "kappa": [None if not np.isfinite(k) else round(float(k), 4) for k in kappa],
            "n_compared": n.tolist(), "best_lag_s": best_lag, "best_kappa": _or_none(best_kappa),
            "kappa_at_0": _or_none(k0),
            "thresholds": {"lag_gain_kappa": LAG_GAIN_KAPPA, "low_kappa": LOW_KAPPA, "min_overlap": MIN_OVERLAP},
            "note": "kappa(lag): staged epoch [t, t+30 s) against the reference at [t+lag, t+lag+30 s); "
                    "nothing was shifted"}
    return {"lag_scan": scan, "flags": {"lag_warning": lag_warning, "low_agreement": low},
            "warnings": _warnings(scan, lag_warning, low, reference.scorer or reference.source, staged.record)}


def _or_none(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _warnings(scan: dict, lag_warning: bool, low: bool, reference: str, record: str) -> list[str]:
    """The one-line warnings of a scan (what it means, what to do)."""
    out, best, k0 = [], scan["best_lag_s"], scan["kappa_at_0"]
    shown = "n/a" if k0 is None else f"{k0:.3f}"
    if lag_warning:
        out.append(f"{reference} agrees best with {record} when moved by {-best:+g} s ({-best / 60:+g} min): "
                   f"kappa {scan['best_kappa']:.3f} there vs {shown} as given; its clock or the recording's is "
                   f"probably off. Nothing was shifted: fix the scoring's onsets/start time, or write a moved copy "
                   f"with Hypnogram.from_file(...).moved_by({-best:g}).to_csv(...) and pass that")
    if low:
        out.append(f"{reference} agrees poorly with {record} at every lag within +/-{LAG_RANGE_S / 60:g} min "
                   f"(best kappa {scan['best_kappa']:.3f} < {LOW_KAPPA:g}): the scoring may belong to another "
                   "recording; check which scoring goes with which recording")
    return out
