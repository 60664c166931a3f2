"""Running a validated recipe in its run directory: device, DDP, the run-directory check, seeds,
and the stages in order (``part.training.stages``). ``python -m part.train`` is its CLI."""
from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from part.config import recipe_hash
from part.errors import ConfigError, DataError, RunStopped
from part.inference import resolve_device
from part.registry import method_spec
from part.training.distributed import barrier, init_distributed, shutdown
from part.training.engine import RunContext
from part.training.rundir import (RunDirLock, check_run_dir, check_writable, unmark_finished,
                                  write_config)
from part.training.probe_stages import PROBE_STAGES, probe_stage
from part.training.stages import Pipeline, evaluate, finetune, finetuned_name, pretrain


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(recipe) -> dict:
    """Run a validated recipe; returns the evaluation metrics (empty if not evaluated).

    Order: output location writable -> data source and modality load -> stage inputs present ->
    run-directory lock -> same-recipe check -> config.yaml -> stages. Nothing is created in the run
    directory before the recipe and its data validate."""
    device = resolve_device(recipe.run.device, key="run.device")
    dist_info = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    run_dir = Path(recipe.run.output_dir) / recipe.run.name
    if dist_info.is_main:
        check_writable(run_dir.parent, "run.output_dir")
        if run_dir.exists() and not run_dir.is_dir():
            raise ConfigError(f"the run directory '{run_dir}' (run.output_dir/run.name) is a file, not a "
                              f"directory; choose another run.name or run.output_dir, or move that file away")
    precision = recipe.run.precision
    amp = torch.bfloat16 if precision == "bf16" or (precision == "auto" and device.type == "cuda") else None
    ctx = RunContext(run_dir, device, dist_info, amp, recipe.run.compile, recipe.run.num_workers,
                     recipe.run.log_every, recipe.run.checkpoint_every, recipe.run.seed, recipe_hash(recipe),
                     None, progress=sys.stderr.isatty(),
                     stop_check_every=recipe.run.stop_check_every or recipe.run.log_every,
                     max_abs_weight=recipe.run.max_abs_weight)
    pipe = Pipeline(recipe, ctx)
    pipe.modality(pipe.bundle(0))  # data and modality validate before the run directory exists
    if dist_info.is_main:
        check_stage_inputs(recipe, pipe)
    lock = RunDirLock(run_dir).acquire() if dist_info.is_main else None
    try:
        if dist_info.is_main:
            _prepare_run_dir(recipe, pipe, run_dir)
        barrier(dist_info)
        ctx.tb_writer = _tensorboard(run_dir, dist_info.is_main)
        with _signals(ctx):
            return _run_stages(recipe, pipe, ctx)
    finally:
        if lock is not None:
            lock.release()


