"""Shared test helpers: where the real test data lives (`../shared/data`, beside the checkout,
as CI lays it out) and a skip marker for tests that need it."""
from pathlib import Path
from types import SimpleNamespace

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def requires_shared(*relative: str):
    """Skip unless every `SHARED_DATA / relative` path exists, naming the first missing one."""
    missing = [SHARED_DATA / r for r in relative if not (SHARED_DATA / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"real test data not found: {missing[0] if missing else ''} "
                                                    f"(CI puts shared/ beside the clone)")



def run_main(main, argv, threads: int | None = 1) -> SimpleNamespace:
    """Call a CLI's ``main(argv)`` in this process, as ``subprocess.run`` would run the command,
    without the seconds a fresh interpreter spends importing torch: returns ``.returncode``,
    ``.stdout`` and ``.stderr``. torch runs on ``threads`` threads (1, what ``OMP_NUM_THREADS=1``
    gives a subprocess, so losses match a subprocess's bit for bit; None: as set); the global RNG states and the
    thread count are restored afterwards. An exception escaping ``main`` (a traceback in a
    subprocess) fails the calling test."""
    import contextlib
    import io
    import random

    import numpy as np
    import torch

    out, err = io.StringIO(), io.StringIO()
    saved = random.getstate(), np.random.get_state(), torch.get_num_threads()
    torch.set_num_threads(threads or saved[2])
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_num_threads(saved[2])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
