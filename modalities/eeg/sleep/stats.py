"""Sleep statistics of a hypnogram (AASM definitions, YASA's names beside them), pure numpy.

A hypnogram is ``stages`` (n,) int, one value per scoring epoch of ``epoch_s`` seconds (30 s) on
one contiguous clock (``Hypnogram.statistics`` puts gaps between epochs on it as unscored epochs),
each an index into ``class_names`` (``W N1 N2 N3 REM``) or -1 for an unscored epoch. Wake is the
class ``W``; REM the class ``REM`` (or ``R``); sleep is every scored epoch that is not wake.
All durations and latencies are in minutes; ``None`` (JSON null) where a quantity does not exist.
Every formula is in :data:`DEFINITIONS` (written into ``stats.json`` as ``definitions``).

Two origins for latencies, named so they cannot be mixed up:

- ``*_from_start_min``: from the start of the scored period (the first scored epoch, i.e. lights
  out when the scoring starts there), YASA's ``Lat_*`` (YASA counts from the hypnogram's first
  epoch and assumes it is cropped to lights out);
- ``*_latency_from_onset_min``: from sleep onset (the first sleep epoch), the AASM REM latency.
  ``rem_latency_min`` (kept from before) is the same number as ``rem_latency_from_onset_min``.

``flags``: ``soremp`` (a sleep-onset REM period: REM within :data:`SOREMP_MAX_MIN` minutes of
sleep onset, i.e. ``rem_latency_from_onset_min <= 15``; false without REM or without sleep).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from part.modalities.eeg.recordings.constants import CLASS_NAMES as STAGE_NAMES
from part.modalities.eeg.recordings.constants import EPOCH_S

SOREMP_MAX_MIN = 15.0  # min: REM this soon after sleep onset is a sleep-onset REM period
PERSISTENT_SLEEP_MIN = 5.0  # min: SOL_5min's run of uninterrupted sleep

DEFINITIONS = {
    "tib_min": "time in bed: the scored period, from the start of the first to the end of the last scored "
               "epoch (unscored epochs and gaps inside it count, see unscored_min); YASA's TIB when the "
               "hypnogram starts and ends with a scored epoch",
    "spt_min": "sleep period time: from the start of the first to the end of the last sleep epoch (N1, N2, N3 "
               "or REM), wake and unscored epochs inside it included; 0 without sleep (YASA's SPT)",
    "tst_min": "total sleep time: epochs of N1, N2, N3 or REM x epoch length",
    "sleep_efficiency_pct": "SE = 100 * TST / TIB",
    "sme_pct": "sleep maintenance efficiency SME = 100 * TST / SPT (YASA's SME); null without sleep",
    "sfi_per_h": "sleep fragmentation index SFI = number of sleep -> wake transitions / (TST in hours); a "
                 "transition is a sleep epoch followed by a wake epoch, consecutive among the scored epochs "
                 "(unscored epochs between them are skipped); YASA's SFI; null without sleep",
    "sol_min": "sleep onset latency SOL: start of the scored period to the first epoch of any sleep stage "
               "(sleep onset); YASA's SOL",
    "sol_5min_min": "persistent sleep onset latency SOL_5min: start of the scored period to the first epoch of "
                    "the first run of >= 5 min of uninterrupted sleep (consecutive sleep epochs of any sleep "
                    "stage; a wake or unscored epoch interrupts; ceil(300 s / epoch) epochs); YASA's SOL_5min",
    "lat_<stage>_from_start_min": "start of the scored period to the first epoch of <stage> (n1, n2, n3, rem); "
                                  "YASA's Lat_<stage>; null without that stage",
    "<stage>_latency_from_onset_min": "sleep onset to the first epoch of <stage> (n1, n2, n3, rem) = "
                                      "lat_<stage>_from_start_min - sol_min (the AASM REM latency); null "
                                      "without that stage",
    "rem_latency_min": "sleep onset to the first REM epoch: the same number as rem_latency_from_onset_min "
                       "(kept for existing readers)",
    "waso_min": "wake after sleep onset: wake epochs from sleep onset to the last sleep epoch (inside SPT; "
                "wake after the final awakening is not counted); YASA's WASO",
    "unscored_min": "unscored epochs (and gaps between epochs) inside the scored period",
    "minutes": "minutes of each stage: its epochs x epoch length",
    "percent_of_tst": "minutes of each sleep stage as a percentage of TST: 100 * minutes / TST",
    "flags.soremp": f"sleep-onset REM period: REM within {SOREMP_MAX_MIN:g} min of sleep onset "
                    f"(rem_latency_from_onset_min <= {SOREMP_MAX_MIN:g}); false without REM",
}


def _class_index(class_names: Sequence[str], names: Sequence[str]) -> int:
    for name in names:
        if name in class_names:
            return list(class_names).index(name)
    raise ValueError(f"sleep statistics need a class named {' or '.join(names)}; classes are {list(class_names)}")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _first_run_start(mask: np.ndarray, min_len: int) -> int | None:
    """Index of the first epoch of the first run of >= ``min_len`` consecutive True in ``mask``
    (n,) bool, or None."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = np.flatnonzero(ends - starts >= min_len)
    return int(starts[long[0]]) if long.size else None


