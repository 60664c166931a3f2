"""EEG load_data: pretrain / finetune / test from a prepared PhysioNet 2018 directory written by the
test in the format of data_prep/pc18_prepare.py (manifest keys and its make_splits)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from part.data_prep.pc18_prepare import SplitSettings, make_splits
from part.registry import dataset_spec, get_modality
from part.errors import ConfigError, DataError
from part.modalities.eeg.datasets import SleepDataOptions as DataConfig
from part.config import recipe_from_dict

C, L = 6, 3000
CHANNELS = ["F3-M2", "F4-M1", "C3-M2", "C4-M1", "O1-M2", "O2-M1"]


def write_prepared(root: Path, labels: dict[str, np.ndarray], n_test: int, n_finetune: int,
                   synthetic: bool = False) -> Path:
    """records/<rec>.npy (float16, sample 0 of every channel = 100 * record number + window, exact
    in float16) + .labels.npy, manifest.json (pc18_prepare keys) and splits.json (its make_splits)."""
    (root / "records").mkdir(parents=True)
    records = {}
    for i, (rec, lab) in enumerate(sorted(labels.items())):
        lab = np.asarray(lab, np.int8)
        x = np.zeros((lab.size, C, L), np.float16)
        x[:, :, 0] = (100 * i + np.arange(lab.size))[:, None]
        x[:, :, 1:] = np.sin(np.arange(1, L) / 7.0)
        np.save(root / "records" / f"{rec}.npy", x)
        np.save(root / "records" / f"{rec}.labels.npy", lab)
        records[rec] = {"n_windows": int(lab.size), "labelled_windows": int((lab >= 0).sum()),
                        "has_annotations": bool((lab >= 0).any()), "subject": rec,
                        "origin": "synthetic" if synthetic else "training",
                        "signal": f"records/{rec}.npy", "labels": f"records/{rec}.labels.npy"}
    manifest = {"format_version": 1, "status": "complete", "synthetic": synthetic, "params_hash": "abc",
                "sampling_rate": 100.0, "window_s": 30.0, "window_samples": L, "channels": CHANNELS,
                "dtype": "float16", "label_names": ["W", "N1", "N2", "N3", "REM"],
                "files": {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"},
                "records": records, "failed": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    splits, _ = make_splits(records, SplitSettings(n_test=n_test, n_finetune=n_finetune, seed=0))
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    rng = np.random.default_rng(0)
    labels = {f"tr{i:02d}-0001": rng.integers(-1, 5, 4 + i % 3) for i in range(12)}
    labels["te00-0001"] = np.full(5, -1)  # a test-set record (no annotations): pretraining only
    return write_prepared(tmp_path_factory.mktemp("pc18") / "prep", labels, n_test=4, n_finetune=2)


def cfg(root, **kw):
    return DataConfig(name="pc18", root=str(root), **kw)


def splits_of(root):
    return json.loads((Path(root) / "splits.json").read_text())


def test_bundle_contents(prep):
    b = dataset_spec("eeg", "pc18").load(cfg(prep), seed=0)
    s = splits_of(prep)
    assert b.class_names == ["W", "N1", "N2", "N3", "REM"]
    assert b.input_info == {"channels": 6, "window_samples": 3000}
    assert b.reference["metric"] == "kappa" and b.reference["values"]["part"] == 0.616
    assert b.reference["values"]["part_grid"] == 0.5 and "Table" in b.reference["source"]
    assert set(b.pretrain.records) == set(s["pretrain"]) and "te00-0001" in set(b.pretrain.records)
    assert set(b.finetune.records) == set(s["finetune"]) and set(b.test.records) == set(s["test"])
    assert (b.pretrain.labels == -1).any()  # unlabelled windows are pretrained on
    assert (b.finetune.labels >= 0).all() and (b.test.labels >= 0).all()
    x, y = b.test[0]
    assert x.dtype == torch.float32 and x.shape == (C, L) and isinstance(y, int) and 0 <= y <= 4
    assert len(b.test[len(b.test) - 1]) == 2
    m = get_modality("eeg", **b.input_info)
    assert m.sample(x[None])[0].shape == (1, 40, 600)
    assert "pretrain 9 records / 9 subjects" in b.description and "test 4 records / 4 subjects" in b.description
    assert "SYNTHETIC" not in b.description


def test_items_are_the_right_windows_and_test_groups_chronological(prep):
    b = dataset_spec("eeg", "pc18").load(cfg(prep))
    names = sorted(json.loads((prep / "manifest.json").read_text())["records"])
    t = b.test
    assert len(b.test_groups) == len(t) and b.test_groups == [str(r) for r in t.records]
    for i in range(len(t)):
        x, y = t[i]
        assert x[0, 0].item() == 100 * names.index(t.records[i]) + t.window_index[i]
        assert y == t.labels[i]
    groups = np.asarray(b.test_groups)
    for g in set(b.test_groups):
        where = np.flatnonzero(groups == g)
        assert np.all(np.diff(where) == 1)  # one subject's windows together ...
        assert np.all(np.diff(t.window_index[where]) > 0)  # ... in chronological order
    loader = DataLoader(t, batch_size=5)
    xb, yb = next(iter(loader))  # batched fetch (__getitems__) matches the items
    assert xb.shape == (5, C, L) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    for i in range(5):
        assert torch.equal(xb[i], t[i][0]) and yb[i].item() == t[i][1]


def test_splits_disjoint(prep):
    b = dataset_spec("eeg", "pc18").load(cfg(prep))
    test = set(b.test.records)
    assert not test & set(b.finetune.records) and not test & set(b.pretrain.records)
    assert set(b.finetune.records) <= set(b.pretrain.records)  # finetune subjects may be pretrained on


def test_overlapping_splits_are_refused(tmp_path, prep):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(prep, bad)
    s = splits_of(bad)
    s["finetune"] = [s["test"][0]]
    (bad / "splits.json").write_text(json.dumps(s))
    with pytest.raises(DataError, match="test and finetune overlap"):
        dataset_spec("eeg", "pc18").load(cfg(bad))


def test_repeat_draws_differ_and_exclude_test(prep):
    test = set(splits_of(prep)["test"])
    draws = [tuple(sorted(set(dataset_spec("eeg", "pc18").load(cfg(prep), seed=3, repeat=k).finetune.records)))
             for k in range(4)]
    assert draws[0] == tuple(sorted(splits_of(prep)["finetune"]))
    assert len(set(draws)) == 4  # every repeat finetunes on other subjects
    for d in draws:
        assert len(d) == 2 and not test & set(d)
    again = tuple(sorted(set(dataset_spec("eeg", "pc18").load(cfg(prep), seed=3, repeat=2).finetune.records)))
    assert again == draws[2]  # reproducible
    assert "repeat 2" in dataset_spec("eeg", "pc18").load(cfg(prep), seed=3, repeat=2).description


def test_missing_root_says_how_to_prepare(tmp_path):
    for root in (None, tmp_path / "nowhere", tmp_path):
        with pytest.raises(DataError, match=r"part-prepare-pc18 --src RAW --out .*--synthetic N"):
            dataset_spec("eeg", "pc18").load(DataConfig(name="pc18", root=None if root is None else str(root)))


def test_dataset_of_another_modality_or_unknown_is_refused(prep):
    with pytest.raises(ConfigError, match=r"'modality\.name' = 'eeg' does not fit data\.name='cifar10', "
                                          r"a dataset of modality 'image'"):
        recipe_from_dict({"data": {"name": "cifar10"}, "modality": {"name": "eeg"}})
    with pytest.raises(ConfigError, match=r"unknown dataset 'pc19' at 'data\.name'; registered: .*pc18"):
        recipe_from_dict({"data": {"name": "pc19", "root": str(prep)}, "modality": {"name": "eeg"}})


def test_limits_are_seeded_subsets(prep):
    full = dataset_spec("eeg", "pc18").load(cfg(prep))
    a = dataset_spec("eeg", "pc18").load(cfg(prep, limit_train=7, limit_test=5), seed=1)
    b = dataset_spec("eeg", "pc18").load(cfg(prep, limit_train=7, limit_test=5), seed=1)
    c = dataset_spec("eeg", "pc18").load(cfg(prep, limit_train=7, limit_test=5), seed=2)
    assert (len(a.pretrain), len(a.finetune), len(a.test)) == (7, min(7, len(full.finetune)), 5)
    assert np.array_equal(a.test.indices, b.test.indices) and np.array_equal(a.pretrain.indices, b.pretrain.indices)
    assert not np.array_equal(a.pretrain.indices, c.pretrain.indices)
    assert np.all(np.diff(a.test.indices) > 0)  # sorted: chronological order kept
    assert a.test_groups == [str(r) for r in a.test.records] and len(a.test_groups) == 5
    for i in range(5):
        assert torch.equal(a.test[i][0], full.test[int(a.test.indices[i])][0])
    assert "limit_test=5" in a.description


def test_synthetic_data_is_said_so(tmp_path):
    rng = np.random.default_rng(1)
    labels = {f"syn00-{i:04d}": rng.integers(0, 5, 3) for i in range(1, 5)}
    root = write_prepared(tmp_path / "syn", labels, n_test=2, n_finetune=1, synthetic=True)
    b = dataset_spec("eeg", "pc18").load(cfg(root))
    assert "SYNTHETIC" in b.description and len(b.test) == 6


def test_pickles_for_dataloader_workers(prep):
    import pickle
    t = dataset_spec("eeg", "pc18").load(cfg(prep, limit_test=6)).test
    t2 = pickle.loads(pickle.dumps(t))
    assert len(pickle.dumps(t)) < 100_000  # memory maps are reopened, not copied
    assert all(torch.equal(t2[i][0], t[i][0]) for i in range(len(t)))


def test_report_hook_draws_test_records_at_their_onsets(tmp_path):
    """The bundle's report hook knows each test item's record and onset (first_window_start_s +
    window_s * window index): one hypnogram per record, data.hypnograms counting records."""
    root = write_prepared(tmp_path / "prep", {f"r{i}-0001": np.array([0, -1, 2, 3, 4]) for i in range(4)},
                          n_test=2, n_finetune=1)
    manifest = json.loads((root / "manifest.json").read_text())
    for i, info in enumerate(manifest["records"].values()):
        info["first_window_start_s"] = 10.0 * i
    (root / "manifest.json").write_text(json.dumps(manifest))
    b = dataset_spec("eeg", "pc18").load(cfg(root, hypnograms=5))
    first = np.array([10.0 * sorted(manifest["records"]).index(r) for r in b.test.records])
    np.testing.assert_allclose(b.test.onsets_s, first + 30.0 * b.test.window_index)
    drawn = []
    import part.modalities.eeg.sleep.plots as plots
    real = plots.hypnogram_figure

    def spy(y_pred, class_names, title, **kw):  # the figure the report draws, as it is drawn
        drawn.append((title.split(":")[0].split(" ")[0], np.asarray(y_pred), kw["onset_s"]))
        return real(y_pred, class_names, title, **kw)
    plots.hypnogram_figure = spy
    try:
        b.report_hook(tmp_path / "report", {"y_true": b.test.targets, "y_pred": b.test.targets})
    finally:
        plots.hypnogram_figure = real
    records = list(dict.fromkeys(b.test.records))
    assert [d[0] for d in drawn] == records
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == sorted(f"hypnogram_{r}.png" for r in records)
    for (_, y_pred, onset), r in zip(drawn, records):  # window 1 is unlabelled: a gap, not collapsed
        assert y_pred.tolist() == [0, -1, 2, 3, 4] and onset == first[list(b.test.records).index(r)]


def test_reads_what_the_preparation_writes(tmp_path):
    """End to end with the real preparation code on three short synthetic records."""
    from part.data_prep.pc18_prepare import prepare_dataset
    from part.data_prep.pc18_synthetic import write_synthetic_records

    write_synthetic_records(tmp_path / "raw", 3, seed=0, minutes=(10, 11))
    prepare_dataset(tmp_path / "raw", tmp_path / "prep", splits=SplitSettings(n_test=1, n_finetune=1),
                    workers=1, progress=False, synthetic=True)
    b = dataset_spec("eeg", "pc18").load(cfg(tmp_path / "prep"))
    assert "SYNTHETIC" in b.description and b.input_info == {"channels": 6, "window_samples": 3000}
    assert len(set(b.test_groups)) == 1 and not set(b.test.records) & set(b.pretrain.records)
    x, y = b.finetune[0]
    assert x.shape == (C, L) and x.dtype == torch.float32 and 0 <= y <= 4
    assert dataset_spec("eeg", "pc18").load(cfg(tmp_path / "prep"), repeat=1).finetune.records[0] != b.test.records[0]
