"""Scoring files -> 30-s epochs -> window labels (recordings/hypnogram_io.py, read into a
sleep.Hypnogram): every spelling,
annotation expansion and its errors, the window grid against a per-sample oracle, text/CSV
variants, MNE Raw annotations and the EDF+ round trip."""

from __future__ import annotations

from datetime import datetime, timezone

import mne
import numpy as np
import pytest

from part.data_prep import pc18_labels
from part.errors import DataError
from part.modalities.eeg.recordings.constants import EPOCH_S, UNLABELLED
from part.modalities.eeg.recordings.hypnogram_edf import write_hypnogram_edf
from part.modalities.eeg.recordings.hypnogram_io import (HypnogramError, classify_stage, scoring_from_annotations,
                                                         stage_code)
from part.modalities.eeg.recordings.windows import WindowGrid, window_grid
from part.modalities.eeg.sleep.hypnogram import Hypnogram

read_hypnogram = Hypnogram.from_file
hypnogram_from_raw = Hypnogram.from_raw


def hypnogram_from_annotations(*args, **kwargs) -> Hypnogram:
    return Hypnogram(**scoring_from_annotations(*args, **kwargs))

SPELLINGS = [
    # Sleep-EDF (R&K): stages 3 and 4 are both N3
    ("Sleep stage W", 0), ("Sleep stage 1", 1), ("Sleep stage 2", 2), ("Sleep stage 3", 3), ("Sleep stage 4", 3),
    ("Sleep stage R", 4),
    # AASM and common exports
    ("W", 0), ("N1", 1), ("N2", 2), ("N3", 3), ("R", 4), ("REM", 4), ("Wake", 0), ("awake", 0),
    ("S1", 1), ("S2", 2), ("S3", 3), ("S4", 3), ("Stage N2", 2), ("NREM 3", 3),
    # the 0-4 integer convention of text files, and 5 = REM of R&K integer exports
    ("0", 0), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 4), ("2.0", 2),
    # case, whitespace and underscores do not matter
    ("  sleep   STAGE_w ", 0), ("rem", 4), ("n3\t", 3),
]
UNSCORED = ["Sleep stage ?", "?", "Movement time", "MT", "Unscored", "-1", "", "9"]
UNKNOWN = ["Arousal", "Sleep stage 5", "Wach", "N5", "Lights off"]


@pytest.mark.parametrize("text,code", SPELLINGS)
def test_known_spellings(text, code):
    assert classify_stage(text) == (code, False)
    assert stage_code(text) == code


@pytest.mark.parametrize("text", UNSCORED)
def test_deliberately_unscored_is_not_unknown(text):
    assert classify_stage(text) == (UNLABELLED, False)


@pytest.mark.parametrize("text", UNKNOWN)
def test_unknown_strings_are_flagged(text):
    assert classify_stage(text) == (UNLABELLED, True)


def test_rk_integer_convention_only_changes_bare_4():
    assert classify_stage("4", rk_integers=True) == (3, False)
    assert classify_stage("5", rk_integers=True) == (4, False)
    assert classify_stage("Sleep stage 4", rk_integers=True) == (3, False)
    assert classify_stage("Sleep stage R", rk_integers=True) == (4, False)


def test_sleep_edf_annotations_expand_into_epochs_and_events_are_ignored():
    hyp = hypnogram_from_annotations(
        onsets_s=[0, 150, 180, 200, 240, 360, 420],
        durations_s=[150, 30, 60, 0, 120, 60, 30],
        descriptions=["Sleep stage W", "Sleep stage 1", "Sleep stage 4", "Arousal", "Sleep stage X",
                      "Movement time", "Sleep stage R"],
        source="SC4001EC-Hypnogram.edf")
    np.testing.assert_array_equal(hyp.onsets_s, [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 330, 360, 390,
                                                 420])
    np.testing.assert_array_equal(hyp.stages, [0] * 5 + [1, 3, 3] + [-1] * 4 + [-1, -1, 4])
    assert hyp.stages.dtype == np.int8 and hyp.onsets_s.dtype == np.float64
    assert hyp.unknown == {"Sleep stage X": 4}  # 120 s of an unknown stage = 4 epochs; Movement time not unknown
    assert hyp.ignored == {"Arousal": 1}
    assert hyp.counts() == {"W": 5, "N1": 1, "N2": 0, "N3": 2, "REM": 1, "unlabelled": 6}
    assert (hyp.n_epochs, hyp.start_s, hyp.end_s, hyp.source) == (15, 0.0, 450.0, "SC4001EC-Hypnogram.edf")
    starts, ends, stages = hyp.runs()
    np.testing.assert_array_equal(starts, [0, 150, 180, 240, 420])
    np.testing.assert_array_equal(ends, [150, 180, 240, 420, 450])
    np.testing.assert_array_equal(stages, [0, 1, 3, -1, 4])


