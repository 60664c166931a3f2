"""A recording and its 30-s grid -> normalised windows and labels: the step shared by the
preparation (``data_prep/prepare.py``) and the staging command.

:func:`recording_windows` runs the signal pipeline of ``recordings/signal.py`` on the
continuous recording (0.1-30 Hz zero-phase band-pass fused with polyphase resampling to 100 Hz,
float32 uV), then cuts the grid's windows and z-scores each window and channel. The grid is any
object with ``first_start`` (output samples at ``target_fs``), ``n_windows``, ``window_len`` and
``labels`` (n_windows,) int8 (a :class:`WindowGrid`): :func:`window_grid` for hypnograms,
``part.data_prep.pc18_labels.window_labels(...)`` for PC18 stage notes, or :func:`unlabelled_grid`.

A *hypnogram* here is any object with ``onsets_s``, ``stages``, ``epoch_s``, ``start_s``,
``end_s``, ``n_epochs``, ``source`` and ``runs()``: a ``part.modalities.eeg.sleep.Hypnogram``
(this layer does not import it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from part.modalities.eeg.recordings.constants import (EPOCH_S, FLAT_EPOCH_SHARE, FLAT_STD_UV, NORM_EPS_UV, TARGET_FS,
                                                      UNLABELLED)
from part.modalities.eeg.recordings.flatness import no_signal_share
from part.modalities.eeg.recordings.hypnogram_edf import HypnogramError
from part.modalities.eeg.recordings.signal import (EegRecording, FilterSpec, RecordError, filter_and_resample,
                                                   normalise_windows, resampled_length)


@dataclass(frozen=True)
class WindowGrid:
    """``n_windows`` windows of ``window_len`` output samples from ``first_start`` (output samples
    at ``target_fs``) and their ``labels`` (n_windows,) int8."""

    first_start: int
    n_windows: int
    window_len: int
    target_fs: float
    labels: np.ndarray


@dataclass(frozen=True)
class WindowConfig:
    """How windows are made: output rate ``target_fs`` (Hz), ``window_s`` (s), storage ``dtype``,
    the band-pass ``filter``, ``eps`` (uV, added to each window's std) and ``flat_std_uv`` (a
    window-channel with a smaller std, in uV, counts as flat)."""

    target_fs: float = TARGET_FS
    window_s: float = EPOCH_S
    dtype: str = "float16"
    filter: FilterSpec = field(default_factory=FilterSpec)
    eps: float = NORM_EPS_UV
    flat_std_uv: float = FLAT_STD_UV

    @property
    def window_len(self) -> int:
        """Samples per window at ``target_fs`` (3000 for 30 s at 100 Hz)."""
        return int(round(self.window_s * self.target_fs))


@dataclass(frozen=True)
class RecordingWindows:
    """``windows`` (n_windows, C, L) of ``dtype``, z-scored per window and channel; ``labels``
    (n_windows,) int8; ``flat`` (n_windows, C) bool: no signal in the window-channel (std below
    ``flat_std_uv``, or no signal for more than ``FLAT_EPOCH_SHARE`` of it: ``flatness.py``);
    ``starts`` (n_windows,) int64: window k starts ``starts[k]`` output samples (at
    ``target_fs`` Hz) after the recording's first sample, on the real clock (gaps counted);
    ``first_start`` = the grid's first window; ``gap_windows``: windows of the grid dropped
    because they fall into (or span) a gap of the recording."""

    windows: np.ndarray
    labels: np.ndarray
    flat: np.ndarray
    first_start: int
    window_len: int
    target_fs: float
    starts: np.ndarray | None = None
    gap_windows: int = 0

    @property
    def n_windows(self) -> int:
        return int(self.labels.size)

    @property
    def first_start_s(self) -> float:
        """Start of the grid's window 0 after the recording's first sample, seconds."""
        return self.first_start / self.target_fs

    @property
    def onsets_s(self) -> np.ndarray:
        """(n_windows,) float64: each window's start after the recording's first sample, seconds."""
        starts = (self.first_start + self.window_len * np.arange(self.n_windows) if self.starts is None
                  else self.starts)
        return np.asarray(starts, np.float64) / self.target_fs


def output_length(recording: EegRecording, config: WindowConfig = WindowConfig()) -> int:
    """Samples of the recording after resampling to ``config.target_fs``, gaps included."""
    last = recording.pieces()[-1]
    return (int(round(last.onset_s * config.target_fs))
            + resampled_length(last.stop - last.start, recording.fs, config.target_fs))


def unlabelled_grid(recording: EegRecording, config: WindowConfig = WindowConfig()) -> WindowGrid:
    """Windows from the recording's first sample while they fit, all unlabelled (-1)."""
    n = output_length(recording, config) // config.window_len
    return WindowGrid(0, n, config.window_len, config.target_fs, np.full(n, UNLABELLED, np.int8))


