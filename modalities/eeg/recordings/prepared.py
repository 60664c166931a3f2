"""The prepared sleep-recording format: its version and prepare commands, and its windows read
lazily from memory-mapped ``.npy`` files (the stage classes are in ``constants.py``).

The directory is the one ``part-prepare-pc18`` (``data_prep/physionet2018.py``),
``part-prepare-sleep-edf`` or ``part-prepare-psg`` writes (the writer is ``data_prep/prepare.py``;
the format is described in ``data_prep/pc18_prepare.py``; the writer takes ``FORMAT_VERSION``
from here)::

    PREP/manifest.json              format_version, status, channels, window_samples, records{...}
    PREP/splits.json                {"seed", "test", "finetune", "pretrain", "subjects", ...}
    PREP/records/<rec>.npy          float16 or float32 (n_windows, C=6, L=3000), z-scored
    PREP/records/<rec>.labels.npy   int8 (n_windows,): 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 none

Nothing here loads the signal files into RAM: every record is ``np.load(mmap_mode="r")`` and a
batch reads, per record, one contiguous slice (or one sorted fancy index) of its windows. Only the
small label files are read whole. Bad input raises :class:`part.errors.DataError` naming the file,
what was expected and the command that fixes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from part.errors import DataError
from part.modalities.eeg.recordings.constants import CLASS_NAMES, UNLABELLED

# The format contract, shared with the writer (data_prep/pc18_prepare.py).
FORMAT_VERSION = 1
PREPARE_COMMANDS = {  # data.name -> how to prepare a directory it reads (first: the matching command)
    "pc18": "`part-prepare-pc18 --src RAW --out {root}` (PhysioNet 2018; synthetic demo records: "
            "`part-prepare-pc18 --synthetic N --src DEMO_RAW --out {root}`)",
    "sleep_edf": "`part-prepare-sleep-edf --src RAW --out {root}` (Sleep-EDF; add --download, or --synthetic N "
                 "for demo nights); any other EDF/BDF/FIF recordings: `part-prepare-psg --src DIR --out {root} "
                 "--channels ...`",
}
PREPARE_COMMAND = (PREPARE_COMMANDS["pc18"] + "; Sleep-EDF: `part-prepare-sleep-edf --src RAW --out {root}`; "
                   "other EDF/FIF recordings: `part-prepare-psg --src DIR --out {root} --channels ...`")
SPLIT_NAMES = ("test", "finetune", "pretrain")
_FILES = {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"}


def prepare_hint(root: Path) -> str:
    return "prepare it with " + PREPARE_COMMAND.format(root=root)


def _read_json(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} not found: {root} is not a prepared directory of sleep recordings; "
                        f"{prepare_hint(root)}")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); re-run the preparation: {prepare_hint(root)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}; "
                        f"re-run the preparation: {prepare_hint(root)}")
    return obj


def load_manifest(root: str | Path, expected_format_version: int = FORMAT_VERSION) -> dict:
    """``root/manifest.json`` checked for format version, completeness and a ``records`` table."""
    root = Path(root)
    path = root / "manifest.json"
    manifest = _read_json(path, root)
    version = manifest.get("format_version")
    if version != expected_format_version:
        raise DataError(
            f"{path}: format_version {version!r}, but this toolkit reads format_version "
            f"{expected_format_version}; the directory comes from another preprocessing version: "
            f"re-run the preparation into a new --out (or add --overwrite): {prepare_hint(root)}")
    if manifest.get("status", "complete") != "complete":
        raise DataError(
            f"{path}: status {manifest.get('status')!r}: the preparation did not finish; rerun the "
            "same part-prepare-* command (e.g. data_prep/physionet2018.py), it resumes where it stopped")
    records = manifest.get("records")
    if not isinstance(records, dict) or not all(isinstance(v, dict) and "n_windows" in v for v in records.values()):
        raise DataError(f"{path}: key 'records' must map each record to an object with 'n_windows'; "
                        f"{prepare_hint(root)}")
    return manifest


def data_description(manifest: dict) -> dict:
    """What a model trained on these windows expects of new data (``DataBundle.describe``, recorded
    in finetuned checkpoints), JSON-ready: ``channels`` (names, in order), ``rename`` (the file
    channel names the preparation renamed to them, {file name: channel}), ``sampling_rate`` (Hz),
    ``window_s`` (s), ``window_samples``, ``filter`` (the manifest's: edges, design and the
    ``FilterSpec`` fields), ``resampling``, ``normalisation`` (method, ``eps`` in uV,
    ``flat_std_uv``), ``dtype`` (storage type the windows were rounded to), ``label_names``,
    ``units`` and ``alignment``. Keys the manifest lacks are None."""
    params = manifest.get("params") or {}
    rate = manifest.get("sampling_rate", params.get("sampling_rate"))
    window_s = manifest.get("window_s", params.get("window_s"))
    samples = manifest.get("window_samples")
    if samples is None and rate is not None and window_s is not None:
        samples = int(round(float(rate) * float(window_s)))
    return {
        "kind": "eeg_windows",
        "format_version": manifest.get("format_version"),
        "channels": list(manifest.get("channels") or params.get("channels") or []),
        "rename": dict(manifest.get("rename") or params.get("rename") or {}),
        "sampling_rate": None if rate is None else float(rate),
        "window_s": None if window_s is None else float(window_s),
        "window_samples": None if samples is None else int(samples),
        "filter": manifest.get("filter") or params.get("filter"),
        "resampling": manifest.get("resampling"),
        "normalisation": manifest.get("normalisation") or params.get("normalisation"),
        "dtype": manifest.get("dtype", params.get("dtype")),
        "label_names": list(manifest.get("label_names") or CLASS_NAMES),
        "units": "uV before normalisation (each window and channel z-scored)",
        "alignment": "30-s windows on the grid of the scoring epochs (from the record start when unscored)",
        "dataset": manifest.get("dataset"),
        "synthetic": bool(manifest.get("synthetic", False)),
    }


def record_paths(root: Path, manifest: dict, record: str) -> tuple[Path, Path]:
    files = {**_FILES, **(manifest.get("files") or {})}
    return root / files["signal"].format(record=record), root / files["labels"].format(record=record)


def _missing_record(root: Path, manifest: dict, record: str, where: str) -> DataError:
    reason = (manifest.get("failed") or {}).get(record)
    why = f"its preparation failed: {reason}" if reason else "it is not among the manifest's prepared records"
    return DataError(
        f"{where} names record {record!r}, but {why}; re-run the preparation that wrote {root} "
        f"(`part-prepare-pc18`, i.e. data_prep/physionet2018.py, or part-prepare-sleep-edf / -psg): it rewrites "
        f"splits.json from the records it prepared")


def open_record(root: Path, manifest: dict, record: str, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one record: (signal (n_windows, C, L) float16/32 memmap, labels (n_windows,) int8).

    Checks the files exist, have the manifest's window count, shape and dtype.
    """
    if record not in manifest["records"]:
        raise _missing_record(root, manifest, record, where or f"the dataset ({root})")
    sig_path, lab_path = record_paths(root, manifest, record)
    arrays = []
    for path, mmap in ((sig_path, "r"), (lab_path, None)):
        if not path.is_file():
            raise DataError(f"{path} is missing (record {record!r} is in {root / 'manifest.json'}); "
                            f"re-run the preparation: {prepare_hint(root)}")
        try:
            arrays.append(np.load(path, mmap_mode=mmap, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path} ({exc}); the file is damaged: delete it and re-run the preparation: "
                            f"{prepare_hint(root)}") from None
    signal, labels = arrays
    n = manifest["records"][record]["n_windows"]
    shape = (len(manifest["channels"]) if "channels" in manifest else None, manifest.get("window_samples"))
    if signal.ndim != 3 or signal.dtype not in (np.float16, np.float32) or any(
            e is not None and e != s for e, s in zip(shape, signal.shape[1:])):
        raise DataError(f"{sig_path}: expected float16/float32 of shape (n_windows, {shape[0]}, {shape[1]}), "
                        f"got {signal.dtype} {signal.shape}; delete it and re-run the preparation: "
                        f"{prepare_hint(root)}")
    for path, arr in ((sig_path, signal), (lab_path, labels)):
        if arr.shape[0] != n:
            raise DataError(f"{path} holds {arr.shape[0]} windows but {root / 'manifest.json'} says n_windows={n} "
                            f"for {record!r}; the file was changed or cut off: delete it and re-run the preparation: "
                            f"{prepare_hint(root)}")
    top = len(CLASS_NAMES) - 1
    if (labels.ndim != 1 or labels.dtype != np.int8
            or (labels.size and (labels.min() < UNLABELLED or labels.max() > top))):
        raise DataError(f"{lab_path}: expected int8 (n_windows,) with values {UNLABELLED}..{top}, "
                        f"got {labels.dtype} {labels.shape}; delete it and re-run the preparation: "
                        f"{prepare_hint(root)}")
    return signal, labels