def test_unsorted_annotations_are_sorted():
    hyp = hypnogram_from_annotations([60, 0], [30, 60], ["N2", "W"], "x.edf")
    np.testing.assert_array_equal(hyp.onsets_s, [0, 30, 60])
    np.testing.assert_array_equal(hyp.stages, [0, 0, 2])


@pytest.mark.parametrize("duration", [45.0, 0.0, 29.9, 30.01])
def test_stage_annotations_not_lasting_whole_epochs_are_refused(duration):
    with pytest.raises(HypnogramError, match=r"night\.edf.*'Sleep stage 2' at onset 90\.000 s lasts "
                                             rf"{duration:.3f} s; expected 30-s scoring epochs"):
        hypnogram_from_annotations([0, 90], [90, duration], ["Sleep stage W", "Sleep stage 2"], "night.edf")


def test_tolerance_of_one_millisecond():
    hyp = hypnogram_from_annotations([0, 60.0004], [60.0004, 29.9995], ["W", "N2"], "x.csv")
    assert hyp.n_epochs == 3


def test_overlapping_stage_annotations_are_refused():
    with pytest.raises(HypnogramError, match=r"x\.edf: stage annotation 'N1' at onset 30\.000 s \(duration 30\.000 s\) "
                                             r"overlaps 'W' at onset 0\.000 s \(duration 60\.000 s\)"):
        hypnogram_from_annotations([0, 30], [60, 30], ["W", "N1"], "x.edf")
    assert issubclass(HypnogramError, DataError)


def _oracle_labels(hyp: Hypnogram, n_out: int, fs: float, first_start: int, window_len: int) -> np.ndarray:
    """Per-sample stage (-2 where no epoch), then a window's label = its single stage, else -1."""
    per_sample = np.full(n_out, -2, np.int64)
    for onset, stage in zip(hyp.onsets_s, hyp.stages):  # a test oracle: a loop over epochs
        a, b = int(round(onset * fs)), int(round((onset + hyp.epoch_s) * fs))
        per_sample[max(a, 0):max(min(b, n_out), 0)] = stage
    n = (n_out - first_start) // window_len
    windows = per_sample[first_start:first_start + n * window_len].reshape(n, window_len)
    same = (windows == windows[:, :1]).all(axis=1) & (windows[:, 0] >= 0)
    return np.where(same, windows[:, 0], -1).astype(np.int8)


def test_grid_follows_an_offset_first_onset_and_time_past_the_hypnogram_is_unlabelled():
    stages = [0, 0, 1, 2, 2, 3]
    hyp = Hypnogram(np.array(stages, np.int8), onsets_s=45.5 + 30 * np.arange(6), source="h.csv")
    grid = window_grid(hyp, duration_s=400.0, target_fs=100.0)
    assert isinstance(grid, WindowGrid) and grid.window_len == 3000 and grid.target_fs == 100.0
    assert grid.first_start == 1550  # 45.5 s mod 30 s, in samples at 100 Hz
    assert grid.n_windows == (40000 - 1550) // 3000 == 12
    np.testing.assert_array_equal(grid.labels, [-1] + stages + [-1] * 5)


def test_grid_matches_a_per_sample_oracle_with_gaps_and_off_grid_epochs():
    rng = np.random.default_rng(0)
    onsets = np.r_[12.0 + 30 * np.arange(40), 1500.0 + 30 * np.arange(20), 2117.0 + 30 * np.arange(10)]
    stages = np.repeat(rng.integers(-1, 5, 14), 5).astype(np.int8)
    hyp = Hypnogram(stages, onsets_s=onsets, source="x")
    for fs in (100.0, 128.0):
        grid = window_grid(hyp, 2600.0, fs)
        assert grid.first_start == round(12.0 * fs) and grid.window_len == round(30 * fs)
        expected = _oracle_labels(hyp, int(2600 * fs), fs, grid.first_start, grid.window_len)
        np.testing.assert_array_equal(grid.labels, expected)
        starts_s = (grid.first_start + grid.window_len * np.arange(grid.n_windows)) / fs
        past_end = starts_s + 30 > hyp.end_s  # windows reaching past the hypnogram's end (2417 s)
        assert past_end.sum() >= 5 and (grid.labels[past_end] == -1).all()
        assert (grid.labels >= 0).sum() > 20


