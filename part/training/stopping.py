"""When and why a training stage stops early: stop signals agreed across DDP ranks, and the
health check of the weights before a checkpoint is written.

Stop signals. SIGTERM and a first Ctrl-C set ``ctx.stop_signal`` (``part.training.runner``); the
loop stops at a step boundary. One process reads that attribute after every step (no cost). Under
DDP every rank must stop at the same step, so the ranks agree by one all-reduce, a host sync: it
runs every ``stop_check_every`` steps (``run.stop_check_every``, default ``run.log_every``, where
the log line syncs anyway) and at each epoch's last step, never at every step.

Health. A checkpoint is never written with non-finite (NaN / Inf) weights or optimizer state,
nor with a weight beyond ``max_abs_weight`` (``run.max_abs_weight``, default 1e4): AdamW moves a
weight by about lr per step, so no healthy run gets there, while an overflowing one passes it
on its way to Inf, with weights that may already give a non-finite loss at the next step.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from part.errors import RunStopped
from part.training.checkpoint import load_checkpoint
from part.training.distributed import DistInfo, all_reduce_max

SIGTERM_EXIT = 143
SIGINT_EXIT = 130
# What a DataLoader raises when its workers die under it: "DataLoader worker ... is killed by
# signal" (RuntimeError), or a reset / closed pipe to a worker (OSError, EOFError).
WORKER_DEATH = (RuntimeError, OSError, EOFError)


def stop_requested(ctx, step: int, epoch_end: bool) -> bool:
    """Whether to stop after ``step`` (1-based, counted over the stage): a stop signal arrived.
    Under DDP it is agreed by every rank (one all-reduce and host sync) only every
    ``ctx.stop_check_every`` steps and at ``epoch_end``; between those it is False on every rank,
    so all ranks stop after the same step."""
    flag = ctx.stop_signal is not None
    if not ctx.dist.enabled:
        return flag
    if step % max(ctx.stop_check_every, 1) and not epoch_end:
        return False
    return bool(all_reduce_max(torch.tensor(int(flag), device=ctx.device), ctx.dist).item())


def signal_stop(stage: str, name: str | None, epoch: int, step: int, ckpt: Path) -> RunStopped:
    """The stop after a checkpoint at a step boundary: 143 for SIGTERM, 130 for SIGINT (Ctrl-C).
    ``epoch`` counts from 1."""
    name = name or "SIGTERM"
    if name == "SIGINT":
        return RunStopped(f"[{stage}] interrupted in {stage} at epoch {epoch} step {step} (Ctrl-C); checkpoint "
                          f"'{ckpt}' written: rerun the same command to resume exactly there", SIGINT_EXIT)
    return RunStopped(f"[{stage}] stopped by {name} at epoch {epoch} step {step}; checkpoint '{ckpt}' written. "
                      "Rerun the same command to resume exactly there.", SIGTERM_EXIT)


def mid_step_stop(stage: str, name: str, epoch: int, step: int, ckpt: Path) -> RunStopped:
    """A stop signal whose DataLoader-worker deaths broke off step ``step`` (1-based): no
    checkpoint of the half-done step, the last one is kept."""
    return RunStopped(f"[{stage}] stopped by {name} during step {step} of epoch {epoch} (its DataLoader workers "
                      f"died of the signal); the last checkpoint '{ckpt}' is kept: rerun the same command to "
                      "resume from it", SIGINT_EXIT if name == "SIGINT" else SIGTERM_EXIT)


def weight_health(model: nn.Module, opt: torch.optim.Optimizer, dist: DistInfo) -> tuple[bool, float]:
    """(every parameter and floating optimizer-state tensor finite, largest |parameter|), agreed by
    all ranks: fused max-abs norms (NaN and Inf propagate, large finite values do not overflow)
    and one host sync. The largest |parameter| is 0.0 when something is non-finite."""
    params = [p.detach() for p in model.parameters()]
    state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.is_floating_point()]
    device = params[0].device if params else torch.device("cpu")
    zero = torch.zeros((), device=device)
    p_max = nn.utils.get_total_norm(params, norm_type=float("inf")).float() if params else zero
    s_max = nn.utils.get_total_norm(state, norm_type=float("inf")).float().to(device) if state else zero
    finite = torch.isfinite(p_max) & torch.isfinite(s_max)
    packed = torch.stack([(~finite).float(), torch.where(finite, p_max, zero)])
    bad, largest = all_reduce_max(packed, dist).tolist()
    return not bad, largest


def nonfinite_stop(stage: str, extra: dict, ckpt: Path, bad_step: int, steps_per_epoch: int, lr: float,
                   what: str = "the loss became non-finite (NaN or Inf) at", loss: bool = True) -> RunStopped:
    """Exit 1 with advice that works. ``bad_step`` (1-based) is the step whose loss (``loss``)
    or update (not ``loss``) went wrong. A kept checkpoint of step ``bad_step - 1`` holds the very
    weights that gave the non-finite loss: continuing it would fail again at the same batch, so the
    advice is then to delete it and restart the stage."""
    advice = (f"Lower {stage}.lr (or {stage}.weight_decay, or check the input data for NaN/Inf), then continue "
              f"with the same command plus '{stage}.lr=<lower> run.resume=force'.")
    kept = "no checkpoint of this stage was written yet, so it restarts from its beginning"
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("stage") == stage and state.get("extra") == extra:
            kept = f"the last good checkpoint '{ckpt}' (step {state['step']}) is kept and continued from"
            if loss and state["step"] == bad_step - 1:
                kept = (f"the last good checkpoint '{ckpt}' (step {state['step']}) is kept, but it holds the very "
                        f"weights that gave this loss, before any update with any lr: continuing it fails again at "
                        f"the same batch, so it cannot be continued")
                advice = (f"Restart the stage from its beginning: delete '{ckpt}' and rerun the same command plus "
                          f"'{stage}.lr=<lower> run.resume=force' (a lower {stage}.lr, or {stage}.weight_decay).")
    epoch = (bad_step - 1) // max(steps_per_epoch, 1) + 1
    return RunStopped(f"[{stage}] {what} epoch {epoch}, step {bad_step} (lr {lr:.3g}); training stopped and "
                      f"nothing non-finite was saved: {kept}. {advice}", 1)
