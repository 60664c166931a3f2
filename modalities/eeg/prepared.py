"""The prepared PhysioNet/CinC 2018 format: its constants, and its windows read lazily from
memory-mapped ``.npy`` files.

The directory is the one ``python data_prep/physionet2018.py --src RAW --out PREP`` writes
(writer in ``data_prep/pc18_prepare.py``, which takes the format constants below from here)::

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
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from part.errors import DataError

# The format contract, shared with the writer (data_prep/pc18_prepare.py).
FORMAT_VERSION = 1
CLASS_NAMES = ("W", "N1", "N2", "N3", "REM")  # label value -> sleep stage
UNLABELLED = -1  # label of a window without a (single) scored stage
PC18_WINDOW_SHAPE = (6, 3000)  # (C, L) of the default preparation: 6 EEG channels, 30 s at 100 Hz
PREPARE_COMMAND = ("`python data_prep/physionet2018.py --src RAW --out {root}` (or, for synthetic demo "
                   "data, `python data_prep/physionet2018.py --synthetic N --src DEMO_RAW --out {root}`)")
SPLIT_NAMES = ("test", "finetune", "pretrain")
_FILES = {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"}


def _hint(root: Path) -> str:
    return "prepare it with " + PREPARE_COMMAND.format(root=root)


def _read_json(path: Path, root: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} not found: {root} is not a prepared PhysioNet 2018 directory; {_hint(root)}")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); re-run the preparation: {_hint(root)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(obj).__name__}; "
                        f"re-run the preparation: {_hint(root)}")
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
            f"re-run the preparation into a new --out (or add --overwrite): {_hint(root)}")
    if manifest.get("status", "complete") != "complete":
        raise DataError(
            f"{path}: status {manifest.get('status')!r}: the preparation did not finish; rerun the "
            "same data_prep/physionet2018.py command, it resumes where it stopped")
    records = manifest.get("records")
    if not isinstance(records, dict) or not all(isinstance(v, dict) and "n_windows" in v for v in records.values()):
        raise DataError(f"{path}: key 'records' must map each record to an object with 'n_windows'; {_hint(root)}")
    return manifest


def _record_paths(root: Path, manifest: dict, record: str) -> tuple[Path, Path]:
    files = {**_FILES, **(manifest.get("files") or {})}
    return root / files["signal"].format(record=record), root / files["labels"].format(record=record)


def _missing_record(root: Path, manifest: dict, record: str, where: str) -> DataError:
    reason = (manifest.get("failed") or {}).get(record)
    why = f"its preparation failed: {reason}" if reason else "it is not among the manifest's prepared records"
    return DataError(
        f"{where} names record {record!r}, but {why}; re-run `python data_prep/physionet2018.py` "
        f"for {root} (it rewrites splits.json from the records it prepared)")


def open_record(root: Path, manifest: dict, record: str, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one record: (signal (n_windows, C, L) float16/32 memmap, labels (n_windows,) int8).

    Checks the files exist, have the manifest's window count, shape and dtype.
    """
    if record not in manifest["records"]:
        raise _missing_record(root, manifest, record, where or f"the dataset ({root})")
    sig_path, lab_path = _record_paths(root, manifest, record)
    arrays = []
    for path, mmap in ((sig_path, "r"), (lab_path, None)):
        if not path.is_file():
            raise DataError(f"{path} is missing (record {record!r} is in {root / 'manifest.json'}); "
                            f"re-run the preparation: {_hint(root)}")
        try:
            arrays.append(np.load(path, mmap_mode=mmap, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path} ({exc}); the file is damaged: delete it and re-run the preparation: "
                            f"{_hint(root)}") from None
    signal, labels = arrays
    n = manifest["records"][record]["n_windows"]
    shape = (len(manifest["channels"]) if "channels" in manifest else None, manifest.get("window_samples"))
    if signal.ndim != 3 or signal.dtype not in (np.float16, np.float32) or any(
            e is not None and e != s for e, s in zip(shape, signal.shape[1:])):
        raise DataError(f"{sig_path}: expected float16/float32 of shape (n_windows, {shape[0]}, {shape[1]}), "
                        f"got {signal.dtype} {signal.shape}; delete it and re-run the preparation: {_hint(root)}")
    for path, arr in ((sig_path, signal), (lab_path, labels)):
        if arr.shape[0] != n:
            raise DataError(f"{path} holds {arr.shape[0]} windows but {root / 'manifest.json'} says n_windows={n} "
                            f"for {record!r}; the file was changed or cut off: delete it and re-run the preparation: "
                            f"{_hint(root)}")
    top = len(CLASS_NAMES) - 1
    if (labels.ndim != 1 or labels.dtype != np.int8
            or (labels.size and (labels.min() < UNLABELLED or labels.max() > top))):
        raise DataError(f"{lab_path}: expected int8 (n_windows,) with values {UNLABELLED}..{top}, "
                        f"got {labels.dtype} {labels.shape}; delete it and re-run the preparation: {_hint(root)}")
    return signal, labels


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
                "test subjects must never be trained on: re-run data_prep/physionet2018.py to rewrite the splits")


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
                            f"re-run the preparation: {_hint(root)}")
    labelled = []
    for rec in sorted(set().union(*(splits[k] for k in SPLIT_NAMES))):
        if not isinstance(rec, str):
            raise DataError(f"{path}: record names must be strings, got {rec!r}; re-run the preparation: {_hint(root)}")
        _, labels = open_record(root, manifest, rec, where=str(path))
        if (labels >= 0).any():
            labelled.append(rec)
    for key in SPLIT_NAMES:
        if len(set(splits[key])) != len(splits[key]):
            raise DataError(f"{path}: split {key!r} lists a record twice; re-run the preparation: {_hint(root)}")
    check_disjoint(splits)
    if not set(splits["test"]) & set(labelled):
        raise DataError(f"{path}: the test split ({len(splits['test'])} records) has no labelled window, so nothing "
                        "can be evaluated; prepare records with .arousal annotations (training set), e.g. "
                        f"{_hint(root)}")
    return {**splits, "labelled": labelled}


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
    test_subjects = {subj(r) for r in splits["test"]}
    by_subject: dict[str, list[str]] = {}
    for rec in splits["labelled"]:
        if subj(rec) not in test_subjects:
            by_subject.setdefault(subj(rec), []).append(rec)
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