def _prepare_run_dir(recipe, pipe: Pipeline, run_dir: Path) -> None:
    """Same-recipe check (force: record the changes and redo the stages they touch), then
    config.yaml."""
    changes, recorded = check_run_dir(recipe, run_dir)
    if changes:
        touched = {c.split(".")[0] for c in changes}
        redo = tuple(s for s in ("pretrain", "finetune") if s in touched)
        if redo or "evaluate" in touched:
            redo += ("finetune", "evaluate") if "pretrain" in redo else ("evaluate",)
            redo += PROBE_STAGES  # they read the checkpoints and the evaluate.* options
        forgotten = unmark_finished(run_dir, redo)
        print(f"run.resume=force: continuing '{run_dir}' with {'; '.join(changes)}"
              + (f"; redoing {', '.join(forgotten)}" if forgotten else ""), flush=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_config(recorded, run_dir, changes)


def check_stage_inputs(recipe, pipe: Pipeline) -> None:
    """Before any stage runs: each requested stage finds what the earlier ones leave behind."""
    stages, done = recipe.run.stages, pipe.done()
    if ("finetune" in stages and "pretrain" not in stages and "finetune:0" not in done
            and method_spec(recipe.method.name).pretrains and not pipe.ckpt("pretrain.pt").exists()):
        raise DataError(f"run.stages={stages} finetunes a '{recipe.method.name}' run but its "
                        f"pretrained weights '{pipe.ckpt('pretrain.pt')}' do not exist; add "
                        f"'pretrain' to run.stages, or use method.name=supervised")
    if (any(s in stages for s in PROBE_STAGES) and not method_spec(recipe.method.name).pretrains
            and "finetune" not in stages and not pipe.ckpt(finetuned_name(0)).exists()):
        raise DataError(f"run.stages={stages}: '{recipe.method.name}' has no pretraining, so its "
                        f"linear_probe / knn stages read the finetuned encoder "
                        f"'{pipe.ckpt(finetuned_name(0))}', which does not exist; add 'finetune' to run.stages")
    if (any(s in stages for s in PROBE_STAGES) and method_spec(recipe.method.name).pretrains
            and "pretrain" not in stages and not pipe.ckpt("pretrain.pt").exists()):
        raise DataError(f"run.stages={stages} probes the pretrained encoder of a '{recipe.method.name}' run, "
                        f"but '{pipe.ckpt('pretrain.pt')}' does not exist; add 'pretrain' to run.stages")
    if "evaluate" in stages and "finetune" not in stages:
        missing = [k for k in range(recipe.evaluate.repeats)
                   if not pipe.ckpt(finetuned_name(k)).exists()]
        if missing:
            raise DataError(f"run.stages={stages} evaluates finetuned weights that do not exist "
                            f"('{pipe.ckpt(finetuned_name(missing[0]))}'); add 'finetune' to "
                            f"run.stages")


def _run_stages(recipe, pipe: Pipeline, ctx: RunContext) -> dict:
    dist_info, metrics = ctx.dist, {}
    seed_everything(recipe.run.seed + dist_info.rank)
    ctx.say(f"run directory: {ctx.run_dir} | device {ctx.device} x {dist_info.world_size} process(es) | "
            f"precision {'bf16' if ctx.amp_dtype else 'fp32'} | stages {', '.join(recipe.run.stages)}")
    for stage in recipe.run.stages:
        done = pipe.done()
        if stage == "pretrain":
            _skip_or(ctx, "pretrain" in done, "[pretrain]", lambda: pretrain(pipe))
        elif stage == "finetune":
            for k in range(recipe.evaluate.repeats):
                def run_finetune(k=k):
                    seed_everything(recipe.run.seed + k + 1000 * dist_info.rank)
                    finetune(pipe, k)
                _skip_or(ctx, f"finetune:{k}" in done, f"[finetune] repeat {k}", run_finetune)
        elif stage == "evaluate":
            _skip_or(ctx, "evaluate" in done, "[evaluate]", lambda: metrics.update(evaluate(pipe)))
        elif stage in PROBE_STAGES:
            _skip_or(ctx, stage in done, f"[{stage}]",
                     lambda stage=stage: metrics.setdefault(stage, probe_stage(pipe, stage)))
        barrier(dist_info)
    shutdown(dist_info)
    return metrics


@contextlib.contextmanager
def _signals(ctx: RunContext):
    """SIGTERM, and a first Ctrl-C (SIGINT) during training steps, ask the training loop to
    checkpoint and stop at the next step boundary (exit 143 / 130). A second Ctrl-C, or one
    outside the training steps, interrupts at once: one line naming where the run stopped (exit
    130). The training DataLoader's workers ignore both signals (a signal to the whole process
    group, by scancel or a shell's Ctrl-C, is this process's to honour). Once a stop signal has
    arrived, workers that die anyway (other loaders' workers, a SIGKILL) are no failure: PyTorch's SIGCHLD
    handler, which would raise it as one at any point of a step, is replaced by one that does
    nothing (not by SIG_DFL: a SIGCHLD already pending when the SIGTERM is handled, e.g. both
    arriving during a backward pass, would then print Python's "Signal 17 ignored due to race
    condition" with a traceback), and the loop stops at its next batch."""
    if not _main_thread():
        yield
        return

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and (ctx.stop_signal is not None or not ctx.training):
            raise KeyboardInterrupt
        ctx.stop_signal = ctx.stop_signal or name
        signal.signal(signal.SIGCHLD, _ignore_signal)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    previous_chld = signal.getsignal(signal.SIGCHLD)
    try:
        yield
    except KeyboardInterrupt:
        where = ctx.position
        at = (f" in {where['stage']} at epoch {where['epoch']} step {where['step']}"
              if where else "")
        raise RunStopped(f"interrupted{at}; rerun the same command to resume from the last "
                         f"checkpoint", 130) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGCHLD, previous_chld if previous_chld is not None else signal.SIG_DFL)


def _ignore_signal(signum, frame) -> None:
    """A Python handler that does nothing (children are reaped by whoever started them)."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _skip_or(ctx: RunContext, finished: bool, what: str, work) -> None:
    """Run `work` unless that stage is already finished in this run directory."""
    if finished:
        ctx.say(f"{what} already finished; skipped (a new run.name redoes it)")
    else:
        work()


def _tensorboard(run_dir: Path, is_main: bool):
    if not is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: JSONL only
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
