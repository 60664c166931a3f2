"""The stop signal under DDP (README "Multi-GPU and multi-node"): agreed across ranks every
run.stop_check_every steps and at epoch ends, never with a host sync at every step; every rank
stops after the same step, and the resumed run equals an uninterrupted one, its step and
epoch_end lines. Two gloo processes on the CPU (torch.multiprocessing.spawn); the signal is
injected on rank 0 only, before a chosen step, through the stage's on_step hook."""
import datetime
import json
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from part.config.schema import OptimConfig
from part.errors import RunStopped
from part.training import stopping
from part.training.distributed import DistInfo
from part.training.engine import RunContext, TrainSpec, train
from part.training.rundir import read_metrics

EVERY = 4  # run.stop_check_every
SIGNAL_BEFORE = 6  # rank 0 receives SIGTERM before step 7 (epoch 2 holds steps 7..12)


def test_the_stop_flag_is_agreed_only_every_stop_check_every_steps_and_at_epoch_ends(monkeypatch):
    reduced = []

    def all_reduce_max(value, info):
        reduced.append(int(value))
        return value
    monkeypatch.setattr(stopping, "all_reduce_max", all_reduce_max)
    ctx = SimpleNamespace(stop_signal=None, dist=DistInfo(0, 2), device=torch.device("cpu"), stop_check_every=4)
    stops = [stopping.stop_requested(ctx, step, epoch_end=step == 10) for step in range(1, 11)]
    assert stops == [False] * 10 and len(reduced) == 3  # steps 4, 8 and the epoch end 10 only
    ctx.stop_signal = "SIGTERM"
    assert not stopping.stop_requested(ctx, 5, epoch_end=False) and len(reduced) == 3  # no sync between
    assert stopping.stop_requested(ctx, 12, epoch_end=False) and reduced[-1] == 1
    one = SimpleNamespace(stop_signal="SIGINT", dist=DistInfo(), device=torch.device("cpu"), stop_check_every=4)
    assert stopping.stop_requested(one, 5, epoch_end=False) and len(reduced) == 4  # one process: every step, no sync


def _train(root, run, info, signal_before=None):
    """nn.Linear on 48 items, global batch 8 = 2 x 4: 6 steps an epoch, 2 epochs."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(48, 3, generator=g), torch.randn(48, 1, generator=g))

    def loss_fn(m, batch, device):
        return (m(batch[0]) - batch[1]).pow(2).mean(), {}
    run_dir = root / run
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    ctx = RunContext(run_dir, torch.device("cpu"), info, log_every=1, progress=False, stop_check_every=EVERY)

    def on_step(model, step, total):
        if signal_before is not None and info.rank == 0 and step == signal_before:
            ctx.stop_signal = "SIGTERM"  # what the SIGTERM handler does, on one rank only
    spec = TrainSpec("pretrain", model, loss_fn, data, OptimConfig(epochs=2, batch_size=8, lr=1e-2), on_step=on_step)
    return train(spec, ctx)


def _ddp_worker(rank, root):
    from pathlib import Path
    root = Path(root)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))  # a mismatch fails, never hangs the suite
    info = DistInfo(rank, 2, 0)
    flags = []  # the stop agreements (0-d int64 all-reduces) of the uninterrupted run
    agree = stopping.all_reduce_max

    def counted(value, dist_info):
        if value.dtype == torch.int64 and value.dim() == 0:
            flags.append(int(value))
        return agree(value, dist_info)
    stopping.all_reduce_max = counted
    _train(root, "whole", info)
    stopping.all_reduce_max = agree
    try:
        _train(root, "stopped", info, signal_before=SIGNAL_BEFORE)
        stopped = None
    except RunStopped as exc:
        stopped = [exc.exit_code, str(exc)]
    dist.barrier()  # rank 0 has written the checkpoint (a rerun starts after every rank exited)
    _train(root, "stopped", info)  # the rerun resumes
    (root / f"rank{rank}.json").write_text(json.dumps({"agreements": len(flags), "stopped": stopped}))
    dist.destroy_process_group()


def _lines(run_dir):
    return [(r.get("event"), r["epoch"], r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl")]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this torch build")
def test_two_gloo_ranks_stop_after_the_same_step_and_resume_exactly(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 12 steps: agreements at steps 4, 6 (epoch end), 8 and 12 (epoch end), not at each step
    assert [r["agreements"] for r in ranks] == [4, 4]
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.pt"
    for r in ranks:  # rank 1 never saw the signal, yet stops after the same step as rank 0
        assert r["stopped"][0] == 143
        assert f"stopped by SIGTERM at epoch 2 step 8; checkpoint '{ckpt}' written" in r["stopped"][1]
    whole, resumed = _lines(tmp_path / "whole"), _lines(tmp_path / "stopped")
    assert [line[:3] for line in resumed] == [line[:3] for line in whole]  # 12 steps + 2 epoch_end lines
    assert len(whole) == 14
    for a, b in zip(whole, resumed):
        assert a[3] == pytest.approx(b[3], rel=1e-6, abs=1e-7), a
