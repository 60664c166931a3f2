"""Shared test helpers: where the real test data lives (`../shared/data`, beside the checkout,
as CI lays it out) and a skip marker for tests that need it; one torch thread per test; CLIs run
in this process (`run_main`)."""
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Subprocesses the tests start (python -m part.train ...) inherit one OpenMP thread, as this
# process uses one (below); a CI's own setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Each test starts with torch on one thread. The tests' models are tiny, and on a busy 2-core
    machine two OpenMP threads wait on each other: 50 steps of a tiny ViT took 70 s on 2 threads,
    2 s on 1 (same losses). A test may still set its own count; the next one starts at 1 again."""
    import torch

    torch.set_num_threads(1)
    yield


def requires_shared(*relative: str):
    """Skip unless every `SHARED_DATA / relative` path exists, naming the first missing one."""
    missing = [SHARED_DATA / r for r in relative if not (SHARED_DATA / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real test data not found: {missing[0] if missing else ''} "
                                                    f"(CI puts shared/ beside the clone)")



def run_main(main, argv) -> SimpleNamespace:
    """Call a CLI's ``main(argv)`` in this process, as ``subprocess.run`` would run the command,
    without the seconds a fresh interpreter spends importing torch: returns ``.returncode``,
    ``.stdout`` and ``.stderr``. torch runs on one thread (as a subprocess with OMP_NUM_THREADS=1,
    so losses match such a subprocess's bit for bit); the global RNG states and the thread count
    are restored afterwards. An exception escaping ``main`` (a traceback in a subprocess) fails
    the calling test, and so do child processes (DataLoader workers) still alive once ``main`` has
    returned: they would keep a real process from exiting (they are killed, not left to hang
    pytest's exit)."""
    import contextlib
    import gc
    import io
    import multiprocessing
    import random

    import numpy as np
    import torch

    out, err = io.StringIO(), io.StringIO()
    children = set(multiprocessing.active_children())
    saved = random.getstate(), np.random.get_state(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_num_threads(saved[2])
    left = [p for p in multiprocessing.active_children() if p not in children]
    if left:
        gc.collect()  # a DataLoader iterator held by a traceback's frames shuts its workers down
        for p in left:
            p.join(timeout=10)
        alive = [p for p in left if p.is_alive()]
        for p in alive:
            p.kill()
            p.join()
        assert not alive, f"main({argv}) returned {code} with child processes alive: {alive}"
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def prepare_synthetic_pc18(base, records: int, n_test: int, n_finetune: int):
    """``part-prepare-pc18 --synthetic RECORDS`` into ``base/raw`` -> ``base/prep`` (in this
    process, one worker); returns the prepared folder."""
    from part.data_prep.physionet2018 import main as prepare_main
    args = ["--synthetic", str(records), "--src", base / "raw", "--out", base / "prep", "--n-test", str(n_test),
            "--n-finetune", str(n_finetune), "--workers", "1", "--no-progress"]
    res = run_main(prepare_main, args)
    assert res.returncode == 0, res.stderr[-2000:]
    return base / "prep"
