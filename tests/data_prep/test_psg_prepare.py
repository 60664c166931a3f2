"""``python data_prep/psg.py`` and the shared pipeline (data_prep/prepare.py): EDF + EDF+ hypnogram,
CSV hypnogram, FIF with annotations inside, a recording without hypnogram, --rename, unknown stage
texts, pairing, wake trimming, subject splits, every bad input, and resume."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from part.data_prep.splits import SplitSettings, make_splits
from part.data_prep.prepare import PrepConfig, trim_wake
from part.data_prep.psg import main
from part.modalities.eeg.recordings.discovery import pair_hypnograms
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.modalities.eeg.recordings.windows import WindowGrid, window_grid
from part.modalities.eeg.recordings.mne_reader import read_recording
from part.modalities.eeg.recordings.windows import recording_windows

START = datetime(1989, 4, 24, 22, 30)
RNG = np.random.default_rng(1)
CHANNELS = ["--channels", "C4-M1,F4-M1", "--rename", "C4-A1=C4-M1"]


def _run(src: Path, out: Path, *extra) -> int:
    return main(["--src", str(src), "--out", str(out), *CHANNELS, "--n-test", "1", "--n-finetune", "1",
                 "--workers", "1", "--no-progress", *map(str, extra)])


def eeg(seconds: float, fs: float) -> np.ndarray:
    """EEG-like uV: a 7 Hz sine, a random walk and white noise, (seconds * fs,)."""
    t = np.arange(int(round(seconds * fs))) / fs
    return 40 * np.sin(2 * np.pi * 7 * t) + np.cumsum(RNG.normal(0, 0.5, t.size)) + RNG.normal(0, 5, t.size)


def _edf_with_start(path: Path, seconds: float, fs: float = 100, labels=("C4-A1", "F4-M1"), notes=()) -> Path:
    import edfio

    signals = [edfio.EdfSignal(eeg(seconds, fs), fs, label=label, physical_dimension="uV",
                               physical_range=(-1000.0, 1000.0)) for label in labels]
    edf = edfio.Edf(signals, starttime=START.time(), recording=edfio.Recording(startdate=START.date()),
                    data_record_duration=30, annotations=[edfio.EdfAnnotation(*n) for n in notes] or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    edf.write(path)
    return path


def _hypnogram_edf(path: Path, notes) -> Path:
    from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf

    onsets, durations, texts = zip(*notes)
    return write_annotations_edf(path, onsets, durations, texts, start=START)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("psg")
    _edf_with_start(root / "edf" / "SC4001E0-PSG.edf", 600)
    _hypnogram_edf(root / "edf" / "SC4001EC-Hypnogram.edf", [
        (45, 120, "Sleep stage W"), (165, 60, "Sleep stage 2"), (225, 30, "Sleep stage ?"),
        (255, 60, "Sleep stage R"), (315, 30, "Sleep stage 9x"), (100, 0, "Arousal")])
    _edf_with_start(root / "csv" / "night1.edf", 600)
    (root / "csv" / "night1_Hypnogram.csv").write_text("W\nW\nN1\nN2\nN2\nN3\nREM\nfoo\nN2\nW\n")
    _edf_with_start(root / "unscored.edf", 300)
    import mne

    raw = mne.io.RawArray(np.stack([eeg(300, 256), eeg(300, 256)]) * 1e-6,
                          mne.create_info(["C4-M1", "F4-M1"], 256.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([0, 60], [60, 30], ["Sleep stage W", "Sleep stage 3"]))
    (root / "fif").mkdir()
    raw.save(root / "fif" / "night_raw.fif", verbose="error")
    return root


@pytest.fixture(scope="module")
def prepared(src, tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("out") / "prep"
    return out, _run(src, out)


def _labels(out: Path, record: str) -> list[int]:
    return np.load(out / "records" / f"{record}.labels.npy").tolist()


def test_every_format_is_prepared_with_labels_from_its_hypnogram(prepared):
    out, code = prepared
    assert code == 0
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(m["records"]) == ["SC4001E0-PSG", "night1", "night_raw", "unscored"]
    assert m["channels"] == ["C4-M1", "F4-M1"] and m["rename"] == {"C4-A1": "C4-M1"} and m["status"] == "complete"
    edf = m["records"]["SC4001E0-PSG"]  # epochs follow the hypnogram's onsets (45 s phase); time after it is -1
    assert edf["first_window_start_s"] == 15.0 and edf["n_windows"] == 19
    assert _labels(out, "SC4001E0-PSG") == [-1, 0, 0, 0, 0, 2, 2, -1, 4, 4] + [-1] * 9
    assert edf["unknown_stages"] == {"Sleep stage 9x": 1} and edf["hypnogram"] == "edf/SC4001EC-Hypnogram.edf"
    assert edf["source_files"] == ["edf/SC4001E0-PSG.edf", "edf/SC4001EC-Hypnogram.edf"]
    assert _labels(out, "night1") == [0, 0, 1, 2, 2, 3, 4, -1, 2, 0] + [-1] * 10
    assert _labels(out, "night_raw") == [0, 0, 3] + [-1] * 7
    assert m["records"]["night_raw"]["input_fs"] == 256 and m["records"]["night_raw"]["hypnogram"].startswith("annot")
    assert _labels(out, "unscored") == [-1] * 10 and not m["records"]["unscored"]["has_annotations"]
    assert m["totals"]["unknown_stages"] == {"Sleep stage 9x": 1, "foo": 1}
    splits = json.loads((out / "splits.json").read_text())
    assert "unscored" in splits["pretrain"] and "unscored" not in splits["test"] + splits["finetune"]


def test_windows_are_the_shared_pipeline_on_the_renamed_channels(prepared, src):
    out, _ = prepared
    rec = read_recording(src / "csv" / "night1.edf", ["C4-M1", "F4-M1"], {"C4-A1": "C4-M1"})
    grid = window_grid(Hypnogram.from_file(src / "csv" / "night1_Hypnogram.csv"), rec.n_samples / rec.fs, 100.0)
    want = recording_windows(rec, grid, PrepConfig(channels=("C4-M1", "F4-M1")).windows())
    got = np.load(out / "records" / "night1.npy")
    assert got.shape == (20, 2, 3000) and got.dtype == np.float16
    np.testing.assert_array_equal(got, want.windows)


def test_rerun_resumes_and_unlabelled_recordings_are_announced(prepared, src, capsys):
    out, _ = prepared
    before = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert _run(src, out) == 0
    printed = capsys.readouterr().out
    assert "(0 now, 4 already done)" in printed
    assert "1 recordings have no hypnogram and were prepared UNLABELLED (pretraining only): unscored" in printed
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == before


def test_bad_inputs_fail_per_record_with_reasons(tmp_path, capsys):
    src = tmp_path / "bad"
    _edf_with_start(src / "good.edf", 300)
    (src / "broken.edf").write_bytes(b"0       garbage" * 20)
    _edf_with_start(src / "nochan.edf", 300, labels=("X", "Y"))
    _edf_with_start(src / "slow.edf", 300, fs=50)
    _edf_with_start(src / "late.edf", 300)
    (src / "late-Hypnogram.csv").write_text("onset_s,stage\n5000,W\n5030,N2\n")
    _edf_with_start(src / "odd.edf", 300)
    _hypnogram_edf(src / "odd-Hypnogram.edf", [(0, 60, "Sleep stage W"), (60, 20, "Sleep stage 2")])
    assert _run(src, tmp_path / "out") == 1
    failed = json.loads((tmp_path / "out" / "manifest.json").read_text())["failed"]
    assert sorted(failed) == ["broken", "late", "nochan", "odd", "slow"]
    assert "mne.io.read_raw_edf cannot read" in failed["broken"] and "broken.edf" in failed["broken"]
    assert "no channel 'C4-M1'" in failed["nochan"] and "['X', 'Y']" in failed["nochan"]
    assert "more than 60 Hz" in failed["slow"]
    assert "covers 5000-5060 s but the recording lasts 300 s" in failed["late"]
    assert "lasts 20.000 s" in failed["odd"] and "30-s scoring epochs" in failed["odd"]
    assert "FAILED 5 records" in capsys.readouterr().err


def test_an_edf_hypnogram_is_aligned_on_the_recordings_start(tmp_path):
    from datetime import timedelta

    _edf_with_start(tmp_path / "src" / "late_start.edf", 300)
    onsets, durations, texts = (0, 60), (60, 60), ("Sleep stage W", "Sleep stage 2")
    from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf

    write_annotations_edf(tmp_path / "src" / "late_start-Hypnogram.edf", onsets, durations, texts,
                          start=START + timedelta(seconds=90))  # scoring began 90 s into the recording
    assert _run(tmp_path / "src", tmp_path / "out") == 0
    assert _labels(tmp_path / "out", "late_start") == [-1, -1, -1, 0, 0, 2, 2, -1, -1, -1]
    info = json.loads((tmp_path / "out" / "manifest.json").read_text())["records"]["late_start"]
    assert info["hypnogram_offset_s"] == 90.0


def test_empty_or_missing_src_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty", tmp_path / "out") == 2
    assert "holds no recording" in capsys.readouterr().err
    assert _run(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "is not a directory" in capsys.readouterr().err


def test_pairing_rule(tmp_path):
    a, b = tmp_path / "a" / "SC4001E0-PSG.edf", tmp_path / "a" / "SC4002E0-PSG.edf"
    solo, other = tmp_path / "b" / "night.edf", tmp_path / "c" / "x1.edf"
    hyps = [tmp_path / "a" / "SC4002EH-Hypnogram.edf", tmp_path / "b" / "scoring_Hypnogram.csv",
            tmp_path / "c" / "x-Hypnogram.csv", tmp_path / "c" / "x1-Hypnogram.csv",
            tmp_path / "c" / "x1_Hypnogram.txt", tmp_path / "d" / "lost-Hypnogram.csv"]
    other2 = tmp_path / "c" / "x2.edf"
    pairs, failed = pair_hypnograms([a, b, solo, other, other2], hyps)
    assert pairs == {b: hyps[0], solo: hyps[1]}  # longest prefix; a folder's single recording
    assert "2 recordings share its longest name prefix" in failed["x-Hypnogram.csv"]
    assert "pairs with 2 hypnograms" in failed["x1.edf"]
    assert "its folder holds no recording" in failed["lost-Hypnogram.csv"]


def test_wake_trimming_keeps_exact_windows():
    labels = np.array([0, 0, 0, 0, 0, 1, 2, -1, 0, 0, 0, 0, 0], np.int8)
    grid = WindowGrid(1500, labels.size, 3000, 100.0, labels)
    trimmed, info = trim_wake(grid, 30.0, 1.0)  # 1 min = 2 windows of wake on each side
    assert trimmed.labels.tolist() == [0, 0, 1, 2, -1, 0] and trimmed.first_start == 1500 + 3 * 3000
    assert info == {"wake_min": 1.0, "dropped_before": 3, "dropped_after": 4}  # -1 is not sleep
    assert trim_wake(grid, 30.0, 0)[1] is None and trim_wake(grid, 30.0, -5)[0].n_windows == labels.size
    awake = WindowGrid(0, 3, 3000, 100.0, np.zeros(3, np.int8))
    assert trim_wake(awake, 30.0, 30)[0].n_windows == 3


def test_splits_keep_a_subjects_records_together_and_pc18_hash_is_unchanged():
    records = {f"S{s}N{n}": {"labelled_windows": 5, "subject": f"S{s}"} for s in range(5) for n in (1, 2)}
    records["S9N1"] = {"labelled_windows": 0, "subject": "S9"}
    splits, _ = make_splits(records, SplitSettings(n_test=2, n_finetune=1, seed=3))
    subj = splits["subjects"]
    test_subjects = {subj[r] for r in splits["test"]}
    assert len(test_subjects) == 2 and len(splits["test"]) == 4
    assert all(f"{s}N1" in splits["test"] and f"{s}N2" in splits["test"] for s in test_subjects)
    assert len(splits["finetune"]) == 2 and not test_subjects & {subj[r] for r in splits["pretrain"]}
    assert "S9N1" in splits["pretrain"]
    pc18, _ = make_splits({f"r{i}": {"labelled_windows": 1} for i in range(4)}, SplitSettings(2, 1, 0))
    assert pc18["subjects"] == {f"r{i}": f"r{i}" for i in range(4)} and len(pc18["test"]) == 2
    # PC18 outputs prepared before the split into readers + one pipeline stay up to date
    assert PrepConfig().params_hash() == "4de8874f1a102378"


def test_a_truncated_recording_fails_its_record_and_leaves_no_files(tmp_path, capsys):
    """An EDF cut to half its size (an interrupted copy): MNE would read what is there with a
    warning; the record fails with one line saying so, and the windows an earlier run wrote for it
    are removed (no stale .npy beside a manifest that lists it as failed)."""
    night = _edf_with_start(tmp_path / "src" / "night1.edf", 600)
    _edf_with_start(tmp_path / "src" / "night2.edf", 600)
    _edf_with_start(tmp_path / "src" / "night3.edf", 600)
    assert _run(tmp_path / "src", tmp_path / "out") == 0
    records = tmp_path / "out" / "records"
    assert (records / "night1.npy").is_file()
    data = night.read_bytes()
    night.write_bytes(data[: len(data) // 2])
    assert _run(tmp_path / "src", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "night1.edf is truncated: its header says 20 data records of 30 s (0.17 h) but the file holds 9" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "night1" in manifest["failed"] and "night1" not in manifest["records"]
    assert not any(records.glob("night1.*")), sorted(p.name for p in records.iterdir())


def test_flat_windows_are_reported_per_record(tmp_path, capsys):
    import edfio

    signal = eeg(600, 100)
    signal[: 100 * 120] = 0.0  # the first 120 s without any signal on either channel
    other = eeg(600, 100)
    other[: 100 * 120] = 0.0
    signals = [edfio.EdfSignal(s, 100, label=n, physical_dimension="uV", physical_range=(-1000.0, 1000.0))
               for n, s in (("C4-A1", signal), ("F4-M1", other))]
    (tmp_path / "src").mkdir()
    edfio.Edf(signals, data_record_duration=30).write(tmp_path / "src" / "flat.edf")
    _edf_with_start(tmp_path / "src" / "ok.edf", 600)
    _edf_with_start(tmp_path / "src" / "ok2.edf", 600)
    assert _run(tmp_path / "src", tmp_path / "out") == 0
    out = capsys.readouterr().out
    # windows 0-3 are flat: window 3 (90-120 s), whose band-passed signal rings with the signal that
    # starts at 120 s, holds only zeros (issue 24: flat stretches are measured on the raw samples)
    assert "warning: 1 records have windows without signal" in out and "flat (4 of 20)" in out
    info = json.loads((tmp_path / "out" / "manifest.json").read_text())["records"]["flat"]
    assert info["no_signal_windows"] == 4 and info["flat_by_channel"] == {"C4-M1": 4, "F4-M1": 4}
