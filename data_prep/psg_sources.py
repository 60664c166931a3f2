"""Own polysomnography recordings as record sources for the shared pipeline (``data_prep/prepare.py``).

:func:`find_psg` walks ``--src``: every file with a suffix of
``modalities.eeg.mne_reader.READERS`` (EDF/BDF/GDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``)
is a recording, unless its name matches the hypnogram glob (default ``*Hypnogram*``): files
matching it with a hypnogram suffix (``.edf``, ``.bdf``, ``.txt``, ``.csv``, ``.tsv``) are
scoring files. Pairing rule (:func:`pair_hypnograms`): a hypnogram pairs with the recording IN ITS
OWN FOLDER whose file name shares the longest common prefix with the hypnogram's name
(``SC4001E0-PSG.edf`` <- ``SC4001EC-Hypnogram.edf``); a tie is an error unless the folder holds
a single recording. Two hypnograms for one recording, or a hypnogram without a recording, are
failures (listed, exit code 1). A recording without a hypnogram file uses the stage annotations
stored in it (EDF+/FIF), else it is prepared unlabelled (pretraining only).

Record names are the recording's file name without its suffix; when two files share that name,
their path relative to ``--src`` with ``/`` replaced by ``_``. The reader :func:`read_psg` aligns
an EDF+ hypnogram on the recording's start time when both files give one and they differ by at most a day (onsets
are seconds from the recording's first sample; a larger difference is taken as an anonymised
date and ignored, with a ``hypnogram_note``), then builds the 30-s grid with
``modalities.eeg.hypnogram.window_grid`` (epochs follow the hypnogram's onsets; time outside it
is -1; unknown stage texts are -1 and counted in the record's ``unknown_stages``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from data_prep.prepare import PrepConfig, ReadResult, RecordSource
from modalities.eeg.hypnogram import EDF_SUFFIXES, TABLE_SUFFIXES, Hypnogram, read_hypnogram, window_grid
from modalities.eeg.mne_reader import READERS, read_recording_full, suffix_of
from modalities.eeg.signal import RecordError
from part.errors import DataError

HYPNOGRAM_GLOB = "*Hypnogram*"
HYPNOGRAM_SUFFIXES = EDF_SUFFIXES + TABLE_SUFFIXES
MAX_OFFSET_S = 86400.0  # start times further apart are taken as an anonymised date, not an offset


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def pair_hypnograms(recordings: list[Path], hypnograms: list[Path]) -> tuple[dict[Path, Path], dict[str, str]]:
    """``({recording: hypnogram}, {name: reason})`` by the pairing rule of the module docstring."""
    pairs: dict[Path, list[Path]] = {}
    failed: dict[str, str] = {}
    for hyp in hypnograms:
        here = [r for r in recordings if r.parent == hyp.parent]
        scores = [_common_prefix(r.name, hyp.name) for r in here]
        best = [r for r, s in zip(here, scores) if s == max(scores, default=-1)]
        if len(best) == 1:
            pairs.setdefault(best[0], []).append(hyp)
            continue
        what = (f"{len(best)} recordings share its longest name prefix: {[r.name for r in best][:5]}" if best
                else "its folder holds no recording")
        failed[hyp.name] = (f"hypnogram {hyp}: {what}; expected exactly one recording in the same folder whose name "
                            "starts like the hypnogram's (e.g. SC4001E0-PSG.edf / SC4001EC-Hypnogram.edf): rename "
                            "or move the files")
    out = {}
    for rec, hyps in pairs.items():
        if len(hyps) == 1:
            out[rec] = hyps[0]
        else:
            failed[rec.name] = (f"recording {rec} pairs with {len(hyps)} hypnograms {[h.name for h in hyps]}; "
                                "expected one: remove or rename the extra scoring files")
    return out, failed


def scan(src: Path, hypnogram_glob: str = HYPNOGRAM_GLOB) -> tuple[list[Path], list[Path]]:
    """(recordings, hypnograms) under ``src``, sorted (hidden files and folders skipped)."""
    recordings, hypnograms = [], []
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        suffix = suffix_of(path)
        if fnmatch.fnmatch(path.name, hypnogram_glob):
            if suffix in HYPNOGRAM_SUFFIXES:
                hypnograms.append(path)
        elif suffix in READERS:
            recordings.append(path)
    return recordings, hypnograms


def record_names(recordings: list[Path], src: Path) -> dict[Path, str]:
    """Record name of each recording: its stem, or its relative path when stems collide."""
    def stem(p: Path) -> str:
        return p.name[: -len(suffix_of(p))]

    counts: dict[str, int] = {}
    for p in recordings:
        counts[stem(p)] = counts.get(stem(p), 0) + 1
    out = {}
    for p in recordings:
        name = stem(p) if counts[stem(p)] == 1 else str(p.relative_to(src).with_name(stem(p))).replace(os.sep, "_")
        out[p] = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    return out


def find_psg(src: Path, hypnogram_glob: str = HYPNOGRAM_GLOB,
             subject_of: Callable[[str], str] | None = None) -> tuple[list[RecordSource], dict[str, str]]:
    """Record sources under ``src`` read by :func:`read_psg`, and ``{name: reason}`` failures.

    Raises :class:`DataError` when ``src`` is not a directory or holds no recording.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--src {src} is not a directory; expected a folder of recordings "
                        f"({', '.join(sorted(READERS))}) and hypnograms")
    recordings, hypnograms = scan(src, hypnogram_glob)
    if not recordings:
        raise DataError(
            f"--src {src} holds no recording: expected files ending in {', '.join(sorted(READERS))} (found "
            f"{len(hypnograms)} hypnogram files matching --hypnogram-glob {hypnogram_glob!r}); point --src at "
            "the folder of your recordings")
    pairs, failed = pair_hypnograms(recordings, hypnograms)
    names = record_names(recordings, src)
    sources = []
    for rec in recordings:
        name = names[rec]
        if rec.name in failed:
            failed[name] = failed.pop(rec.name)
            continue
        subject = subject_of(name) if subject_of else name
        sources.append(RecordSource(name, rec, pairs.get(rec), "psg", read_psg, subject, {"root": src}))
    return sources, failed


