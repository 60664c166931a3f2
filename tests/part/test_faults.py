"""Faults a long run must survive (docs: README "Faults and resuming"): a second start on the same
run directory, non-finite losses, torn bookkeeping files, SIGTERM / SIGINT, unwritable outputs,
empty recipes, errors inside DataLoader workers, stages checked before anything runs (signals:
test_signals.py).

A fresh interpreter spends seconds importing torch, so runs that need no process of their own
call `part.train.main` in this process (`here`); subprocesses are kept where the process is the
point: signals, a second process on a running directory, DataLoader worker processes."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from conftest import run_main
from part.config.schema import OptimConfig
from part.errors import DataError, RunStopped, user_message
from part.training.checkpoint import load_checkpoint
from part.training.distributed import DistInfo
from part.training.engine import RunContext, TrainSpec, train
from part.training.rundir import RunDirLock, finished_stages, read_metrics, truncate_metrics
from part.train import main as train_main

from run_helpers import ENV, LONG, ROOT, command, here, start, step_losses, wait_for_steps


# ----------------------------------------------------------------------------- 1. one run per directory

def test_second_start_on_a_running_directory_fails_at_once(tmp_path):
    run = tmp_path / "digits_demo"
    first = start(tmp_path, *LONG[1:], "pretrain.epochs=100")  # far longer than this test
    try:
        wait_for_steps(run, 2, first)
        t0 = time.time()
        second = here(tmp_path, *LONG[1:], "pretrain.epochs=100")
        assert time.time() - t0 < 60
        assert second.returncode == 2, second.stderr
        assert f"run directory '{run}' is in use by another run (process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 143
    steps = [s for s, _ in step_losses(run)]
    assert steps == list(range(1, len(steps) + 1))  # written once, by the run holding the lock


def test_lock_is_released_with_its_process(tmp_path):
    with RunDirLock(tmp_path):
        with pytest.raises(Exception, match=f"in use by another run \\(process {os.getpid()}"):
            RunDirLock(tmp_path).acquire()
    RunDirLock(tmp_path).acquire().release()  # free again once released (or its process died)


# ----------------------------------------------------------------------------- 2. non-finite losses

def _engine_run(tmp_path, loss_at, epochs=2, checkpoint_every=2, log_every=100, on_step=None):
    """Train nn.Linear on 32 items (batch 4: 8 steps / epoch) with a loss that is NaN at the
    steps in ``loss_at`` (1-based); ``on_step(model, step, total)`` runs before each step."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = TensorDataset(torch.randn(32, 3), torch.randn(32, 1))
    calls = {"n": 0}

    def loss_fn(m, batch, device):
        calls["n"] += 1
        loss = (m(batch[0]) - batch[1]).pow(2).mean()
        return (loss * float("nan") if calls["n"] in loss_at else loss), {}
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    ctx = RunContext(tmp_path, torch.device("cpu"), DistInfo(), log_every=log_every,
                     checkpoint_every=checkpoint_every, progress=False)
    spec = TrainSpec("pretrain", model, loss_fn, data, OptimConfig(epochs=epochs, batch_size=4, lr=1e-2),
                     on_step=on_step)
    return train(spec, ctx), ctx


def test_nan_at_a_non_logging_step_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(RunStopped) as info:
        _engine_run(tmp_path, loss_at={5}, checkpoint_every=2, log_every=100)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "non-finite (NaN or Inf) at epoch 1, step 5 (lr " in message
    assert "pretrain.lr=<lower> run.resume=force" in message
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 4 and "(step 4) is kept" in message  # the step-6 save was refused
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("nan_at,continued", [(5, False), (6, True)])
def test_a_checkpoint_whose_weights_gave_the_nan_is_not_advised_to_be_continued(tmp_path, nan_at, continued):
    """The checkpoint of step 4 holds the weights that computed step 5's loss (same batch, same
    random state on resume): a NaN there recurs at any lr, so the advice is to restart the stage;
    a NaN at step 6 came after an update that a lower lr changes: continue."""
    with pytest.raises(RunStopped) as info:
        _engine_run(tmp_path, loss_at={nan_at}, checkpoint_every=2, log_every=100)
    message, ckpt = str(info.value), tmp_path / "checkpoints" / "last.pt"
    assert load_checkpoint(ckpt)["step"] == 4 and "(step 4) is kept" in message
    restart = (f"so it cannot be continued. Restart the stage from its beginning: delete '{ckpt}' and rerun the same "
               "command plus 'pretrain.lr=<lower> run.resume=force'")
    assert (restart in message) is not continued
    assert ("(step 4) is kept and continued from. Lower pretrain.lr" in message) is continued


