"""What a :class:`~part.modalities.eeg.sleep.hypnogram.Hypnogram` can do beyond reading, statistics
and writing (yasa.Hypnogram's operations, on our clock): equality, slicing, transitions, periods
(bouts), resampling, crop / pad / move, consolidated stages, events, masks and JSON I/O.

Every operation keeps what the Hypnogram does better than a plain stage array: it is immutable
(operations return new objects), onsets stay on the recording's clock (seconds from its first
sample; a crop keeps them, it does not restart at 0) and epochs need not be contiguous (gaps are
unscored time; transitions and periods never bridge a gap).

Stage labels: stages are given and read as codes (0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unscored) or
as strings (``W``/``Wake``, ``N1``, ``N2``, ``N3``, ``R``/``REM``, ``unscored``/``?``; every
spelling of ``hypnogram_io.classify_stage``): ``Hypnogram(["W", "N1", "R"])``.
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from part.atomic import atomic_write_json
from part.modalities.eeg.recordings.constants import CLASS_NAMES, UNLABELLED, UNSCORED_NAME
from part.modalities.eeg.recordings.hypnogram_edf import HypnogramError
from part.modalities.eeg.recordings.hypnogram_io import TOLERANCE_S, classify_stage

# consolidate_stages: stage code -> consolidated class, and the class names (yasa.Hypnogram's)
CONSOLIDATED = {5: ((0, 1, 2, 3, 4), ("W", "N1", "N2", "N3", "REM")),
                4: ((0, 1, 1, 2, 3), ("W", "LIGHT", "DEEP", "REM")),
                3: ((0, 1, 1, 1, 2), ("W", "NREM", "REM")),
                2: ((0, 1, 1, 1, 1), ("W", "SLEEP"))}
JSON_FORMAT = "part.hypnogram/1"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|h|hour)?\s*$")


class Consolidated(NamedTuple):
    """Stages merged into fewer classes: ``stages`` (n,) int8 class index (-1 unscored),
    ``names`` the class names, ``onsets_s`` (n,) the epochs' onsets."""

    stages: np.ndarray
    names: tuple
    onsets_s: np.ndarray


def stage_codes_of(stages: Any) -> np.ndarray:
    """Stage codes (n,) of codes or string labels (module docstring); ValueError naming the
    labels that are no stage."""
    array = np.asarray(stages).reshape(-1)
    if array.dtype.kind not in "OUS":
        return array
    labels, inverse = np.unique(array.astype(str), return_inverse=True)  # classify each label once
    parsed = [classify_stage(label) for label in labels.tolist()]
    unknown = sorted(label for label, (_, unk) in zip(labels.tolist(), parsed) if unk)
    if unknown:
        raise ValueError(f"Hypnogram: stage labels {unknown[:5]} are no sleep stage; expected codes -1..4 or labels "
                         f"such as {list(CLASS_NAMES)}, 'R' or '{UNSCORED_NAME}'")
    return np.array([code for code, _ in parsed], np.int8)[inverse.reshape(-1)]


def duration_s(value: float | str) -> float:
    """Seconds of a number of seconds or a text such as ``"5min"``, ``"30s"``, ``"1h"``."""
    if not isinstance(value, str):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"duration {value!r}: expected seconds or a text such as '5min', '30s', '1h'")
    return float(match.group(1)) * {"min": 60.0, "h": 3600.0, "hour": 3600.0}.get(match.group(2) or "s", 1.0)