def test_a_hypnogram_starting_before_the_recording():
    hyp = Hypnogram(np.array([0, 1, 2, 3, 4, 0], np.int8), onsets_s=-75.0 + 30 * np.arange(6), source="x")
    grid = window_grid(hyp, 100.0, 100.0)
    assert grid.first_start == 1500  # -75 s mod 30 s = 15 s
    np.testing.assert_array_equal(grid.labels, [3, 4])  # epochs at 15 and 45 s


def test_grid_without_hypnogram_is_unlabelled_from_zero():
    grid = window_grid(None, 95.0, 100.0)
    assert (grid.first_start, grid.n_windows, grid.window_len) == (0, 3, 3000)
    assert grid.labels.dtype == np.int8 and (grid.labels == -1).all()


@pytest.mark.parametrize("start", [30000.0, -28830.0])
def test_a_hypnogram_not_overlapping_the_recording_is_refused(start):
    hyp = Hypnogram(np.zeros(960, np.int8), onsets_s=start + 30 * np.arange(960), source="SC4011EH-Hypnogram.edf")
    end = start + 28800
    with pytest.raises(HypnogramError, match=rf"SC4011EH-Hypnogram\.edf: the hypnogram covers {start:.0f}-{end:.0f} s "
                                             r"but the recording lasts 20000 s"):
        window_grid(hyp, 20000.0, 100.0)


def test_pc18_labels_share_the_window_grid():
    assert pc18_labels.WindowGrid is WindowGrid


