"""The EEG plugin's datasets for a recipe (``data.name: pc18``): pretrain / finetune / test.

``data.root`` is a directory prepared by ``python data_prep/physionet2018.py --src RAW --out PREP``
(layout in ``data_prep/pc18_prepare.py``). Splits come from its ``splits.json``:

- pretrain: every window (labelled or not) of the ``pretrain`` records;
- finetune: the labelled windows of the ``finetune`` subjects (repeat 0), or of the k-th
  alternative draw of as many labelled non-test subjects (repeat k > 0, label efficiency);
- test: the labelled windows of the ``test`` subjects, subject by subject, in chronological order.

Test subjects are never in pretrain or finetune (checked here, a DataError otherwise). Items are
``(x float32 (C, L) = (6, 3000) (30 s at 100 Hz, z-scored per window and channel), label int)``
with label 0 W, 1 N1, 2 N2, 3 N3, 4 REM, -1 unlabelled (pretraining only). Windows are read
lazily from memory-mapped files (``modalities/eeg/prepared.py``, which also holds the format's
constants).
"""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from part.config.schema import DataConfig
from part.core.modality import DataBundle, subset_indices
from part.errors import DataError
from part.registry import register_dataset
from modalities.eeg.report import sleep_report_hook
from modalities.eeg.prepared import (CLASS_NAMES, PREPARE_COMMAND, PreparedEEG, check_disjoint,
                                     draw_finetune_records, load_manifest, load_splits)

# The paper's numbers, shown in reports labelled as the paper's (Cohen's kappa).
PAPER_REFERENCE = {
    "metric": "kappa",
    "values": {"supervised": 0.531, "mp3": 0.553, "droppos": 0.582, "mae": 0.595, "part": 0.616,
               "part_grid": 0.500},
    "source": "PART paper, Table 3/4 (PhysioNet 2018, 10 finetune subjects, 200 test subjects)",
}


@dataclass
class SleepDataOptions(DataConfig):
    """The recipe's ``data`` section for prepared sleep recordings (``data.name: pc18``):
    ``root`` the prepared directory; ``hypnograms``: hypnogram plots of that many test
    subjects in the report."""

    name: str = "pc18"
    hypnograms: int = field(default=3, metadata={"min": 0, "volatile": True})


class EEGWindows(Dataset):
    """A view of some windows of a :class:`PreparedEEG`; items ``(x float32 (C, L), label int)``.

    Args:
        base: the prepared windows.
        indices: which of ``base``'s windows, in this order (None = all); a sorted subset keeps
            each subject's windows in chronological order.

    Attributes:
        labels / targets: np.int8 / np.int64 (n,) label per item (-1 = unlabelled).
        records: np.ndarray of str (n,) record of each item; subjects: its subject id.
        window_index: np.int64 (n,) window index inside its record (window k starts at about
            ``first_window_start_s + 30 k`` seconds of the recording).
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
    if getattr(data_cfg, "root", None) in (None, ""):
        raise DataError("data.root is not set: the EEG modality reads a prepared PhysioNet 2018 directory. "
                        f"Prepare one with {PREPARE_COMMAND.format(root='PREP')} and set data.root=PREP")
    root = Path(data_cfg.root).expanduser()
    if not (root / "manifest.json").is_file():
        what = "does not exist" if not root.exists() else "holds no manifest.json (it is not prepared)"
        raise DataError(f"data.root={root} {what}. Prepare it with {PREPARE_COMMAND.format(root=root)}; "
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
    n_subjects = _subjects_count(splits["finetune"], subjects)
    finetune_records = draw_finetune_records(splits, n_subjects, seed, repeat=repeat)
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
        + (f" (repeat {repeat}: alternative draw, seed {seed})" if repeat else "")
        + f"; {part('test', test, splits['test'])}; windows {channels} channels x {window_samples} "
        f"samples ({window_samples / rate:g} s at {rate:g} Hz)"
        + (f"; limit_train={data_cfg.limit_train}" if data_cfg.limit_train else "")
        + (f"; limit_test={data_cfg.limit_test}" if data_cfg.limit_test else ""))
    return DataBundle(
        pretrain=pretrain, finetune=finetune, test=test, class_names=list(CLASS_NAMES),
        input_info={"channels": int(channels), "window_samples": window_samples},
        test_groups=[str(s) for s in test.subjects],
        reference=dict(PAPER_REFERENCE, values=dict(PAPER_REFERENCE["values"])),
        description=description,
        report_hook=sleep_report_hook(CLASS_NAMES, data_cfg.hypnograms))
