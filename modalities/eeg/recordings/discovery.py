"""Recordings and their scoring files in a folder: what preparation (``data_prep/psg_sources.py``)
and staging (``part-stage`` on a folder) find, and how a hypnogram pairs with its recording.

:func:`scan` walks a folder: a file whose name matches the hypnogram glob (default
``*Hypnogram*``) with a hypnogram suffix (``.edf``, ``.bdf``, ``.txt``, ``.csv``, ``.tsv``), or an
EDF+ file holding annotations only, is a scoring file; any other file with a reader's suffix is
a recording. :func:`pair_hypnograms`: a hypnogram pairs with the recording IN ITS OWN FOLDER whose
file name shares the longest common prefix with the hypnogram's name (``SC4001E0-PSG.edf`` <-
``SC4001EC-Hypnogram.edf``); a tie is an error unless the folder holds a single recording; two
hypnograms for one recording, or a hypnogram without a recording, are failures with a reason.
"""
from __future__ import annotations

import bisect
import fnmatch
import os
from pathlib import Path
from typing import Iterable

from part.modalities.eeg.recordings.hypnogram_edf import EDF_SUFFIXES, edf_annotation_only
from part.modalities.eeg.recordings.hypnogram_io import TABLE_SUFFIXES
from part.modalities.eeg.recordings.mne_reader import READERS, suffix_of

HYPNOGRAM_GLOB = "*Hypnogram*"  # the default --hypnogram-glob: file names of scoring files (fnmatch)
HYPNOGRAM_SUFFIXES = EDF_SUFFIXES + TABLE_SUFFIXES


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def _best_matches(names: list[str], query: str) -> tuple[int, int]:
    """Index range ``[lo, hi)`` of the names (sorted) sharing the longest common prefix with
    ``query``: that prefix is the longer one shared with the neighbours of ``query``'s place in
    the order, and every name starting with it is adjacent (all names when it is empty)."""
    at = bisect.bisect_left(names, query)
    length = max((_common_prefix(names[i], query) for i in (at - 1, at) if 0 <= i < len(names)), default=0)
    prefix = query[:length]
    lo = bisect.bisect_left(names, prefix)
    hi = lo
    step = 1
    while hi + step <= len(names) and names[hi + step - 1].startswith(prefix):  # gallop, then bisect
        hi, step = hi + step, step * 2
    while step > 1:
        step //= 2
        if hi + step <= len(names) and names[hi + step - 1].startswith(prefix):
            hi += step
    return lo, hi


def pair_hypnograms(recordings: list[Path], hypnograms: list[Path]) -> tuple[dict[Path, Path], dict[str, str]]:
    """``({recording: hypnogram}, {name: reason})`` by the pairing rule of the module docstring."""
    pairs: dict[Path, list[Path]] = {}
    failed: dict[str, str] = {}
    folders: dict[Path, list[Path]] = {}
    for rec in recordings:
        folders.setdefault(rec.parent, []).append(rec)
    by_folder = {folder: sorted(recs, key=lambda r: r.name) for folder, recs in folders.items()}
    names = {folder: [r.name for r in recs] for folder, recs in by_folder.items()}
    for hyp in hypnograms:
        here = by_folder.get(hyp.parent, [])
        lo, hi = _best_matches(names[hyp.parent], hyp.name) if here else (0, 0)
        best = here[lo:hi]
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


def scan(src: Path, hypnogram_glob: str = HYPNOGRAM_GLOB,
         suffixes: Iterable[str] = READERS) -> tuple[list[Path], list[Path]]:
    """(recordings, hypnograms) under ``src``, sorted (hidden files and folders skipped): files
    matching ``hypnogram_glob`` with a hypnogram suffix, and annotation-only EDF+ files, are
    hypnograms; other files with one of ``suffixes`` are recordings."""
    recordings, hypnograms = [], []
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        suffix = suffix_of(path)
        if fnmatch.fnmatch(path.name, hypnogram_glob) or (suffix in EDF_SUFFIXES and edf_annotation_only(path)):
            if suffix in HYPNOGRAM_SUFFIXES:
                hypnograms.append(path)
        elif suffix in suffixes:
            recordings.append(path)
    return recordings, hypnograms
