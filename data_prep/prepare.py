"""The one preparation pipeline behind every dataset script (PC18, any PSG, Sleep-EDF).

A script finds its records as :class:`RecordSource` objects, each carrying a *reader*: a
picklable ``reader(source, config) -> ReadResult`` that turns the record's files into an
``EegRecording`` (``recordings/signal.py``) plus its 30-s label grid. Everything else is
shared and lives here: :func:`prepare_record` (optional wake trimming, band-pass + resampling +
windowing + per-window z-score via ``part.modalities.eeg.recordings.windows.recording_windows``, float16, atomic
writes) and :func:`prepare_sources` (workers, resume, per-record failures, manifest, subject
splits). The output layout and every manifest key are described in ``data_prep/pc18_prepare.py``
(format_version 1); keys added for other sources: per record ``subject`` (the subject id: records
of one subject always share a split), ``source_files``, ``unknown_stages`` ({stage text: epochs},
scored -1), ``hypnogram`` (where the labels came from), ``trim`` (wake trimming: windows dropped
before/after); top level ``dataset``, ``rename`` and ``totals.unknown_stages``.

Resume: each record is written to temp files and renamed; its ``.info.json`` is written last and
marks it done (an old marker is deleted before the record is read). A rerun skips records whose
marker has the same ``params_hash`` and the same ``source_fingerprint`` (:func:`record_fingerprint`:
the files read, with size and modification time, the subject and the reader options) and redoes the
rest; leftover temp files (``.<name>.*.tmp``) are removed. An output prepared with other
parameters is refused unless ``overwrite``, which redoes every record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from part.data_prep.manifest import build_manifest, check_existing_output, with_metadata
from part.data_prep.splits import SplitSettings, make_splits
from part.data_prep.workers import run_jobs
from part.modalities.eeg.recordings.hypnogram_io import label_counts
from part.modalities.eeg.recordings.windows import WindowGrid
from part.modalities.eeg.recordings.constants import CLASS_NAMES
from part.modalities.eeg.recordings.prepared import FORMAT_VERSION
from part.modalities.eeg.recordings.constants import EPOCH_S, FLAT_STD_UV, NORM_EPS_UV, TARGET_FS
from part.modalities.eeg.recordings.signal import EegRecording, FilterSpec
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.windows import WindowConfig, recording_windows
from part.atomic import atomic_write, atomic_write_json
from part.errors import DataError


@dataclass(frozen=True)
class PrepConfig:
    """Everything that changes the content of a prepared record (hashed into ``params_hash``).

    ``rename`` (pairs file name -> our name) and ``trim_wake_min`` (minutes of wake kept before
    the first and after the last sleep epoch; None keeps everything) enter the hash only when set,
    so PC18 outputs keep their hash.
    """

    channels: tuple[str, ...] = PC18_EEG_CHANNELS
    target_fs: float = TARGET_FS
    window_s: float = EPOCH_S
    dtype: str = "float16"
    filter: FilterSpec = field(default_factory=FilterSpec)
    eps: float = NORM_EPS_UV  # uV, added to each window's std
    flat_std_uv: float = FLAT_STD_UV  # a window-channel with std below this (uV) counts as flat
    rename: tuple[tuple[str, str], ...] = ()
    trim_wake_min: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise DataError(f"dtype {self.dtype!r} is not supported; expected float16 or float32")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise DataError(
                f"channels {list(self.channels)} must be a non-empty list of distinct signal names"
            )

    def params(self) -> dict:
        params = {
            "format_version": FORMAT_VERSION,
            "channels": list(self.channels),
            "sampling_rate": self.target_fs,
            "window_s": self.window_s,
            "dtype": self.dtype,
            "filter": asdict(self.filter),
            "normalisation": {"eps": self.eps, "flat_std_uv": self.flat_std_uv},
        }
        if self.rename:
            params["rename"] = dict(self.rename)
        if self.trim_wake_min is not None:
            params["trim_wake_min"] = self.trim_wake_min
        return params

    def params_hash(self) -> str:
        text = json.dumps(self.params(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def windows(self) -> WindowConfig:
        """The window settings of ``part.modalities.eeg.recordings.windows`` (shared with staging)."""
        return WindowConfig(self.target_fs, self.window_s, self.dtype, self.filter, self.eps, self.flat_std_uv)


@dataclass
class ReadResult:
    """What a reader returns: the ``recording``, its label ``grid`` (``first_start``,
    ``n_windows``, ``window_len``, ``labels``) and ``info``: extra per-record manifest keys (e.g.
    ``has_annotations``, ``unknown_stages``, ``synthetic`` (bool)); ``duration_s``/``input_fs``/
    ``n_samples`` default to the recording's."""

    recording: EegRecording
    grid: object
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RecordSource:
    """One record: ``name`` (unique), ``signal`` (the file holding the samples), ``annotation``
    (its labels file or None), ``origin``, ``reader`` (picklable: ``reader(source, config) ->
    ReadResult``), ``subject`` (None = the record name) and reader ``options`` (JSON-able values
    or paths; ``root``: the folder ``source_files`` are relative to; ``companions``: other files
    the reader reads, e.g. PC18's ``.mat``, part of the :func:`record_fingerprint`)."""

    name: str
    signal: Path
    annotation: Path | None
    origin: str
    reader: Callable[["RecordSource", PrepConfig], ReadResult]
    subject: str | None = None
    options: dict = field(default_factory=dict, hash=False)

    @property
    def header(self) -> Path:  # the PC18 name of ``signal``
        return self.signal


