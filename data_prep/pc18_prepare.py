"""Prepare a directory of PhysioNet/CinC 2018 records: the PC18 finder and reader on the shared
pipeline (``data_prep/prepare.py``: per-record jobs, workers, resume, splits, manifest).

Output (the contract read by the EEG dataset, ``recordings/prepared.py``, which holds
FORMAT_VERSION; CLASS_NAMES and UNLABELLED are in ``recordings/constants.py``; all JSON keys
below are stable, format_version 1)::

    OUT/records/<record>.npy          float16 (default) or float32, (n_windows, C, L):
                                      C channels in manifest["channels"] order (6 EEG by
                                      default), L = window_s * sampling_rate = 3000 samples;
                                      each window and channel z-scored (mean 0, std 1).
    OUT/records/<record>.labels.npy   int8 (n_windows,): 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 none.
    OUT/records/<record>.info.json    per-record completion marker (same dict as in the manifest).
    OUT/manifest.json                 see below.
    OUT/splits.json                   {"seed", "test", "finetune", "pretrain", "subjects",
                                       "requested": {"n_test", "n_finetune"}, "warnings"}.

``manifest.json`` keys: ``format_version`` (1), ``status`` ("complete" or "in_progress"),
``synthetic`` (bool: ``--synthetic`` was used or a record's header says synthetic),
``params`` and ``params_hash`` (what
decides whether a record is up to date), ``sampling_rate`` (100), ``window_s`` (30),
``window_samples`` (3000), ``channels``, ``dtype``, ``label_names`` (["W","N1","N2","N3","REM"]),
``label_codes`` ({name: int, "unlabelled": -1}), ``filter`` (design and edges),
``normalisation``, ``source``, ``metadata``, ``files`` (path patterns relative to OUT),
``totals``, ``records`` and ``failed``.
``records[<record>]``: ``n_windows``, ``labelled_windows``, ``label_counts`` ({"W": n, ...,
"unlabelled": n}), ``first_window_start_s`` (start of window 0 in the record, s),
``duration_s``, ``input_fs``, ``n_samples``, ``has_annotations``, ``origin`` ("training",
"test", "synthetic" (a header comment says so) or "unknown"), ``flat_windows`` (windows with at
least one flat channel: std below ``flat_std_uv``), ``no_signal_windows`` (every channel flat),
``flat_channel_windows``, ``flat_by_channel`` ({channel: windows in which it is flat}),
``subject`` (= the record name: one PC18 record is one subject), ``age`` and ``sex`` (from
``--metadata``, else null), ``params_hash``,
``source_fingerprint`` (a hash of the files read, their sizes and modification times, the subject
and the reader options: see ``data_prep/prepare.py``), ``signal``, ``labels``; ``source_files``
(the files read, relative to the source directory).
Other sources (``data_prep/psg.py``, ``sleep_edf.py``) add per record ``unknown_stages``,
``hypnogram``, ``trim`` and a ``subject`` shared by a subject's nights; the manifest adds
``rename`` and ``totals.unknown_stages`` (see ``data_prep/prepare.py``).
``failed[<record>]``: one-line reason. Read only the records listed in ``records``.

Splits: see ``data_prep/splits.py`` (drawn over subjects, a subject's records always in one
split: test / finetune from labelled subjects, pretrain = every record whose subject is not in
test; sizes clamp with a warning on small data).

Resume: each record is written to temp files and renamed; its ``.info.json`` is written last and
marks it done. A rerun skips records whose marker has the same ``params_hash`` and
``source_fingerprint`` (the same files, unchanged) and redoes the rest; leftover temp files
(``.<name>.*.tmp``) are removed. An output prepared with other parameters is refused unless
``overwrite``, which redoes every record.
"""

from __future__ import annotations

from pathlib import Path

from part.modalities.eeg.recordings.constants import PC18_STAGE_NOTES
from part.data_prep.pc18_labels import read_stage_notes, window_labels
from part.data_prep.splits import SplitSettings, make_splits, read_metadata
from part.data_prep.prepare import (PrepConfig, ReadResult, RecordSource, RunResult, RunSettings, load_done,
                               prepare_record, prepare_sources, record_files, relative_path)
from part.modalities.eeg.recordings.signal import RecordError
from part.modalities.eeg.recordings.wfdb_reader import read_eeg, read_header
from part.errors import DataError

