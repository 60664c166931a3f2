"""The order in which a stage sees its items, and the DataLoader that fetches them.

One DataLoader serves a whole stage; with ``run.num_workers > 0`` its worker processes persist
across epochs (no respawn, no reopening of every record's memmap each epoch). The epoch travels
inside each index instead: :class:`EpochSampler` yields ``(epoch, batch, item)`` keys, read when
it is iterated, and :class:`EpochItems`, in whichever process fetches, hands a new epoch to the
dataset's ``set_epoch`` (datasets that draw their samples per epoch) and, in a worker, reseeds
the worker's random generators from (seed, epoch, batch): a batch's augmentations depend on
which batch of which epoch it is, not on which worker fetched it, so a run resumed mid-epoch
(whose first batch goes to worker 0) augments every later batch as the uninterrupted run did.

Workers ignore SIGTERM and SIGINT (:func:`ignore_stop_signals`): a signal to the whole process
group (``scancel``, Ctrl-C in a shell) is the main process's to honour at a step boundary, every
DDP rank at the same one, with its workers still fetching; the stage then shuts them down
(:func:`close_loader`, which kills any worker that does not exit).
"""
from __future__ import annotations

import random
import signal
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info


class EpochSampler(Sampler):
    """Per-epoch order from (seed, epoch) alone; rank r takes items r, r + W, ... of each global
    batch; `start_batch` skips batches already trained (resume). Optional `weights` draw with
    replacement (balanced sampling). Always whole global batches (the remainder is dropped).
    Iterating yields item indices; :meth:`tagged` yields ``(epoch, batch, item)`` for
    :class:`EpochItems` (batch: the global batch index within the epoch)."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 weights: Optional[torch.Tensor] = None):
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world, self.weights = rank, world, weights
        self.epoch, self.start_batch = 0, 0
        self.batches = n // global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        return torch.randperm(self.n, generator=g)

    def __iter__(self):
        order = self.order()[: self.batches * self.global_batch]
        mine = order[self.rank::self.world]
        per_rank = self.global_batch // self.world
        return iter(mine[self.start_batch * per_rank:].tolist())

    def __len__(self) -> int:
        return (self.batches - self.start_batch) * (self.global_batch // self.world)

    def tagged(self) -> "TaggedSampler":
        return TaggedSampler(self)


class TaggedSampler(Sampler):
    """An :class:`EpochSampler`'s items as ``(epoch, batch, item)``, the epoch read at each
    iteration, batch = the global batch index of the item within the epoch."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self):
        s = self.sampler
        epoch, first, per_rank = s.epoch, s.start_batch, s.global_batch // s.world
        return ((epoch, first + k // per_rank, i) for k, i in enumerate(s))

    def __len__(self) -> int:
        return len(self.sampler)


class EpochItems(Dataset):
    """``dataset`` indexed by ``(epoch, batch, item)``: a new epoch goes to ``dataset.set_epoch``
    (where it has one) and, inside a DataLoader worker, each batch reseeds Python's, NumPy's and
    torch's generators from (``seed``, epoch, batch). Batched fetching (``__getitems__``) is kept.
    Without workers the main process's generators run on (the checkpoint restores them)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch, self.batch = dataset, int(seed), None, None

    def __len__(self) -> int:
        return len(self.dataset)

    def _enter(self, epoch: int, batch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            if callable(getattr(self.dataset, "set_epoch", None)):
                self.dataset.set_epoch(epoch)
        if (epoch, batch) != self.batch and get_worker_info() is not None:
            self.batch = (epoch, batch)
            seed = ((self.seed * 7919 + epoch) * 1_000_003 + batch) % 2**63
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)

    def __getitem__(self, key: tuple[int, int, int]):
        epoch, batch, item = key
        self._enter(epoch, batch)
        return self.dataset[item]

    def __getitems__(self, keys: Sequence[tuple[int, int, int]]) -> list:
        self._enter(keys[0][0], keys[0][1])  # a batch never spans two epochs or two batches
        items = [item for _, _, item in keys]
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(items) if callable(fetch) else [self.dataset[i] for i in items]


def ignore_stop_signals(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: the worker outlives a SIGTERM / SIGINT sent to the process
    group, so that the main process decides where to stop (it ends its workers itself)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stage_loader(dataset, sampler: EpochSampler, batch_size: int, num_workers: int, seed: int,
                 pin_memory: bool) -> DataLoader:
    """The one DataLoader of a stage: ``sampler.set_epoch`` before each ``iter()`` picks the
    epoch; workers (``num_workers > 0``) persist until :func:`close_loader`."""
    return DataLoader(EpochItems(dataset, seed), batch_size=batch_size, sampler=sampler.tagged(), drop_last=True,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed * 7919))


def close_loader(loader: Optional[DataLoader]) -> None:
    """Shut down a loader's persistent workers now (rather than whenever it is collected); a
    worker still alive after PyTorch's shutdown (it ignores SIGTERM) is killed."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        workers = list(getattr(iterator, "_workers", []))
        try:
            iterator._shutdown_workers()
        finally:
            for w in workers:
                if w.is_alive():
                    w.kill()
                    w.join()
    if loader is not None:
        loader._iterator = None