@dataclass
class RunResult:
    manifest: dict
    splits: dict
    prepared: list[str]
    skipped: list[str]
    failed: dict[str, str]
    warnings: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def record_files(records_dir: Path, name: str) -> dict[str, Path]:
    return {
        "signal": records_dir / f"{name}.npy",
        "labels": records_dir / f"{name}.labels.npy",
        "info": records_dir / f"{name}.info.json",
    }


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (as given when it lies elsewhere), for ``source_files``."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _file_state(path: Path) -> list:
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def record_fingerprint(source: RecordSource) -> str:
    """A hash of what a record is made from, besides the parameters: its signal, annotation and
    companion files (absolute path, size, mtime_ns; None for no annotation), its subject, origin,
    reader and reader options. A rerun redoes a record whose fingerprint changed (a hypnogram
    added or replaced, a file rewritten, another ``--subject-regex``)."""
    files = [source.signal, source.annotation, *source.options.get("companions", ())]
    reader = source.reader
    state = {
        "files": [None if f is None else _file_state(Path(f)) for f in files],
        "subject": source.subject or source.name,
        "origin": source.origin,
        "reader": f"{getattr(reader, '__module__', '')}.{getattr(reader, '__qualname__', type(reader).__name__)}",
        "options": source.options,
    }
    text = json.dumps(state, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def trim_wake(grid: WindowGrid, window_s: float, minutes: float | None) -> tuple[WindowGrid, dict | None]:
    """Keep ``minutes`` of windows before the first and after the last sleep window (labels 1-4).

    Returns the trimmed grid and ``{"wake_min", "dropped_before", "dropped_after"}`` (None when
    ``minutes`` is None or <= 0: nothing trimmed). A grid without sleep window is kept whole.
    """
    labels = np.asarray(grid.labels, np.int8)
    same = WindowGrid(grid.first_start, grid.n_windows, grid.window_len, grid.target_fs, labels)
    if minutes is None or minutes <= 0:
        return same, None
    sleep = np.flatnonzero((labels >= 1) & (labels < len(CLASS_NAMES)))
    if sleep.size == 0:
        return same, {"wake_min": minutes, "dropped_before": 0, "dropped_after": 0, "note": "no sleep window"}
    keep = int(round(minutes * 60 / window_s))
    start, stop = max(0, int(sleep[0]) - keep), min(labels.size, int(sleep[-1]) + 1 + keep)
    trimmed = WindowGrid(grid.first_start + start * grid.window_len, stop - start, grid.window_len, grid.target_fs,
                         labels[start:stop])
    return trimmed, {"wake_min": minutes, "dropped_before": start, "dropped_after": int(labels.size - stop)}


def prepare_record(source: RecordSource, records_dir: Path, config: PrepConfig) -> dict:
    """Read (``source.reader``), trim, filter, resample, window, z-score and write one record;
    return its info dict. A record that fails (:class:`RecordError`, or anything else) leaves none
    of its files behind: its old ``.info.json`` marker goes first (a record that now fails is never
    taken as done), its ``.npy`` files with the failure (no stale windows of an earlier run)."""
    files = record_files(records_dir, source.name)
    files["info"].unlink(missing_ok=True)  # the record is not done until the marker is back
    try:
        return _prepare_record(source, files, config)
    except BaseException:
        for path in files.values():
            path.unlink(missing_ok=True)
        raise


def _prepare_record(source: RecordSource, files: dict[str, Path], config: PrepConfig) -> dict:
    fingerprint = record_fingerprint(source)  # before reading: a file changed meanwhile is redone next time
    result = source.reader(source, config)
    recording = result.recording
    grid, trim = trim_wake(result.grid, config.window_s, config.trim_wake_min)
    out = recording_windows(recording, grid, config.windows())
    extra = dict(result.info)
    synthetic = bool(extra.pop("synthetic", False))
    _save_npy(files["signal"], out.windows)
    _save_npy(files["labels"], out.labels)
    counts = label_counts(out.labels)
    info = {
        "n_windows": out.n_windows,
        "labelled_windows": out.n_windows - counts["unlabelled"],
        "label_counts": counts,
        "first_window_start_s": out.first_start_s,
        "duration_s": recording.duration_s,
        **({"segments": len(recording.segments), "gap_windows_skipped": out.gap_windows} if recording.segments else {}),
        "input_fs": recording.fs,
        "n_samples": recording.n_samples,
        "has_annotations": False,
        "origin": "synthetic" if synthetic else source.origin,
        "flat_windows": int(out.flat.any(axis=1).sum()),
        "no_signal_windows": int(out.flat.all(axis=1).sum()),
        "flat_channel_windows": int(out.flat.sum()),
        "flat_by_channel": {c: int(k) for c, k in zip(recording.channels, out.flat.sum(0)) if k},
        **extra,
        "subject": source.subject or source.name,
        **({"trim": trim} if trim is not None else {}),
        "params_hash": config.params_hash(),
        "source_fingerprint": fingerprint,
        "signal": f"records/{files['signal'].name}",
        "labels": f"records/{files['labels'].name}",
    }
    atomic_write_json(files["info"], info)
    return info


def load_done(records_dir: Path, name: str, params_hash: str, fingerprint: str | None = None) -> dict | None:
    """The info of a record already prepared with ``params_hash`` (and, when given, from the sources
    of :func:`record_fingerprint` ``fingerprint``), or None if it must be (re)done."""
    files = record_files(records_dir, name)
    try:
        info = json.loads(files["info"].read_text())
        if info.get("params_hash") != params_hash:
            return None
        if fingerprint is not None and info.get("source_fingerprint") != fingerprint:
            return None
        signal = np.load(files["signal"], mmap_mode="r")
        labels = np.load(files["labels"], mmap_mode="r")
    except (OSError, ValueError):
        return None
    return info if signal.shape[0] == labels.shape[0] == info.get("n_windows") else None


def _job(source: RecordSource, records_dir: Path, config: PrepConfig) -> tuple[str, dict | None, str | None]:
    """Worker entry point: (name, info, None) or (name, None, one-line reason)."""
    try:
        return source.name, prepare_record(source, records_dir, config), None
    except DataError as exc:  # RecordError, HypnogramError: the record's own problem
        reason = str(exc)
    except MemoryError:
        reason = f"{source.name}: out of memory while preparing; use fewer --workers"
    except Exception as exc:  # a bug or an unforeseen file problem: report it, keep going
        reason = f"{source.name}: unexpected {type(exc).__name__}: {exc}"
    return source.name, None, " ".join(reason.split())


DEFAULT_SPLITS = SplitSettings()


@dataclass(frozen=True)
class RunSettings:
    """What the manifest says about the run: ``dataset`` (one line), ``src``, the ``metadata``
    CSV, ``extra`` top-level manifest keys, and the progress bar's ``desc``."""

    dataset: str
    src: Path
    metadata: Path | None = None
    extra: dict = field(default_factory=dict, hash=False)
    desc: str = "records"


def _records_dir(out: Path) -> Path:
    records_dir = out / "records"
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {records_dir} ({exc}); choose a writable --out") from None
    for stale in records_dir.glob(".*.tmp"):  # temp files of a run that was cut off
        stale.unlink(missing_ok=True)
    return records_dir


def prepare_sources(
    sources: list[RecordSource],
    out: Path,
    run: RunSettings,
    config: PrepConfig,
    failed: dict[str, str] | None = None,
    workers: int = 1,
    splits: SplitSettings = DEFAULT_SPLITS,
    meta: dict[str, dict] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    synthetic: bool = False,
) -> RunResult:
    """Prepare ``sources`` into ``out`` (records done with the same parameters are skipped).

    ``failed``: records the finder already rejected ({name: reason}); ``meta``: {record: {"age",
    "sex"}}. Raises :class:`DataError` for an output prepared with other parameters (unless
    ``overwrite``) or an unwritable ``out``; per-record problems end up in ``RunResult.failed``.
    """
    out, failed, meta = Path(out), dict(failed or {}), meta or {}
    by_name: dict[str, list[str]] = {}
    for s in sources:
        by_name.setdefault(s.name, []).append(str(s.signal))
    clashes = {n: files for n, files in by_name.items() if len(files) > 1}
    if clashes:
        raise DataError(f"several recordings get the same record name: {dict(sorted(clashes.items()))}; expected "
                        "one recording per name: rename or move the files")
    synthetic = check_existing_output(out, config, overwrite) or synthetic
    records_dir = _records_dir(out)
    subjects = {s.name: s.subject or s.name for s in sources}
    done = {} if overwrite else {
        s.name: load_done(records_dir, s.name, config.params_hash(), record_fingerprint(s)) for s in sources}
    infos = {name: info for name, info in done.items() if info is not None}
    skipped, prepared = sorted(infos), []
    started = build_manifest(run, config, with_metadata(infos, meta, subjects), {}, "in_progress", synthetic)
    atomic_write_json(out / "manifest.json", started)

    todo = [s for s in sources if s.name not in infos]
    job = partial(_job, records_dir=records_dir, config=config)
    for name, info, reason in run_jobs(job, todo, workers, progress, run.desc):
        if info is None:
            failed[name] = reason
        else:
            infos[name] = info
            prepared.append(name)
    records = with_metadata(infos, meta, subjects)
    split_dict, warnings = make_splits(records, splits)
    atomic_write_json(out / "splits.json", split_dict)
    failed = dict(sorted(failed.items()))
    synthetic = synthetic or any(r["origin"] == "synthetic" for r in records.values())
    manifest = build_manifest(run, config, records, failed, "complete", synthetic)
    atomic_write_json(out / "manifest.json", manifest)
    return RunResult(manifest, split_dict, sorted(prepared), skipped, failed, warnings)
