"""Sleep-stage labels of 30-s windows from the notes of a PC18 ``.arousal`` annotation file.

The ``.arousal`` file (WFDB annotations; read by ``recordings/hypnogram_wfdb.read_stage_notes``)
holds stage notes ``W``, ``N1``, ``N2``, ``N3``, ``R`` (aux_note), each the onset of a stage
lasting until the next stage note (the last one until the end of the record), and event brackets
such as ``(arousal_rera`` / ``arousal_rera)``, which are ignored. Time before the first stage
note is unscored.

Windows tile the record on the grid of the stage onsets: at the output rate the first window
starts at ``round(first_onset) mod L`` and windows follow every ``L`` samples while they fit.
A window lying fully inside one stage gets that stage's label (0 W, 1 N1, 2 N2, 3 N3, 4 REM);
every other window (unscored time, or a stage change inside it) gets -1. Stage onsets are
quantised to the output sample grid (10 ms at 100 Hz) before the comparison. Records without an
annotation file get a grid from sample 0 and all -1.
"""

from __future__ import annotations


import numpy as np

from part.modalities.eeg.recordings.constants import EPOCH_S, TARGET_FS
from part.modalities.eeg.recordings.hypnogram_io import label_counts  # noqa: F401 (re-exported for the PC18 tests)
from part.modalities.eeg.recordings.hypnogram_wfdb import StageNotes, read_stage_notes  # noqa: F401 (one reader)
from part.modalities.eeg.recordings.signal import resampled_length
from part.modalities.eeg.recordings.windows import WindowGrid, label_runs, tile_starts



def window_labels(
    notes: StageNotes | None,
    n_samples: int,
    fs: float,
    target_fs: float = TARGET_FS,
    window_s: float = EPOCH_S,
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
    starts = tile_starts(first_start, n_out, window_len)
    # each note's stage lasts until the next note (the last one: past every window)
    run_end = np.append(onsets_out[1:], np.iinfo(np.int64).max // 2)
    labels = label_runs(starts, window_len, onsets_out, run_end[:onsets_out.size], stages)
    return WindowGrid(first_start, starts.size, window_len, float(target_fs), labels)
