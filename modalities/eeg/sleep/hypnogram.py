"""One night's sleep stages: :class:`Hypnogram`, what staging returns and what scoring files read.

    from part.modalities.eeg.sleep import Hypnogram
    scoring = Hypnogram.from_file("SC4001EC-Hypnogram.edf")  # EDF+, CSV/TSV/text, ours, XML, .arousal, JSON
    staged = stager.predict_file("SC4001E0-PSG.edf")                 # a Hypnogram with probabilities
    staged.statistics(); staged.agreement(scoring); staged.plot("night.png", reference=scoring)
    staged.to_csv("night.hypnogram.csv"); staged.to_edf("night.hypnogram.edf")

Stages are stage codes in one index space everywhere: 0 W, 1 N1, 2 N2, 3 N3, 4 REM (the
prepared labels, ``CLASS_NAMES``), -1 an epoch without a stage (unscored, or no signal).

Files written by :meth:`Hypnogram.write` (each atomically; ``<rec>`` = the recording's name):

- ``<rec>.hypnogram.csv``: a ``# start: <ISO time>`` line when the start is known, then
  ``onset_s,duration_s,stage,p_W,p_N1,p_N2,p_N3,p_REM``, one row per 30-s epoch (onset in
  seconds from the recording's start, stage as its name or ``unscored``, the probabilities
  summing to 1, empty for an epoch without them); :meth:`from_file` reads it back, start time
  included;
- ``<rec>.hypnogram.edf``: EDF+ annotations in the Sleep-EDF hypnogram style (``Sleep stage
  W/1/2/3/R/?``);
- ``<rec>.hypnogram.png``: the hypnogram (W on top, REM next to it in red, then N1, N2, N3;
  clock time when the start is known; the reference scoring above it when given) with the
  probabilities as a stacked band;
- ``<rec>.stats.json``: :meth:`statistics` (AASM definitions and YASA's, ``stats.py``; ``flags``);
- ``<rec>.agreement.json`` when a reference scoring is given: :meth:`agreement` (with the lag
  scan of ``scoring_check.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import warnings

import numpy as np

from part.atomic import atomic_write_json, atomic_write_text
from part.errors import DataError
from part.evaluation.metrics import classification_metrics
from part.modalities.eeg.recordings.constants import CLASS_NAMES, EPOCH_S, UNLABELLED, UNSCORED_NAME
from part.modalities.eeg.recordings.hypnogram_edf import clock_offset, write_hypnogram_edf
from part.modalities.eeg.recordings.hypnogram_io import (START_COMMENT, TOLERANCE_S, label_counts, read_scoring,
                                                         scoring_from_raw, stage_runs)
from part.modalities.eeg.recordings.mne_reader import recording_name
from part.modalities.eeg.recordings.windows import labels_at
from part.modalities.eeg.sleep.hypnogram_ops import HypnogramOps, stage_codes_of
from part.modalities.eeg.sleep.scoring_check import ScoringWarning, lag_scan
from part.modalities.eeg.sleep.stats import sleep_statistics

OUTPUTS = ("hypnogram.csv", "hypnogram.edf", "hypnogram.png", "stats.json", "agreement.json")
_MS = 1000.0  # agreement compares epoch boundaries in milliseconds


@dataclass(frozen=True, eq=False)
class Hypnogram(HypnogramOps):
    """Sleep stages of one recording, one per epoch of ``epoch_s`` seconds.

    ``stages`` (n,) int8 stage codes (module docstring; given as codes or labels such as ``"W"``,
    ``"N1"``, ``"R"``: ``hypnogram_ops``); ``proba`` (n, 5) float64 per-epoch
    probabilities of W, N1, N2, N3, REM (rows sum to 1; a NaN row: none for that epoch) or None;
    ``onsets_s`` (n,) float64 epoch starts in seconds from the recording's first sample, ascending,
    at least ``epoch_s`` apart (default ``0, epoch_s, ...``; gaps are unscored time); ``start``
    the clock time of onset 0 (naive: a header's clock time, aware: UTC) or None; ``scorer`` who
    scored it (a file name, a model); ``source`` the recording or file it belongs to.
    Provenance: ``unknown`` {label text: epochs set to -1, no known spelling}, ``ignored`` {event
    text: annotations ignored}, ``offset_s`` seconds added to the file's onsets to align it with
    its recording and ``note`` why it was not aligned, ``info`` whatever its producer reports
    (staging: the epochs without signal, flat channels). Immutable: methods return new objects.
    Operations (``==``, slicing, transition_matrix, find_periods, upsample, crop, pad,
    consolidate_stages, as_events, get_mask, to_json/from_json): ``hypnogram_ops.HypnogramOps``.
    """

    stages: np.ndarray
    proba: Optional[np.ndarray] = None
    onsets_s: Optional[np.ndarray] = None
    epoch_s: float = EPOCH_S
    start: Optional[datetime] = None
    scorer: str = ""
    source: str = ""
    unknown: dict = field(default_factory=dict)
    ignored: dict = field(default_factory=dict)
    offset_s: float = 0.0
    note: Optional[str] = None
    info: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        stages = stage_codes_of(self.stages)
        if stages.size and (not np.issubdtype(stages.dtype, np.integer) or stages.min() < UNLABELLED
                            or stages.max() >= len(CLASS_NAMES)):
            raise ValueError(f"Hypnogram({self.source}): stages must be stage codes -1..{len(CLASS_NAMES) - 1} "
                             f"(integers), got {stages.dtype} values {np.unique(stages)[:8].tolist()}")
        stages = stages.astype(np.int8)  # a copy: the caller's array stays writable
        onsets = (np.arange(stages.size) * float(self.epoch_s) if self.onsets_s is None
                  else np.array(self.onsets_s, np.float64).reshape(-1))
        if onsets.shape != stages.shape or np.any(np.diff(onsets) < self.epoch_s - TOLERANCE_S):
            raise ValueError(f"Hypnogram({self.source}): onsets ({onsets.size}) and stages ({stages.size}) must "
                             f"have one entry per epoch, onsets ascending at least {self.epoch_s} s apart")
        proba = None if self.proba is None else _checked_proba(self.proba, stages.size, self.source)
        for name, value in (("stages", stages), ("onsets_s", onsets), ("proba", proba)):
            if value is not None:
                value.setflags(write=False)  # immutable, as the cached statistics assume
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_file(cls, path: str | Path, epoch_s: float = EPOCH_S, scorer: str | None = None) -> "Hypnogram":
        """A scoring file: EDF+/BDF+ annotations (``start`` from its header) or text/CSV/TSV with
        one stage per epoch (a ``*.hypnogram.csv`` written here keeps its probabilities); see
        ``recordings/hypnogram_io.py``. ``scorer`` defaults to the file's name. Raises
        ``HypnogramError`` naming the file (missing, unreadable, truncated, no stage, epochs that
        are not ``epoch_s`` long). Also NSRR / Compumedics Profusion XML, PC18 ``.arousal`` (with
        its ``.hea``) and ``.json`` (:meth:`to_json`)."""
        if Path(path).suffix.lower() == ".json":
            return cls.from_json(path)
        return cls(**read_scoring(path, epoch_s), scorer=Path(path).name if scorer is None else scorer)

    @classmethod
    def from_raw(cls, raw, epoch_s: float = EPOCH_S) -> "Hypnogram | None":
        """The stage annotations an ``mne.io.Raw`` holds, onsets from its first sample; None if none."""
        scoring = scoring_from_raw(raw, epoch_s)
        return None if scoring is None else cls(**scoring, scorer=scoring["source"])

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.stages.size)

    @property
    def n_epochs(self) -> int:
        return int(self.stages.size)

    @property
    def record(self) -> str:
        """The recording's name: ``source``'s file name less its format suffix."""
        return recording_name(self.source)

    @property
    def start_s(self) -> float:
        """Onset of the first epoch (s); 0 for an empty hypnogram."""
        return float(self.onsets_s[0]) if self.n_epochs else 0.0

    @property
    def end_s(self) -> float:
        """End of the last epoch (s); 0 for an empty hypnogram."""
        return float(self.onsets_s[-1] + self.epoch_s) if self.n_epochs else 0.0

    @property
    def stage_names(self) -> np.ndarray:
        """(n,) str: each epoch's stage name (``W`` ... ``REM``) or ``unscored``."""
        return np.asarray([*CLASS_NAMES, UNSCORED_NAME], dtype=object)[self.stages]

    def counts(self) -> dict[str, int]:
        """Epochs per stage name plus ``unlabelled``."""
        return label_counts(self.stages)

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contiguous epochs of one stage merged: (start_s (r,), end_s (r,), stage (r,) int8)."""
        return stage_runs(self.onsets_s, self.stages, self.epoch_s)

    def replace(self, **changes) -> "Hypnogram":
        """A copy with some fields changed (a dataclass ``replace``; caches are not copied)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "_cache"}
        return type(self)(**{**values, **changes})

    def contiguous(self) -> "Hypnogram":
        """The epochs on one contiguous grid from the first onset: time between epochs becomes
        unscored epochs (-1, NaN probabilities); an epoch off that grid takes its nearest slot."""
        if len(self) < 2 or np.all(np.abs(np.diff(self.onsets_s) - self.epoch_s) <= TOLERANCE_S):
            return self
        slot = np.floor((self.onsets_s - self.onsets_s[0]) / self.epoch_s + 0.5).astype(np.int64)
        if np.any(np.diff(slot) < 1):  # onsets at least an epoch apart never share a slot; refuse if they do
            raise ValueError(f"Hypnogram({self.source}): epochs at {self.onsets_s[1:][np.diff(slot) < 1][:3]} s fall "
                             "into the slot of their predecessor on a contiguous grid")
        stages = np.full(slot[-1] + 1, UNLABELLED, np.int8)
        stages[slot] = self.stages
        proba = None
        if self.proba is not None:
            proba = np.full((stages.size, self.proba.shape[1]), np.nan)
            proba[slot] = self.proba
        onsets = self.onsets_s[0] + self.epoch_s * np.arange(stages.size)
        return self.replace(stages=stages, proba=proba, onsets_s=onsets)

    def shifted(self, offset_s: float, note: str | None = None) -> "Hypnogram":
        """The same epochs counted from a clock ``offset_s`` seconds earlier: onsets + offset,
        ``start`` - offset (the epochs' absolute times do not change, so aligning twice is
        aligning once), ``offset_s`` accumulated."""
        start = None if self.start is None else self.start - timedelta(seconds=float(offset_s))
        return self.replace(onsets_s=self.onsets_s + offset_s, start=start, offset_s=self.offset_s + offset_s,
                            note=note if note is not None else self.note)

    def aligned_to(self, recording: "Hypnogram | datetime | None", name: str = "the recording",
                   not_comparable: str | None = None) -> "Hypnogram":
        """This scoring on a recording's clock: onsets moved by the difference of the two start
        times (``hypnogram_edf.clock_offset``: header clock times or UTC, not mixed; within a
        day), with ``offset_s`` and, when it was not moved, the ``note`` saying why.
        ``recording``: the staged Hypnogram of the recording, or its start; ``not_comparable``:
        a reason the two clocks cannot be compared (no shift, a note). Raises ``HypnogramError``
        for starts on different dates more than a day apart (another night). The preparation
        (``hypnogram_edf.align_to_recording``) and staging both align through here."""
        if isinstance(recording, Hypnogram):
            recording, name = recording.start, Path(recording.source).name or name
        mine = Path(self.source).name or self.scorer or "the scoring"
        offset, note = clock_offset(self.start, mine, recording, name, not_comparable)
        return self.shifted(offset, note) if offset or note else self

    def labels_at(self, onsets_s: Any, epoch_s: float | None = None) -> np.ndarray:
        """This scoring's stage (n,) int8 of each epoch [onset, onset + epoch_s) (s, on this
        scoring's clock): the stage of the run it lies fully in, else -1 (``windows.labels_at``)."""
        starts = np.rint(np.asarray(onsets_s, np.float64) * _MS).astype(np.int64)
        return labels_at(self, starts, int(round((epoch_s or self.epoch_s) * _MS)), _MS)

    # ------------------------------------------------------------------ statistics, agreement
    def statistics(self) -> dict:
        """Sleep statistics (``stats.sleep_statistics``, AASM) plus ``record``, ``source``,
        ``scorer``, ``start`` (ISO), ``first_epoch_onset_s`` and ``info``; computed once, on the
        contiguous grid (time between epochs counts as unscored, so TIB spans the gaps)."""
        if "statistics" not in self._cache:
            self._cache["statistics"] = {
                "record": self.record, "source": self.source, "scorer": self.scorer,
                "start": None if self.start is None else self.start.isoformat(),
                "first_epoch_onset_s": float(self.onsets_s[0]) if len(self) else None,
                **sleep_statistics(self.contiguous().stages, self.epoch_s),
                **({"info": self.info} if self.info else {})}
        return self._cache["statistics"]

    def agreement(self, reference: "Hypnogram | str | Path", check_lags: bool = True) -> dict:
        """Agreement of these stages with a reference scoring (a Hypnogram or a scoring file),
        put on this hypnogram's clock (:meth:`aligned_to`), on the epochs staged here and scored
        there: kappa, accuracy, macro_f1, balanced_accuracy, per_class_f1, per_class_recall,
        support, confusion (rows = reference, columns = these stages), n_compared,
        n_unscored_excluded, reference_offset_s, reference_note; with ``check_lags`` also
        ``lag_scan``, ``flags`` (``lag_warning``, ``low_agreement``) and ``warnings`` of the lag
        scan (``scoring_check.lag_scan``: kappa over lags of +/-60 min; nothing is shifted), each
        warning issued once as a :class:`ScoringWarning` (``check_lags=False``: the plain
        agreement, as the plot's title and the evaluation report use). Computed once per reference."""
        result, aligned = self._agreement(reference)
        if not check_lags:
            return result
        cached = self._cache.get(("checked", id(reference)))
        if cached is None or cached[0] is not reference:
            cached = (reference, {**result, **lag_scan(self, aligned, len(CLASS_NAMES))})
            for line in cached[1]["warnings"]:
                warnings.warn(line, ScoringWarning, stacklevel=2)
            self._cache[("checked", id(reference))] = cached
        return cached[1]

    def _agreement(self, reference: "Hypnogram | str | Path") -> tuple[dict, "Hypnogram"]:
        """(the plain agreement of :meth:`agreement`, the reference on this clock), cached."""
        cached = self._cache.get(("agreement", id(reference)))
        if cached is not None and cached[0] is reference:
            return cached[1]
        ref = reference if isinstance(reference, Hypnogram) else Hypnogram.from_file(reference, self.epoch_s)
        aligned = ref.aligned_to(self)
        truth = aligned.labels_at(self.onsets_s, self.epoch_s)
        staged = self.stages >= 0
        if not (staged & (truth >= 0)).any():
            raise DataError(f"{aligned.source or aligned.scorer}: none of its scored epochs covers a staged "
                            f"{self.epoch_s:g}-s epoch of {self.record}; expected the scoring of this recording "
                            "(same start time)")
        m = classification_metrics(np.where(staged, truth, UNLABELLED), np.where(staged, self.stages, 0),
                                   list(range(len(CLASS_NAMES))), class_names=list(CLASS_NAMES))
        keys = ("kappa", "accuracy", "macro_f1", "balanced_accuracy", "per_class_f1", "per_class_recall",
                "support", "confusion", "labels", "class_names")
        result = {"record": self.record, "reference": aligned.scorer or aligned.source, "n_epochs": len(self),
                  "n_compared": m["n"], "n_unscored_excluded": m["n_unlabelled_excluded"], **{k: m[k] for k in keys},
                  "reference_offset_s": aligned.offset_s - ref.offset_s,
                  **({"reference_note": aligned.note} if aligned.note else {}),
                  "note": "epochs staged here and scored in the reference only; confusion rows = reference, "
                          "columns = these stages"}
        self._cache[("agreement", id(reference))] = (reference, (result, aligned))
        return result, aligned

    # ------------------------------------------------------------------ writing
    def to_csv(self, path: str | Path) -> Path:
        """``onset_s,duration_s,stage[,p_W,...,p_REM]``, one row per epoch (module docstring),
        after a ``# start: <ISO time>`` line when the start is known (:meth:`from_file` reads it)."""
        columns = [np.char.mod("%.3f", self.onsets_s), np.char.mod("%.3f", np.full(len(self), self.epoch_s)),
                   self.stage_names.astype(str)]
        header = ["onset_s", "duration_s", "stage"]
        if self.proba is not None:
            cells = np.char.mod("%.6f", self.proba)
            columns += list(np.where(np.isnan(self.proba), "", cells).T)
            header += [f"p_{c}" for c in CLASS_NAMES]
        lines = columns[0]
        for column in columns[1:]:  # a handful of columns, each joined for all rows at once
            lines = np.char.add(np.char.add(lines, ","), column)
        top = [] if self.start is None else [f"{START_COMMENT}{self.start.isoformat()}"]
        return atomic_write_text(path, "\n".join([*top, ",".join(header), *lines.tolist()]) + "\n")

    def to_edf(self, path: str | Path) -> Path:
        """An EDF+ hypnogram in the Sleep-EDF style (``Sleep stage W/1/2/3/R/?``), header start =
        ``start``: a naive start as its clock time, an aware one as its UTC time (EDF headers hold
        no time zone). DataError for an empty hypnogram (EDF+ needs an annotation)."""
        if not len(self):
            raise DataError(f"{self.source or 'hypnogram'}: no epoch to write to {path}")
        start = self.start
        if start is not None and start.tzinfo is not None:
            start = start.astimezone(timezone.utc).replace(tzinfo=None)
        return write_hypnogram_edf(path, self, start)

    def plot(self, path: str | Path | None = None, reference: "Hypnogram | str | Path | None" = None,
             title: str | None = None):
        """The hypnogram (and ``reference``'s stages above it, a Hypnogram or a scoring file, on
        this clock) with the probabilities as a band: a PNG at ``path`` (returned), or the
        matplotlib Figure."""
        from part.evaluation.report import save_png
        from part.modalities.eeg.sleep.plots import hypnogram_figure

        if reference is not None and not isinstance(reference, Hypnogram):
            reference = Hypnogram.from_file(reference, self.epoch_s)
        drawn = self.contiguous()
        truth = None if reference is None else reference.aligned_to(self).labels_at(drawn.onsets_s, self.epoch_s)
        if title is None:
            title = f"{self.record or 'hypnogram'}: {'predicted ' if self.proba is not None else ''}sleep stages"
            if reference is not None and ((truth >= 0) & (drawn.stages >= 0)).any():
                kappa = self.agreement(reference, check_lags=False)["kappa"]
                shown = "n/a" if kappa is None else f"{kappa:.3f}"
                title += f" vs {reference.scorer or reference.source} (kappa {shown})"
        figure = hypnogram_figure(drawn.stages, CLASS_NAMES, title, y_true=truth, proba=drawn.proba,
                                  epoch_seconds=self.epoch_s, onset_s=drawn.start_s, start=self.start)
        return figure if path is None else save_png(figure, path)

    def write(self, out_dir: str | Path, name: str | None = None, reference: "Hypnogram | None" = None) -> dict:
        """Write every output file (module docstring) into ``out_dir`` as ``<name>.<output>``
        (name: the record's), ``stats.json`` last (its presence marks a finished night); returns
        {kind: path}. Without ``reference``, an ``agreement.json`` left by an earlier write is
        removed (it would describe another staging)."""
        stem = Path(out_dir) / (name or self.record)
        paths = {"csv": self.to_csv(f"{stem}.hypnogram.csv"), "edf": self.to_edf(f"{stem}.hypnogram.edf"),
                 "png": self.plot(f"{stem}.hypnogram.png", reference)}
        if reference is not None:
            paths["agreement"] = atomic_write_json(f"{stem}.agreement.json", self.agreement(reference))
        else:
            Path(f"{stem}.agreement.json").unlink(missing_ok=True)
        paths["stats"] = atomic_write_json(f"{stem}.stats.json", self.statistics())  # last: the night is done
        return paths