def _latencies(stages: np.ndarray, class_names: Sequence[str], sleep_classes: list[int], origin: int,
               onset: int | None, minute: float) -> dict[str, float | None]:
    """Per sleep class: ``lat_<c>_from_start_min`` (from ``origin``) and ``<c>_latency_from_onset_min``
    (from ``onset``), minutes, None where the class never occurs."""
    firsts = {str(class_names[i]).lower(): np.flatnonzero(stages == i)[:1] for i in sleep_classes}
    first = {name: (int(at[0]) if at.size else None) for name, at in firsts.items()}
    from_start = {f"lat_{name}_from_start_min": None if at is None else _round((at - origin) * minute)
                  for name, at in first.items()}
    from_onset = {f"{name}_latency_from_onset_min": None if at is None or onset is None
                  else _round((at - onset) * minute) for name, at in first.items()}
    return {**from_start, **from_onset}


def sleep_statistics(stages: Any, epoch_s: float = EPOCH_S,
                     class_names: Sequence[str] = STAGE_NAMES) -> dict[str, Any]:
    """The statistics of :data:`DEFINITIONS` for a hypnogram ``stages`` (n,) int (-1 unscored) on
    one contiguous clock of ``epoch_s``-second epochs.

    Returns a JSON-ready dict: ``epoch_s``, ``n_epochs``, ``n_scored``, ``tib_min``, ``spt_min``,
    ``tst_min``, ``sleep_efficiency_pct``, ``sme_pct``, ``sfi_per_h``, ``sol_min``,
    ``sol_5min_min``, ``rem_latency_min``, ``lat_<stage>_from_start_min`` and
    ``<stage>_latency_from_onset_min`` per sleep stage, ``waso_min``, ``unscored_min``,
    ``minutes`` ({class: min}), ``percent_of_tst`` ({sleep class: %}), ``flags``
    ({"soremp": bool}), ``definitions``.
    """
    stages = np.asarray(stages).reshape(-1).astype(np.int64)
    if stages.size and (stages.min() < -1 or stages.max() >= len(class_names)):
        raise ValueError(f"stages must be -1 (unscored) or 0..{len(class_names) - 1}, got values "
                         f"{sorted(set(stages.tolist()) - set(range(-1, len(class_names))))[:5]}")
    wake, rem = _class_index(class_names, ("W", "Wake")), _class_index(class_names, ("REM", "R"))
    minute = float(epoch_s) / 60.0
    scored = np.flatnonzero(stages >= 0)
    is_sleep = (stages >= 0) & (stages != wake)
    sleep = np.flatnonzero(is_sleep)
    counts = np.bincount(stages[scored], minlength=len(class_names))
    tib = (scored[-1] - scored[0] + 1) * minute if scored.size else 0.0
    tst = sleep.size * minute
    origin = int(scored[0]) if scored.size else 0
    onset = int(sleep[0]) if sleep.size else None
    sol = rem_latency = waso = sol_5 = sfi = None
    spt = 0.0
    if sleep.size:
        last = sleep[-1]
        spt = (last - onset + 1) * minute
        sol = (onset - origin) * minute
        rems = np.flatnonzero(stages[onset:] == rem)
        rem_latency = rems[0] * minute if rems.size else None
        waso = np.count_nonzero(stages[onset:last + 1] == wake) * minute
        run = _first_run_start(is_sleep, math.ceil(PERSISTENT_SLEEP_MIN * 60.0 / float(epoch_s) - 1e-9))
        sol_5 = None if run is None else (run - origin) * minute
        seq = stages[scored]
        to_wake = np.count_nonzero((seq[:-1] != wake) & (seq[1:] == wake))
        sfi = to_wake / (tst / 60.0)
    sleep_classes = [i for i in range(len(class_names)) if i != wake]
    return {
        "epoch_s": float(epoch_s),
        "n_epochs": int(stages.size),
        "n_scored": int(scored.size),
        "tib_min": _round(tib),
        "spt_min": _round(spt),
        "tst_min": _round(tst),
        "sleep_efficiency_pct": _round(100.0 * tst / tib) if tib else None,
        "sme_pct": _round(100.0 * tst / spt) if spt else None,
        "sfi_per_h": _round(sfi),
        "sol_min": _round(sol),
        "sol_5min_min": _round(sol_5),
        "rem_latency_min": _round(rem_latency),
        **_latencies(stages, class_names, sleep_classes, origin, onset, minute),
        "waso_min": _round(waso),
        "unscored_min": _round((np.count_nonzero(stages[scored[0]:scored[-1] + 1] < 0) * minute)
                               if scored.size else 0.0),
        "minutes": {str(class_names[i]): _round(counts[i] * minute) for i in range(len(class_names))},
        "percent_of_tst": {str(class_names[i]): (_round(100.0 * counts[i] * minute / tst) if tst else None)
                           for i in sleep_classes},
        "flags": {"soremp": bool(rem_latency is not None and rem_latency <= SOREMP_MAX_MIN + 1e-9)},
        "definitions": dict(DEFINITIONS),
    }


def soremp_warning(stats: dict) -> str | None:
    """One line about a sleep-onset REM period in ``stats`` (:func:`sleep_statistics`), else None."""
    if not stats.get("flags", {}).get("soremp"):
        return None
    return (f"sleep-onset REM period: REM {stats['rem_latency_min']:g} min after sleep onset "
            f"(<= {SOREMP_MAX_MIN:g} min; SOL {stats['sol_min']:g} min, SOL_5min "
            f"{'n/a' if stats['sol_5min_min'] is None else format(stats['sol_5min_min'], 'g')} min): "
            "rare in healthy sleep (narcolepsy, REM rebound) and a common staging error at sleep onset; "
            "check the hypnogram around sleep onset")