FINITE_CHUNK_BYTES = 64 << 20  # the finite check reads a record in slices of about this size


def first_nonfinite_window(signal: np.ndarray) -> int | None:
    """Index of the first window of ``signal`` (n_windows, C, L; a memmap) that holds NaN or Inf,
    else None. Reads slices of about ``FINITE_CHUNK_BYTES`` (one float32 sum each: NaN and Inf
    propagate through it), never the whole record at once; only a slice whose sum is not finite
    is looked at window by window."""
    per_slice = max(1, FINITE_CHUNK_BYTES // max(signal[:1].nbytes, 1))
    for start in range(0, signal.shape[0], per_slice):
        chunk = signal[start:start + per_slice]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.add.reduce(chunk, axis=None, dtype=np.float32)):
                continue
        bad = np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1))
        if bad.size:  # (else a float32 sum that overflowed: the values are finite)
            return start + int(bad[0])
    return None


# Record files found finite in this process, by (path, size, mtime_ns): repeats, stages and
# label-efficiency points open the same records again and need not re-read them.
_FINITE_FILES: set = set()


def check_finite_record(root: Path, manifest: dict, record: str, signal: np.ndarray) -> None:
    """Raise DataError naming the record file when ``signal`` (from :func:`open_record`) holds NaN
    or Inf: training on it would end in a non-finite loss far from its cause. A file already
    found finite in this process (same path, size and mtime) is not read again."""
    path = record_paths(root, manifest, record)[0]
    try:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None  # not a plain file (e.g. a test's in-memory signal): always checked
    if key is not None and key in _FINITE_FILES:
        return
    bad = first_nonfinite_window(signal)
    if bad is None:
        if key is not None:
            _FINITE_FILES.add(key)
        return
    raise DataError(f"{path}: window {bad} of record {record!r} holds non-finite values (NaN or Inf); the "
                        f"prepared file is damaged: delete it and re-run the preparation: {prepare_hint(root)}")


