"""Download PhysioNet/CinC Challenge 2018 records, every file checked against published checksums.

``download_records(dest, split, limit)`` writes ``dest/<split>/<rec>/<rec>.hea|.mat[|.arousal]``
(the layout ``data_prep/physionet2018.py --src dest`` reads) and returns the record folders.

Where the record list comes from:
  * ``metadata``: a ``sleep_records.csv``-like table (columns ``Record``, ``Split``, ``sha``,
    ``fname``; path or URL) lists each record's files with their SHA1; or else
  * the server's ``<base>/<split>/RECORDS`` (falling back to ``<base>/RECORDS``); each record
    then has ``.hea``, ``.mat`` and, for ``training``, ``.arousal``.
Where the checksums come from (first match per file wins):
  1. the SHA1 column of ``metadata`` when given;
  2. ``checksums``: a ``sha1sum``/``sha256sum``-style file (``<hex>  <path relative to base>``;
     path or URL; the algorithm follows from the hex length: 32 md5, 40 sha1, 64 sha256);
     by default PhysioNet's ``<base>/SHA256SUMS.txt``.
A file with no published checksum is refused (DataError) rather than used unverified.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from part.data_prep.download import DownloadError, DownloadItem, download_many, fetch_bytes
from part.errors import DataError

BASE_URL = "https://physionet.org/files/challenge-2018/1.0.0/"
SPLITS = ("training", "test")
_ALGO_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _read_text(source: str | Path, what: str) -> str:
    """Text of a local path or an http(s) URL (small index files only)."""
    s = str(source)
    if s.startswith(("http://", "https://")):
        return fetch_bytes(s).decode("utf-8", errors="replace")
    path = Path(s)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist; give an existing path or a URL.")
    return path.read_text(encoding="utf-8", errors="replace")


def _check_rel(rel: str, source: str) -> str:
    """A safe relative path ``split/rec/file``: no absolute paths, no '..', plain names."""
    rel = rel.strip().lstrip("*").removeprefix("./")
    parts = rel.split("/")
    if not rel or not all(_SAFE_NAME.match(p) for p in parts):
        raise DataError(f"unsafe or malformed file path {rel!r} in {source}; expected "
                        "'<split>/<record>/<file>' with plain names.")
    return rel


def parse_checksum_file(text: str, source: str) -> dict[str, tuple[str, str]]:
    """``<hex>  <relpath>`` lines -> {relpath: (algo, hex)}; '#' comments and blanks skipped."""
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(maxsplit=1)
        algo = _ALGO_BY_LEN.get(len(fields[0]))
        if len(fields) != 2 or algo is None or not re.fullmatch(r"[0-9a-fA-F]+", fields[0]):
            raise DataError(f"{source} line {n}: expected '<md5|sha1|sha256 hex>  <path>', got "
                            f"{line[:80]!r}. Give a sha1sum/sha256sum-style checksum file.")
        out[_check_rel(fields[1], source)] = (algo, fields[0].lower())
    return out


def parse_metadata(text: str, source: str, split: str) -> dict[str, list[tuple[str, str]]]:
    """sleep_records.csv-like table -> {record: [(relpath, sha1), ...]} for ``split``, in order."""
    rows = list(csv.DictReader(io.StringIO(text)))
    need = {"Record", "Split", "sha", "fname"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"metadata {source} must be a CSV with columns {sorted(need)} "
                        "(like sleep_records.csv); it has "
                        f"{sorted(rows[0]) if rows else 'no rows'}.")
    records: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        if row["Split"] != split:
            continue
        sha = row["sha"].strip().lower()
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise DataError(f"metadata {source}: record {row['Record']} has sha {sha!r}, "
                            "expected a 40-digit SHA1.")
        records.setdefault(row["Record"], []).append((_check_rel(row["fname"], source), sha))
    return records


def parse_records_index(text: str, split: str, source: str) -> list[str]:
    """RECORDS lines (``rec``, ``rec/``, ``<split>/rec/``, ``<split>/rec/rec``) -> record names."""
    names: list[str] = []
    for line in text.splitlines():
        parts = [p for p in line.strip().split("/") if p]
        if not parts:
            continue
        if parts[0] in SPLITS:
            if parts[0] != split or len(parts) < 2:
                continue
            parts = parts[1:]
        name = parts[0]
        if not _SAFE_NAME.match(name):
            raise DataError(f"unsafe record name {name!r} in {source}.")
        if name not in names:
            names.append(name)
    return names


def _list_from_server(base_url: str, split: str) -> list[str]:
    """Record names of ``split`` from ``<base>/<split>/RECORDS``, else ``<base>/RECORDS``."""
    tried = []
    for url in (f"{base_url}{split}/RECORDS", f"{base_url}RECORDS"):
        try:
            names = parse_records_index(fetch_bytes(url).decode(), split, url)
        except DownloadError as e:
            tried.append(str(e))
            continue
        if names:
            return names
        tried.append(f"{url} lists no {split} record")
    raise DataError(f"cannot list the {split} records: {'; '.join(tried)}. Check the base URL, "
                    "or give the record list as metadata (a sleep_records.csv-like table).")


def _default_files(rec: str, split: str) -> list[str]:
    suffixes = [".hea", ".mat"] + ([".arousal"] if split == "training" else [])
    return [f"{split}/{rec}/{rec}{s}" for s in suffixes]


def _plan(split: str, base_url: str, metadata, checksums):
    """[(record, [(relpath, algo, hex), ...])] for ``split``, every file with a checksum."""
    sums: dict[str, tuple[str, str]] = {}
    if metadata is not None:
        per_rec = parse_metadata(_read_text(metadata, "metadata"), str(metadata), split)
        if not per_rec:
            raise DataError(f"metadata {metadata} lists no record of split {split!r}.")
        layout = {r: [rel for rel, _ in files] for r, files in per_rec.items()}
        sums = {rel: ("sha1", sha) for files in per_rec.values() for rel, sha in files}
    else:
        layout = {r: _default_files(r, split) for r in _list_from_server(base_url, split)}
    if checksums is not None or metadata is None:
        source = checksums if checksums is not None else f"{base_url}SHA256SUMS.txt"
        published = parse_checksum_file(_read_text(source, "checksum"), str(source))
        sums = {**published, **sums}
    return [(rec, [(rel, *_checksum_for(rel, sums, metadata, checksums)) for rel in rels])
            for rec, rels in layout.items()]


def _checksum_for(rel: str, sums, metadata, checksums) -> tuple[str, str]:
    if rel not in sums:
        raise DataError(f"no published checksum for {rel} (looked in "
                        f"{metadata or checksums or 'SHA256SUMS.txt'}); refusing to use an "
                        "unverified file. Give a checksum file that lists it (checksums=...).")
    return sums[rel]


def download_records(dest: Path, split: str, limit: int | None = None,
                     base_url: str | None = BASE_URL, workers: int = 4,
                     metadata: str | Path | None = None, checksums: str | Path | None = None,
                     progress: bool = True) -> list[Path]:
    """Fetch the records of ``split`` ("training" or "test") into ``dest/<split>/<rec>/``.

    Args:
        dest: download root; the files land at ``dest/<relpath>`` (``<split>/<rec>/<rec>.*``).
        limit: only the first ``limit`` records in listing order (None: all).
        base_url: server folder holding ``training/``, ``test/`` (and ``SHA256SUMS.txt``).
        workers: parallel downloads.
        metadata: optional sleep_records.csv-like table (record list + SHA1s), path or URL.
        checksums: optional sha*sum-style file, path or URL (default ``<base>/SHA256SUMS.txt``
            when ``metadata`` is not given).
    Existing verified files are skipped, partial ones resumed. Returns the record folders.
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not valid; expected one of {SPLITS}.")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of records, got {limit}.")
    base_url = base_url or BASE_URL
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    plan = _plan(split, base_url, metadata, checksums)[:limit]
    dest = Path(dest)
    items = [DownloadItem(base_url + rel, dest / rel, hexd, algo)
             for _, files in plan for rel, algo, hexd in files]
    download_many(items, workers=workers, progress=progress, desc=f"PhysioNet 2018 {split}")
    return [dest / split / rec for rec, _ in plan]
