"""The result of staging one recording (:class:`StagingResult`) and its output files.

Files written by :meth:`StagingResult.write` (each atomically; ``<rec>`` = the recording's name):

- ``<rec>.hypnogram.csv``: ``onset_s,duration_s,stage,p_W,p_N1,p_N2,p_N3,p_REM``, one row per
  30-s epoch (onset in seconds from the recording's start, stage as the class name, the class
  probabilities summing to 1); ``read_hypnogram`` reads it back as a scoring;
- ``<rec>.hypnogram.edf``: EDF+ annotations in the Sleep-EDF hypnogram style
  (``Sleep stage W/1/2/3/R``), via ``modalities.eeg.hypnogram_edf.write_hypnogram_edf``;
- ``<rec>.hypnogram.png``: the hypnogram (W on top, REM next to it in red, then N1, N2, N3;
  clock time when the recording has a start time) with the probabilities as a stacked band;
- ``<rec>.stats.json``: sleep statistics (``modalities/eeg/sleep_stats.py``, AASM definitions);
- ``<rec>.agreement.json`` when a scoring was given: Cohen's kappa, accuracy, macro-F1,
  confusion matrix (rows = scoring, columns = predicted), per-stage F1, on the epochs scored in
  both (``part.evaluation.metrics.classification_metrics``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from modalities.eeg.hypnogram import Hypnogram, read_hypnogram
from modalities.eeg.windows import labels_at
from modalities.eeg.hypnogram_edf import write_hypnogram_edf
from modalities.eeg.prepared import CLASS_NAMES, UNLABELLED
from modalities.eeg.report import plot_hypnogram
from modalities.eeg.sleep_stats import sleep_statistics
from part.atomic import atomic_write_json, atomic_write_text
from part.errors import DataError
from part.evaluation.metrics import classification_metrics

OUTPUTS = ("hypnogram.csv", "hypnogram.edf", "hypnogram.png", "stats.json", "agreement.json")


def load_scoring(hypnogram: Any) -> Optional[Hypnogram]:
    """None, a Hypnogram, or a scoring file read with ``read_hypnogram`` (EDF+ annotations,
    text/CSV, e.g. a ``*.hypnogram.csv`` written here)."""
    if hypnogram is None or isinstance(hypnogram, Hypnogram):
        return hypnogram
    if isinstance(hypnogram, (str, Path)):
        return read_hypnogram(hypnogram)
    raise TypeError(f"hypnogram: expected a path or a modalities.eeg.hypnogram.Hypnogram, "
                    f"got {type(hypnogram).__name__}")


def scoring_labels(hypnogram: Hypnogram, onsets_s: np.ndarray, window_s: float, fs: float,
                   class_names: list) -> np.ndarray:
    """The scoring's label of each window [onset, onset + window_s) as a model class index
    (``windows.labels_at``, the labelling of ``windows.window_grid``; times compared in samples
    at ``fs`` Hz). (n,) int64, -1 unscored."""
    starts = np.rint(np.asarray(onsets_s) * fs).astype(np.int64)
    return codes_to_classes(labels_at(hypnogram, starts, int(round(window_s * fs)), fs), class_names)


def codes_to_classes(codes: np.ndarray, class_names: list) -> np.ndarray:
    """Stage codes (CLASS_NAMES order, -1 unscored) -> indices of ``class_names`` (-1 if absent), int64."""
    lookup = np.array([list(class_names).index(n) if n in class_names else -1 for n in CLASS_NAMES] + [-1])
    codes = np.asarray(codes, np.int64)
    return lookup[np.where(codes < 0, len(CLASS_NAMES), codes)]


@dataclass
class StagingResult:
    """Staged epochs of one recording.

    ``stages`` (n,) int64 class indices (argmax of ``proba``); ``proba`` (n, classes) float64,
    rows summing to 1; ``onsets`` (n,) float64 seconds from the recording's first sample;
    ``class_names``; ``epoch_s`` (30); ``start`` the recording's start (datetime) or None;
    ``reference`` (n,) int64 the given scoring's class per epoch (-1 unscored) or None;
    ``source`` the file (or name) staged; ``reference_source`` the scoring's file;
    ``reference_offset_s`` the seconds added to the scoring's onsets to align it with the recording
    by start time (``hypnogram_edf.align_to_recording``); ``reference_note`` why it was not aligned, or None.
    :meth:`statistics` and :meth:`agreement` (with the staging's scoring) are computed once and
    cached: treat the result as read-only.
    """

    record: str
    stages: np.ndarray
    proba: np.ndarray
    onsets: np.ndarray
    class_names: list
    epoch_s: float = 30.0
    start: Optional[datetime] = None
    reference: Optional[np.ndarray] = None
    source: str = ""
    reference_source: Optional[str] = None
    reference_offset_s: float = 0.0
    reference_note: Optional[str] = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.stages.size)

    @property
    def stage_names(self) -> np.ndarray:
        """(n,) str: the class name of each epoch."""
        return np.asarray(self.class_names, dtype=object)[self.stages]

    def to_csv(self, path: str | Path) -> Path:
        """``onset_s,duration_s,stage,p_<class>...``, one row per epoch (see the module docstring)."""
        columns = [np.char.mod("%.3f", self.onsets), np.char.mod("%.3f", np.full(len(self), self.epoch_s)),
                   self.stage_names.astype(str), *np.char.mod("%.6f", self.proba).T]
        header = ",".join(["onset_s", "duration_s", "stage", *(f"p_{c}" for c in self.class_names)])
        lines = columns[0]
        for column in columns[1:]:  # a handful of columns, each joined for all rows at once
            lines = np.char.add(np.char.add(lines, ","), column)
        text = "\n".join([header, *lines.tolist()]) + "\n"
        return atomic_write_text(path, text)

    def to_hypnogram(self) -> Hypnogram:
        """The predicted stages as a Hypnogram (stage codes of ``CLASS_NAMES``)."""
        codes = np.array([CLASS_NAMES.index(c) if c in CLASS_NAMES else UNLABELLED for c in self.class_names])
        return Hypnogram(self.onsets, codes[self.stages], float(self.epoch_s), source=self.source)

    def to_edf(self, path: str | Path) -> Path:
        """An EDF+ hypnogram in the Sleep-EDF style (``Sleep stage W/1/2/3/R``)."""
        return write_hypnogram_edf(path, self.to_hypnogram(), self.start)

    def plot(self, path: str | Path, title: Optional[str] = None) -> Path:
        """The hypnogram PNG (the scoring above the prediction when one was given)."""
        if title is None:
            title = f"{self.record}: predicted sleep stages"
            if self.reference is not None and (self.reference >= 0).any():
                kappa = self.agreement()["kappa"]
                title += f" vs {self.reference_source} (kappa {'n/a' if kappa is None else f'{kappa:.3f}'})"
        return plot_hypnogram(path, self.reference, self.stages, self.class_names, title, self.epoch_s,
                              proba=self.proba, onset_s=float(self.onsets[0]) if len(self) else 0.0,
                              start=self.start)

    def statistics(self) -> dict:
        """Sleep statistics of the predicted hypnogram (``sleep_stats.sleep_statistics``) plus
        ``record``, ``source``, ``start`` (ISO) and ``first_epoch_onset_s`` (computed once)."""
        if "statistics" not in self._cache:
            stats = sleep_statistics(self.stages, self.epoch_s, self.class_names)
            self._cache["statistics"] = {
                "record": self.record, "source": self.source,
                "start": None if self.start is None else self.start.isoformat(),
                "first_epoch_onset_s": float(self.onsets[0]) if len(self) else None, **stats}
        return self._cache["statistics"]

    def agreement(self, hypnogram: Any = None, fs: float = 100.0) -> dict:
        """Agreement with a scoring (path or Hypnogram; default: the one given when staging) on
        the epochs scored in both: kappa, accuracy, macro_f1, balanced_accuracy, per_class_f1,
        per_class_recall, support, confusion (rows = scoring, columns = predicted), n; with the
        staging's scoring also its alignment (``reference_offset_s``, ``reference_note``), computed once."""
        if hypnogram is None:
            if self.reference is None:
                raise DataError(f"{self.record}: no scoring to compare with; pass hypnogram=PATH (or --hypnogram)")
            if "agreement" not in self._cache:
                self._cache["agreement"] = {**self._agreement(self.reference, self.reference_source),
                                            "reference_offset_s": self.reference_offset_s,
                                            **({"reference_note": self.reference_note} if self.reference_note else {})}
            return self._cache["agreement"]
        scoring = load_scoring(hypnogram)
        return self._agreement(scoring_labels(scoring, self.onsets, self.epoch_s, fs, self.class_names), scoring.source)

    def _agreement(self, reference: np.ndarray, source: Optional[str]) -> dict:
        if not (reference >= 0).any():
            raise DataError(f"{source}: none of its scored epochs covers a staged 30-s window of {self.record}; "
                            f"expected the scoring of this recording (same start time)")
        m = classification_metrics(reference, self.stages, list(range(len(self.class_names))),
                                   class_names=self.class_names)
        keys = ("kappa", "accuracy", "macro_f1", "balanced_accuracy", "per_class_f1", "per_class_recall",
                "support", "confusion", "labels", "class_names")
        return {"record": self.record, "reference": source, "n_epochs": len(self), "n_compared": m["n"],
                "n_unscored_excluded": m["n_unlabelled_excluded"], **{k: m[k] for k in keys},
                "note": "epochs scored in both only; confusion rows = reference scoring, columns = predicted"}

    def write(self, out_dir: str | Path, name: Optional[str] = None) -> dict[str, Path]:
        """Write every output file into ``out_dir`` as ``<name>.<output>`` (name: the record's)."""
        stem = Path(out_dir) / (name or self.record)
        paths = {"csv": self.to_csv(f"{stem}.hypnogram.csv"), "edf": self.to_edf(f"{stem}.hypnogram.edf"),
                 "png": self.plot(f"{stem}.hypnogram.png"),
                 "stats": atomic_write_json(f"{stem}.stats.json", self.statistics())}
        if self.reference is not None:
            paths["agreement"] = atomic_write_json(f"{stem}.agreement.json", self.agreement())
        return paths