def check_disjoint(splits: dict) -> None:
    """Raise DataError if ``test`` shares a record or a subject with ``finetune`` or ``pretrain``."""
    subjects = splits.get("subjects") or {}
    subj = lambda rec: subjects.get(rec, rec)  # noqa: E731  (one subject per record by default)
    test = set(splits.get("test", []))
    test_subjects = {subj(r) for r in test}
    for name in ("finetune", "pretrain"):
        shared = sorted(test.intersection(splits.get(name, [])))
        shared_subj = sorted({subj(r) for r in splits.get(name, [])} & test_subjects)
        if shared or shared_subj:
            raise DataError(
                f"splits.json: test and {name} overlap (records {shared[:5]}, subjects {shared_subj[:5]}); "
                "test subjects must never be trained on: re-run the preparation (part-prepare-pc18 / -sleep-edf / "
                "-psg) to rewrite the splits")


def load_splits(root: str | Path, expected_format_version: int = FORMAT_VERSION) -> dict:
    """Read and validate ``root/splits.json`` against the manifest and the record files.

    Returns the splits dict plus ``"labelled"``: the records with at least one labelled window.
    Raises DataError for a missing/old manifest, a split naming a missing record, a window count
    that disagrees with the manifest, overlapping splits, or a test split without labelled window.
    """
    root = Path(root)
    manifest = load_manifest(root, expected_format_version)
    path = root / "splits.json"
    splits = _read_json(path, root)
    for key in (*SPLIT_NAMES, "subjects"):
        expected = dict if key == "subjects" else list
        if not isinstance(splits.get(key), expected):
            raise DataError(f"{path}: key {key!r} missing or not a {expected.__name__}; "
                            f"re-run the preparation: {prepare_hint(root)}")
    labelled = []
    for rec in sorted(set().union(*(splits[k] for k in SPLIT_NAMES))):
        if not isinstance(rec, str):
            raise DataError(f"{path}: record names must be strings, got {rec!r}; re-run the preparation: "
                            f"{prepare_hint(root)}")
        _, labels = open_record(root, manifest, rec, where=str(path))
        if (labels >= 0).any():
            labelled.append(rec)
    for key in SPLIT_NAMES:
        if len(set(splits[key])) != len(splits[key]):
            raise DataError(f"{path}: split {key!r} lists a record twice; re-run the preparation: {prepare_hint(root)}")
    check_disjoint(splits)
    if not set(splits["test"]) & set(labelled):
        raise DataError(f"{path}: the test split ({len(splits['test'])} records) has no labelled window, so nothing "
                        "can be evaluated; prepare records with .arousal annotations (training set), e.g. "
                        f"{prepare_hint(root)}")
    return {**splits, "labelled": labelled}


