"""Samples of temporal context from the pretraining windows: pairs, triplets, runs of windows.

Every sample is drawn from where its windows lie in their recording (``records`` and
``onsets_s`` of an ``EEGWindows``), vectorised over the whole batch (``searchsorted`` on one
sorted key, no loop per sample). Random numbers are a counter-based hash of (seed, epoch, item),
so item i of epoch e is the same sample in every DataLoader worker, after a resume and on every
machine, and each epoch draws new samples.

- :class:`PairSampler` (relative positioning): an anchor window and a partner from the same
  recording, label 1 when their onsets are at most ``tau_pos_s`` apart, 0 when more than
  ``tau_neg_s`` apart (pairs in between are never drawn); labels are balanced 50/50.
- :class:`TripletSampler` (temporal shuffling): anchors a < c at most ``tau_pos_s`` apart with
  at least one window between them, and a middle window b: between a and c (label 1, in order)
  or more than ``tau_neg_s`` from a (label 0); returned in the order (a, b, c).
- :class:`SequenceSampler` (CPC): ``length`` consecutive windows of one recording without gaps.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from part.errors import DataError

_EPS_S = 1e-6  # s: onsets closer than this are equal
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def uniforms(seed: int, epoch: int, items: np.ndarray, streams: int) -> np.ndarray:
    """(n, streams) float64 in [0, 1): splitmix64 of (seed, epoch, item, stream) for each item."""
    with np.errstate(over="ignore"):
        counter = (np.uint64(seed % 2**64) * np.uint64(0xD1B54A32D192ED03)
                   + np.uint64(epoch % 2**64) * np.uint64(0xABC98388FB8FAC03)
                   + np.asarray(items, np.uint64)[:, None] * np.uint64(streams) + np.arange(streams, dtype=np.uint64))
        z = (counter + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def pick(u: np.ndarray, ranges: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """A position drawn uniformly (by ``u`` (n,)) from the union of disjoint ranges
    ``[(start (n,), stop (n,)), ...]``; every row must have a non-empty union."""
    sizes = np.stack([np.maximum(stop - start, 0) for start, stop in ranges])  # (R, n)
    j = np.minimum((u * sizes.sum(0)).astype(np.int64), sizes.sum(0) - 1)
    out = np.empty_like(j)
    before = np.zeros_like(j)
    for (start, _), size in zip(ranges, sizes):  # a loop over the (2) ranges, not over samples
        here = (j >= before) & (j < before + size)
        out[here] = (start + j - before)[here]
        before = before + size
    return out


class Timeline:
    """The windows sorted by (recording, onset), and searches of onsets within a recording.

    Args: records (n,) the recording of each window; onsets_s (n,) float its onset in seconds.
    Attributes: ``order`` (n,) window indices in sorted order; ``onsets`` (n,) their onsets;
    ``start`` / ``stop`` (n,) per sorted position, the first / one-past-last sorted position of
    its recording. Positions below are sorted positions.
    """

    def __init__(self, records: np.ndarray, onsets_s: np.ndarray):
        codes = np.unique(np.asarray(records).astype(str), return_inverse=True)[1].reshape(-1)
        onsets = np.asarray(onsets_s, np.float64)
        self.order = np.lexsort((onsets, codes))
        codes, self.onsets = codes[self.order], onsets[self.order]
        n = len(self.order)
        bounds = np.flatnonzero(np.diff(codes)) + 1
        starts, stops = np.concatenate([[0], bounds]), np.concatenate([bounds, [n]])
        self.start, self.stop = np.repeat(starts, stops - starts), np.repeat(stops, stops - starts)
        span = float(self.onsets.max() - self.onsets.min()) + 1.0 if n else 1.0
        self._key = codes * span + (self.onsets - (self.onsets.min() if n else 0.0))

    def __len__(self) -> int:
        return len(self.order)

    def _find(self, pos: np.ndarray, offset_s: float, side: str) -> np.ndarray:
        found = np.searchsorted(self._key, self._key[pos] + offset_s, side=side)
        return np.clip(found, self.start[pos], self.stop[pos])

    def near(self, pos: np.ndarray, tau_s: float) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi): the windows of pos's recording with |onset - onset[pos]| <= tau_s."""
        return self._find(pos, -tau_s - _EPS_S, "left"), self._find(pos, tau_s + _EPS_S, "right")

    def far(self, pos: np.ndarray, tau_s: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Two ranges: the windows of pos's recording more than tau_s before / after it."""
        return [(self.start[pos], self._find(pos, -tau_s - _EPS_S, "right")),
                (self._find(pos, tau_s + _EPS_S, "left"), self.stop[pos])]


def _sizes(ranges) -> np.ndarray:
    return sum(np.maximum(stop - start, 0) for start, stop in ranges)


def _eligible(mask: np.ndarray, what: str, hint: str) -> np.ndarray:
    pos = np.flatnonzero(mask)
    if pos.size == 0:
        raise DataError(f"no window of the pretraining records can anchor {what}; {hint}")
    return pos


def _record_hint(timeline: Timeline, option: str) -> str:
    longest = float(np.max(timeline.onsets[timeline.stop - 1] - timeline.onsets[timeline.start], initial=0.0))
    return (f"the longest record spans {longest / 60:.1f} min of window onsets: lower {option} "
            f"or pretrain on longer recordings")


class _Anchored:
    """A sampler whose samples start at one of its eligible anchor windows ``anchors``."""

    anchors: np.ndarray

    def anchor(self, u: np.ndarray) -> np.ndarray:
        """Anchors (n,) drawn uniformly by ``u`` (n,) in [0, 1)."""
        return self.anchors[np.minimum((u * self.anchors.size).astype(np.int64), self.anchors.size - 1)]


class _TemporalContext(_Anchored):
    """RP / TS: a positive context within ``tau_pos_s`` of the anchor, a negative one more than
    ``tau_neg_s`` from it; anchors are the windows that have both (``has_positive``)."""

    what = ""

    def __init__(self, timeline: Timeline, tau_pos_s: float, tau_neg_s: float):
        self.t, self.tau_pos_s, self.tau_neg_s = timeline, tau_pos_s, tau_neg_s
        allpos = np.arange(len(timeline))
        ok = self.has_positive(allpos) & (_sizes(timeline.far(allpos, tau_neg_s)) > 0)
        self.anchors = _eligible(ok, f"{self.what} within method.tau_pos_s={tau_pos_s:g} s and one more than "
                                     f"method.tau_neg_s={tau_neg_s:g} s away",
                                 _record_hint(timeline, "method.tau_neg_s"))

    def has_positive(self, pos: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class PairSampler(_TemporalContext):
    """Relative-positioning pairs (see the module docstring); ``windows = 2``."""

    windows, streams, what = 2, 3, "a pair with a partner"

    def has_positive(self, pos: np.ndarray) -> np.ndarray:
        lo, hi = self.t.near(pos, self.tau_pos_s)
        return hi - lo > 1

    def draw(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u (n, 3) -> sorted positions (n, 2) (anchor, partner), labels float32 (n,)."""
        a, positive = self.anchor(u[:, 0]), u[:, 1] < 0.5
        lo, hi = self.t.near(a, self.tau_pos_s)
        near = pick(u[:, 2], [(lo, a), (a + 1, hi)])
        far = pick(u[:, 2], self.t.far(a, self.tau_neg_s))
        return np.stack([a, np.where(positive, near, far)], 1), positive.astype(np.float32)


class TripletSampler(_TemporalContext):
    """Temporal-shuffling triplets (see the module docstring); ``windows = 3``."""

    windows, streams, what = 3, 4, "a triplet (three windows)"

    def has_positive(self, pos: np.ndarray) -> np.ndarray:
        _, hi = self.t.near(pos, self.tau_pos_s)
        return hi - 1 - pos >= 2

    def draw(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u (n, 4) -> sorted positions (n, 3) (a, b, c), labels float32 (n,) (1: b between a and c)."""
        a, ordered = self.anchor(u[:, 0]), u[:, 2] < 0.5
        _, hi = self.t.near(a, self.tau_pos_s)
        c = pick(u[:, 1], [(a + 2, hi)])
        between = pick(u[:, 3], [(a + 1, c)])
        far = pick(u[:, 3], self.t.far(a, self.tau_neg_s))
        return np.stack([a, np.where(ordered, between, far), c], 1), ordered.astype(np.float32)


class SequenceSampler(_Anchored):
    """Runs of ``length`` consecutive windows, ``step_s`` apart, of one recording (CPC)."""

    streams = 1

    def __init__(self, timeline: Timeline, length: int, step_s: float):
        self.t, self.windows = timeline, length
        first = np.arange(len(timeline))
        last = first + length - 1
        ok = last < timeline.stop
        span = timeline.onsets[np.minimum(last, len(timeline) - 1)] - timeline.onsets
        ok &= np.abs(span - (length - 1) * step_s) <= 1e-3 * step_s + _EPS_S
        self.anchors = _eligible(ok, f"a run of {length} consecutive {step_s:g}-s windows without gaps",
                                 "lower method.context_windows / method.predicted_windows or use whole "
                                 "records (no data.limit_train)")

    def draw(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """u (n, 1) -> sorted positions (n, length), zeros (n,) (CPC's targets are its own)."""
        a = self.anchor(u[:, 0])
        return a[:, None] + np.arange(self.windows), np.zeros(len(a), np.float32)


class ContextSamples(Dataset):
    """The samples a temporal-context method trains on, made from pretraining windows.

    Args:
        windows: an ``EEGWindows`` (``records``, ``onsets_s``, ``read_batch``).
        sampler: builds the sample from a :class:`Timeline` of ``windows``: a class above
            (``sampler(timeline)`` with its options bound).
        seed: the run's seed.

    ``len`` is ``len(windows) // sampler.windows`` (an epoch encodes about as many windows as
    PART's epoch over the same records). Item i is ``(x float32 (k, C, L), target float32 ())``;
    ``set_epoch(e)`` (called by the training loop) draws epoch e's samples.
    """

    def __init__(self, windows, sampler, seed: int):
        missing = [a for a in ("records", "onsets_s", "read_batch") if not hasattr(windows, a)]
        if missing:
            raise DataError(f"{type(windows).__name__} has no {', '.join(missing)}: temporal-context methods "
                            f"need windows that know their recording and onset (the eeg modality's datasets)")
        self.windows, self.seed, self.epoch = windows, int(seed), 0
        self.timeline = Timeline(windows.records, windows.onsets_s)
        self.sampler = sampler(self.timeline)
        self.size = max(1, len(windows) // self.sampler.windows)

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draw(self, items: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Window indices (n, k) into ``windows`` and targets (n,) of ``items`` in this epoch."""
        items = np.asarray(items, np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.size):
            raise IndexError(f"item out of range for {self.size} samples")
        pos, target = self.sampler.draw(uniforms(self.seed, self.epoch, items, self.sampler.streams))
        return self.timeline.order[pos], target

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        index, target = self.draw(items)
        x, _ = self.windows.read_batch(index.reshape(-1))
        x = x.view(*index.shape, *x.shape[1:])
        return list(zip(x.unbind(0), torch.from_numpy(target).unbind(0)))

    def __getitem__(self, item: int):
        return self.__getitems__([int(item)])[0]
