"""Sleep-stage labels of 30-s windows from the notes of a PC18 ``.arousal`` annotation file.

The ``.arousal`` file (WFDB annotations) holds stage notes ``W``, ``N1``, ``N2``, ``N3``, ``R``
(aux_note), each the onset of a stage lasting until the next stage note (the last one until the
end of the record), and event brackets such as ``(arousal_rera`` / ``arousal_rera)``, which are
ignored. Time before the first stage note is unscored.

Windows tile the record on the grid of the stage onsets: at the output rate the first window
starts at ``round(first_onset) mod L`` and windows follow every ``L`` samples while they fit.
A window lying fully inside one stage gets that stage's label (0 W, 1 N1, 2 N2, 3 N3, 4 REM);
every other window (unscored time, or a stage change inside it) gets -1. Stage onsets are
quantised to the output sample grid (10 ms at 100 Hz) before the comparison. Records without an
annotation file get a grid from sample 0 and all -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from part.modalities.eeg.recordings.constants import PC18_STAGE_NOTES, TARGET_FS, UNLABELLED
from part.modalities.eeg.recordings.hypnogram_io import label_counts  # noqa: F401 (re-exported for the PC18 tests)
from part.modalities.eeg.recordings.signal import RecordError, resampled_length
from part.modalities.eeg.recordings.windows import WindowGrid



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


def window_labels(
    notes: StageNotes | None,
    n_samples: int,
    fs: float,
    target_fs: float = TARGET_FS,
    window_s: float = 30.0,
) -> WindowGrid:
    """The window grid and per-window labels of a record of ``n_samples`` at ``fs`` Hz.

    The grid is in output samples at ``target_fs`` (the rate the signal is resampled to), so it
    indexes the resampled signal of ``resampled_length(n_samples, fs, target_fs)`` samples.
    """
    window_len = int(round(window_s * target_fs))
    n_out = resampled_length(n_samples, fs, target_fs)
    if notes is None or notes.onsets.size == 0:
        onsets_out, stages, first_start = np.empty(0, np.int64), np.empty(0, np.int8), 0
    else:
        onsets_out = np.round(notes.onsets * (target_fs / fs)).astype(np.int64)
        stages = notes.stages
        first_start = int(onsets_out[0] % window_len)
    n_windows = max(0, (n_out - first_start) // window_len)
    starts = first_start + window_len * np.arange(n_windows, dtype=np.int64)
    # stage in force at a window's start = last onset <= start; labelled iff no onset inside
    n_before_start = np.searchsorted(onsets_out, starts, side="right")
    n_before_end = np.searchsorted(onsets_out, starts + window_len, side="left")
    labelled = (n_before_start >= 1) & (n_before_start == n_before_end)
    labels = np.full(n_windows, UNLABELLED, dtype=np.int8)
    labels[labelled] = stages[n_before_start[labelled] - 1]
    return WindowGrid(first_start, n_windows, window_len, float(target_fs), labels)
