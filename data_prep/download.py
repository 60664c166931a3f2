"""One generic, resumable, checksum-verified HTTP downloader for every dataset (urllib only).

``download_file`` streams ``url`` into ``<dest>.part``, resumes an existing partial file with an
HTTP ``Range`` request (and restarts from zero when the server ignores ``Range``), verifies the
checksum of the complete file and only then renames it to ``dest`` (``os.replace``, atomic). A
``dest`` that already exists with the right checksum is not fetched again. ``download_many``
runs several downloads in a thread pool behind one tqdm bar.

Failures raise :class:`DownloadError` (a :class:`part.errors.DataError`), whose message names the
URL, the destination, what was expected and what to do.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm.auto import tqdm

from part.errors import DataError

ALGOS = ("sha1", "md5", "sha256")
CHUNK = 1 << 20  # bytes read per call while streaming
USER_AGENT = "part-toolkit-downloader/0.1 (urllib)"
_PERMANENT_HTTP = {400, 401, 403, 404, 405, 410}  # not worth retrying


class DownloadError(DataError):
    """A download failed for good: bad URL, server error after retries, or checksum mismatch."""


@dataclass(frozen=True)
class DownloadItem:
    """One file to fetch: ``url`` into ``dest``, verified with ``checksum`` (hex) under ``algo``."""

    url: str
    dest: Path
    checksum: str | None = None
    algo: str = "sha1"


class _Restart(Exception):
    """The partial file cannot be resumed (e.g. HTTP 416): drop it and start from byte 0."""


def file_checksum(path: Path, algo: str = "sha1") -> str:
    """Hex digest of the file at ``path`` (read in 1 MiB chunks)."""
    h = hashlib.new(_check_algo(algo))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ValueError(f"checksum algorithm {algo!r} is not supported; use one of {ALGOS}")
    return algo


def part_path(dest: Path) -> Path:
    """Where the partial download of ``dest`` lives: ``dest`` with ``.part`` appended."""
    return dest.with_suffix(dest.suffix + ".part")


def _open(url: str, start: int, timeout: float):
    """Open ``url`` asking for bytes ``start..`` when ``start > 0``; returns the response."""
    headers = {"User-Agent": USER_AGENT}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resume_offset(resp, start: int) -> int:
    """Byte offset the response body starts at: ``start`` for a 206 that honours it, else 0."""
    if start == 0 or resp.status != 206:
        return 0  # 200: the server ignored Range and sends the whole file
    content_range = resp.headers.get("Content-Range", "")
    if not content_range.startswith(f"bytes {start}-"):
        return 0  # a range we did not ask for: safest is a full restart
    return start


def _stream_once(url: str, part: Path, algo: str, timeout: float,
                 on_bytes: Callable[[int], None], on_start: Callable[[int | None, int], None]):
    """One attempt: append the rest of ``url`` to ``part``; returns the hash of the whole file.

    Raises the network error of a cut connection (the partial file keeps what arrived) and
    :class:`_Restart` when the server refuses the range.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            raise _Restart() from e
        raise
    with resp:
        offset = _resume_offset(resp, start)
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        on_start(None if expected is None else offset + expected, offset)
        h = hashlib.new(algo)
        with open(part, "r+b" if offset else "wb") as f:
            _hash_prefix(f, offset, h)
            got = _copy(resp, f, h, on_bytes)
            f.flush()
            os.fsync(f.fileno())
    if expected is not None and got != expected:
        raise HTTPException(f"connection closed after {got} of {expected} bytes")
    return h


def _hash_prefix(f, offset: int, h) -> None:
    """Feed the first ``offset`` bytes of ``f`` to ``h`` in chunks; leave ``f`` at ``offset``."""
    f.seek(0)
    left = offset
    while left > 0:
        block = f.read(min(CHUNK, left))
        if not block:
            raise _Restart()  # the partial file shrank under us
        h.update(block)
        left -= len(block)
    f.seek(offset)
    f.truncate()


def _copy(resp, f, h, on_bytes) -> int:
    """Copy the response body into ``f`` and ``h``; returns the number of bytes copied."""
    total = 0
    while True:
        block = resp.read(CHUNK)
        if not block:
            return total
        f.write(block)
        h.update(block)
        total += len(block)
        on_bytes(len(block))