def test_weights_beyond_the_bound_are_never_checkpointed(tmp_path):
    """Finite weights of |w| 1e5 (an overflow on its way) are refused at the step-6 save: the
    step-4 checkpoint is kept, and the message states the bound."""
    def blow_up(model, step, total):
        if step == 4:  # before the 5th step
            with torch.no_grad():
                model.weight.mul_(1e5).add_(1e5)
    with pytest.raises(RunStopped) as info:
        _engine_run(tmp_path, loss_at=set(), checkpoint_every=2, on_step=blow_up)
    message = str(info.value)
    assert info.value.exit_code == 1
    assert "beyond run.max_abs_weight=10000 that no healthy run reaches" in message
    assert "after the update of epoch 1, step 6 (lr " in message and "nothing non-finite was saved" in message
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 4 and "(step 4) is kept and continued from" in message
    assert max(v.abs().max().item() for v in state["model"].values()) < 1e4


def test_nan_in_the_first_steps_writes_no_checkpoint(tmp_path):
    with pytest.raises(RunStopped, match="no checkpoint of this stage was written yet"):
        _engine_run(tmp_path, loss_at={1}, checkpoint_every=0)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_non_finite_weights_are_never_checkpointed_and_the_advice_works(tmp_path):
    """An update that overflows the weights while its loss was finite: the step-2 save is refused
    (no checkpoint with NaN/Inf weights or optimizer state), and the advised rerun with a lower lr
    and run.resume=force trains to the end."""
    bad = ["pretrain.lr=10", "pretrain.weight_decay=10", "pretrain.warmup_epochs=1", "pretrain.base_batch_size=1",
           "run.checkpoint_every=2", "pretrain.epochs=2", "run.stages=[pretrain]", "data.limit_train=64",
           "pretrain.batch_size=16"]
    res = here(tmp_path, *bad)
    run = tmp_path / "digits_demo"
    assert res.returncode == 1, res.stderr
    assert "non-finite (NaN or Inf)" in res.stderr and "nothing non-finite was saved" in res.stderr
    assert "'pretrain.lr=<lower> run.resume=force'" in res.stderr and "Traceback" not in res.stderr
    last = run / "checkpoints" / "last.pt"
    if last.exists():  # whatever is kept is finite, weights and optimizer state
        state = load_checkpoint(last)
        tensors = [*state["model"].values(), *(v for s in state["optimizer"]["state"].values()
                                                for v in s.values() if torch.is_tensor(v))]
        assert all(torch.isfinite(v).all() for v in tensors if v.is_floating_point())
    fixed = here(tmp_path, *bad, "pretrain.lr=0.001", "pretrain.weight_decay=0.05", "run.resume=force")
    assert fixed.returncode == 0, fixed.stderr
    assert "pretrain" in finished_stages(run)
    steps = [s for s, _ in step_losses(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # 2 epochs x 4 steps, each logged once


def test_finite_weights_check_sees_the_optimizer_state(tmp_path):
    from part.training.stopping import weight_health

    def _finite_state(model, opt, ctx):
        return weight_health(model, opt, ctx.dist)[0]
    model = nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    ctx = RunContext(tmp_path, torch.device("cpu"), DistInfo())
    assert _finite_state(model, opt, ctx)
    with torch.no_grad():
        next(iter(opt.state.values()))["exp_avg_sq"].fill_(float("inf"))
    assert not _finite_state(model, opt, ctx)
    opt.state.clear()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert not _finite_state(model, opt, ctx)
    with torch.no_grad():
        model.weight.fill_(1e30)  # huge but finite: no overflow of a sum of squares
    assert _finite_state(model, opt, ctx)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "/abs/run", "a\\b", "C:run"])
def test_a_run_name_that_is_not_a_plain_folder_name_is_refused_before_anything_is_created(tmp_path, name):
    """run.name=../../x would write two levels above run.output_dir, an absolute name ignore it."""
    out = tmp_path / "out" / "runs"
    res = here(out, f"run.name={name}", "run.stages=[pretrain]", "pretrain.epochs=1", "data.limit_train=64")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"'run.name' = {name!r} is not a plain folder name" in res.stderr
    assert "put the folder part in run.output_dir" in res.stderr
    assert list(tmp_path.rglob("*")) == []  # nothing created, not even run.output_dir
    assert not Path("/abs").exists()


