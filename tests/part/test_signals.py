"""SIGTERM and Ctrl-C on a running training (README "Faults and resuming"): a checkpoint at a
step boundary, one line, exit 143 / 130, and a rerun whose losses equal an uninterrupted run's,
also when the signal reaches the whole process group with DataLoader workers (scancel)."""
import os
import signal
import time

import pytest

from part.training.checkpoint import load_checkpoint
from run_helpers import LONG, assert_resumed_equals, epoch_losses, here, start, step_losses, wait_for_steps


# ----------------------------------------------------------------------------- 4. signals

def test_sigterm_checkpoints_at_a_step_and_resumes_exactly(tmp_path):
    assert here(tmp_path / "a", *LONG).returncode == 0
    reference = step_losses(tmp_path / "a" / "digits_demo")
    reference_epochs = epoch_losses(tmp_path / "a" / "digits_demo")
    run = tmp_path / "b" / "digits_demo"
    proc = start(tmp_path / "b", *LONG)
    wait_for_steps(run, 12, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM at epoch" in err and "Traceback" not in err
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 12 <= stopped_at < 30 and stopped_at % 10 != 0  # a mid-epoch step, not an epoch end
    epoch = stopped_at // 10 + 1  # 10 steps an epoch; messages count epochs from 1
    assert f"stopped by SIGTERM at epoch {epoch} step {stopped_at};" in err
    rerun = here(tmp_path / "b", *LONG)
    assert rerun.returncode == 0
    assert f"resumed from {run / 'checkpoints' / 'last.pt'} in epoch {epoch}/3, after step {stopped_at}" in rerun.stdout
    assert_resumed_equals(reference, reference_epochs, run)


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    run = tmp_path / "digits_demo"
    proc = start(tmp_path, *LONG)
    wait_for_steps(run, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted in pretrain at epoch" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig,code,line", [(signal.SIGTERM, 143, "stopped by SIGTERM at epoch"),
                                           (signal.SIGINT, 130, "interrupted in pretrain at epoch")])
def test_a_signal_to_the_process_group_with_workers_checkpoints_and_resumes_exactly(tmp_path, sig, code, line):
    """scancel / Ctrl-C in a shell signal the whole process group: with run.num_workers=2 the
    workers get it too (they ignore it; should one die, that is the stop, not a DataLoader
    failure): a checkpoint at a step boundary, one line, exit 143 (130 for SIGINT), no process
    left, and the rerun's step and epoch_end losses equal an uninterrupted run's."""
    workers = [*LONG, "run.num_workers=2"]
    assert here(tmp_path / "a", *workers).returncode == 0
    reference = step_losses(tmp_path / "a" / "digits_demo")
    reference_epochs = epoch_losses(tmp_path / "a" / "digits_demo")
    run = tmp_path / "b" / "digits_demo"
    proc = start(tmp_path / "b", *workers, new_session=True)  # setsid: its own process group
    wait_for_steps(run, 12, proc)
    os.killpg(proc.pid, sig)  # kill -TERM -- -PGID
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert line in err and "DataLoader worker" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    deadline = time.time() + 30
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "a process of the run's group outlived it"
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 12 <= stopped_at < 30 and f"step {stopped_at}" in err
    assert here(tmp_path / "b", *workers).returncode == 0
    assert_resumed_equals(reference, reference_epochs, run)


def test_a_sigchld_pending_with_the_sigterm_prints_nothing(monkeypatch):
    """The flaky case of the process-group SIGTERM: the workers' SIGCHLD is already pending when
    the SIGTERM handler runs (both arrived during a backward pass). Blocking both signals makes
    that order certain: the SIGTERM is the stop, and the SIGCHLD neither raises PyTorch's worker
    error nor prints Python's 'Signal 17 ignored due to race condition' traceback."""
    import sys
    from types import SimpleNamespace
    from part.training.runner import _signals

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def dataloader_handler(signum, frame):  # what PyTorch's SIGCHLD handler does when a worker died
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
    previous = signal.signal(signal.SIGCHLD, dataloader_handler)
    ctx = SimpleNamespace(stop_signal=None, training=True, position={})
    both = {signal.SIGTERM, signal.SIGCHLD}
    try:
        with _signals(ctx):
            signal.pthread_sigmask(signal.SIG_BLOCK, both)
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                child = os.fork()
                if child == 0:
                    os._exit(0)
                os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)  # dead, SIGCHLD pending, not reaped
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both handlers run here, SIGTERM's first
            os.waitpid(child, 0)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert ctx.stop_signal == "SIGTERM"
    assert [str(u.exc_value) for u in unraisable] == []
