"""The EEG plugin's datasets for a recipe (``data.name: pc18``): pretrain / finetune / test.

``data.root`` is a directory prepared by ``part-prepare-pc18 --src RAW --out PREP`` (or
``part-prepare-sleep-edf`` / ``part-prepare-psg``; layout in ``data_prep/pc18_prepare.py``).
Splits come from its ``splits.json``:

- pretrain: every window (labelled or not) of the ``pretrain`` records;
- finetune: the labelled windows of the ``finetune`` subjects (repeat 0), or of the k-th
  alternative draw of as many labelled non-test subjects (repeat k > 0, label efficiency);
- test: the labelled windows of the ``test`` subjects, subject by subject, in chronological order.

Test subjects are never in pretrain or finetune (checked here, a DataError otherwise). Items are
``(x float32 (C, L) = (6, 3000) (30 s at 100 Hz, z-scored per window and channel), label int)``
with label 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unlabelled (pretraining only). Windows are read
lazily from memory-mapped files (``recordings/prepared.py``; the stage classes are in
``recordings/constants.py``).
"""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from part.config.schema import DataConfig
from part.core.modality import DataBundle, subset_indices
from part.errors import DataError
from part.registry import register_dataset
from part.modalities.eeg.sleep.report import sleep_report_hook
from part.modalities.eeg.recordings.constants import CLASS_NAMES, TARGET_FS
from part.modalities.eeg.recordings.prepared import (FORMAT_VERSION, PREPARE_COMMAND, PREPARE_COMMANDS,
                                                    check_disjoint, check_finite_record, data_description,
                                                    draw_finetune_records, finetune_pool,
                                                    load_manifest, load_splits, open_record, prepare_hint,
                                                    record_paths)