def test_a_plain_run_name_is_accepted_and_an_empty_one_refused():
    from part.config.schema import RunConfig
    from part.errors import ConfigError
    assert RunConfig(name="run-1.v2_a b").name == "run-1.v2_a b"  # dots, dashes, spaces inside: one folder
    for empty in ("", "  "):
        with pytest.raises(ConfigError, match=f"'run.name' = {empty!r} is not a plain folder name"):
            RunConfig(name=empty)


def test_lr_above_10_is_refused(tmp_path):
    res = here(tmp_path, "pretrain.lr=1e30")
    assert res.returncode == 2 and "'pretrain.lr' = 1.0e+30 is out of range; allowed: > 0 and <= 10" in res.stderr


def test_items_per_s_counts_the_steps_since_the_last_log(tmp_path, monkeypatch):
    clock = iter(range(10_000))
    monkeypatch.setattr("part.training.engine.time.perf_counter", lambda: float(next(clock)))
    _engine_run(tmp_path, loss_at=set(), epochs=1, checkpoint_every=0, log_every=3)  # 8 steps
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "event" not in r]
    assert [r["step"] for r in rows] == [3, 6, 8]
    # one clock tick between logs: rate = steps since the last log x batch 4
    assert [r["items_per_s"] for r in rows][1:] == [12.0, 8.0]


# ----------------------------------------------------------------------------- force: continue with new settings

def test_changed_optimisation_keys_need_force_and_are_recorded(tmp_path):
    base = ["pretrain.epochs=1", "run.stages=[pretrain]", "data.limit_train=64", "pretrain.batch_size=32"]
    assert here(tmp_path, *base).returncode == 0
    refused = here(tmp_path, *base, "pretrain.epochs=2")
    assert refused.returncode == 2 and "add run.resume=force" in refused.stderr
    other_model = here(tmp_path, *base, "model.depth=3", "run.resume=force")
    assert other_model.returncode == 2 and "not with these" in other_model.stderr
    forced = here(tmp_path, *base, "pretrain.epochs=2", "run.resume=force")
    assert forced.returncode == 0, forced.stderr
    run = tmp_path / "digits_demo"
    assert "# history: " in (run / "config.yaml").read_text()
    assert "pretrain.epochs: 1 -> 2" in (run / "config.yaml").read_text()
    assert [s for s, _ in step_losses(run)] == [1, 2, 3, 4]  # continued from step 2 to step 4


# ----------------------------------------------------------------------------- 3. torn files

