"""Download Sleep-EDF Expanded (PhysioNet ``sleep-edfx`` 1.0.0), every file verified by SHA256.

``download_sleep_edf(dest, subset, limit)`` reads the dataset's ``SHA256SUMS.txt`` (at the
dataset root: ``<sha256 hex>  <path>`` lines), takes the PSG and hypnogram files of the subset's
folder (``sleep-cassette/SC4ssN??-PSG.edf`` and ``SC4ssN??-Hypnogram.edf``, or
``sleep-telemetry/ST7ssN??-...``), keeps the first ``limit`` subjects (sorted ids ``SC4ss``),
and fetches them into ``dest/<folder>/`` with the resumable downloader of
``data_prep/download.py`` (``.part`` files resumed with HTTP Range, checksum verified before the
rename, files already present with the right checksum skipped). A file listed without a valid
SHA256 is refused; a checksum mismatch deletes the download and fails with the file named.
"""

from __future__ import annotations

import re
from pathlib import Path

from part.data_prep.download import DownloadItem, download_many, fetch_bytes
from part.errors import DataError

BASE_URL = "https://physionet.org/files/sleep-edfx/1.0.0/"
FOLDERS = {"cassette": "sleep-cassette", "telemetry": "sleep-telemetry"}
PREFIXES = {"cassette": "SC4", "telemetry": "ST7"}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def file_pattern(subset: str) -> re.Pattern:
    """Names of a subset's PSG and hypnogram files; group 1 is the subject id (``SC4ss``)."""
    return re.compile(rf"^({PREFIXES[subset]}\d\d)\d\w\w-(PSG|Hypnogram)\.edf$")


def parse_sha256sums(text: str, source: str) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of a ``sha256sum`` listing; blank and ``#`` lines skipped.

    Raises :class:`DataError` naming the line for a malformed one (not ``<64 hex>  <path>``).
    """
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not _HEX64.match(fields[0]):
            raise DataError(f"{source} line {n}: expected '<sha256 hex>  <path>', got {line[:80]!r}; the checksum "
                            "list is damaged or not PhysioNet's SHA256SUMS.txt: check --base-url")
        sums[fields[1].strip().lstrip("*").removeprefix("./")] = fields[0].lower()
    return sums


def plan(sums: dict[str, str], subset: str, limit: int | None) -> list[tuple[str, str]]:
    """``[(relative path, sha256)]`` of the first ``limit`` subjects' PSG and hypnogram files."""
    if subset not in FOLDERS:
        raise DataError(f"--subset {subset!r}: expected one of {sorted(FOLDERS)}")
    folder, pattern = FOLDERS[subset], file_pattern(subset)
    by_subject: dict[str, list[tuple[str, str]]] = {}
    for rel, digest in sorted(sums.items()):
        parent, _, name = rel.rpartition("/")
        match = pattern.match(name)
        if parent == folder and match:
            by_subject.setdefault(match.group(1), []).append((rel, digest))
    if not by_subject:
        raise DataError(f"the checksum list names no {folder}/{PREFIXES[subset]}*-PSG.edf file; expected "
                        "PhysioNet's sleep-edfx SHA256SUMS.txt: check --base-url")
    subjects = sorted(by_subject)[:limit]
    return [item for s in subjects for item in by_subject[s]]


def download_sleep_edf(dest: str | Path, subset: str = "cassette", limit: int | None = None,
                       base_url: str = BASE_URL, workers: int = 4, progress: bool = True) -> list[Path]:
    """Fetch the subset's nights (first ``limit`` subjects; None = all) into ``dest/<folder>/``.

    Returns the paths of the PSG and hypnogram files. Raises :class:`DataError` (a
    ``DownloadError`` for failed or corrupt downloads, after trying every file).
    """
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be a positive number of subjects, got {limit}")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    source = f"{base_url}SHA256SUMS.txt"
    sums = parse_sha256sums(fetch_bytes(source).decode("utf-8", errors="replace"), source)
    items = [DownloadItem(base_url + rel, Path(dest) / rel, digest, "sha256")
             for rel, digest in plan(sums, subset, limit)]
    return download_many(items, workers=workers, progress=progress, desc=f"Sleep-EDF {subset}")