class PreparedEEG(Dataset):
    """Windows of prepared records, memory-mapped; items ``(x, label, record_index)``. Each record
    is checked for NaN / Inf when opened (a one-line DataError naming its file, before training).

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
        window_s: the window length in seconds (the manifest's ``window_s``, e.g. 30).
        first_start_s: np.float64 (len(records),) onset of window 0 in each record, seconds from
            the record's start (the manifest's ``first_window_start_s``; 0 when absent).
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
            check_finite_record(self.root, self._manifest, rec, sig)  # before any training, not mid-epoch
            signals.append(sig)
            keep = np.flatnonzero(lab >= 0) if labelled_only else np.arange(lab.size)
            labels.append(lab[keep])
            windows.append(keep)
        shapes = {s.shape[1:] for s in signals}
        if len(shapes) != 1:
            raise DataError(f"{self.root}: records have different window shapes {sorted(shapes)}; "
                            f"re-run the preparation: {prepare_hint(self.root)}")
        self.window_shape = shapes.pop()
        rate = float(self._manifest.get("sampling_rate") or TARGET_FS)
        self.window_s = float(self._manifest.get("window_s") or self.window_shape[1] / rate)
        infos = self._manifest.get("records", {})
        self.first_start_s = np.array([float(infos.get(r, {}).get("first_window_start_s") or 0.0)
                                       for r in self.records], np.float64)
        counts = np.array([w.size for w in windows], np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.labels = np.concatenate(labels).astype(np.int8, copy=False)
        self.window_of = np.concatenate(windows).astype(np.int64, copy=False)
        self.record_of = np.repeat(np.arange(len(self.records), dtype=np.int32), counts)
        if self.labels.size == 0:
            what = "labelled windows" if labelled_only else "windows"
            raise DataError(f"PreparedEEG({self.root}): records {self.records[:5]}"
                            f"{'...' if len(self.records) > 5 else ''} hold no {what}; "
                            f"choose a split with labelled records or re-run the preparation: "
                            f"{prepare_hint(self.root)}")
        self._signals: list[np.ndarray] | None = signals

    def __len__(self) -> int:
        return int(self.labels.size)

    # Memmaps are reopened in each DataLoader worker instead of being pickled (pickling a memmap
    # would copy the whole record).
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_signals": None}

    def _arrays(self) -> list[np.ndarray]:
        if self._signals is None:
            self._signals = [np.load(record_paths(self.root, self._manifest, r)[0], mmap_mode="r")
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


# The paper's numbers, shown in reports labelled as the paper's (Cohen's kappa).
PAPER_REFERENCE = {
    "metric": "kappa",
    "values": {"supervised": 0.531, "mp3": 0.553, "droppos": 0.582, "mae": 0.595, "part": 0.616,
               "part_grid": 0.500},
    "source": "PART paper, Table 3/4 (PhysioNet 2018, 10 finetune subjects, 200 test subjects)",
    "other_methods": ("the EEG field's baselines relative positioning, temporal shuffling and CPC are not in the "
                      "PART paper; Banville et al., 'Uncovering the structure of clinical EEG signals with "
                      "self-supervised learning', J. Neural Eng. 18(4) 046020 (2021) evaluate them on PC18 with "
                      "another protocol (their CNN encoder on 2 EEG channels, a linear classifier on frozen "
                      "features, balanced accuracy) and show those results in figures, not in a table, so no "
                      "number of theirs is quoted here; compare the methods within this table"),
}


@dataclass
class SleepDataOptions(DataConfig):
    """The recipe's ``data`` section for prepared sleep recordings (``data.name: pc18``):
    ``root`` the prepared directory; ``hypnograms``: hypnogram plots of that many test
    records (nights) in the report."""

    name: str = "pc18"
    hypnograms: int = field(default=3, metadata={"min": 0, "volatile": True})
    # label efficiency: finetune (and the probes) on this many labelled non-test subjects, drawn
    # per repeat (None: splits.json's finetune split); part-label-efficiency sweeps it
    finetune_subjects: Optional[int] = field(default=None, metadata={"min": 1})


class EEGWindows(Dataset):
    """A view of some windows of a :class:`PreparedEEG`; items ``(x float32 (C, L), label int)``.

    Args:
        base: the prepared windows.
        indices: which of ``base``'s windows, in this order (None = all); a sorted subset keeps
            each subject's windows in chronological order.

    Attributes:
        labels / targets: np.int8 / np.int64 (n,) label per item (-1 = unlabelled).
        records: np.ndarray of str (n,) record of each item; subjects: its subject id.
        window_index: np.int64 (n,) window index inside its record.
        onsets_s: np.float64 (n,) onset of each item's window in its record, seconds from the
            record's start (``first_window_start_s + window_s * window_index``).
        window_s: the window length in seconds.
    """

    def __init__(self, base: PreparedEEG, indices: Optional[np.ndarray] = None,
                 subjects: Optional[dict] = None):
        self.base = base
        self.indices = np.arange(len(base), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        self.labels = base.labels[self.indices]
        self.targets = self.labels.astype(np.int64)
        names = np.asarray(base.records, dtype=object)
        self.records = names[base.record_of[self.indices]]
        subjects = subjects or {}
        self.subjects = np.asarray([subjects.get(r, r) for r in base.records], dtype=object)[
            base.record_of[self.indices]]
        self.window_index = base.window_of[self.indices]
        self.window_shape = base.window_shape
        self.window_s = base.window_s
        self.onsets_s = base.first_start_s[base.record_of[self.indices]] + base.window_s * self.window_index

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int):
        x, label, _ = self.base[int(self.indices[i])]
        return x, label

    def read_batch(self, items: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Items as one batch: (x float32 (B, C, L), labels int64 (B,)); one read per record."""
        x, labels, _ = self.base.read_batch(self.indices[np.asarray(items, np.int64)])
        return x, labels

    def __getitems__(self, items: list[int]):
        """torch DataLoader's batched fetch: the items as views of one batch tensor."""
        x, labels = self.read_batch(items)
        return list(zip(x.unbind(0), labels.tolist()))


def _root(data_cfg) -> Path:
    command = PREPARE_COMMANDS.get(getattr(data_cfg, "name", ""), PREPARE_COMMAND)
    if getattr(data_cfg, "root", None) in (None, ""):
        raise DataError(f"data.root is not set: data.name={data_cfg.name} reads a directory of prepared sleep "
                        f"recordings. Prepare one with {command.format(root='PREP')} and set data.root=PREP")
    root = Path(data_cfg.root).expanduser()
    if not (root / "manifest.json").is_file():
        what = "does not exist" if not root.exists() else "holds no manifest.json (it is not prepared)"
        raise DataError(f"data.root={root} {what}. Prepare it with {command.format(root=root)}; "
                        "a run killed mid-preparation resumes when the same command is rerun")
    return root


def _subjects_count(records: Sequence[str], subjects: dict) -> int:
    return len({subjects.get(r, r) for r in records})


def _is_synthetic(manifest: dict) -> bool:
    recs = manifest.get("records", {})
    return bool(manifest.get("synthetic")) or any(
        info.get("origin") == "synthetic" or name.startswith("syn") for name, info in recs.items())