class HypnogramOps:
    """The operations of the module docstring, mixed into ``Hypnogram`` (which provides
    ``stages``, ``proba``, ``onsets_s``, ``epoch_s``, ``start``, ``replace``, ``runs``)."""

    # ------------------------------------------------------------------ comparison, slicing
    def __eq__(self, other: object) -> bool:
        """Same stages, onsets (1 ms), epoch length, start and probabilities (NaN equal NaN)."""
        if not isinstance(other, HypnogramOps):
            return NotImplemented
        if (len(self) != len(other) or self.epoch_s != other.epoch_s or self.start != other.start
                or not np.array_equal(self.stages, other.stages)
                or not np.allclose(self.onsets_s, other.onsets_s, rtol=0, atol=TOLERANCE_S)
                or (self.proba is None) != (other.proba is None)):
            return False
        return self.proba is None or np.allclose(self.proba, other.proba, rtol=0, atol=1e-6, equal_nan=True)

    def __hash__(self) -> int:
        return hash((self.stages.tobytes(), float(self.epoch_s), self.start))

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray):
        """The epochs ``key`` selects (an index, a slice, indices or a boolean mask) as a Hypnogram
        on the same clock (onsets, start and provenance kept); an index gives a one-epoch Hypnogram
        (``stages[i]`` is the code, ``stage_names[i]`` the name)."""
        index = np.arange(len(self))[key]
        index = np.atleast_1d(index)
        return self.replace(stages=self.stages[index], onsets_s=self.onsets_s[index],
                            proba=None if self.proba is None else self.proba[index])

    # ------------------------------------------------------------------ transitions, periods
    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Stage-to-stage transitions between consecutive epochs (one epoch apart on the clock,
        both scored): (counts (5, 5) int64, probabilities (5, 5) float64), rows = from, columns =
        to, in ``CLASS_NAMES`` order; a probability row is NaN for a stage never left nor kept."""
        k = len(CLASS_NAMES)
        a, b = self.stages[:-1].astype(np.int64), self.stages[1:].astype(np.int64)
        ok = (a >= 0) & (b >= 0) & (np.abs(np.diff(self.onsets_s) - self.epoch_s) <= TOLERANCE_S)
        counts = np.bincount(a[ok] * k + b[ok], minlength=k * k).reshape(k, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = counts / counts.sum(1, keepdims=True)
        return counts, probs

    def find_periods(self, threshold: float | str = "5min", equal_length: bool = False) -> dict[str, np.ndarray]:
        """Runs of one stage (consecutive epochs, not bridging a gap; -1: unscored runs) lasting at least ``threshold``
        (seconds or ``"5min"``): {"stage" (p,) int8, "onset_s" (p,), "duration_s" (p,)}.
        ``equal_length``: each run cut into pieces of exactly ``threshold`` (the remainder dropped)."""
        limit = duration_s(threshold)
        start, end, stage = self.runs()
        keep = (end - start) >= limit - TOLERANCE_S
        start, end, stage = start[keep], end[keep], stage[keep]
        if not equal_length:
            return {"stage": stage, "onset_s": start, "duration_s": end - start}
        if limit <= 0:
            raise ValueError("find_periods: equal_length needs a threshold > 0")
        pieces = np.floor((end - start) / limit + 1e-9).astype(np.int64)
        owner = np.repeat(np.arange(stage.size), pieces)
        within = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        return {"stage": stage[owner], "onset_s": start[owner] + within * limit,
                "duration_s": np.full(owner.size, limit)}

    def bouts(self, stage: int | str | None = None) -> dict[str, np.ndarray]:
        """Every run of one stage (``find_periods(0)``), only those of ``stage`` when given."""
        periods = self.find_periods(0)
        if stage is None:
            return periods
        keep = periods["stage"] == stage_codes_of([stage])[0]
        return {k: v[keep] for k, v in periods.items()}

    # ------------------------------------------------------------------ resampling
    def upsample(self, epoch_s: float | str):
        """The same night in shorter epochs of ``epoch_s`` (seconds or ``"10s"``; must divide the
        epoch length): each epoch repeated, probabilities too."""
        new = duration_s(epoch_s)
        ratio = self.epoch_s / new
        if new <= 0 or abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"upsample: {new:g} s must divide the epoch length {self.epoch_s:g} s")
        k = int(round(ratio))
        onsets = (self.onsets_s[:, None] + new * np.arange(k)[None, :]).reshape(-1)
        return self.replace(stages=np.repeat(self.stages, k), onsets_s=onsets, epoch_s=new,
                            proba=None if self.proba is None else np.repeat(self.proba, k, axis=0))

    def upsample_to_data(self, data: Any, sf: float | None = None) -> np.ndarray:
        """The stage code (n_times,) int8 of each sample of ``data`` (an array (..., n_times), a
        number of samples, or an ``mne.io.Raw``: ``sf`` from it) sampled at ``sf`` Hz from the
        recording's first sample: the epoch it lies in, -1 outside every epoch (gaps, ends)."""
        if hasattr(data, "info") and hasattr(data, "n_times"):
            n_times, sf = int(data.n_times), float(data.info["sfreq"]) if sf is None else sf
        else:
            n_times = int(data) if np.ndim(data) == 0 else int(np.shape(data)[-1])
        if not sf or sf <= 0:
            raise ValueError("upsample_to_data: give the sampling rate sf (Hz) of the data")
        t = np.arange(n_times) / float(sf)
        epoch = np.searchsorted(self.onsets_s, t + 1e-9, side="right") - 1
        inside = epoch >= 0
        inside[inside] = t[inside] < self.onsets_s[epoch[inside]] + self.epoch_s - 1e-9
        out = np.full(n_times, UNLABELLED, np.int8)
        out[inside] = self.stages[epoch[inside]]
        return out

    # ------------------------------------------------------------------ crop, pad, move
    def crop(self, start: float | datetime | None = None, end: float | datetime | None = None):
        """The epochs lying fully inside [start, end) (seconds on this clock, or clock times when
        ``start`` is known); onsets are kept (still counted from the recording's first sample)."""
        lo, hi = self._seconds(start, -np.inf), self._seconds(end, np.inf)
        keep = (self.onsets_s >= lo - TOLERANCE_S) & (self.onsets_s + self.epoch_s <= hi + TOLERANCE_S)
        return self[keep]

    def pad(self, before_s: float = 0.0, after_s: float = 0.0):
        """Unscored epochs added before the first and after the last epoch (multiples of the epoch
        length, seconds); probabilities NaN there."""
        nb, na = (int(round(s / self.epoch_s)) for s in (before_s, after_s))
        if min(nb, na) < 0 or any(abs(s - n * self.epoch_s) > TOLERANCE_S for s, n in ((before_s, nb), (after_s, na))):
            raise ValueError(f"pad: {before_s:g} s / {after_s:g} s must be multiples >= 0 of the epoch length "
                             f"{self.epoch_s:g} s")
        first, last = (self.start_s, self.end_s) if len(self) else (0.0, 0.0)
        onsets = np.r_[first - self.epoch_s * np.arange(nb, 0, -1), self.onsets_s, last + self.epoch_s * np.arange(na)]
        stages = np.r_[np.full(nb, UNLABELLED), self.stages, np.full(na, UNLABELLED)].astype(np.int8)
        k = len(CLASS_NAMES)
        proba = None if self.proba is None else np.r_[np.full((nb, k), np.nan), self.proba, np.full((na, k), np.nan)]
        return self.replace(stages=stages, onsets_s=onsets, proba=proba)

    def moved_by(self, seconds: float):
        """The stages moved ``seconds`` later in time (onsets + seconds; ``start`` unchanged): the
        fix for a scoring whose clock is off, e.g. by the lag of ``agreement()['lag_scan']``. Unlike
        :meth:`shifted` (the same times counted from another clock) this changes when each stage is."""
        return self.replace(onsets_s=self.onsets_s + float(seconds),
                            note=f"moved by {float(seconds):+g} s" + (f"; {self.note}" if self.note else ""))

    def _seconds(self, when: float | datetime | None, default: float) -> float:
        if when is None:
            return default
        if isinstance(when, datetime):
            if self.start is None:
                raise ValueError("crop: clock times need a hypnogram with a known start; give seconds")
            return (when - self.start).total_seconds()
        return float(when)

    # ------------------------------------------------------------------ other views
    def consolidate_stages(self, n_stages: int) -> Consolidated:
        """The stages in ``n_stages`` classes (yasa.Hypnogram's): 5 W N1 N2 N3 REM; 4 W LIGHT
        (N1, N2) DEEP (N3) REM; 3 W NREM REM; 2 W SLEEP. Unscored stays -1."""
        if n_stages not in CONSOLIDATED:
            raise ValueError(f"consolidate_stages: n_stages must be one of {sorted(CONSOLIDATED)}, got {n_stages}")
        table, names = CONSOLIDATED[n_stages]
        mapped = np.asarray(table + (UNLABELLED,), np.int8)[self.stages]  # -1 indexes the appended -1
        return Consolidated(mapped, names, self.onsets_s)

    def as_events(self) -> dict[str, np.ndarray]:
        """One event per run of one stage (epochs merged, gaps split): {"onset_s", "duration_s",
        "stage" (codes), "description" (stage names)} arrays, in time order."""
        start, end, stage = self.runs()
        names = np.asarray([*CLASS_NAMES, UNSCORED_NAME], dtype=object)[stage]
        return {"onset_s": start, "duration_s": end - start, "stage": stage, "description": names}

    def get_mask(self, stages: Any) -> np.ndarray:
        """(n,) bool: the epochs whose stage is one of ``stages`` (codes or labels, one or many)."""
        wanted = stage_codes_of([stages] if isinstance(stages, (str, int, np.integer)) else list(stages))
        return np.isin(self.stages, wanted.astype(np.int64))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """A JSON-ready dict (``format``, stages as names, onsets, start as ISO text, provenance)."""
        proba = None if self.proba is None else [None if np.isnan(r).all() else r.round(6).tolist() for r in self.proba]
        return {"format": JSON_FORMAT, "stages": self.stage_names.tolist(), "onsets_s": self.onsets_s.tolist(),
                "epoch_s": float(self.epoch_s), "start": None if self.start is None else self.start.isoformat(),
                "scorer": self.scorer, "source": self.source, "proba": proba, "offset_s": float(self.offset_s),
                "note": self.note, "unknown": dict(self.unknown), "ignored": dict(self.ignored), "info": self.info}

    def to_json(self, path: str | Path) -> Path:
        """:meth:`to_dict` written atomically to ``path``; :meth:`from_json` reads it back equal."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, where: str = "hypnogram dict"):
        """The Hypnogram of :meth:`to_dict`; HypnogramError naming ``where`` and the bad key."""
        if not isinstance(d, dict) or d.get("format") != JSON_FORMAT or "stages" not in d:
            raise HypnogramError(f"{where}: expected a hypnogram written by Hypnogram.to_json (format "
                                 f"{JSON_FORMAT!r}, with 'stages')")
        try:
            proba = d.get("proba")
            if proba is not None:
                proba = np.array([[math.nan] * len(CLASS_NAMES) if r is None else r for r in proba], np.float64)
            start = None if d.get("start") is None else datetime.fromisoformat(d["start"])
            keys = ("epoch_s", "scorer", "source", "offset_s", "note", "unknown", "ignored", "info")
            return cls(stage_codes_of(d["stages"]), proba=proba, onsets_s=d.get("onsets_s"), start=start,
                       **{k: d[k] for k in keys if d.get(k) is not None})
        except (TypeError, ValueError) as exc:
            raise HypnogramError(f"{where}: not a valid hypnogram ({exc}); expected the output of "
                                 "Hypnogram.to_json") from None

    @classmethod
    def from_json(cls, path: str | Path):
        """A Hypnogram written by :meth:`to_json`; HypnogramError naming the file otherwise."""
        import json

        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HypnogramError(f"{path}: cannot read it as JSON ({exc}); expected a file written by "
                                 "Hypnogram.to_json") from None
        return cls.from_dict(d, str(path))