DATASET = "PhysioNet/CinC Challenge 2018 (You Snooze You Win), v1.0.0"
__all__ = ["DATASET", "PrepConfig", "ReadResult", "RecordSource", "RunResult", "SplitSettings", "find_records",
           "load_done", "make_splits", "pc18_source", "prepare_dataset", "prepare_record", "read_pc18",
           "record_files"]


def read_pc18(source: RecordSource, config: PrepConfig) -> ReadResult:
    """The PC18 reader: stage notes of the ``.arousal`` file (if any) -> the window grid, then the
    requested channels with the fast WFDB reader. Raises :class:`RecordError`."""
    header = read_header(source.signal)
    fs, n_samples = float(header.fs), int(header.sig_len or 0)
    notes = read_stage_notes(source.annotation, fs) if source.annotation else None
    grid = window_labels(notes, n_samples, fs, config.target_fs, config.window_s)
    if grid.n_windows < 1:
        raise RecordError(
            f"{source.name}: {source.signal.name} gives {n_samples} samples at {fs} Hz, shorter "
            f"than one {config.window_s} s window"
        )
    recording = read_eeg(source.signal, config.channels)
    synthetic = any("synthetic" in comment.lower() for comment in header.comments)
    root = source.options.get("root", source.signal.parent)
    files = [source.signal, source.signal.with_suffix(".mat"), *([source.annotation] if source.annotation else [])]
    info = {"has_annotations": notes is not None, "synthetic": synthetic,
            "source_files": [relative_path(f, root) for f in files]}
    return ReadResult(recording, grid, info)


def pc18_source(name: str, header: Path, annotation: Path | None, origin: str,
                root: Path | None = None) -> RecordSource:
    """A PC18 record (``header`` = its ``.hea``) read by :func:`read_pc18`; ``source_files`` are
    given relative to ``root`` (default: the header's folder)."""
    root = root or Path(header).parent
    return RecordSource(name, Path(header), annotation, origin, read_pc18,
                        options={"root": root, "companions": (Path(header).with_suffix(".mat"),)})


def find_records(src: Path) -> tuple[list[RecordSource], dict[str, str]]:
    """Records under ``src`` (flat or ``training/<rec>/``, ``test/<rec>/``), found by ``.hea``.

    Returns the sources sorted by name and ``{name: reason}`` for names found more than once.
    """
    by_name: dict[str, list[Path]] = {}
    for header in sorted(Path(src).rglob("*.hea")):
        by_name.setdefault(header.stem, []).append(header)
    sources, duplicates = [], {}
    for name, headers in sorted(by_name.items()):
        if len(headers) > 1:
            where = [str(h) for h in headers]
            duplicates[name] = f"{name}: found {len(headers)} headers {where}; expected one: remove the copies"
            continue
        header = headers[0]
        annotation = header.with_suffix(".arousal")
        annotation = annotation if annotation.is_file() else None
        sources.append(pc18_source(name, header, annotation, _origin(header, src), Path(src)))
    return sources, duplicates


def _origin(header: Path, src: Path) -> str:
    """"training" or "test" from the folder (PhysioNet layout) or the name prefix, else "unknown"."""
    folders, name = set(header.relative_to(src).parts[:-1]), header.stem
    if "training" in folders or name.startswith("tr"):
        return "training"
    if "test" in folders or name.startswith("te"):
        return "test"
    return "unknown"


DEFAULT_CONFIG, DEFAULT_SPLITS = PrepConfig(), SplitSettings()


def prepare_dataset(
    src: Path,
    out: Path,
    config: PrepConfig = DEFAULT_CONFIG,
    workers: int = 1,
    splits: SplitSettings = DEFAULT_SPLITS,
    metadata: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    synthetic: bool = False,
) -> RunResult:
    """Prepare every record under ``src`` into ``out``; see the module docstring for the layout.

    Raises :class:`DataError` for problems with the run as a whole (missing ``src``, no records,
    bad metadata, an output prepared with other parameters); per-record problems end up in
    ``RunResult.failed`` and the manifest.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(
            f"--src {src} is not a directory; expected a directory of PC18 records (.hea, .mat, "
            ".arousal)"
        )
    meta = read_metadata(metadata) if metadata else {}
    sources, failed = find_records(src)
    if not sources and not failed:
        raise DataError(
            f"no WFDB header (*.hea) under --src {src}; expected PC18 records, flat or in "
            "training/<rec>/ and test/<rec>/"
        )
    run = RunSettings(DATASET, src, metadata, {"stage_notes": PC18_STAGE_NOTES}, "PC18 records")
    return prepare_sources(sources, out, run, config, failed, workers, splits, meta, overwrite, progress, synthetic)
