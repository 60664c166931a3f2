"""One writer per directory: an OS file lock (``fcntl.flock``) on ``<directory>/.lock``.

Held for the whole job by the process that writes there (``part-train`` on its run directory,
``part-stage`` on its ``--out``); a second process is refused at once with one line naming the
holder (its PID, host and start time, written into the lock file). The OS drops the lock when
the holder dies, so a killed job never blocks its directory. Imports nothing heavy: a command
line takes the lock before it loads torch.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from part.errors import ConfigError

LOCK_NAME = ".lock"


class DirLock:
    """Exclusive lock on ``directory/.lock`` for the lifetime of the object (or ``with`` block).

    A second holder gets a ConfigError: ``<what> '<directory>' is in use by <by> (process <pid>
    on <host> since <time>); <advice>``."""

    def __init__(self, directory: Path, what: str = "directory", by: str = "another process",
                 advice: str = "wait for it to finish or stop it", remove: bool = False):
        self.path = Path(directory) / LOCK_NAME
        self.what, self.by, self.advice, self.remove = what, by, advice, remove
        self._fd = None

    def acquire(self) -> "DirLock":
        """Take the lock or raise the one-line ConfigError. With ``remove`` the lock file is
        deleted on release (while still locked), so a process that opened it just before takes
        a lock on a deleted file: the acquirer checks that the path is still its file and retries."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(f"{self.what} '{self.path.parent}' is in use by {self.by} (process {holder}); "
                                  f"{self.advice}") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file we had opened: open the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            if self.remove:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