def recording_windows(recording: EegRecording, grid=None, config: WindowConfig = WindowConfig()) -> RecordingWindows:
    """Filter and resample ``recording``, cut ``grid``'s windows and z-score them.

    ``grid``: see the module docstring; None = :func:`unlabelled_grid`. A recording with gaps
    (``recording.segments``) is filtered segment by segment and keeps only the grid's windows
    lying wholly inside one segment. Raises :class:`RecordError` when the grid holds no window,
    reaches past the recording, or has no window inside a segment.
    """
    grid = unlabelled_grid(recording, config) if grid is None else grid
    n_out, stop = output_length(recording, config), grid.first_start + grid.n_windows * grid.window_len
    if grid.window_len != config.window_len or grid.n_windows < 1 or grid.first_start < 0 or stop > n_out:
        raise RecordError(
            f"{recording.record}: {grid.n_windows} windows of {grid.window_len} samples from sample "
            f"{grid.first_start} do not fit the recording ({recording.duration_s:.1f} s = {n_out} "
            f"samples at {config.target_fs:g} Hz, windows of {config.window_len}); expected at least one whole "
            f"{config.window_s:g}-s window inside the recording"
        )
    labels = np.asarray(grid.labels, dtype=np.int8)
    if labels.shape != (grid.n_windows,):
        raise ValueError(f"grid labels have shape {labels.shape}, expected ({grid.n_windows},)")
    starts = grid.first_start + grid.window_len * np.arange(grid.n_windows, dtype=np.int64)
    parts, keep, raw_starts = [], [], []
    for segment in recording.pieces():
        first = int(round(segment.onset_s * config.target_fs))
        length = resampled_length(segment.stop - segment.start, recording.fs, config.target_fs)
        inside = np.flatnonzero((starts >= first) & (starts + grid.window_len <= first + length))
        if inside.size == 0:
            continue
        piece = recording.piece(segment) if recording.segments else recording
        signal = filter_and_resample(piece, config.filter, config.target_fs)
        parts.append(normalise_windows(signal, int(starts[inside[0]] - first), inside.size, grid.window_len,
                                       config.dtype, config.eps, config.flat_std_uv))
        keep.append(inside)
        raw_starts.append(segment.start + np.rint((starts[inside] - first) / config.target_fs * recording.fs))
    if not parts:
        raise RecordError(f"{recording.record}: no whole {config.window_s:g}-s window of the grid lies inside one of "
                          f"its {len(recording.pieces())} uninterrupted segments (the recording has gaps); expected "
                          "at least one segment longer than a window")
    kept = np.concatenate(keep)
    windows = parts[0].windows if len(parts) == 1 else np.concatenate([p.windows for p in parts])
    flat = np.concatenate([p.flat for p in parts])
    span = int(round(config.window_s * recording.fs))
    raw_starts = np.minimum(np.concatenate(raw_starts).astype(np.int64), recording.n_samples - span)
    flat |= no_signal_share(recording.digital, recording.fs, raw_starts, span) > FLAT_EPOCH_SHARE
    return RecordingWindows(windows, labels[kept], flat, int(grid.first_start), int(grid.window_len),
                            float(config.target_fs), starts[kept], int(grid.n_windows - kept.size))