def _attempts(url: str, dest: Path, part: Path, algo: str, retries: int, timeout: float,
              on_bytes, on_start):
    """Run up to ``retries + 1`` attempts, resuming after each cut; returns the final hash."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return _stream_once(url, part, algo, timeout, on_bytes, on_start)
        except _Restart:
            part.unlink(missing_ok=True)
            last = HTTPException("server refused to resume (HTTP 416)")
            continue  # nothing wrong with the network: restart at once
        except urllib.error.HTTPError as e:
            if e.code in _PERMANENT_HTTP:
                raise DownloadError(
                    f"cannot download {url} -> {dest}: HTTP {e.code} {e.reason}. Check the URL "
                    "(or the --url / base-URL option) and that the file exists on the server."
                ) from e
            last = e
        except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as e:
            last = e
        if attempt < retries:
            time.sleep(min(0.5 * 2 ** attempt, 8.0))
    raise DownloadError(
        f"cannot download {url} -> {dest} after {retries + 1} attempts: {last}. The partial file "
        f"{part} is kept; rerun the same command to resume, or check the network/URL."
    ) from last


def download_file(url: str, dest: Path, checksum: str | None = None, algo: str = "sha1",
                  retries: int = 3, timeout: float = 60, progress: bool = True,
                  _on_bytes: Callable[[int], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` with resume and checksum verification; returns ``dest``.

    Args:
        url: http(s) URL of the file.
        dest: final path; the download streams into ``<dest>.part`` and is renamed when verified.
        checksum: expected hex digest (case-insensitive) or None to skip verification.
        algo: ``"sha1"``, ``"md5"`` or ``"sha256"``.
        retries: extra attempts after a network failure; each resumes from the partial size.
        timeout: socket timeout per attempt, seconds.
        progress: show a per-file tqdm bar (bytes).
    If ``dest`` exists and matches ``checksum`` (or ``checksum`` is None) nothing is fetched.
    A mismatch deletes the partial file and raises :class:`DownloadError`.
    """
    _check_algo(algo)
    dest = Path(dest)
    want = checksum.strip().lower() if checksum else None
    if dest.is_file() and (want is None or file_checksum(dest, algo) == want):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    bar = tqdm(desc=dest.name, unit="B", unit_scale=True, disable=not progress, leave=False)
    on_start = _start_setter(bar)
    on_bytes = _byte_counter(bar, _on_bytes)
    try:
        h = _attempts(url, dest, part, algo, retries, timeout, on_bytes, on_start)
    finally:
        bar.close()
    got = h.hexdigest()
    if want is not None and got != want:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected {algo} {want}, got {got}. The corrupt "
            f"download was deleted ({part}); rerun to fetch it again, and if it keeps failing "
            "check that the URL and the expected checksum belong to the same file."
        )
    os.replace(part, dest)
    return dest


def _start_setter(bar):
    def on_start(total: int | None, already: int) -> None:
        bar.reset(total=total)  # each attempt recounts from the resumed prefix
        bar.update(already)
    return on_start


def _byte_counter(bar, extra):
    def on_bytes(n: int) -> None:
        bar.update(n)
        if extra is not None:
            extra(n)
    return on_bytes


def _as_item(item) -> DownloadItem:
    if isinstance(item, DownloadItem):
        return item
    url, dest, *rest = item
    return DownloadItem(url, Path(dest), *rest)


def download_many(items: Iterable[DownloadItem | Sequence], workers: int = 4, retries: int = 3,
                  timeout: float = 60, progress: bool = True, desc: str = "download") -> list[Path]:
    """Download many files in a thread pool with one tqdm bar (files done, MB moved).

    ``items`` are :class:`DownloadItem` or tuples ``(url, dest[, checksum[, algo]])``. Every file
    is attempted; if any fail, one :class:`DownloadError` lists them all after the others finish.
    Returns the destination paths in the order of ``items``.
    """
    todo = [_as_item(i) for i in items]
    bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not progress)
    lock = threading.Lock()
    moved = [0]

    def on_bytes(n: int) -> None:
        with lock:
            moved[0] += n
            bar.set_postfix_str(f"{moved[0] / 1e6:.1f} MB", refresh=False)

    def one(it: DownloadItem) -> Path:
        path = download_file(it.url, it.dest, it.checksum, it.algo, retries, timeout,
                             progress=False, _on_bytes=on_bytes)
        with lock:
            bar.update(1)
        return path

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, it) for it in todo]
        errors = [f.exception() for f in futures]
    bar.close()
    failed = [str(e) for e in errors if e is not None]
    if failed:
        listing = "\n  ".join(failed[:10]) + ("\n  ..." if len(failed) > 10 else "")
        raise DownloadError(f"{len(failed)} of {len(todo)} downloads failed "
                            f"(finished files are kept; rerun to resume):\n  {listing}")
    return [f.result() for f in futures]


def fetch_bytes(url: str, retries: int = 3, timeout: float = 60) -> bytes:
    """Fetch a small file (an index or checksum list) into memory, with retries."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with _open(url, 0, timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            if e.code in _PERMANENT_HTTP:
                raise DownloadError(f"cannot fetch {url}: HTTP {e.code} {e.reason}. "
                                    "Check the URL / base URL option.") from e
            last = e
        except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as e:
            last = e
        if attempt < retries:
            time.sleep(min(0.5 * 2 ** attempt, 8.0))
    raise DownloadError(f"cannot fetch {url} after {retries + 1} attempts: {last}. "
                        "Check the network and the URL.") from last