def finetune_pool(splits: dict) -> dict[str, list[str]]:
    """The finetune pool: {subject: its labelled records} of every labelled subject outside the
    test split (``splits`` from :func:`load_splits`, which adds ``labelled``)."""
    subjects = splits.get("subjects") or {}
    test_subjects = {subjects.get(r, r) for r in splits["test"]}
    pool: dict[str, list[str]] = {}
    for rec in splits["labelled"]:
        if subjects.get(rec, rec) not in test_subjects:
            pool.setdefault(subjects.get(rec, rec), []).append(rec)
    return pool


def draw_finetune_records(splits: dict, n: int, seed: int, repeat: int = 0) -> list[str]:
    """Finetune records for label-efficiency repeat ``repeat`` (``n`` subjects, all their records).

    Repeat 0 is the ``splits["finetune"]`` list when it holds ``n`` subjects (else the first
    draw). Other repeats draw ``n`` subjects from the labelled subjects outside ``test`` with
    ``default_rng(seed)``, each different from every earlier repeat's while the pool allows.
    ``splits`` is what :func:`load_splits` returns (it needs its ``"labelled"`` list).
    """
    if "labelled" not in splits:
        raise ValueError("draw_finetune_records needs splits from load_splits() (the 'labelled' list)")
    subjects = splits.get("subjects") or {}
    subj = lambda rec: subjects.get(rec, rec)  # noqa: E731
    by_subject = finetune_pool(splits)
    pool = sorted(by_subject)
    if n < 1 or n > len(pool):
        raise DataError(f"asked for {n} finetune subjects, but splits.json has {len(pool)} labelled subjects outside "
                        f"the test split; lower the number of finetune subjects to at most {len(pool)} "
                        "or prepare more records")
    first = frozenset(subj(r) for r in splits["finetune"])
    if repeat == 0 and len(first) == n:
        return sorted(splits["finetune"])
    rng = np.random.default_rng(seed)
    seen = {first} if len(first) == n else set()
    for _ in range(repeat if len(first) == n else repeat + 1):
        for _try in range(100):
            draw = frozenset(pool[i] for i in rng.choice(len(pool), n, replace=False))
            if draw not in seen:
                break
        seen.add(draw)  # exhausted pools repeat a draw rather than fail
    return sorted(rec for s in draw for rec in by_subject[s])