def hypnogram_start(path: Path) -> datetime | None:
    """Start date-time (UTC, as MNE reads EDF headers) of an EDF(+)/BDF(+) hypnogram from its
    header's ``dd.mm.yy`` / ``hh.mm.ss`` fields (years 85-99 are 19xx), or None."""
    if path.suffix.lower() not in EDF_SUFFIXES:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(184)
        day, month, year = (int(v) for v in head[168:176].decode("ascii").split("."))
        hour, minute, second = (int(v) for v in head[176:184].decode("ascii").split("."))
        year += 1900 if year >= 85 else 2000
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except (OSError, ValueError, UnicodeDecodeError):  # read_hypnogram read it; only the alignment is skipped
        return None


def align(hypnogram: Hypnogram, offset_s: float) -> Hypnogram:
    """``hypnogram`` with every onset moved by ``offset_s`` seconds."""
    return Hypnogram(hypnogram.onsets_s + offset_s, hypnogram.stages, hypnogram.epoch_s, dict(hypnogram.unknown),
                     hypnogram.source, dict(hypnogram.ignored))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def read_psg(source: RecordSource, config: PrepConfig) -> ReadResult:
    """The reader of own recordings: hypnogram file (if paired) -> recording (only the requested
    channels, ``config.rename`` applied) -> aligned 30-s grid. Raises RecordError/HypnogramError."""
    hypnogram = None
    if source.annotation is not None:
        try:
            hypnogram = read_hypnogram(source.annotation, config.window_s)
        except DataError as exc:
            raise RecordError(f"{source.name}: {exc}") from None
    read = read_recording_full(source.signal, config.channels, dict(config.rename), annotations=hypnogram is None)
    offset, note = 0.0, None
    if hypnogram is None:
        hypnogram = read.hypnogram
    else:
        start = hypnogram_start(source.annotation)
        if start is not None and read.start is not None:
            offset = (start - read.start).total_seconds()
            if abs(offset) > MAX_OFFSET_S:  # one file's date was anonymised or defaulted
                offset, note = 0.0, f"start times {start} and {read.start} differ by more than a day: not aligned"
            hypnogram = align(hypnogram, offset) if offset else hypnogram
    recording = read.recording
    try:
        grid = window_grid(hypnogram, recording.n_samples / recording.fs, config.target_fs, config.window_s)
    except DataError as exc:
        raise RecordError(f"{source.name}: {source.signal.name}: {exc}") from None
    root = source.options.get("root", source.signal.parent)
    files = [source.signal] + ([source.annotation] if source.annotation else [])
    info = {
        "has_annotations": hypnogram is not None,
        "hypnogram": None if hypnogram is None else (
            _relative(source.annotation, root) if source.annotation else f"annotations in {source.signal.name}"),
        "hypnogram_epochs": 0 if hypnogram is None else hypnogram.n_epochs,
        "hypnogram_offset_s": offset,
        **({"hypnogram_note": note} if note else {}),
        "unknown_stages": {} if hypnogram is None else dict(hypnogram.unknown),
        "source_files": [_relative(f, root) for f in files],
    }
    if hypnogram is not None and not np.any(grid.labels >= 0) and hypnogram.counts()["unlabelled"] < hypnogram.n_epochs:
        info["warning"] = "no window got a stage: the hypnogram's epochs do not line up with whole windows"
    return ReadResult(recording, grid, info)