class PreparedEEG(Dataset):
    """Windows of prepared records, memory-mapped; items ``(x, label, record_index)``.

    Args:
        root: the prepared directory (holds ``manifest.json``).
        records: record names (e.g. a split from :func:`load_splits`).
        labelled_only: keep only windows with a label (0..4), e.g. for finetuning and testing.
        expected_format_version: the manifest's ``format_version`` this reader understands.

    Attributes:
        records: the record names; ``record_index`` refers to this list.
        labels: np.int8 (N,) label of every kept window (-1 = unlabelled).
        record_of: np.int32 (N,) index into ``records`` of every kept window.
        window_of: np.int64 (N,) window index inside its record.
        window_shape: (C, L), e.g. (6, 3000).
        synthetic: the manifest says the records are synthetic demo data.

    ``dataset[i]`` is ``(torch.float32 (C, L), label int, record_index int)``. ``__getitems__``
    (used by torch's DataLoader for a whole batch) reads each record once, as one contiguous slice
    when the batch's windows are consecutive, else as one sorted fancy index.
    """

    def __init__(self, root: str | Path, records: Sequence[str], labelled_only: bool,
                 expected_format_version: int = FORMAT_VERSION):
        self.root = Path(root)
        self._manifest = load_manifest(self.root, expected_format_version)
        self.synthetic = bool(self._manifest.get("synthetic", False))
        if isinstance(records, str):
            raise TypeError(f"PreparedEEG: records must be a list of record names, got the string {records!r}")
        self.records = list(records)
        if not self.records:
            raise DataError(f"PreparedEEG({self.root}): no records given; "
                            f"check the split in {self.root / 'splits.json'}")
        signals, labels, windows = [], [], []
        for rec in self.records:
            sig, lab = open_record(self.root, self._manifest, rec)
            signals.append(sig)
            keep = np.flatnonzero(lab >= 0) if labelled_only else np.arange(lab.size)
            labels.append(lab[keep])
            windows.append(keep)
        shapes = {s.shape[1:] for s in signals}
        if len(shapes) != 1:
            raise DataError(f"{self.root}: records have different window shapes {sorted(shapes)}; "
                            f"re-run the preparation: {_hint(self.root)}")
        self.window_shape = shapes.pop()
        counts = np.array([w.size for w in windows], np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.labels = np.concatenate(labels).astype(np.int8, copy=False)
        self.window_of = np.concatenate(windows).astype(np.int64, copy=False)
        self.record_of = np.repeat(np.arange(len(self.records), dtype=np.int32), counts)
        if self.labels.size == 0:
            what = "labelled windows" if labelled_only else "windows"
            raise DataError(f"PreparedEEG({self.root}): records {self.records[:5]}"
                            f"{'...' if len(self.records) > 5 else ''} hold no {what}; "
                            f"choose a split with labelled records or re-run the preparation: {_hint(self.root)}")
        self._signals: list[np.ndarray] | None = signals

    def __len__(self) -> int:
        return int(self.labels.size)

    # Memmaps are reopened in each DataLoader worker instead of being pickled (pickling a memmap
    # would copy the whole record).
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_signals": None}

    def _arrays(self) -> list[np.ndarray]:
        if self._signals is None:
            self._signals = [np.load(_record_paths(self.root, self._manifest, r)[0], mmap_mode="r")
                             for r in self.records]
        return self._signals

    def locate(self, index: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dataset index (or array of them) -> (record index, window index inside the record)."""
        idx = np.asarray(index, np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for PreparedEEG of {len(self)} windows")
        idx = np.where(idx < 0, idx + len(self), idx)
        rec = np.searchsorted(self._offsets, idx, side="right") - 1
        return rec, self.window_of[idx]

    def __getitem__(self, index: int):
        rec, win = self.locate(int(index))
        x = torch.from_numpy(np.asarray(self._arrays()[int(rec)][int(win)], np.float32))
        return x, int(self.labels[int(index)]), int(rec)

    def read_batch(self, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Windows ``indices`` as (x float32 (B, C, L), labels int64 (B,), record_index int64 (B,)).

        One read per record: a contiguous slice when its windows are consecutive, else a sorted
        fancy index; float16 is converted while scattering into the output.
        """
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, np.int64)
        rec, win = self.locate(idx)
        arrays = self._arrays()
        # Gather in the stored dtype (float16 scatter = memcpy), convert once with torch (SIMD).
        out = np.empty((idx.size, *self.window_shape),
                       np.result_type(np.float16, *(arrays[r].dtype for r in np.unique(rec))))
        order = np.lexsort((win, rec))
        bounds = np.flatnonzero(np.diff(rec[order])) + 1
        for group in np.split(order, bounds):
            if group.size == 0:
                continue
            w = win[group]
            sig = arrays[rec[group[0]]]
            if w[-1] - w[0] + 1 == w.size and (w.size == 1 or np.all(np.diff(w) == 1)):
                out[group] = sig[w[0]: w[-1] + 1]
            else:
                out[group] = sig[w]
        labels = torch.from_numpy(self.labels[idx].astype(np.int64))  # locate() checked the range
        return torch.from_numpy(out).to(torch.float32), labels, torch.from_numpy(rec)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int, int]]:
        """torch DataLoader's batched fetch: a list of samples (views of one batch tensor) that
        ``default_collate`` stacks as usual."""
        x, labels, rec = self.read_batch(indices)
        return list(zip(x.unbind(0), labels.tolist(), rec.tolist()))
