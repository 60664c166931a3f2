"""The running sums behind an epoch's ``epoch_end`` line, kept in the checkpoint so that a run
resumed in the middle of an epoch logs the same epoch loss as an uninterrupted one (not the mean
of the resumed steps alone)."""
from __future__ import annotations

import time

import torch


class EpochTotals:
    """One rank's sums over the steps of the current epoch: ``loss_sum`` (a 0-d tensor on the
    training device, added to without a host sync), ``count`` (steps) and the seconds spent in
    them (across interruptions: the time of the earlier process(es) plus this one's)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Start an epoch: zero sums, the clock from now."""
        self.loss_sum = torch.zeros((), device=self.device)
        self.count, self.earlier_seconds, self.t0 = 0, 0.0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        """One step's loss (a 0-d tensor; detached here)."""
        self.loss_sum += loss.detach()
        self.count += 1

    @property
    def seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.t0

    def mean(self) -> torch.Tensor:
        """This rank's mean step loss of the epoch so far (0-d tensor; 0 steps: 0)."""
        return self.loss_sum / max(self.count, 1)

    def state(self) -> dict:
        """For the checkpoint (tensors and numbers only: ``weights_only`` loads it)."""
        return {"loss_sum": self.loss_sum.detach().cpu(), "count": self.count, "seconds": self.seconds}

    def load(self, state: dict) -> None:
        """Continue the sums of ``state()`` (the clock goes on from now)."""
        self.loss_sum = state["loss_sum"].to(self.device)
        self.count, self.earlier_seconds, self.t0 = int(state["count"]), float(state["seconds"]), time.perf_counter()
