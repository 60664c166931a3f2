"""The training loop shared by every stage: deterministic sharded sampling, AdamW with warmup +
cosine, bf16 autocast on CUDA, gradient clipping, DDP, JSONL/TensorBoard logging, atomic
checkpoints every `checkpoint_every` steps and at each epoch end, and exact resume.

Resume is exact on the CPU: the data order of an epoch depends only on (seed, epoch), a resumed
epoch skips the batches already done without loading them, and the checkpoint restores model,
optimizer, step and every RNG state (each rank's), so the loss curve continues step for step.

The checkpoint also holds each rank's running sums of the current epoch (``EpochTotals``), so
a resumed epoch's ``epoch_end`` line equals the uninterrupted run's. One DataLoader serves the
stage, its workers persisting across epochs (``part.training.data_order``).

Faults: a non-finite loss is detected at every step by a flag kept on the device (no host sync
per step), read at log points, before every checkpoint write and at epoch ends; before every
checkpoint write the weights and the optimizer state are checked too (an update can overflow
them while the loss that led to it was finite), and the weights against ``run.max_abs_weight``.
Each stops the run (``RunStopped``, exit 1) and no such checkpoint is ever written: the previous
good one is kept (``part.training.stopping``). Epochs in messages count from 1 (``metrics.jsonl``
keeps its 0-based ``epoch`` field). SIGTERM and a first Ctrl-C (``ctx.stop_signal``) are honoured
at a step boundary (under DDP every ``run.stop_check_every`` steps, all ranks agreeing): a
checkpoint is written there and the run stops with exit code 143 (130 for SIGINT), resumable
exactly. When the signal went to the whole process group (``scancel``, Ctrl-C in a shell), the
stage's DataLoader workers ignore it and go on fetching (``data_order.ignore_stop_signals``);
should they die anyway, fetching the next batch fails, which, with a stop signal received, is
the step boundary to stop at, not an error.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from part.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from part.training.data_order import EpochSampler, close_loader, stage_loader
from part.training.distributed import DistInfo, all_gather_objects, all_reduce_max, all_reduce_mean
from part.training.epoch_totals import EpochTotals
from part.training.optim import cosine_lr, param_groups, set_lr
from part.training.rundir import truncate_metrics
from part.training.stopping import (WORKER_DEATH, mid_step_stop, nonfinite_stop, signal_stop, stop_requested,
                                    weight_health)

__all__ = ["EpochSampler", "RunContext", "StageLoop", "TrainSpec", "train"]


@dataclass
class RunContext:
    """What every stage needs: where to write, which device, which process."""

    run_dir: Path
    device: torch.device
    dist: DistInfo
    amp_dtype: Optional[torch.dtype] = None
    compile: bool = False
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    recipe_hash: str = ""
    tb_writer: object = None
    progress: bool = True
    position: dict = field(default_factory=dict)  # stage, epoch, step: for interrupt messages
    stop_signal: Optional[str] = None  # set by the SIGTERM / first SIGINT handler; honoured at a step boundary
    training: bool = False  # inside a training loop's steps (where a stop signal is honoured)
    stop_check_every: int = 1  # steps between the DDP ranks' agreement on a stop signal
    max_abs_weight: float = 1e4  # a checkpoint with a larger |weight| is refused (no healthy run gets there)

    def log(self, record: dict) -> None:
        """Append one JSON object to metrics.jsonl (rank 0 only) and to TensorBoard if available."""
        if not self.dist.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb_writer is not None and "loss" in record and "step" in record:
            tag = record["stage"] + ("/epoch_loss" if record.get("event") == "epoch_end" else "/loss")
            self.tb_writer.add_scalar(tag, record["loss"], record["step"])

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)


@dataclass
class TrainSpec:
    """One training stage: what to optimise and how (numbers from the recipe's OptimConfig)."""

    stage: str
    model: nn.Module
    loss_fn: Callable  # (model, batch) -> (loss, extras dict of scalar tensors)
    dataset: object
    optim: object  # part.config.schema.OptimConfig
    depth: int = 0  # encoder depth, for layer-wise lr decay
    sample_weights: Optional[torch.Tensor] = None
    checkpoint: str = "last.pt"
    on_step: Optional[Callable] = None  # (model, step, total) before each step, e.g. annealing
    # (model, epoch) -> record dict, list of them, or None, at each epoch end before its checkpoint; a record is
    # logged with stage, epoch and step (e.g. held-out diagnostics). It must leave the global RNG
    # state as it found it (use torch.random.fork_rng) so that resuming stays exact.
    on_epoch_end: Optional[Callable] = None
    extra_state: dict = field(default_factory=dict)


def _global_batch(spec: TrainSpec, ctx: RunContext) -> int:
    n, world = len(spec.dataset), ctx.dist.world_size
    gb = min(spec.optim.batch_size, n)
    gb -= gb % world
    if gb < world or gb < 1:
        raise ValueError(f"{spec.stage}: {n} training items cannot fill a batch on {world} processes")
    if gb != spec.optim.batch_size:
        ctx.say(f"[{spec.stage}] note: {spec.stage}.batch_size={spec.optim.batch_size} lowered to {gb} "
                f"({n} items, {world} processes)")
    return gb


def train(spec: TrainSpec, ctx: RunContext) -> dict:
    """Run (or resume) one stage to its last epoch; returns {"loss": last epoch mean, "steps": n}."""
    loop = StageLoop(spec, ctx)
    try:
        loop.resume()
        epoch_loss = float("nan")
        for ep in range(loop.epoch, spec.optim.epochs):
            epoch_loss = loop.run_epoch(ep)
    finally:
        close_loader(loop.loader)  # persistent workers end with their stage
    return {"loss": epoch_loss, "steps": loop.step}


class StageLoop:
    """One stage's training state and its parts: :meth:`resume` from ``last.pt``,
    :meth:`run_epoch` (the steps, their logging, periodic checkpoints, the stop signal),
    :meth:`log_step`, :meth:`check_finite` and :meth:`save` (checkpoints, never non-finite)."""

    def __init__(self, spec: TrainSpec, ctx: RunContext):
        cfg, dist_info = spec.optim, ctx.dist
        self.spec, self.ctx, self.cfg = spec, ctx, cfg
        self.gb = _global_batch(spec, ctx)
        self.per_rank = self.gb // dist_info.world_size
        self.lr = cfg.lr * self.gb / cfg.base_batch_size if cfg.base_batch_size else cfg.lr
        self.sampler = EpochSampler(len(spec.dataset), self.gb, ctx.seed, dist_info.rank, dist_info.world_size,
                                    spec.sample_weights)
        self.steps_per_epoch = self.sampler.batches
        self.total = cfg.epochs * self.steps_per_epoch
        self.warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.model = spec.model.to(ctx.device)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay, cfg.layer_decay, spec.depth),
                                     lr=self.lr, betas=tuple(cfg.betas), fused=ctx.device.type == "cuda")
        self.ckpt_path = ctx.run_dir / "checkpoints" / spec.checkpoint
        self.epoch, self.step = 0, 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=ctx.device)  # first non-finite step
        self.totals = EpochTotals(ctx.device)  # the current epoch's running sums (this rank's)
        self.loader: Optional[DataLoader] = None  # one for the stage, made at its first epoch
        self.run_model: nn.Module = self.model  # wrapped for DDP / torch.compile by resume()
        self._tick, self._logged_at = time.perf_counter(), 0  # the last log point: time, step
        ctx.say(f"[{spec.stage}] {len(spec.dataset)} items, global batch {self.gb} = {dist_info.world_size} x "
                f"{self.per_rank}, lr {self.lr:.3g}"
                + (f" (= {cfg.lr:g} x {self.gb}/{cfg.base_batch_size})" if cfg.base_batch_size else "")
                + f", {cfg.epochs} epochs x {self.steps_per_epoch} steps, warmup {self.warmup} steps")

    # ------------------------------------------------------------------ resume
    def resume(self) -> None:
        """Continue from ``last.pt`` when it holds this stage: weights, optimizer, step, the RNG
        state and the epoch's running sums of this rank; metrics.jsonl lines after that step are
        dropped. Then wrap the model for DDP / torch.compile."""
        spec, ctx = self.spec, self.ctx
        state = load_checkpoint(self.ckpt_path) if self.ckpt_path.exists() else {}
        if state.get("stage") == spec.stage and state.get("extra") == spec.extra_state:
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            self.epoch, self.step = state["epoch"], state["step"]
            rank = min(ctx.dist.rank, len(state["rng"]) - 1)
            set_rng_state(state["rng"][rank])
            if "epoch_totals" in state:  # older checkpoints: the epoch's sums restart here
                self.totals.load(state["epoch_totals"][rank])
            if self.epoch >= self.cfg.epochs:
                ctx.say(f"[{spec.stage}] resumed from {self.ckpt_path} after its last epoch ({self.cfg.epochs}, "
                        f"step {self.step}); raise {spec.stage}.epochs to train further")
            else:
                ctx.say(f"[{spec.stage}] resumed from {self.ckpt_path} in epoch {self.epoch + 1}/{self.cfg.epochs}, "
                        f"after step {self.step}")
        if ctx.dist.is_main:  # lines logged after the checkpoint (all of them on a fresh start) go
            truncate_metrics(ctx.run_dir / "metrics.jsonl", spec.stage, self.step, spec.extra_state)
        self.run_model = DistributedDataParallel(self.model) if ctx.dist.enabled else self.model
        if ctx.compile:
            self.run_model = torch.compile(self.run_model)

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, ep: int) -> float:
        """Train epoch ``ep`` (from the resumed step within it); returns its mean loss."""
        spec, ctx, cfg = self.spec, self.ctx, self.cfg
        start = self.step - ep * self.steps_per_epoch
        self.sampler.set_epoch(ep, start)  # the dataset gets the epoch with each index (EpochItems)
        if self.loader is None:
            self.loader = stage_loader(spec.dataset, self.sampler, self.per_rank, ctx.num_workers, ctx.seed,
                                       ctx.device.type == "cuda")
        if start == 0:  # else resume() restored the sums of this epoch's earlier steps
            self.totals.reset()
        bar = _progress(ctx, spec.stage, ep, cfg.epochs, self.steps_per_epoch, start)
        self.run_model.train()
        self._tick, self._logged_at = time.perf_counter(), self.step
        last_step = (ep + 1) * self.steps_per_epoch
        ctx.training = True
        try:
            for batch in self._batches(self.loader, ep):
                loss, extras = self._step_or_stop(batch, ep)
                self.totals.add(loss)
                if self.step % ctx.log_every == 0 or self.step == self.total:
                    self.log_step(ep, loss, extras, bar)
                if bar is not None:
                    bar.update(1)
                if ctx.checkpoint_every and self.step % ctx.checkpoint_every == 0:
                    self.save(ep)
                if stop_requested(ctx, self.step, epoch_end=self.step == last_step):
                    self.stop(ep)
        finally:
            ctx.training = False
        if bar is not None:
            bar.close()
        return self.end_epoch(ep)

    def _batches(self, loader: DataLoader, ep: int):
        """The loader's batches; a batch that cannot be fetched because the DataLoader workers died
        after this process received a stop signal (e.g. killed by the same group signal despite
        ignoring it) is the step boundary to stop at: checkpoint and stop there."""
        batches = iter(loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except WORKER_DEATH:
                if self.ctx.stop_signal is None:
                    raise  # a worker died on its own: a real failure
                self.stop(ep)
            yield batch

    def _step_or_stop(self, batch, ep: int):
        """:meth:`train_step`; an error inside it after a stop signal (a worker's death reported
        mid-step) stops without a checkpoint of the half-done step: the last one is kept."""
        try:
            return self.train_step(batch, ep)
        except WORKER_DEATH:
            if self.ctx.stop_signal is None:
                raise
            raise mid_step_stop(self.spec.stage, self.ctx.stop_signal, ep + 1, self.step + 1, self.ckpt_path) from None

    def stop(self, ep: int) -> None:
        """Checkpoint at this step boundary and stop (``RunStopped``: 143 SIGTERM, 130 SIGINT)."""
        self.save(ep)
        raise signal_stop(self.spec.stage, self.ctx.stop_signal, ep + 1, self.step, self.ckpt_path)

    def train_step(self, batch, ep: int):
        """One optimisation step; the non-finite flag is updated on the device (no host sync)."""
        spec, ctx = self.spec, self.ctx
        ctx.position.update(stage=spec.stage, epoch=ep + 1, step=self.step)
        if spec.on_step is not None:
            spec.on_step(self.model, self.step, self.total)
        set_lr(self.opt, cosine_lr(self.step, self.total, self.warmup, self.lr, self.cfg.min_lr))
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None):
            loss, extras = spec.loss_fn(self.run_model, batch, ctx.device)
        loss.backward()
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        finite = torch.isfinite(loss.detach()) | (self.first_bad >= 0)
        self.first_bad = torch.where(finite, self.first_bad, self.first_bad.new_full((), self.step))
        return loss, extras

    def end_epoch(self, ep: int) -> float:
        """The epoch's mean loss (over all its steps, also those before a resume), its hook
        (held-out diagnostics), checkpoint and log line."""
        spec, ctx = self.spec, self.ctx
        epoch_loss = all_reduce_mean(self.totals.mean(), ctx.dist).item()
        seconds, count = self.totals.seconds, self.totals.count
        if spec.on_epoch_end is not None and int(self.first_bad.item()) < 0:  # local: the hook may be rank 0's only
            records = spec.on_epoch_end(self.model, ep)
            for record in records if isinstance(records, list) else [records]:
                if record:
                    ctx.log({"stage": spec.stage, **spec.extra_state, "epoch": ep, "step": self.step, **record})
        self.save(ep + 1)
        rate = count * self.gb / max(seconds, 1e-9)
        ctx.log({"stage": spec.stage, **spec.extra_state, "event": "epoch_end", "epoch": ep, "step": self.step,
                 "loss": epoch_loss,
                 "seconds": round(seconds, 2), "items_per_s": round(rate, 1)})
        ctx.say(f"[{spec.stage}] epoch {ep + 1}/{self.cfg.epochs} loss {epoch_loss:.4f} ({seconds:.1f} s, "
                f"{rate:.0f} items/s, step {self.step}/{self.total})")
        return epoch_loss

    # ------------------------------------------------------------------ logging and checkpoints
    def log_step(self, ep: int, loss: torch.Tensor, extras: dict, bar) -> None:
        """A metrics.jsonl line (loss averaged over ranks, lr, items/s, the method's extras)."""
        self.check_finite()
        value = all_reduce_mean(loss.detach().float(), self.ctx.dist).item()
        now = time.perf_counter()
        rate = (self.step - self._logged_at) * self.gb / max(now - self._tick, 1e-9)
        self._tick, self._logged_at = now, self.step
        group = self.opt.param_groups[0]
        self.ctx.log({"stage": self.spec.stage, **self.spec.extra_state, "epoch": ep, "step": self.step, "loss": value,
                      "lr": group["lr"] / group.get("lr_scale", 1.0), "items_per_s": round(rate, 1),
                      **{k: float(v) for k, v in extras.items()}})
        if bar is not None:
            bar.set_postfix(loss=f"{value:.4f}", items_s=f"{rate:.0f}")

    def check_finite(self) -> None:
        """Raise RunStopped if any rank saw a non-finite loss since the start (one host sync)."""
        bad = int(all_reduce_max(self.first_bad, self.ctx.dist).item())
        if bad >= 0:
            raise nonfinite_stop(self.spec.stage, self.spec.extra_state, self.ckpt_path, bad, self.steps_per_epoch,
                                 cosine_lr(bad - 1, self.total, self.warmup, self.lr, self.cfg.min_lr))

    def save(self, ep: int) -> None:
        """Write ``last.pt`` (rank 0; every rank's RNG state and epoch sums), never with a
        non-finite loss behind it, non-finite weights or optimizer state, nor a weight beyond
        ``ctx.max_abs_weight`` (the previous checkpoint is kept)."""
        self.check_finite()
        finite, largest = weight_health(self.model, self.opt, self.ctx.dist)
        if not finite or largest > self.ctx.max_abs_weight:
            what = ("the weights (or the optimizer state) became non-finite (NaN or Inf) after the update of"
                    if not finite else
                    f"a weight grew to |w| = {largest:.3g}, beyond run.max_abs_weight={self.ctx.max_abs_weight:g} "
                    f"that no healthy run reaches (on its way to non-finite (NaN or Inf) values), after the update of")
            group = self.opt.param_groups[0]
            raise nonfinite_stop(self.spec.stage, self.spec.extra_state, self.ckpt_path, self.step,
                                 self.steps_per_epoch, group["lr"] / group.get("lr_scale", 1.0), what, loss=False)
        per_rank = all_gather_objects((rng_state(), self.totals.state()), self.ctx.dist)
        if self.ctx.dist.is_main:
            save_checkpoint(self.ckpt_path, {
                "stage": self.spec.stage, "epoch": ep, "step": self.step, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": {"step": self.step, "total": self.total},
                "scaler": None, "rng": [r for r, _ in per_rank], "epoch_totals": [t for _, t in per_rank],
                "recipe_hash": self.ctx.recipe_hash, "extra": self.spec.extra_state})


def _progress(ctx, stage, ep, epochs, steps, start):
    if not (ctx.dist.is_main and ctx.progress):
        return None
    from tqdm import tqdm
    return tqdm(total=steps, initial=start, desc=f"{stage} {ep + 1}/{epochs}", leave=False,
                mininterval=1.0, dynamic_ncols=True)