def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"stage": "pretrain", "step": 1, "loss": 1.0}\n{"stage": "pretrain", "step": 2, "lo')
    truncate_metrics(path, "pretrain", 5)
    assert "dropped a torn last line" in capsys.readouterr().out
    assert read_metrics(path) == [{"stage": "pretrain", "step": 1, "loss": 1.0}]
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_metrics(path)


def test_a_stage_that_restarts_drops_its_earlier_metrics(tmp_path):
    """After the advice for a truncated last.pt (delete it, rerun), the stage restarts from step 1:
    its earlier lines go, the other stages' stay, and no step appears twice."""
    base = ["pretrain.epochs=2", "run.stages=[pretrain]", "data.limit_train=64", "pretrain.batch_size=16",
            "run.checkpoint_every=3"]
    assert here(tmp_path, *base, "pretrain.epochs=1").returncode == 0  # 4 steps logged
    run = tmp_path / "digits_demo"
    (run / "state.json").unlink()  # the advice for a damaged state.json: the stage runs again
    (run / "checkpoints" / "last.pt").write_bytes(b"torn")
    res = here(tmp_path, *base, "pretrain.epochs=1")
    assert res.returncode == 2 and "delete it and rerun the same command" in res.stderr
    assert "run.resume=never" not in res.stderr
    (run / "checkpoints" / "last.pt").unlink()  # the advice for the truncated checkpoint
    assert here(tmp_path, *base, "pretrain.epochs=1").returncode == 0
    assert [s for s, _ in step_losses(run)] == [1, 2, 3, 4]


def test_finetune_repeats_keep_each_others_metrics(tmp_path):
    rows = [{"stage": "finetune", "repeat": 0, "step": s} for s in (1, 2, 3)]
    rows += [{"stage": "finetune", "repeat": 1, "step": s} for s in (1, 2, 3)] + [{"stage": "pretrain", "step": 9}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    truncate_metrics(path, "finetune", 1, {"repeat": 1})
    kept = [(r["stage"], r.get("repeat"), r["step"]) for r in read_metrics(path)]
    assert kept == [("finetune", 0, 1), ("finetune", 0, 2), ("finetune", 0, 3), ("finetune", 1, 1),
                    ("pretrain", None, 9)]


def test_damaged_state_json_names_the_file(tmp_path):
    (tmp_path / "state.json").write_text('{"done": ["pretr')
    with pytest.raises(DataError, match=r"state\.json' is unreadable .*delete it and rerun"):
        finished_stages(tmp_path)
    base = ["pretrain.epochs=1", "run.stages=[pretrain]", "data.limit_train=64", "pretrain.batch_size=32"]
    assert here(tmp_path / "cli", *base).returncode == 0
    (tmp_path / "cli" / "digits_demo" / "state.json").write_text("{")
    res = here(tmp_path / "cli", *base)
    assert res.returncode == 2 and "state.json' is unreadable" in res.stderr
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- 6-10. inputs checked first

def test_a_run_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "digits_demo").write_text("not a directory")
    res = here(tmp_path, "pretrain.epochs=1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"the run directory '{tmp_path / 'digits_demo'}' (run.output_dir/run.name) is a file" in res.stderr
    assert (tmp_path / "digits_demo").read_text() == "not a directory"


def test_every_differing_key_is_named_or_counted(tmp_path, monkeypatch):
    """The refusal names what refuses the run first (model / method / data keys) and counts what
    it does not show, so a changed method.name can never hide behind a list of lr changes."""
    base = ["pretrain.epochs=1", "run.stages=[pretrain]", "data.limit_train=64", "pretrain.batch_size=32"]
    assert here(tmp_path, *base).returncode == 0
    monkeypatch.setattr("part.training.rundir.MAX_SHOWN", 3)
    changed = [*base, "pretrain.lr=0.002", "pretrain.min_lr=1e-7", "pretrain.weight_decay=0.01", "finetune.lr=0.002",
               "finetune.min_lr=1e-7", "method.name=part_grid"]
    message = here(tmp_path, *changed).stderr
    assert message.index("method.name: 'part' -> 'part_grid'") < message.index("finetune.lr")  # what refuses first
    assert message.count(" -> ") == 3 and "; and 3 more differing keys" in message



def test_unwritable_output_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    res = here(blocker / "runs")
    assert res.returncode == 2 and "run.output_dir=" in res.stderr and "is not writable" in res.stderr
    assert "Traceback" not in res.stderr


def test_empty_recipe_is_an_error(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    res = run_main(train_main, [empty])
    assert res.returncode == 2 and "'data.name' is missing" in res.stderr


def test_stages_out_of_order_and_unknown_data_create_nothing(tmp_path):
    res = here(tmp_path, "run.stages=[evaluate,pretrain]")
    assert res.returncode == 2 and "'run.stages' = ['evaluate', 'pretrain'] is out of order" in res.stderr
    res = here(tmp_path, "data.name=nope")
    assert res.returncode == 2 and "unknown dataset 'nope'" in res.stderr
    res = here(tmp_path, "run.stages=[evaluate]")
    assert res.returncode == 2 and "evaluates finetuned weights that do not exist" in res.stderr
    assert not (tmp_path / "digits_demo").exists()


def test_dataloader_worker_error_is_our_message(tmp_path):
    from PIL import Image
    for split in ("train", "test"):
        for cls in ("a", "b"):
            folder = tmp_path / "images" / split / cls
            folder.mkdir(parents=True)
            for i in range(8):
                Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "images" / "train" / "a" / "9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    # a subprocess: the error arrives from worker processes, and the run must still exit
    res = subprocess.run(command(tmp_path / "runs", "data.name=imagefolder", f"data.root={tmp_path / 'images'}",
                                 "run.num_workers=2", "run.stages=[pretrain]", "pretrain.batch_size=17"),
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "9.jpg" in res.stderr and "Caught" not in res.stderr and "Traceback" not in res.stderr


def test_user_message_unwraps_worker_errors():
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most "
                        "recent call last):\n  File \"x.py\", line 1, in f\npart.errors.DataError: "
                        "cannot read image /d/9.jpg (bad); delete it")
    assert user_message(wrapped) == "cannot read image /d/9.jpg (bad); delete it"
    assert user_message(DataError("plain")) == "plain"
