"""Write tiny CIFAR-10/100 datasets in the official python-pickle layout (test helper)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _batch(rng, n: int, n_classes: int, labels_key: bytes, name: bytes) -> dict:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
    labels = [int(v) for v in np.arange(n) % n_classes]
    d = {b"batch_label": name, labels_key: labels, b"data": data,
         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    if labels_key == b"fine_labels":
        d[b"coarse_labels"] = [v // 5 for v in labels]
    return d


def _dump(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root: Path, dataset: str = "cifar100", n_train: int = 20, n_test: int = 10,
                seed: int = 0) -> Path:
    """Write ``root/<official folder>``; returns that folder. Labels are ``index % n_classes``."""
    assert dataset in FOLDER, f"unknown dataset {dataset!r}; valid: {sorted(FOLDER)}"
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER[dataset]
    folder.mkdir(parents=True, exist_ok=True)
    if dataset == "cifar100":
        _dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
               b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, folder / "meta")
        _dump(_batch(rng, n_train, 100, b"fine_labels", b"training"), folder / "train")
        _dump(_batch(rng, n_test, 100, b"fine_labels", b"testing"), folder / "test")
    else:
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                 b"horse", b"ship", b"truck"]
        _dump({b"label_names": names, b"num_cases_per_batch": n_train, b"num_vis": 3072},
              folder / "batches.meta")
        for i in range(1, 6):
            _dump(_batch(rng, n_train, 10, b"labels", f"training batch {i}".encode()),
                  folder / f"data_batch_{i}")
        _dump(_batch(rng, n_test, 10, b"labels", b"testing batch"), folder / "test_batch")
    return folder


def read_raw(folder: Path, name: str) -> dict:
    """The raw dict of one pickle (for comparing against the loader)."""
    with open(Path(folder) / name, "rb") as f:
        return pickle.load(f, encoding="bytes")
