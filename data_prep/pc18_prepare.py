"""Prepare a directory of PhysioNet/CinC 2018 records: per-record jobs, workers, resume, splits.

Output (the contract read by the EEG dataset, ``modalities/eeg/prepared.py``, which holds the
format's constants: FORMAT_VERSION, CLASS_NAMES, UNLABELLED; all JSON keys below are stable,
format_version 1)::

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
least one flat channel), ``flat_channel_windows``, ``subject`` (= the record name: one PC18
record is one subject), ``age`` and ``sex`` (from ``--metadata``, else null), ``params_hash``, ``signal``, ``labels``.
``failed[<record>]``: one-line reason. Read only the records listed in ``records``.

Splits: see ``data_prep/pc18_splits.py`` (test / finetune from labelled records, pretrain =
every record not in test; sizes clamp with a warning on small data).

Resume: each record is written to temp files and renamed; its ``.info.json`` is written last and
marks it done. A rerun skips records whose marker has the same ``params_hash`` and redoes the
rest; leftover temp files (``.<name>.*.tmp``) are removed. An output prepared with other
parameters is refused unless ``overwrite``, which redoes every record.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data_prep.pc18_labels import STAGE_NOTES, label_counts, read_stage_notes, window_labels
from data_prep.workers import run_jobs
from modalities.eeg.signal import TARGET_FS, FilterSpec, RecordError, filter_and_resample, normalise_windows
from modalities.eeg.wfdb_reader import EEG_CHANNELS, read_eeg, read_header
from data_prep.pc18_splits import SplitSettings, make_splits, read_metadata
from part.atomic import atomic_write, atomic_write_json
from part.errors import DataError
from modalities.eeg.prepared import CLASS_NAMES, FORMAT_VERSION, UNLABELLED

DATASET = "PhysioNet/CinC Challenge 2018 (You Snooze You Win), v1.0.0"


@dataclass(frozen=True)
class PrepConfig:
    """Everything that changes the content of a prepared record (hashed into ``params_hash``)."""

    channels: tuple[str, ...] = EEG_CHANNELS
    target_fs: float = TARGET_FS
    window_s: float = 30.0
    dtype: str = "float16"
    filter: FilterSpec = field(default_factory=FilterSpec)
    eps: float = 1e-6  # uV, added to each window's std
    flat_std_uv: float = 0.1  # a window-channel with std below this (uV) counts as flat

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise DataError(f"dtype {self.dtype!r} is not supported; expected float16 or float32")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise DataError(
                f"channels {list(self.channels)} must be a non-empty list of distinct signal names"
            )

    def params(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "channels": list(self.channels),
            "sampling_rate": self.target_fs,
            "window_s": self.window_s,
            "dtype": self.dtype,
            "filter": asdict(self.filter),
            "normalisation": {"eps": self.eps, "flat_std_uv": self.flat_std_uv},
        }

    def params_hash(self) -> str:
        text = json.dumps(self.params(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordSource:
    """One record found under ``--src``: its header, annotation file (or None) and origin."""

    name: str
    header: Path
    annotation: Path | None
    origin: str


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
        sources.append(RecordSource(name, header, annotation, _origin(header, src)))
    return sources, duplicates


def _origin(header: Path, src: Path) -> str:
    """"training" or "test" from the folder (PhysioNet layout) or the name prefix, else "unknown"."""
    folders, name = set(header.relative_to(src).parts[:-1]), header.stem
    if "training" in folders or name.startswith("tr"):
        return "training"
    if "test" in folders or name.startswith("te"):
        return "test"
    return "unknown"


def record_files(records_dir: Path, name: str) -> dict[str, Path]:
    return {
        "signal": records_dir / f"{name}.npy",
        "labels": records_dir / f"{name}.labels.npy",
        "info": records_dir / f"{name}.info.json",
    }


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def prepare_record(source: RecordSource, records_dir: Path, config: PrepConfig) -> dict:
    """Read, filter, resample, window, label and write one record; return its info dict.

    Raises :class:`RecordError` before writing anything if the record is unusable.
    """
    header = read_header(source.header)
    fs, n_samples = float(header.fs), int(header.sig_len or 0)
    notes = read_stage_notes(source.annotation, fs) if source.annotation else None
    grid = window_labels(notes, n_samples, fs, config.target_fs, config.window_s)
    if grid.n_windows < 1:
        raise RecordError(
            f"{source.name}: {source.header.name} gives {n_samples} samples at {fs} Hz, shorter "
            f"than one {config.window_s} s window"
        )
    recording = read_eeg(source.header, config.channels)
    signal = filter_and_resample(recording, config.filter, config.target_fs)
    del recording
    normed = normalise_windows(
        signal, grid.first_start, grid.n_windows, grid.window_len, config.dtype, config.eps, config.flat_std_uv
    )
    del signal
    files = record_files(records_dir, source.name)
    files["info"].unlink(missing_ok=True)  # the record is not done until the marker is back
    _save_npy(files["signal"], normed.windows)
    _save_npy(files["labels"], grid.labels)
    counts = label_counts(grid.labels)
    synthetic = any("synthetic" in comment.lower() for comment in header.comments)
    info = {
        "n_windows": grid.n_windows,
        "labelled_windows": grid.n_windows - counts["unlabelled"],
        "label_counts": counts,
        "first_window_start_s": grid.first_start / config.target_fs,
        "duration_s": n_samples / fs,
        "input_fs": fs,
        "n_samples": n_samples,
        "has_annotations": notes is not None,
        "origin": "synthetic" if synthetic else source.origin,
        "flat_windows": int(normed.flat.any(axis=1).sum()),
        "flat_channel_windows": int(normed.flat.sum()),
        "params_hash": config.params_hash(),
        "signal": f"records/{files['signal'].name}",
        "labels": f"records/{files['labels'].name}",
    }
    atomic_write_json(files["info"], info)
    return info


def load_done(records_dir: Path, name: str, params_hash: str) -> dict | None:
    """The info of a record already prepared with ``params_hash``, or None if it must be (re)done."""
    files = record_files(records_dir, name)
    try:
        info = json.loads(files["info"].read_text())
        if info.get("params_hash") != params_hash:
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
    except RecordError as exc:
        reason = str(exc)
    except MemoryError:
        reason = f"{source.name}: out of memory while preparing; use fewer --workers"
    except Exception as exc:  # a bug or an unforeseen file problem: report it, keep going
        reason = f"{source.name}: unexpected {type(exc).__name__}: {exc}"
    return source.name, None, " ".join(reason.split())


def _check_existing_output(out: Path, config: PrepConfig, overwrite: bool) -> bool:
    """Refuse an output prepared with other parameters unless ``overwrite``; return the previous
    manifest's ``synthetic`` flag."""
    path = out / "manifest.json"
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text())
        old_hash, old_params = old["params_hash"], old.get("params", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if overwrite:
            return False
        raise DataError(
            f"cannot read the existing {path} ({exc}); use --overwrite to replace that output, or "
            "another --out"
        ) from None
    new_params = config.params()
    if old_hash != config.params_hash() and not overwrite:
        keys = sorted(set(old_params) | set(new_params))
        changed = {k: [old_params.get(k), new_params.get(k)] for k in keys if old_params.get(k) != new_params.get(k)}
        raise DataError(
            f"{out} holds records prepared with other parameters (hash {old_hash}, this run "
            f"{config.params_hash()}; changed [old, new]: {json.dumps(changed)}); use --overwrite "
            f"to redo every record with the new parameters, or another --out"
        )
    return bool(old.get("synthetic", False))


def _with_metadata(infos: dict[str, dict], meta: dict[str, dict]) -> dict[str, dict]:
    """Record infos sorted by name, with subject (= record), age and sex added."""
    empty = {"age": None, "sex": None}
    return {n: {**infos[n], "subject": n, **meta.get(n, empty)} for n in sorted(infos)}


def _manifest(
    src: Path, config: PrepConfig, records: dict, failed: dict, status: str, synthetic: bool, metadata: Path | None
) -> dict:
    """The content of ``manifest.json`` (keys in the module docstring)."""
    counts = {k: sum(r["label_counts"][k] for r in records.values()) for k in (*CLASS_NAMES, "unlabelled")}
    windows = sum(r["n_windows"] for r in records.values())
    return {
        "format_version": FORMAT_VERSION,
        "dataset": DATASET,
        "status": status,
        "synthetic": synthetic,
        "params": config.params(),
        "params_hash": config.params_hash(),
        "sampling_rate": config.target_fs,
        "window_s": config.window_s,
        "window_samples": int(round(config.window_s * config.target_fs)),
        "channels": list(config.channels),
        "dtype": config.dtype,
        "label_names": list(CLASS_NAMES),
        "label_codes": {**{n: i for i, n in enumerate(CLASS_NAMES)}, "unlabelled": UNLABELLED},
        "stage_notes": STAGE_NOTES,
        "filter": config.filter.describe(),
        "resampling": f"scipy.signal.resample_poly to {config.target_fs} Hz (polyphase, rational up/down; "
        "its anti-aliasing FIR is the band-pass low-pass in 'filter')",
        "normalisation": {
            "method": "per window and channel: (x - mean) / (std + eps), uV before",
            "eps": config.eps,
            "flat_std_uv": config.flat_std_uv,
        },
        "source": str(src),
        "metadata": str(metadata) if metadata else None,
        "files": {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"},
        "totals": {"records": len(records), "failed": len(failed), "windows": windows, "label_counts": counts},
        "records": records,
        "failed": failed,
    }


DEFAULT_SPLITS = SplitSettings()


def prepare_dataset(
    src: Path,
    out: Path,
    config: PrepConfig = PrepConfig(),
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
    synthetic = _check_existing_output(out, config, overwrite) or synthetic
    records_dir = out / "records"
    try:
        records_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {records_dir} ({exc}); choose a writable --out") from None
    for stale in records_dir.glob(".*.tmp"):  # temp files of a run that was cut off
        stale.unlink(missing_ok=True)
    done = {} if overwrite else {s.name: load_done(records_dir, s.name, config.params_hash()) for s in sources}
    infos = {name: info for name, info in done.items() if info is not None}
    skipped, prepared = sorted(infos), []
    started = _manifest(src, config, _with_metadata(infos, meta), {}, "in_progress", synthetic, metadata)
    atomic_write_json(out / "manifest.json", started)

    todo = [s for s in sources if s.name not in infos]
    job = partial(_job, records_dir=records_dir, config=config)
    for name, info, reason in run_jobs(job, todo, workers, progress, "PC18 records"):
        if info is None:
            failed[name] = reason
        else:
            infos[name] = info
            prepared.append(name)
    records = _with_metadata(infos, meta)
    split_dict, warnings = make_splits(records, splits)
    atomic_write_json(out / "splits.json", split_dict)
    failed = dict(sorted(failed.items()))
    synthetic = synthetic or any(r["origin"] == "synthetic" for r in records.values())
    manifest = _manifest(src, config, records, failed, "complete", synthetic, metadata)
    atomic_write_json(out / "manifest.json", manifest)
    return RunResult(manifest, split_dict, sorted(prepared), skipped, failed, warnings)
