"""Own polysomnography recordings as record sources for the shared pipeline (``data_prep/prepare.py``).

:func:`find_psg` walks ``--src``: every file with a suffix of
``part.modalities.eeg.recordings.mne_reader.READERS`` (EDF/BDF/GDF, FIF, BrainVision ``.vhdr``, EEGLAB ``.set``)
is a recording, unless its name matches the hypnogram glob (default ``*Hypnogram*``): files
matching it with a hypnogram suffix (``.edf``, ``.bdf``, ``.txt``, ``.csv``, ``.tsv``) are
scoring files (``recordings/discovery.py``, shared with staging). Pairing rule
(``discovery.pair_hypnograms``): a hypnogram pairs with the recording IN ITS
OWN FOLDER whose file name shares the longest common prefix with the hypnogram's name
(``SC4001E0-PSG.edf`` <- ``SC4001EC-Hypnogram.edf``); a tie is an error unless the folder holds
a single recording. Two hypnograms for one recording, or a hypnogram without a recording, are
failures (listed, exit code 1). A recording without a hypnogram file uses the stage annotations
stored in it (EDF+/FIF), else it is prepared unlabelled (pretraining only).

Record names are the recording's file name without its suffix; when two files share that name,
their path relative to ``--src`` with ``/`` replaced by ``_``; names that still collide (e.g.
``x/night.edf`` and ``x_night.edf``) are a :class:`DataError` naming the files. The reader
:func:`read_psg` aligns an EDF+ hypnogram on an EDF/BDF recording's start time
(``part.modalities.eeg.recordings.hypnogram_edf.align_to_recording``: both headers' clock times, within a day; onsets
are seconds from the recording's first sample; with another recording format, or starts more than a
day apart of which one is EDF's placeholder date 01.01.85, the hypnogram is not aligned and the
record gets a ``hypnogram_note``; real start dates more than a day apart make the record fail: the
scoring is another night's), then builds the
30-s grid with ``part.modalities.eeg.recordings.windows.window_grid`` (epochs follow the hypnogram's onsets;
time outside it is -1; unknown stage texts are -1 and counted in the record's ``unknown_stages``). An EDF/BDF
recording whose header's patient or recording field says ``synthetic`` (the files of
``data_prep/sleep_edf_synthetic.py``) is flagged synthetic (``origin`` "synthetic").
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from part.data_prep.prepare import PrepConfig, ReadResult, RecordSource, relative_path
from part.errors import DataError
from part.modalities.eeg.recordings.discovery import HYPNOGRAM_GLOB, pair_hypnograms, scan
from part.modalities.eeg.recordings.hypnogram_edf import EDF_SUFFIXES, align_to_recording
from part.modalities.eeg.recordings.mne_reader import READERS, read_recording_full, suffix_of
from part.modalities.eeg.recordings.signal import RecordError
from part.modalities.eeg.recordings.windows import window_grid
from part.modalities.eeg.sleep.hypnogram import Hypnogram

def record_names(recordings: list[Path], src: Path) -> dict[Path, str]:
    """Record name of each recording: its stem, or its relative path when stems collide.

    Raises :class:`DataError` naming the files when two recordings still get one name (e.g.
    ``x/night.edf`` and ``x_night.edf`` both give ``x_night``)."""
    def stem(p: Path) -> str:
        return p.name[: -len(suffix_of(p))]

    counts: dict[str, int] = {}
    for p in recordings:
        counts[stem(p)] = counts.get(stem(p), 0) + 1
    out, owners = {}, {}
    for p in recordings:
        name = stem(p) if counts[stem(p)] == 1 else str(p.relative_to(src).with_name(stem(p))).replace(os.sep, "_")
        out[p] = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
        owners.setdefault(out[p], []).append(str(p.relative_to(src)))
    clashes = {name: files for name, files in owners.items() if len(files) > 1}
    if clashes:
        raise DataError(f"recordings under --src {src} get the same record name: "
                        f"{'; '.join(f'{n!r} from {f}' for n, f in sorted(clashes.items()))}; expected one record "
                        "name per recording (its file name, or its path with / as _ when file names repeat): "
                        "rename one of the files")
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


def edf_header_synthetic(path: Path) -> bool:
    """True when an EDF/BDF file's patient or recording header field says ``synthetic`` (as the
    files of ``data_prep/sleep_edf_synthetic.py`` do: ``SYNTHETIC``, ``PART_synthetic``)."""
    if suffix_of(path) not in EDF_SUFFIXES:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(168)
    except OSError:
        return False
    return b"synthetic" in head[8:168].lower()


def read_psg(source: RecordSource, config: PrepConfig) -> ReadResult:
    """The reader of own recordings: hypnogram file (if paired) -> recording (only the requested
    channels, ``config.rename`` applied) -> aligned 30-s grid. Raises RecordError/HypnogramError."""
    hypnogram = None
    if source.annotation is not None:
        try:
            hypnogram = Hypnogram.from_file(source.annotation, config.window_s)
        except DataError as exc:
            raise RecordError(f"{source.name}: {exc}") from None
    read = read_recording_full(source.signal, config.channels, dict(config.rename), annotations=hypnogram is None,
                               epoch_s=config.window_s)
    offset, note = 0.0, None
    if hypnogram is None:
        hypnogram = None if read.scoring is None else Hypnogram(**read.scoring)
    else:
        try:
            aligned, note = align_to_recording(hypnogram, source.annotation, read.start, source.signal)
        except DataError as exc:  # real start dates days apart: another night's scoring
            raise RecordError(f"{source.name}: {exc}") from None
        offset, hypnogram = round(aligned.start_s - hypnogram.start_s, 6), aligned
    recording = read.recording
    try:
        grid = window_grid(hypnogram, recording.duration_s, config.target_fs, config.window_s)
    except DataError as exc:
        raise RecordError(f"{source.name}: {source.signal.name}: {exc}") from None
    root = source.options.get("root", source.signal.parent)
    files = [source.signal] + ([source.annotation] if source.annotation else [])
    info = {
        "has_annotations": hypnogram is not None,
        "hypnogram": None if hypnogram is None else (
            relative_path(source.annotation, root) if source.annotation else f"annotations in {source.signal.name}"),
        "hypnogram_epochs": 0 if hypnogram is None else hypnogram.n_epochs,
        "hypnogram_offset_s": offset,
        **({"hypnogram_note": note} if note else {}),
        "unknown_stages": {} if hypnogram is None else dict(hypnogram.unknown),
        "source_files": [relative_path(f, root) for f in files],
        "synthetic": edf_header_synthetic(source.signal),
    }
    if hypnogram is not None and not np.any(grid.labels >= 0) and hypnogram.counts()["unlabelled"] < hypnogram.n_epochs:
        info["warning"] = "no window got a stage: the hypnogram's epochs do not line up with whole windows"
    return ReadResult(recording, grid, info)
