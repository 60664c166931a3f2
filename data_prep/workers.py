"""Parallel per-record jobs for data preparation: a process pool whose workers die with the
process that started them, with a progress bar and one failure line per lost worker."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

from tqdm.auto import tqdm


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: the worker dies with the process that started it (a parent killed
    with SIGKILL cannot clean up its pool). Linux: the kernel sends SIGKILL on the parent's
    death (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls the parent PID. Records are
    written atomically and the manifest only by the parent, so nothing is left half-written."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl failed")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def run_jobs(job: Callable, todo: Sequence, workers: int, progress: bool, desc: str) -> Iterator[tuple]:
    """Yield ``job(item)`` for each item of ``todo`` (items have a ``name``; ``job`` is picklable
    and returns ``(name, info, reason)``), in-process for one worker, else in a process pool.
    A worker that died yields ``(name, None, reason)`` for its item."""
    show = progress and bool(todo)
    bar = tqdm(total=len(todo), desc=desc, unit="rec", disable=not show, file=sys.stderr)
    try:
        if workers <= 1 or len(todo) <= 1:
            for source in todo:
                yield job(source)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(job, s): s.name for s in todo}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool:
                    name = futures[future]
                    reason = ("its worker process died (killed or out of memory); rerun to retry, "
                              "with fewer --workers")
                    yield name, None, f"{name}: {reason}"
                bar.update()
    finally:
        bar.close()