def stage_codes(class_names) -> np.ndarray:
    """The stage code (k,) int64 of each class name of a model or dataset (``W``, ``REM``, ``R``,
    ``Wake``, ...: any spelling ``hypnogram_io.classify_stage`` knows). DataError for a name that is
    no sleep stage."""
    from part.modalities.eeg.recordings.hypnogram_io import classify_stage

    codes = [classify_stage(n) for n in class_names]
    bad = [n for n, (code, unknown) in zip(class_names, codes) if unknown or code < 0]
    if bad:
        raise DataError(f"classes {bad} are no sleep stages; a sleep model's classes are stage names such as "
                        f"{list(CLASS_NAMES)}")
    codes = np.array([c for c, _ in codes], np.int64)
    if len(set(codes.tolist())) < codes.size:
        twice = [n for n, c in zip(class_names, codes) if (codes == c).sum() > 1]
        raise DataError(f"classes {twice} name the same sleep stage; a sleep model's classes are distinct stages "
                        f"(e.g. {list(CLASS_NAMES)}: R&K stages 3 and 4 are both N3)")
    return codes


def _checked_proba(proba: Any, n: int, source: str) -> np.ndarray:
    """``proba`` as (n, 5) float64, each row summing to 1 (or all NaN); ValueError otherwise."""
    proba = np.asarray(proba, np.float64)
    if proba.shape != (n, len(CLASS_NAMES)):
        raise ValueError(f"Hypnogram({source}): probabilities of shape {proba.shape}; expected ({n}, "
                         f"{len(CLASS_NAMES)}): one row per epoch, one column per stage {list(CLASS_NAMES)}")
    rows = ~np.isnan(proba).all(1)
    bad = rows & ((np.abs(proba.sum(1) - 1.0) > 1e-4) | (proba < -1e-9).any(1) | np.isnan(proba).any(1))
    if bad.any():
        raise ValueError(f"Hypnogram({source}): epoch {int(np.flatnonzero(bad)[0])}'s probabilities "
                         f"{proba[bad][0].round(6).tolist()} are no distribution; expected per epoch numbers >= 0 "
                         "summing to 1 (or a row of NaN for an epoch without probabilities)")
    return proba
