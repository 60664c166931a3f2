"""Running a validated recipe in its run directory: device, DDP, the run-directory check, seeds,
and the stages in order (``part.training.stages``). ``python -m part.train`` is its CLI."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from part.config import load_recipe, recipe_differences, recipe_hash, save_resolved
from part.errors import ConfigError
from part.training.distributed import barrier, init_distributed, shutdown
from part.training.engine import RunContext
from part.training.stages import Pipeline, evaluate, finetune, pretrain


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device=cuda but no CUDA device is visible; use run.device=cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def check_run_dir(recipe, run_dir: Path) -> None:
    """Refuse a run directory that holds another recipe's run (or any run, with resume=never)."""
    config = run_dir / "config.yaml"
    started = (run_dir / "metrics.jsonl").exists() or any((run_dir / "checkpoints").glob("*.pt"))
    if not config.exists() or not started:
        return  # nothing trained there yet (e.g. an earlier attempt stopped on bad data)
    if recipe.run.resume == "never":
        raise ConfigError(f"run directory '{run_dir}' already holds a run and run.resume=never; choose "
                          f"another run.name or run.output_dir, or delete that directory")
    old = load_recipe(config, ())
    if recipe_hash(old) != recipe_hash(recipe):
        diff = "; ".join(recipe_differences(old, recipe)[:6])
        raise ConfigError(f"run directory '{run_dir}' holds a run of a different recipe ({diff}); nothing was "
                          f"changed there. Choose another run.name, or delete the directory to start over")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(recipe) -> dict:
    """Run a validated recipe; returns the evaluation metrics (empty if not evaluated)."""
    device = resolve_device(recipe.run.device)
    dist_info = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    run_dir = Path(recipe.run.output_dir) / recipe.run.name
    check_run_dir(recipe, run_dir)
    if dist_info.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_resolved(recipe, run_dir / "config.yaml")
    barrier(dist_info)
    precision = recipe.run.precision
    amp = torch.bfloat16 if precision == "bf16" or (precision == "auto" and device.type == "cuda") else None
    ctx = RunContext(run_dir, device, dist_info, amp, recipe.run.compile, recipe.run.num_workers,
                     recipe.run.log_every, recipe.run.checkpoint_every, recipe.run.seed, recipe_hash(recipe),
                     _tensorboard(run_dir, dist_info.is_main), progress=sys.stderr.isatty())
    seed_everything(recipe.run.seed + dist_info.rank)
    ctx.say(f"run directory: {run_dir} | device {device} x {dist_info.world_size} process(es) | "
            f"precision {'bf16' if amp else 'fp32'} | stages {', '.join(recipe.run.stages)}")
    pipe, metrics = Pipeline(recipe, ctx), {}
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
        barrier(dist_info)
    shutdown(dist_info)
    return metrics


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
