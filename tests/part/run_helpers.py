"""Runs of the digits demo for the fault and signal tests: in this process (`here`, one torch
thread) or as a subprocess (`start`), and what their metrics.jsonl says."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_main
from part.training.rundir import read_metrics
from part.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "digits_demo.yaml"
TINY = ["model.dim=32", "model.depth=2", "model.heads=4", "run.log_every=1", "run.device=cpu",
        "data.limit_test=100", "method.num_pairs=32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(out, *overrides):
    return [sys.executable, "-m", "part.train", str(RECIPE), f"run.output_dir={out}", *TINY, *overrides]


def here(out, *overrides):
    """`python -m part.train RECIPE run.output_dir=OUT ...` run in this process (one torch thread,
    as OMP_NUM_THREADS=1 gives the subprocesses): .returncode, .stdout, .stderr."""
    return run_main(train_main, command(out, *overrides)[3:])


def start(out, *overrides, new_session=False):
    return subprocess.Popen(command(out, *overrides), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=new_session)


def wait_for_steps(run, n, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if len([r for r in read_metrics(run / "metrics.jsonl") if "event" not in r]) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach {n} steps: {proc.poll()}")


def step_losses(run, stage="pretrain"):
    return [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl")
            if r["stage"] == stage and "event" not in r]


def epoch_losses(run, stage="pretrain"):
    """The epoch_end lines: (epoch, step, mean loss of the epoch's steps)."""
    return [(r["epoch"], r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl")
            if r["stage"] == stage and r.get("event") == "epoch_end"]


def assert_same_epoch_losses(reference, resumed):
    """Every epoch_end line of a resumed run equals the uninterrupted run's (all its steps, not
    only those after the resume)."""
    assert [(e, s) for e, s, _ in resumed] == [(e, s) for e, s, _ in reference]
    for (e, _, a), (_, _, b) in zip(reference, resumed):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7), (e, a, b)


def assert_resumed_equals(reference_steps, reference_epochs, run):
    """The resumed run in ``run`` logged steps 1..30 once each, every step loss and every
    epoch_end line equal to the uninterrupted run's."""
    resumed = step_losses(run)
    assert [s for s, _ in resumed] == list(range(1, 31))
    for (s, a), (_, b) in zip(reference_steps, resumed):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7), s
    assert_same_epoch_losses(reference_epochs, epoch_losses(run))


LONG = ["pretrain.epochs=3", "data.limit_train=320", "pretrain.batch_size=32", "run.stages=[pretrain]",
        "model.depth=4", "model.dim=64"]
