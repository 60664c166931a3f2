"""PreparedEEG and the split helpers, on prepared directories the tests write in the format of
data_prep/pc18_prepare.py (plus one end-to-end check on its real output)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from part.modalities.eeg.datasets import PreparedEEG
from part.modalities.eeg.recordings.constants import CLASS_NAMES, PC18_WINDOW_SHAPE, UNLABELLED
from part.modalities.eeg.recordings.prepared import (FORMAT_VERSION, check_disjoint, draw_finetune_records,
                                                    load_manifest, load_splits)
from part.errors import DataError

C, L = 6, 3000


def encode(rec_i: int, win: np.ndarray) -> np.ndarray:
    """Window contents that say where they come from: sample 0 = 100 * record + window, exact in float16."""
    x = np.zeros((len(win), C, L), np.float32)
    x[:, :, 0] = 100 * rec_i + win[:, None]
    x[:, :, 1] = np.arange(C)
    return x


def write_prepared(root: Path, labels: dict[str, np.ndarray], test: list[str], finetune: list[str],
                   dtype=np.float16) -> Path:
    """A prepared directory: records/<rec>.npy + .labels.npy, manifest.json, splits.json."""
    (root / "records").mkdir(parents=True)
    records = {}
    for i, (rec, lab) in enumerate(labels.items()):
        lab = np.asarray(lab, np.int8)
        np.save(root / "records" / f"{rec}.npy", encode(i, np.arange(lab.size)).astype(dtype))
        np.save(root / "records" / f"{rec}.labels.npy", lab)
        records[rec] = {"n_windows": int(lab.size), "labelled_windows": int((lab >= 0).sum()), "subject": rec}
    manifest = {"format_version": 1, "status": "complete", "params_hash": "abc", "window_samples": L,
                "channels": ["F3-M2", "F4-M1", "C3-M2", "C4-M1", "O1-M2", "O2-M1"], "dtype": np.dtype(dtype).name,
                "files": {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"},
                "records": records, "failed": {"bad-0001": "bad-0001: bad-0001.mat shorter than its header says"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    splits = {"seed": 0, "test": test, "finetune": finetune, "pretrain": [r for r in labels if r not in test],
              "subjects": {r: r for r in labels}}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture
def prep(tmp_path):
    rng = np.random.default_rng(0)
    labels = {f"r{i}": rng.integers(-1, 5, 7 + 3 * i) for i in range(8)}
    labels["u0"] = np.full(9, -1)  # an unlabelled (test-set) record: pretraining only
    return write_prepared(tmp_path / "prep", labels, test=["r0", "r1"], finetune=["r2", "r3"])


def _expected(ds: PreparedEEG, i: int) -> float:
    all_names = list(json.loads((ds.root / "manifest.json").read_text())["records"])
    rec = ds.records[ds.record_of[i]]
    return 100 * all_names.index(rec) + ds.window_of[i]


def test_items_are_the_right_windows(prep):
    ds = PreparedEEG(prep, ["r2", "u0", "r5"], labelled_only=False)
    assert len(ds) == 13 + 9 + 22 and ds.window_shape == (C, L)
    assert ds.labels.dtype == np.int8 and ds.record_of.tolist() == [0] * 13 + [1] * 9 + [2] * 22
    assert all(isinstance(a, np.memmap) for a in ds._arrays())  # nothing loaded into RAM
    for i in (0, 12, 13, 21, 22, len(ds) - 1, -1):
        x, y, r = ds[i]
        assert x.dtype == torch.float32 and x.shape == (C, L)
        assert x[0, 0].item() == _expected(ds, i % len(ds)) and x[:, 1].tolist() == list(range(C))
        assert y == ds.labels[i] and r == ds.record_of[i]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_labelled_only_keeps_labelled_windows(prep):
    full = PreparedEEG(prep, ["r2", "r3", "u0"], labelled_only=False)
    ds = PreparedEEG(prep, ["r2", "r3", "u0"], labelled_only=True)
    assert len(ds) == int((full.labels >= 0).sum()) and (ds.labels >= 0).all()
    x, _, _ = ds.read_batch(range(len(ds)))
    assert x[:, 0, 0].tolist() == [_expected(ds, i) for i in range(len(ds))]
    with pytest.raises(DataError, match="no labelled windows"):
        PreparedEEG(prep, ["u0"], labelled_only=True)


def test_batched_fetch_matches_single_items(prep):
    ds = PreparedEEG(prep, [f"r{i}" for i in range(8)], labelled_only=False)
    idx = np.random.default_rng(1).integers(0, len(ds), 40).tolist() + [3, 3, 4]  # duplicates too
    batch = ds.__getitems__(idx)
    assert len(batch) == len(idx)
    for i, (x, y, r) in zip(idx, batch):
        x1, y1, r1 = ds[i]
        assert torch.equal(x, x1) and y == y1 and r == r1


class _Spy:
    """Wraps a memmap and records how it was indexed."""

    def __init__(self, arr, log):
        self.arr, self.log, self.dtype = arr, log, arr.dtype

    def __getitem__(self, key):
        self.log.append(key)
        return self.arr[key]


def test_one_read_per_record_contiguous_when_possible(prep):
    ds = PreparedEEG(prep, ["r4", "r5"], labelled_only=False)  # 19 + 22 windows
    log: list = []
    ds._signals = [_Spy(a, log) for a in ds._arrays()]
    ds.read_batch([25, 3, 4, 5, 22, 21, 6, 20])  # r4: 3..6 consecutive; r5: windows 1, 2, 3, 6
    assert len(log) == 2
    assert log[0] == slice(3, 7)
    assert isinstance(log[1], np.ndarray) and log[1].tolist() == [1, 2, 3, 6]  # sorted fancy index


def test_dataloader_default_collate(prep):
    ds = PreparedEEG(prep, [f"r{i}" for i in range(8)] + ["u0"], labelled_only=False)
    seen = []
    for x, y, r in DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (C, L)
        assert y.dtype == torch.int64 and r.dtype == torch.int64
        rec_i = (x[:, 0, 0] // 100).long()
        win = (x[:, 0, 0] % 100).long()
        names = [ds.records[k] for k in r.tolist()]
        assert [f"r{k}" if k < 8 else "u0" for k in rec_i.tolist()] == names
        assert y.tolist() == [int(np.load(prep / "records" / f"{n}.labels.npy")[w])
                              for n, w in zip(names, win.tolist())]
        seen += list(zip(names, win.tolist()))
    assert len(seen) == len(set(seen)) == len(ds)


def test_pickles_without_the_signals_and_works_in_workers(prep):
    ds = PreparedEEG(prep, [f"r{i}" for i in range(8)], labelled_only=True)
    assert len(pickle.dumps(ds)) < 20_000  # memmaps are reopened, not copied
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5][0], ds[5][0])
    batches = list(DataLoader(ds, batch_size=32, num_workers=1))
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(ds.labels.astype(np.int64)))


def test_float32_records(tmp_path):
    root = write_prepared(tmp_path / "p32", {"a": [0, 1, -1], "b": [2, 3]}, test=["a"], finetune=["b"],
                          dtype=np.float32)
    ds = PreparedEEG(root, ["a", "b"], labelled_only=True)
    assert ds.read_batch([0, 3])[0][:, 0, 0].tolist() == [0.0, 101.0]


def test_load_splits_and_disjointness(prep):
    splits = load_splits(prep)
    assert splits["test"] == ["r0", "r1"] and "u0" in splits["pretrain"] and "u0" not in splits["labelled"]
    check_disjoint(splits)
    for key in ("finetune", "pretrain"):
        with pytest.raises(DataError, match=f"test and {key} overlap"):
            check_disjoint({**splits, key: splits[key] + ["r0"]})
    with pytest.raises(DataError, match="subjects"):  # r2 is the same subject as test record r0
        check_disjoint({**splits, "subjects": {**splits["subjects"], "r2": "r0"}})


def test_draw_finetune_records(prep):
    splits = load_splits(prep)
    assert draw_finetune_records(splits, 2, seed=0, repeat=0) == ["r2", "r3"]
    draws = [draw_finetune_records(splits, 2, seed=0, repeat=k) for k in range(4)]
    assert len({tuple(d) for d in draws}) == 4  # K different draws
    for d in draws:
        assert len(d) == 2 and not set(d) & set(splits["test"]) and set(d) <= set(splits["labelled"])
    assert draws == [draw_finetune_records(splits, 2, seed=0, repeat=k) for k in range(4)]  # deterministic
    assert len(draw_finetune_records(splits, 6, seed=0)) == 6  # 6 subjects: repeat 0 drawn when sizes differ
    threes = [draw_finetune_records(splits, 3, seed=0, repeat=k) for k in range(3)]
    assert len({tuple(d) for d in threes}) == 3
    with pytest.raises(DataError, match="at most 6"):
        draw_finetune_records(splits, 7, seed=0)


# ---- bad input: each error names the file and the fix ----------------------------------------

def _edit_json(path: Path, **changes):
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def test_missing_or_old_manifest(tmp_path, prep):
    with pytest.raises(DataError, match=r"manifest\.json not found.*part-prepare-pc18 --src RAW --out .*--synthetic N"):
        load_splits(tmp_path / "nothing")
    _edit_json(prep / "manifest.json", format_version=0)
    with pytest.raises(DataError, match=r"manifest\.json: format_version 0.*reads format_version 1.*part-prepare-pc18"):
        PreparedEEG(prep, ["r2"], labelled_only=False)
    _edit_json(prep / "manifest.json", format_version=1, status="in_progress")
    with pytest.raises(DataError, match="did not finish.*rerun"):
        load_manifest(prep)


def test_split_naming_a_missing_record(prep):
    _edit_json(prep / "splits.json", finetune=["r2", "gone-0001"])
    with pytest.raises(DataError, match=r"splits\.json names record 'gone-0001'.*physionet2018\.py"):
        load_splits(prep)
    _edit_json(prep / "splits.json", finetune=["r2", "bad-0001"])  # failed during preparation
    with pytest.raises(DataError, match=r"'bad-0001'.*preparation failed: bad-0001: bad-0001\.mat shorter"):
        load_splits(prep)
    (prep / "records" / "r3.labels.npy").unlink()
    _edit_json(prep / "splits.json", finetune=["r3"])
    with pytest.raises(DataError, match=r"r3\.labels\.npy is missing"):
        load_splits(prep)


def test_window_count_disagreeing_with_manifest(prep):
    np.save(prep / "records" / "r4.npy", encode(4, np.arange(5)).astype(np.float16))  # manifest says 19
    with pytest.raises(DataError, match=r"records/r4\.npy holds 5 windows but .*manifest\.json says n_windows=19"):
        load_splits(prep)
    with pytest.raises(DataError, match=r"r4\.npy holds 5 windows"):
        PreparedEEG(prep, ["r4"], labelled_only=False)
    np.save(prep / "records" / "r4.npy", np.zeros((19, 6, 100), np.float16))
    with pytest.raises(DataError, match=r"r4\.npy: expected float16/float32 of shape \(n_windows, 6, 3000\)"):
        PreparedEEG(prep, ["r4"], labelled_only=False)
    (prep / "records" / "r4.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"cannot read .*r4\.npy"):
        PreparedEEG(prep, ["r4"], labelled_only=False)


def test_test_split_without_labelled_window(prep):
    _edit_json(prep / "splits.json", test=["u0"], pretrain=[f"r{i}" for i in range(8)])
    with pytest.raises(DataError, match="test split .* has no labelled window"):
        load_splits(prep)


def test_reads_what_the_preparation_writes(tmp_path):
    """End to end with the real preparation code on two short synthetic records."""
    from part.data_prep.pc18_prepare import SplitSettings, prepare_dataset
    from part.data_prep.pc18_synthetic import write_synthetic_records

    write_synthetic_records(tmp_path / "raw", 3, seed=0, minutes=(10, 11))
    prepare_dataset(tmp_path / "raw", tmp_path / "prep", splits=SplitSettings(n_test=1, n_finetune=1),
                    progress=False, synthetic=True)
    splits = load_splits(tmp_path / "prep")
    ds = PreparedEEG(tmp_path / "prep", splits["test"], labelled_only=True)
    x, y, _ = next(iter(DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 6, 3000) and torch.isfinite(x).all() and (y >= 0).all()
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1  # z-scored windows
    # the writer and the reader share the format's constants (declared once, in prepared.py)
    manifest = load_manifest(tmp_path / "prep")
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["label_names"] == list(CLASS_NAMES) == ["W", "N1", "N2", "N3", "REM"]
    assert manifest["label_codes"]["unlabelled"] == UNLABELLED == -1
    assert ds.window_shape == PC18_WINDOW_SHAPE == (6, 3000)


def test_labels_outside_the_classes_are_refused(prep):
    np.save(prep / "records" / "r4.labels.npy", np.full(19, 5, np.int8))
    with pytest.raises(DataError, match=r"r4\.labels\.npy: expected int8 \(n_windows,\) with values -1\.\.4"):
        PreparedEEG(prep, ["r4"], labelled_only=False)


@pytest.mark.parametrize("dtype,bad", [(np.float16, np.nan), (np.float16, np.inf), (np.float32, -np.inf)])
def test_a_record_holding_nan_or_inf_is_named_when_opened(prep, tmp_path, monkeypatch, dtype, bad):
    """A damaged record is one line naming the file and its first bad window, before any training;
    the check reads slices (here 2 windows each), so bad windows at and after slice edges count."""
    import part.modalities.eeg.recordings.prepared as prepared
    root = write_prepared(tmp_path / f"p{np.dtype(dtype).name}", {"a": np.zeros(7), "b": np.zeros(5)},
                          test=["a"], finetune=["b"], dtype=dtype)
    monkeypatch.setattr(prepared, "FINITE_CHUNK_BYTES", 2 * C * L * np.dtype(dtype).itemsize)
    PreparedEEG(root, ["a", "b"], labelled_only=False)  # finite: accepted
    path = root / "records" / "b.npy"
    for window in (4, 2):  # the last window (a slice of one), then the first of a slice
        record = np.load(path, mmap_mode="r+")
        record[window, 3, 1234] = bad
        record.flush()
        del record
        with pytest.raises(DataError) as info:
            PreparedEEG(root, ["a", "b"], labelled_only=False)
        assert str(info.value).startswith(f"{path}: window {window} of record 'b' holds non-finite values (NaN or "
                                          "Inf); the prepared file is damaged: delete it and re-run the preparation")


def test_large_finite_values_are_not_taken_for_nan():
    """A float32 sum that overflows (values near 3e38) is checked window by window: finite."""
    from part.modalities.eeg.recordings.prepared import first_nonfinite_window
    x = np.full((3, C, L), 3e38, np.float32)
    assert first_nonfinite_window(x) is None
    x[1, 0, 0] = np.nan
    assert first_nonfinite_window(x) == 1


def test_a_record_found_finite_is_not_read_again_until_its_file_changes(tmp_path, monkeypatch):
    """Repeats, stages and label-efficiency points open the same records again: a file found
    finite in this process (same path, size, mtime) is not scanned again; a rewritten one is."""
    import os
    import part.modalities.eeg.recordings.prepared as prepared
    root = write_prepared(tmp_path / "p", {"a": np.zeros(3), "b": np.zeros(3)}, test=["a"], finetune=["b"])
    scans = []
    real = prepared.first_nonfinite_window
    monkeypatch.setattr(prepared, "first_nonfinite_window", lambda x: scans.append(1) or real(x))
    PreparedEEG(root, ["a", "b"], labelled_only=False)
    assert len(scans) == 2
    PreparedEEG(root, ["a", "b"], labelled_only=False)
    assert len(scans) == 2  # both remembered
    path = root / "records" / "b.npy"
    record = np.load(path)
    record[1, 0, 0] = np.nan
    np.save(path, record)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later mtime, as any rewrite gives
    with pytest.raises(DataError, match="window 1 of record 'b' holds non-finite values"):
        PreparedEEG(root, ["a", "b"], labelled_only=False)
    assert len(scans) == 3  # only the changed file was read again