@register_dataset("eeg", "pc18", options=SleepDataOptions)
def load_data(data_cfg: SleepDataOptions, seed: int = 0, repeat: int = 0) -> DataBundle:
    """The recipe's ``data`` section -> DataBundle of pretrain / finetune / test ``EEGWindows``.

    ``repeat`` k > 0 finetunes on the k-th alternative draw of as many labelled non-test subjects
    as ``splits.json``'s finetune split holds (seeded by ``seed``, distinct draws while the pool
    allows). ``data.limit_train`` / ``data.limit_test``: seeded window subsets (pretrain with
    ``seed``, finetune with ``seed + repeat``, test with ``seed``), e.g. for quick tests.
    """
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0, got {repeat}")
    root = _root(data_cfg)
    manifest = load_manifest(root)
    splits = load_splits(root)  # validates records, window counts, disjointness, labelled test
    subjects = splits.get("subjects") or {}
    if not splits["finetune"]:
        raise DataError(f"{root / 'splits.json'}: the finetune split is empty; re-run "
                        f"`{PREPARE_COMMAND.format(root=root)}` with --n-finetune 10 (or more labelled records)")
    n_subjects = data_cfg.finetune_subjects or _subjects_count(splits["finetune"], subjects)
    finetune_records = draw_finetune_records(splits, n_subjects, seed, repeat=repeat)
    pool = len(finetune_pool(splits))
    check_disjoint({"test": splits["test"], "finetune": finetune_records,
                    "pretrain": splits["pretrain"], "subjects": subjects})

    pre_base = PreparedEEG(root, splits["pretrain"], labelled_only=False)
    ft_base = PreparedEEG(root, finetune_records, labelled_only=True)
    test_base = PreparedEEG(root, splits["test"], labelled_only=True)
    pretrain = EEGWindows(pre_base, subset_indices(len(pre_base), data_cfg.limit_train, seed), subjects)
    finetune = EEGWindows(ft_base, subset_indices(len(ft_base), data_cfg.limit_train, seed + repeat), subjects)
    test = EEGWindows(test_base, subset_indices(len(test_base), data_cfg.limit_test, seed), subjects)

    channels = len(manifest.get("channels") or []) or test.window_shape[0]
    window_samples = int(manifest.get("window_samples") or test.window_shape[1])
    rate = manifest.get("sampling_rate", 100)
    synthetic = _is_synthetic(manifest)

    def part(name, ds, records):
        return (f"{name} {len(records)} records / {_subjects_count(records, subjects)} subjects / "
                f"{len(ds)} windows ({int((ds.labels >= 0).sum())} labelled)")

    description = (
        f"PhysioNet 2018 sleep staging (pc18) from {root}"
        + (" -- SYNTHETIC records (written by --synthetic), not real sleep recordings" if synthetic else "")
        + f": {part('pretrain', pretrain, splits['pretrain'])}; "
        f"{part('finetune', finetune, finetune_records)}"
        + (f" (repeat {repeat}: alternative draw, seed {seed})" if repeat or data_cfg.finetune_subjects else "")
        + f"; {part('test', test, splits['test'])}; windows {channels} channels x {window_samples} "
        f"samples ({window_samples / rate:g} s at {rate:g} Hz)"
        + (f"; limit_train={data_cfg.limit_train}" if data_cfg.limit_train else "")
        + (f"; limit_test={data_cfg.limit_test}" if data_cfg.limit_test else ""))
    return DataBundle(
        pretrain=pretrain, finetune=finetune, test=test, class_names=list(CLASS_NAMES),
        input_info={"channels": int(channels), "window_samples": window_samples},
        test_groups=[str(s) for s in test.subjects], finetune_groups=[str(s) for s in finetune.subjects],
        reference=dict(PAPER_REFERENCE, values=dict(PAPER_REFERENCE["values"])),
        description=description,
        report_hook=sleep_report_hook(CLASS_NAMES, data_cfg.hypnograms, test.records, test.onsets_s, test.window_s),
        describe=data_description(manifest), synthetic=synthetic,
        label_budget={"key": "data.finetune_subjects", "unit": "labelled subjects", "pool": pool, "all": pool})


@dataclass
class PreparedRecordingsOptions(SleepDataOptions):
    """``data.name: sleep_edf``: the same prepared format (``data_prep/sleep_edf.py`` or
    ``psg.py``), without the PC18 paper's reference numbers."""

    name: str = "sleep_edf"


@register_dataset("eeg", "sleep_edf", options=PreparedRecordingsOptions)
def load_prepared_recordings(data_cfg: PreparedRecordingsOptions, seed: int = 0, repeat: int = 0) -> DataBundle:
    """:func:`load_data` for Sleep-EDF / own recordings: described by the manifest's ``dataset``
    line; no paper reference (the PART paper reports PC18 only); test groups are subjects."""
    bundle = load_data(data_cfg, seed, repeat)
    dataset = load_manifest(_root(data_cfg)).get("dataset") or "prepared sleep recordings"
    description = bundle.description.replace("PhysioNet 2018 sleep staging (pc18)", f"{dataset} (sleep_edf)", 1)
    return replace(bundle, reference=None, description=description)
