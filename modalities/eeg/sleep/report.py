"""The evaluation report's hypnograms: the report hook the EEG plugin gives the core.

The core's evaluation calls ``DataBundle.report_hook(report_dir, predictions)`` when a dataset
provides one; PhysioNet-style sleep datasets return :func:`sleep_report_hook`, which draws
``hypnogram_<record>.png`` (scored vs predicted, with the probabilities: ``Hypnogram.plot``)
for the first ``data.hypnograms`` test records (a subject may have several nights: one figure
per record), each on the record's own time axis: every test window at its onset in the record,
windows absent from the test set (unscored, trimmed) as gaps.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from part.modalities.eeg.recordings.constants import CLASS_NAMES, EPOCH_S, UNLABELLED
from part.modalities.eeg.sleep.hypnogram import Hypnogram, stage_codes


def record_hypnograms(predictions: Mapping[str, np.ndarray], class_names: Sequence[str], records: Any,
                      onsets_s: Any, window_s: float = EPOCH_S, count: int | None = None) -> list[dict]:
    """The test windows of each record (the first ``count``, in test order) as hypnograms:
    ``{"record", "predicted" (a Hypnogram with the probabilities), "scored" (a Hypnogram), "group"}``,
    epochs at the windows' onsets in the record (absent windows are gaps).

    predictions: ``y_true``, ``y_pred`` (n,) class indices of ``class_names``, optionally ``probs``
    (n, classes) and ``groups`` (n,) (the subject); ``records`` (n,) the record of each test window
    and ``onsets_s`` (n,) its onset in seconds from the record's start."""
    records = np.asarray(records).astype(str)
    onsets = np.asarray(onsets_s, np.float64)
    y_true, y_pred = np.asarray(predictions["y_true"]), np.asarray(predictions["y_pred"])
    if not records.shape == onsets.shape == y_pred.shape == y_true.shape:
        raise ValueError(f"record_hypnograms: {y_pred.size} predictions but {records.size} records and "
                         f"{onsets.size} onsets; expected one record and onset per test window")
    codes = np.append(stage_codes(class_names), UNLABELLED)  # class index -> stage code; -1 stays -1
    probs = predictions.get("probs")
    if probs is not None:  # the classes' columns in stage-code order
        probs = np.zeros((y_pred.size, len(CLASS_NAMES)))
        probs[:, codes[:-1]] = np.asarray(predictions["probs"], np.float64)
    names, first = np.unique(records, return_index=True)
    out = []
    for name in names[np.argsort(first)][:count]:
        sel = np.flatnonzero(records == name)
        sel = sel[np.argsort(onsets[sel], kind="stable")]
        where = {"onsets_s": onsets[sel], "epoch_s": float(window_s), "source": str(name)}
        group = str(np.asarray(predictions["groups"])[sel[0]]) if "groups" in predictions else str(name)
        out.append({"record": str(name), "group": group,
                    "predicted": Hypnogram(codes[y_pred[sel]], None if probs is None else probs[sel],
                                           scorer="the model (repeat 0)", **where),
                    "scored": Hypnogram(codes[y_true[sel]], scorer="scored", **where)})
    return out


def write_hypnograms(report_dir: Path, predictions: Mapping[str, np.ndarray], class_names: Sequence[str],
                     count: int, records: Any, onsets_s: Any, window_s: float = EPOCH_S) -> list[Path]:
    """hypnogram_<record>.png (scored vs predicted, repeat 0, with the probabilities) for the first
    ``count`` test records, on hours since the record's start (:func:`record_hypnograms`)."""
    paths = []
    for r in record_hypnograms(predictions, class_names, records, onsets_s, window_s, count):
        subject = f" (subject {r['group']})" if r["group"] != r["record"] else ""
        paths.append(r["predicted"].plot(Path(report_dir) / f"hypnogram_{r['record']}.png", r["scored"],
                                         f"{r['record']}{subject}: scored vs predicted (repeat 0)"))
    return paths


def sleep_report_hook(class_names: Sequence[str], count: int, records: Any, onsets_s: Any,
                      window_s: float = EPOCH_S) -> Any:
    """The report hook of a sleep dataset: ``hook(report_dir, predictions)`` drawing the first
    ``count`` test records; ``records`` / ``onsets_s`` (n,): per test item its record and its
    window's onset (s) in the record (``EEGWindows.records`` / ``onsets_s``)."""
    return partial(_hook, class_names=list(class_names), count=count, records=np.asarray(records),
                   onsets_s=np.asarray(onsets_s, np.float64), window_s=float(window_s))


def _hook(report_dir: Path, predictions: Mapping[str, np.ndarray], class_names, count, records, onsets_s,
          window_s) -> None:
    if count > 0:
        write_hypnograms(report_dir, predictions, class_names, count, records, onsets_s, window_s)
