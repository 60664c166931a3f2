"""PC18 (PhysioNet 2018) ``.arousal`` WFDB annotation files: their sleep-stage notes
(:func:`read_stage_notes`, also what ``data_prep/pc18_labels.py`` labels windows with) and the
scoring they make with the record's ``.hea`` header (:func:`read_arousal_scoring`, what
``Hypnogram.from_file`` and ``part-stage --hypnogram`` read).

The ``.arousal`` file holds stage notes ``W``, ``N1``, ``N2``, ``N3``, ``R`` (aux_note), each
the onset of a stage lasting until the next stage note (the last one until the end of the record,
``sig_len / fs`` from the header), and event brackets such as ``(arousal_rera`` /
``arousal_rera)``, which are ignored. Time before the first stage note is unscored. As a scoring,
each stage lasts its whole 30-s epochs from its note (a remainder shorter than an epoch, e.g. at
the record's end, is unscored); the header's base date and time, when it has both, are ``start``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from part.modalities.eeg.recordings.constants import CLASS_NAMES, EPOCH_S, PC18_STAGE_NOTES
from part.modalities.eeg.recordings.hypnogram_edf import HypnogramError
from part.modalities.eeg.recordings.hypnogram_io import scoring_from_annotations
from part.modalities.eeg.recordings.signal import RecordError


@dataclass(frozen=True)
class StageNotes:
    """Stage onsets ``onsets`` (n,) int64 in samples at ``fs`` Hz and stage codes ``stages`` (n,) int8,
    sorted, with repeated consecutive stages merged (a W after a W is not a change)."""

    onsets: np.ndarray
    stages: np.ndarray
    fs: float


def read_stage_notes(annotation_path: Path, fs: float) -> StageNotes:
    """Stage notes of a WFDB annotation file (e.g. ``tr03-0005.arousal``) for a record sampled at
    ``fs`` Hz. Raises :class:`RecordError` if the file cannot be read, its time resolution differs
    from ``fs``, its samples are not sorted, or it holds no stage note at all."""
    path = Path(annotation_path)
    record = path.stem
    import wfdb

    try:
        ann = wfdb.rdann(str(path.with_suffix("")), path.suffix.lstrip("."))
    except Exception as exc:  # wfdb raises IndexError, ValueError, ... on corrupt files
        raise RecordError(
            f"{record}: cannot read annotation file {path.name}: {type(exc).__name__}: {exc}; "
            f"expected WFDB annotations with stage notes: download it again"
        ) from None
    samples = np.asarray(ann.sample, dtype=np.int64)
    notes = np.asarray(ann.aux_note if ann.aux_note is not None else [""] * len(samples), dtype=object)
    if ann.fs is not None and float(ann.fs) != float(fs):
        raise RecordError(
            f"{record}: {path.name} has time resolution {ann.fs} Hz; the header says {fs} Hz; "
            "expected the same rate"
        )
    if samples.size and (samples[0] < 0 or np.any(np.diff(samples) < 0)):
        raise RecordError(
            f"{record}: {path.name} has negative or unsorted annotation samples; expected a valid "
            "WFDB annotation file: download it again"
        )
    is_stage = np.isin(notes, list(PC18_STAGE_NOTES))
    if not is_stage.any():
        raise RecordError(
            f"{record}: {path.name} holds no sleep-stage note ({', '.join(PC18_STAGE_NOTES)}) among "
            f"{len(samples)} annotations; expected PC18 stage notes, or remove the file to prepare "
            "the record unlabelled"
        )
    onsets = samples[is_stage]
    stages = np.array([PC18_STAGE_NOTES[s] for s in notes[is_stage]], dtype=np.int8)
    change = np.concatenate([[True], stages[1:] != stages[:-1]])
    return StageNotes(onsets=onsets[change], stages=stages[change], fs=float(fs))


def read_arousal_scoring(path: str | Path, epoch_s: float = EPOCH_S) -> dict[str, Any]:
    """The scoring of a PC18 ``.arousal`` file and the ``.hea`` header beside it (module
    docstring), onsets in seconds from the record's first sample. Raises ``HypnogramError``
    naming the file: no header, unreadable file, no stage note."""
    from part.modalities.eeg.recordings.wfdb_reader import read_header

    path = Path(path)
    header_path = path.with_suffix(".hea")
    if not header_path.is_file():
        raise HypnogramError(f"{path}: a PC18 .arousal scoring needs its record's header {header_path.name} beside it "
                             "(sampling rate and length); copy the .hea next to the .arousal file")
    try:
        header = read_header(header_path)
        notes = read_stage_notes(path, float(header.fs))
    except RecordError as exc:
        raise HypnogramError(str(exc)) from None
    onsets = notes.onsets / notes.fs
    ends = np.r_[notes.onsets[1:], max(int(header.sig_len), int(notes.onsets[-1]))] / notes.fs
    whole = np.floor((ends - onsets) / epoch_s + 1e-6) * epoch_s
    keep = whole > 0
    names = np.asarray(CLASS_NAMES, dtype=object)[notes.stages[keep]]
    scoring = scoring_from_annotations(onsets[keep], whole[keep], list(names), path.name, epoch_s, all_stages=True)
    base_date, base_time = getattr(header, "base_date", None), getattr(header, "base_time", None)
    start = datetime.combine(base_date, base_time) if base_date and base_time else None
    return {**scoring, **({"start": start} if start else {})}