TABLES = {
    "digits.txt": ("0\n1\n2\n3\n4\n\n\n", [0, 1, 2, 3, 4], {}),
    "rk_integers.txt": ("# R&K codes\n0\n1\n4\n5\n9\n6\n", [0, 1, 3, 4, -1, -1], {}),
    "labels.txt": ("Sleep stage W\nSleep stage 4\nN2\n\n?\nfoo\nREM\n", [0, 3, 2, -1, -1, -1, 4], {"foo": 1}),
    "header.csv": ("epoch,Stage\n1,W\n2,N1\n3,\"N3\"\n4,bar\n", [0, 1, 3, -1], {"bar": 1}),
    "scores.tsv": ("time\tsleep_stage\n0\tWake\n30\tS2\n", [0, 2], {}),
    "semicolon.csv": ("Hypnogram;x\nR;1\nW;2\n", [4, 0], {}),
    "one_column.csv": ("label\n2\n2\n", [2, 2], {}),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_text_and_csv_variants(tmp_path, name):
    text, stages, unknown = TABLES[name]
    (tmp_path / name).write_text(text)
    hyp = read_hypnogram(tmp_path / name)
    np.testing.assert_array_equal(hyp.stages, stages)
    np.testing.assert_array_equal(hyp.onsets_s, EPOCH_S * np.arange(len(stages)))
    assert hyp.unknown == unknown and hyp.source == name


def test_our_own_staging_csv_uses_its_onsets(tmp_path):
    path = tmp_path / "night.stages.csv"
    path.write_text("onset_s,duration_s,stage,p_W,p_N1,p_N2,p_N3,p_REM\n"
                    "15.0,30.0,W,0.9,0.1,0,0,0\n45.0,30.0,N2,0,0,1,0,0\n105.0,30.0,REM,0,0,0,0,1\n")
    hyp = read_hypnogram(path)
    np.testing.assert_array_equal(hyp.onsets_s, [15, 45, 105])
    np.testing.assert_array_equal(hyp.stages, [0, 2, 4])
    grid = window_grid(hyp, 150.0, 100.0)
    np.testing.assert_array_equal(grid.labels, [0, 2, -1, 4])  # 75-105 s has no epoch


@pytest.mark.parametrize("name,text,message", [
    ("cols.csv", "onset,value\n0,W\n", r"no stage column among \['onset', 'value'\]"),
    ("ragged.csv", "stage,x\nW,1\nN1\n", r"data row 2 has 1 fields"),
    ("onsets.csv", "onset_s,stage\nzero,W\n", r"column 'onset_s' must hold a number"),
    ("empty.txt", "# nothing\n\n", r"holds no stage"),
    ("bad.csv", "stage,duration_s\nW,20\n", r"lasts 20\.000 s; expected 30-s"),
    ("night.xml", "<xml/>", r"XML root <xml> is no scoring layout known here; expected NSRR XML"),  # read since #25
    ("night.vmrk", "x", r"unknown hypnogram extension '\.vmrk'; expected one of: EDF\+"),
    ("broken.edf", "not an edf file at all", r"broken\.edf: cannot read EDF\+ annotations"),
])
def test_bad_files_are_refused_with_the_file_named(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(HypnogramError, match=message):
        read_hypnogram(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(HypnogramError, match=r"missing\.edf: hypnogram file not found"):
        read_hypnogram(tmp_path / "missing.edf")


def test_edf_round_trip_with_unscored_runs_gaps_and_a_start_offset(tmp_path):
    stages = np.array([-1, -1, 0, 0, 0, 1, 2, 2, 3, -1, 4, 4, 0, 0], np.int8)
    onsets = 90.0 + 30 * np.arange(stages.size)
    onsets[10:] += 300  # a 300-s gap without scoring
    hyp = Hypnogram(stages, onsets_s=onsets, source="x")
    path = write_hypnogram_edf(tmp_path / "SC4001EC-Hypnogram.edf", hyp, start=datetime(1989, 4, 24, 16, 13, 5))
    back = read_hypnogram(path)
    np.testing.assert_array_equal(back.onsets_s, onsets)
    np.testing.assert_array_equal(back.stages, stages)
    assert back.unknown == {} and back.ignored == {} and back.source == "SC4001EC-Hypnogram.edf"
    ann = mne.read_annotations(path)  # consecutive equal epochs are merged, Sleep-EDF labels
    assert list(ann.description) == ["Sleep stage ?", "Sleep stage W", "Sleep stage 1", "Sleep stage 2",
                                     "Sleep stage 3", "Sleep stage ?", "Sleep stage R", "Sleep stage W"]
    np.testing.assert_allclose(ann.duration, [60, 90, 30, 60, 30, 30, 60, 60])
    np.testing.assert_allclose(ann.onset, [90, 150, 240, 270, 330, 360, 690, 750])
    import edfio

    edf = edfio.read_edf(path)
    assert (edf.startdate, edf.starttime) == (datetime(1989, 4, 24).date(), datetime(1989, 4, 24, 16, 13, 5).time())
    assert edf.num_signals == 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def _raw(seconds: float, annotations: mne.Annotations, meas_date=None) -> mne.io.RawArray:
    raw = mne.io.RawArray(np.zeros((1, int(seconds * 100))), mne.create_info(["Fpz"], 100.0), verbose="error")
    raw.set_meas_date(meas_date)
    raw.set_annotations(annotations, verbose="error")
    return raw


@pytest.mark.parametrize("meas_date", [None, datetime(2001, 2, 3, 22, 0, 0, tzinfo=timezone.utc)])
def test_raw_annotations_relative_to_the_first_sample_after_a_crop(meas_date):
    ann = mne.Annotations([0, 90, 100, 150], [90, 60, 0, 120], ["Sleep stage W", "N2", "Arousal", "R"])
    raw = _raw(200, ann, meas_date).crop(tmin=45, verbose="error")
    hyp = hypnogram_from_raw(raw)
    # W (0-90) clipped to 45-90 keeps its last whole epoch (15-45 s after the crop); R clipped at the end
    np.testing.assert_array_equal(hyp.onsets_s, [15, 45, 75, 105])
    np.testing.assert_array_equal(hyp.stages, [0, 2, 2, 4])
    assert hyp.ignored == {"Arousal": 1}
    grid = window_grid(hyp, raw.n_times / 100, 100.0)
    assert grid.first_start == 1500
    np.testing.assert_array_equal(grid.labels, [0, 2, 2, 4])


def test_raw_without_stage_annotations_gives_none():
    assert hypnogram_from_raw(_raw(60, mne.Annotations([], [], []))) is None
    assert hypnogram_from_raw(_raw(60, mne.Annotations([5], [2], ["Arousal"]))) is None
    assert hypnogram_from_raw(_raw(60, mne.Annotations([50], [30], ["W"]))) is None  # clipped to a partial epoch


def test_a_partial_stage_annotation_at_the_start_of_uncropped_data_is_refused():
    # nothing was clipped (the data starts at its origin): a 45-s W at 0 is a scoring error, not an
    # epoch from -15 s whose whole part would start at 15 s and move the grid's phase
    with pytest.raises(HypnogramError, match=r"'Sleep stage W' at onset 0\.000 s lasts 45\.000 s; expected 30-s"):
        hypnogram_from_raw(_raw(120, mne.Annotations([0, 45], [45, 30], ["Sleep stage W", "N2"])))
    # the same annotation from -15 s (set_annotations clips it to 0-45 s) after a crop does keep its whole epoch
    raw = _raw(135, mne.Annotations([0, 60], [60, 30], ["Sleep stage W", "N2"])).crop(tmin=15, verbose="error")
    np.testing.assert_array_equal(hypnogram_from_raw(raw).onsets_s, [15, 45])


def test_raw_stage_annotations_inside_the_data_must_last_whole_epochs():
    with pytest.raises(HypnogramError, match=r"'N2' at onset 30\.000 s lasts 0\.000 s; expected 30-s"):
        hypnogram_from_raw(_raw(120, mne.Annotations([0, 30], [30, 0], ["W", "N2"])))


def test_is_stage_label():
    from part.modalities.eeg.recordings.hypnogram_io import is_stage_label

    assert all(is_stage_label(t) for t in ("Sleep stage 4", "?", "Movement time", "Sleep stage X", "Stage 7"))
    assert not any(is_stage_label(t) for t in ("Arousal", "Lights off", "Wach", "stages of sleep"))


def test_an_edf_with_events_only_is_refused(tmp_path):
    from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf

    path = write_annotations_edf(tmp_path / "events.edf", [10, 20], [0, 5], ["Lights off", "Arousal"])
    with pytest.raises(HypnogramError, match=r"holds no sleep-stage annotation \(annotations seen: Lights off, "
                                             r"Arousal\)"):
        read_hypnogram(path)


@pytest.mark.parametrize("text", ["Sleep Stage\nW\nN1\nN2\n", "Stages\nW\nN1\nN2\n", "sleep-stages\nW\nN1\nN2\n",
                                  "Epoch scoring\nW\nN1\nN2\n", "LABEL\nW\nN1\nN2\n"])
def test_a_one_column_header_is_not_read_as_epoch_0(tmp_path, text):
    (tmp_path / "h.csv").write_text(text)
    hyp = read_hypnogram(tmp_path / "h.csv")
    np.testing.assert_array_equal(hyp.stages, [0, 1, 2])
    np.testing.assert_array_equal(hyp.onsets_s, [0, 30, 60])
    assert hyp.unknown == {}


def test_a_one_column_file_of_no_stage_labels_is_refused(tmp_path):
    (tmp_path / "h.txt").write_text("Scoring\nfoo\nbar\nW\n")
    with pytest.raises(HypnogramError, match=r"h\.txt: its first row 'Scoring' is neither a stage label nor a header"):
        read_hypnogram(tmp_path / "h.txt")
    (tmp_path / "two.csv").write_text("Sleep Stage,Onset-s\nW,30\nN2,60\n")  # several columns: names normalised
    np.testing.assert_array_equal(read_hypnogram(tmp_path / "two.csv").onsets_s, [30, 60])


def test_edf_hypnograms_and_stored_annotations_use_the_epoch_length(tmp_path):
    from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf
    from part.modalities.eeg.recordings.mne_reader import stage_annotations

    path = write_annotations_edf(tmp_path / "h.edf", [0, 20], [20, 40], ["Sleep stage W", "Sleep stage 2"])
    hyp = read_hypnogram(path, epoch_s=20)
    np.testing.assert_array_equal(hyp.onsets_s, [0, 20, 40])
    np.testing.assert_array_equal(hyp.stages, [0, 2, 2])
    assert hyp.epoch_s == 20
    import edfio

    signal = edfio.EdfSignal(np.sin(np.arange(6000) / 10) * 50, 100, label="Fpz", physical_dimension="uV",
                             physical_range=(-100.0, 100.0))
    edfio.Edf([signal], annotations=[edfio.EdfAnnotation(0, 20, "W"), edfio.EdfAnnotation(20, 40, "N2")],
              data_record_duration=1).write(tmp_path / "rec.edf")
    stored = stage_annotations(tmp_path / "rec.edf", epoch_s=20)
    np.testing.assert_array_equal(stored["stages"], [0, 2, 2])
    with pytest.raises(HypnogramError, match="expected 30-s scoring epochs"):
        stage_annotations(tmp_path / "rec.edf")


def test_one_label_count_function():
    from part.data_prep.pc18_labels import label_counts as pc18_counts
    from part.modalities.eeg.recordings.hypnogram_io import label_counts

    assert pc18_counts is label_counts
    hyp = Hypnogram(np.array([0, 4, -1, 4], np.int8), onsets_s=30.0 * np.arange(4))
    assert hyp.counts() == label_counts(hyp.stages) == {"W": 1, "N1": 0, "N2": 0, "N3": 0, "REM": 2, "unlabelled": 1}


def test_a_truncated_edf_hypnogram_is_refused(tmp_path):
    from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf

    notes = [(30.0 * i, 30.0, "Sleep stage W" if i % 2 else "Sleep stage 2") for i in range(200)]
    path = write_annotations_edf(tmp_path / "h.edf", *zip(*notes))
    assert read_hypnogram(path).n_epochs == 200
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(HypnogramError, match=r"h\.edf is truncated: its header says \d+ data records"):
        read_hypnogram(path)