def window_grid(hypnogram, duration_s: float, target_fs: float,
                window_s: float = EPOCH_S) -> WindowGrid:
    """Windows of ``window_s`` over a recording of ``duration_s`` seconds, in samples at ``target_fs``.

    The grid follows the hypnogram: the first window starts at ``round(first_onset * target_fs)
    mod window_len`` samples (the first epoch's phase), windows follow every ``window_len``
    samples while they fit in ``floor(duration_s * target_fs)`` samples. A window lying fully
    inside a run of one scored stage gets that stage; others (no epoch, unscored, a stage change
    or an epoch off the grid) get -1. ``hypnogram=None``: a grid from 0, all -1 (unlabelled).
    Raises :class:`HypnogramError` when the hypnogram does not overlap the recording.
    """
    window_len = int(round(window_s * target_fs))
    n_out = int(np.floor(duration_s * target_fs + 1e-6))
    first_start = 0
    if hypnogram is not None:
        if hypnogram.n_epochs == 0 or hypnogram.end_s <= 0 or hypnogram.start_s >= duration_s:
            raise HypnogramError(
                f"{hypnogram.source}: the hypnogram covers {hypnogram.start_s:.0f}-{hypnogram.end_s:.0f} s but the "
                f"recording lasts {duration_s:.0f} s (0-{duration_s:.0f} s); expected scoring of this recording: "
                "check that the hypnogram belongs to it and that both files start at the same time")
        first_start = int(round(hypnogram.start_s * target_fs)) % window_len
    starts = tile_starts(first_start, n_out, window_len)
    labels = (np.full(starts.size, UNLABELLED, np.int8) if hypnogram is None else
              labels_at(hypnogram, starts, window_len, target_fs))
    return WindowGrid(first_start, starts.size, window_len, float(target_fs), labels)


def tile_starts(first_start: int, n_samples: int, window_len: int) -> np.ndarray:
    """Starts (n,) int64 of the windows of ``window_len`` samples every ``window_len`` from
    ``first_start`` that fit in ``n_samples``: the one window grid of preparation and staging."""
    n_windows = max(0, (n_samples - first_start) // window_len)
    return first_start + window_len * np.arange(n_windows, dtype=np.int64)


def label_runs(starts: np.ndarray, window_len: int, run_start: np.ndarray, run_end: np.ndarray,
               run_stage: np.ndarray) -> np.ndarray:
    """The stage code (n,) int8 of each window [start, start + window_len): the stage of the run
    [run_start, run_end) it lies fully in, else -1 (all in samples; runs sorted, not overlapping).
    The one labelling rule of :func:`labels_at` (hypnograms) and of PC18 stage notes."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    run = np.searchsorted(run_start, starts, side="right") - 1
    inside = run >= 0
    inside[inside] = run_end[run[inside]] >= starts[inside] + window_len
    labels = np.full(starts.size, UNLABELLED, np.int8)
    labels[inside] = run_stage[run[inside]]
    return labels


def labels_at(hypnogram, starts: np.ndarray, window_len: int, fs: float) -> np.ndarray:
    """The stage code (n,) int8 of each window [start, start + window_len) (samples at ``fs``):
    the stage of the run of one scored stage (``hypnogram.runs()``) it lies fully in, else -1.
    The one labelling rule of :func:`window_grid` and of staging's reference labels."""
    run_start, run_end, run_stage = hypnogram.runs()
    return label_runs(starts, window_len, np.rint(run_start * fs).astype(np.int64),
                      np.rint(run_end * fs).astype(np.int64), run_stage)
