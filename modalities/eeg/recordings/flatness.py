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


def no_signal_indices(row: np.ndarray, fs: float, run_s: float = FLAT_RUN_S) -> np.ndarray:
    """Sorted indices (k,) int64 of the samples of one channel ``row`` (n,) without signal (module
    docstring), for a channel sampled at ``fs`` Hz; runs of one value last at least ``run_s`` s.
    Works on the few samples equal to their predecessor or at an extreme: a few passes over
    ``row``, no per-sample work beyond them."""
    if row.size == 0:
        return np.zeros(0, np.int64)
    same = np.flatnonzero(row[1:] == row[:-1])  # sample i + 1 repeats sample i
    runs = []
    if same.size:
        cut = np.flatnonzero(np.diff(same) != 1) + 1
        first, last = same[np.r_[0, cut]], same[np.r_[cut - 1, same.size - 1]]
        keep = last - first + 2 >= max(2, int(round(run_s * fs)))  # samples first..last + 1 are equal
        first, size = first[keep], last[keep] - first[keep] + 2
        if size.size:  # the concatenated ranges first[j] .. first[j] + size[j] - 1
            offsets = np.repeat(first - np.concatenate([[0], np.cumsum(size)[:-1]]), size)
            runs.append(offsets + np.arange(int(size.sum())))
    low, high = row.min(), row.max()
    if high > low:
        runs.append(np.flatnonzero((row == low) | (row == high)))
    if len(runs) == 2:  # each is sorted; together they may overlap (np.union1d is 100x slower here)
        merged = np.sort(np.concatenate(runs), kind="stable")
        return merged[np.r_[True, np.diff(merged) != 0]]
    return runs[0] if runs else np.zeros(0, np.int64)


def no_signal_samples(row: np.ndarray, fs: float, run_s: float = FLAT_RUN_S) -> np.ndarray:
    """(n,) bool: :func:`no_signal_indices` as a mask."""
    mask = np.zeros(row.size, bool)
    mask[no_signal_indices(row, fs, run_s)] = True
    return mask


def no_signal_share(rows: np.ndarray, fs: float, starts: np.ndarray, length: int) -> np.ndarray:
    """(n_windows, C) float: the share of each window's samples without signal, per channel.
    ``rows`` (C, n) raw samples at ``fs`` Hz; window k covers samples ``starts[k]:starts[k] + length``."""
    starts = np.asarray(starts, np.int64)
    out = np.empty((starts.size, rows.shape[0]))
    for c, row in enumerate(rows):  # one channel at a time
        flat = no_signal_indices(row, fs)
        out[:, c] = (np.searchsorted(flat, starts + length) - np.searchsorted(flat, starts)) / length
    return out
