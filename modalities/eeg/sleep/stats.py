"""Sleep statistics of a hypnogram (AASM definitions), pure numpy.

A hypnogram is ``stages`` (n,) int, one value per scoring epoch of ``epoch_s`` seconds (30 s),
each an index into ``class_names`` (``W N1 N2 N3 REM``) or -1 for an unscored epoch. Wake is the
class ``W``; REM the class ``REM`` (or ``R``); sleep is every scored epoch that is not wake.
All durations are in minutes; ``None`` (JSON null) where a quantity does not exist.

- scored period: from the start of the first scored epoch to the end of the last one;
- TIB, time in bed: the scored period's length (unscored epochs inside it count, as ``unscored_min``);
- TST, total sleep time: sleep epochs x epoch length;
- SE, sleep efficiency: 100 * TST / TIB (%);
- SOL, sleep onset latency: from the start of the scored period to the first epoch of any sleep
  stage (sleep onset); None without sleep;
- REM latency: from sleep onset to the first REM epoch; None without REM;
- WASO, wake after sleep onset: wake epochs after sleep onset and before the last sleep epoch
  (wake after the final awakening is not counted);
- per stage: ``minutes`` for every class, ``percent_of_tst`` for the sleep stages (100 * minutes / TST).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from part.modalities.eeg.recordings.constants import CLASS_NAMES as STAGE_NAMES
DEFINITIONS = {
    "tib_min": "time in bed: the scored period, from the first to the end of the last scored epoch",
    "tst_min": "total sleep time: epochs of N1, N2, N3 or REM",
    "sleep_efficiency_pct": "100 * TST / TIB",
    "sol_min": "sleep onset latency: start of the scored period to the first epoch of any sleep stage",
    "rem_latency_min": "sleep onset to the first REM epoch",
    "waso_min": "wake after sleep onset, until the last sleep epoch",
    "percent_of_tst": "minutes of each sleep stage as a percentage of TST",
}


def _class_index(class_names: Sequence[str], names: Sequence[str]) -> int:
    for name in names:
        if name in class_names:
            return list(class_names).index(name)
    raise ValueError(f"sleep statistics need a class named {' or '.join(names)}; classes are {list(class_names)}")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def sleep_statistics(stages: Any, epoch_s: float = 30.0,
                     class_names: Sequence[str] = STAGE_NAMES) -> dict[str, Any]:
    """The statistics of the module docstring for a hypnogram ``stages`` (n,) int (-1 unscored).

    Returns a JSON-ready dict: ``epoch_s``, ``n_epochs``, ``n_scored``, ``tib_min``, ``tst_min``,
    ``sleep_efficiency_pct``, ``sol_min``, ``rem_latency_min``, ``waso_min``, ``unscored_min``,
    ``minutes`` ({class: min}), ``percent_of_tst`` ({sleep class: %}), ``definitions``.
    """
    stages = np.asarray(stages).reshape(-1).astype(np.int64)
    if stages.size and (stages.min() < -1 or stages.max() >= len(class_names)):
        raise ValueError(f"stages must be -1 (unscored) or 0..{len(class_names) - 1}, got values "
                         f"{sorted(set(stages.tolist()) - set(range(-1, len(class_names))))[:5]}")
    wake, rem = _class_index(class_names, ("W", "Wake")), _class_index(class_names, ("REM", "R"))
    minute = float(epoch_s) / 60.0
    scored = np.flatnonzero(stages >= 0)
    sleep = np.flatnonzero((stages >= 0) & (stages != wake))
    counts = np.bincount(stages[scored], minlength=len(class_names))
    tib = (scored[-1] - scored[0] + 1) * minute if scored.size else 0.0
    tst = sleep.size * minute
    sol = rem_latency = waso = None
    if sleep.size:
        onset, last = sleep[0], sleep[-1]
        sol = (onset - scored[0]) * minute
        rems = np.flatnonzero(stages[onset:] == rem)
        rem_latency = rems[0] * minute if rems.size else None
        waso = np.count_nonzero(stages[onset:last + 1] == wake) * minute
    sleep_classes = [i for i in range(len(class_names)) if i != wake]
    return {
        "epoch_s": float(epoch_s),
        "n_epochs": int(stages.size),
        "n_scored": int(scored.size),
        "tib_min": _round(tib),
        "tst_min": _round(tst),
        "sleep_efficiency_pct": _round(100.0 * tst / tib) if tib else None,
        "sol_min": _round(sol),
        "rem_latency_min": _round(rem_latency),
        "waso_min": _round(waso),
        "unscored_min": _round((np.count_nonzero(stages[scored[0]:scored[-1] + 1] < 0) * minute)
                               if scored.size else 0.0),
        "minutes": {str(class_names[i]): _round(counts[i] * minute) for i in range(len(class_names))},
        "percent_of_tst": {str(class_names[i]): (_round(100.0 * counts[i] * minute / tst) if tst else None)
                           for i in sleep_classes},
        "definitions": dict(DEFINITIONS),
    }
