"""Stretches without signal inside an epoch: dropouts, zero-filled data, saturated channels.

A window whose std is tiny (``signal.normalise_windows``'s ``flat``) catches an epoch that is
flat throughout, but not one half zero (the edge of an hour of zeros) or a channel pinned at its
rail for part of an epoch: their std is large. This module marks, on the raw samples of each
channel, every sample without signal, then measures the share of each window it covers:

- a run of identical consecutive samples lasting at least :data:`FLAT_RUN_S` (zeros, a
  disconnected headbox, a channel saturated at a constant);
- a sample at the channel's own extreme values (its max or min over the recording: clipped at
  the physical/digital range, even when it flickers between two values there).

Real EEG never holds one value for a second, and touches its extremes on a handful of samples.
The thresholds live in ``constants.py`` (:data:`FLAT_RUN_S`, :data:`FLAT_EPOCH_SHARE`,
:data:`FLAT_CHANNEL_WARN_SHARE`).
"""
from __future__ import annotations

import numpy as np

from part.modalities.eeg.recordings.constants import FLAT_RUN_S


def no_signal_samples(row: np.ndarray, fs: float, run_s: float = FLAT_RUN_S) -> np.ndarray:
    """(n,) bool: the samples of one channel ``row`` (n,) without signal (module docstring), for a
    channel sampled at ``fs`` Hz; runs of one value last at least ``run_s`` seconds."""
    n = row.size
    if n == 0:
        return np.zeros(0, bool)
    run_starts = np.concatenate([[0], np.flatnonzero(row[1:] != row[:-1]) + 1])
    lengths = np.diff(np.append(run_starts, n))
    mask = np.repeat(lengths >= max(2, int(round(run_s * fs))), lengths)
    low, high = row.min(), row.max()
    if high > low:
        mask |= (row == low) | (row == high)
    return mask


def no_signal_share(rows: np.ndarray, fs: float, starts: np.ndarray, length: int) -> np.ndarray:
    """(n_windows, C) float: the share of each window's samples without signal, per channel.
    ``rows`` (C, n) raw samples at ``fs`` Hz; window k covers samples ``starts[k]:starts[k] + length``."""
    starts = np.asarray(starts, np.int64)
    out = np.empty((starts.size, rows.shape[0]))
    for c, row in enumerate(rows):  # one channel at a time: the cumulative count is (n,) int64
        counts = np.concatenate([[0], np.cumsum(no_signal_samples(row, fs), dtype=np.int64)])
        out[:, c] = (counts[starts + length] - counts[starts]) / length
    return out
