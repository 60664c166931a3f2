"""The Hypnogram's yasa.Hypnogram-like operations (sleep/hypnogram_ops.py) and the scoring files
added in issue 25 (NSRR / Profusion XML in their published layouts, PC18 .arousal + .hea, JSON, a
CSV that keeps its start time), each checked against hand-computed values."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from part.modalities.eeg.recordings.hypnogram_io import HypnogramError
from part.modalities.eeg.sleep import Hypnogram

from conftest import SHARED_DATA, requires_shared

START = datetime(2021, 3, 4, 22, 45, 0)
# epoch:   0    1    2     3     4     5    6          7     8
LABELS = ["W", "W", "N1", "N2", "N2", "R", "unscored", "N3", "REM"]
CODES = [0, 0, 1, 2, 2, 4, -1, 3, 4]


def test_string_labels_equality_len_and_slicing():
    hyp = Hypnogram(LABELS, start=START)
    np.testing.assert_array_equal(hyp.stages, CODES)
    assert hyp == Hypnogram(CODES, start=START) and len(hyp) == 9
    assert hyp != Hypnogram(CODES) and hyp != Hypnogram(CODES, start=START, onsets_s=30.0 * np.arange(9) + 30)
    part = hyp[3:6]
    np.testing.assert_array_equal(part.stages, [2, 2, 4])
    np.testing.assert_array_equal(part.onsets_s, [90.0, 120.0, 150.0])  # on the same clock
    assert part.start == START and hyp[2].stage_names.tolist() == ["N1"]
    np.testing.assert_array_equal(hyp[hyp.stages == 4].onsets_s, [150.0, 240.0])
    with pytest.raises(ValueError, match=r"stage labels \['N5'\] are no sleep stage"):
        Hypnogram(["W", "N5"])


def test_transition_matrix_counts_consecutive_scored_epochs_only():
    # a gap of one epoch between 2 and 3 (onset 120 instead of 90): no transition across it
    hyp = Hypnogram(["W", "N1", "N2", "N2", "R", "R", "W"], onsets_s=[0, 30, 60, 120, 150, 180, 210])
    counts, probs = hyp.transition_matrix()
    expected = np.zeros((5, 5), int)
    for a, b in [(0, 1), (1, 2), (2, 4), (4, 4), (4, 0)]:  # W>N1, N1>N2, N2>REM, REM>REM, REM>W
        expected[a, b] += 1
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_allclose(probs[4], [0.5, 0, 0, 0, 0.5])
    assert np.isnan(probs[3]).all()  # N3 never seen


def test_find_periods_bouts_and_equal_length():
    hyp = Hypnogram(["W"] * 3 + ["N2"] * 12 + ["W"] + ["N2"] * 5)
    periods = hyp.find_periods("5min")
    assert periods["stage"].tolist() == [2] and periods["onset_s"].tolist() == [90.0]
    assert periods["duration_s"].tolist() == [360.0]
    pieces = hyp.find_periods(150, equal_length=True)  # 12 epochs -> 2 pieces of 150 s, 5 -> 1
    assert pieces["onset_s"].tolist() == [90.0, 240.0, 480.0] and set(pieces["duration_s"]) == {150.0}
    bouts = hyp.bouts("N2")
    assert bouts["onset_s"].tolist() == [90.0, 480.0] and bouts["duration_s"].tolist() == [360.0, 150.0]
    assert len(hyp.bouts()["stage"]) == 4


def test_upsample_and_upsample_to_data():
    hyp = Hypnogram(["W", "N2", "R"], proba=np.eye(5)[[0, 2, 4]], onsets_s=[0, 30, 90])
    up = hyp.upsample("10s")
    assert up.epoch_s == 10.0 and up.stages.tolist() == [0] * 3 + [2] * 3 + [4] * 3
    np.testing.assert_array_equal(up.onsets_s, [0, 10, 20, 30, 40, 50, 90, 100, 110])
    assert up.proba.shape == (9, 5) and up.proba[4, 2] == 1.0
    with pytest.raises(ValueError, match="7 s must divide the epoch length 30 s"):
        hyp.upsample(7)
    per_sample = hyp.upsample_to_data(np.zeros((2, 125)), sf=1.0)  # 125 s at 1 Hz
    expected = np.r_[[0] * 30, [2] * 30, [-1] * 30, [4] * 30, [-1] * 5]
    np.testing.assert_array_equal(per_sample, expected)


def test_crop_pad_move_keep_the_clock():
    hyp = Hypnogram(CODES, start=START)
    cropped = hyp.crop(60, 180)
    np.testing.assert_array_equal(cropped.onsets_s, [60, 90, 120, 150])
    assert hyp.crop(START + timedelta(seconds=60), START + timedelta(seconds=180)) == cropped
    padded = hyp.pad(60, 30)
    assert padded.stages.tolist() == [-1, -1, *CODES, -1] and padded.onsets_s[0] == -60.0
    assert padded.onsets_s[-1] == 270.0 and padded.statistics()["tib_min"] == hyp.statistics()["tib_min"]
    with pytest.raises(ValueError, match="multiples >= 0 of the epoch length 30 s"):
        hyp.pad(45)
    moved = hyp.moved_by(-30)
    assert moved.start == START and moved.onsets_s[0] == -30.0 and "moved by -30 s" in moved.note
    assert hyp.shifted(-30).aligned_to(START) == hyp  # shifting is re-counting; moving is not
    assert moved.aligned_to(START) != hyp


def test_consolidate_events_and_masks():
    hyp = Hypnogram(CODES)
    assert hyp.consolidate_stages(2).stages.tolist() == [0, 0, 1, 1, 1, 1, -1, 1, 1]
    assert hyp.consolidate_stages(3).names == ("W", "NREM", "REM")
    assert hyp.consolidate_stages(3).stages.tolist() == [0, 0, 1, 1, 1, 2, -1, 1, 2]
    assert hyp.consolidate_stages(4).stages.tolist() == [0, 0, 1, 1, 1, 3, -1, 2, 3]
    assert hyp.consolidate_stages(5).stages.tolist() == CODES
    with pytest.raises(ValueError, match=r"n_stages must be one of \[2, 3, 4, 5\], got 6"):
        hyp.consolidate_stages(6)
    events = hyp.as_events()
    assert events["description"].tolist() == ["W", "N1", "N2", "REM", "unscored", "N3", "REM"]
    assert events["onset_s"].tolist() == [0, 60, 90, 150, 180, 210, 240]
    assert events["duration_s"].tolist() == [60, 30, 60, 30, 30, 30, 30]
    assert hyp.get_mask("REM").tolist() == hyp.get_mask(4).tolist() == [c == 4 for c in CODES]
    assert hyp.get_mask(["W", "N1"]).sum() == 3


def test_json_and_csv_round_trips_keep_everything(tmp_path):
    proba = np.full((9, 5), 0.2)
    proba[6] = np.nan
    hyp = Hypnogram(CODES, proba, onsets_s=15 + 30.0 * np.arange(9), start=START, scorer="model", source="n.edf")
    back = Hypnogram.from_json(hyp.to_json(tmp_path / "n.json"))
    assert back == hyp and back.scorer == "model" and back.source == "n.edf"
    assert Hypnogram.from_file(tmp_path / "n.json") == hyp
    (tmp_path / "bad.json").write_text('{"stages": [0]}')
    with pytest.raises(HypnogramError, match=r"bad\.json: expected a hypnogram written by Hypnogram.to_json"):
        Hypnogram.from_json(tmp_path / "bad.json")
    csv = hyp.to_csv(tmp_path / "n.hypnogram.csv")
    assert csv.read_text().splitlines()[0] == "# start: 2021-03-04T22:45:00"
    assert Hypnogram.from_file(csv) == hyp  # start, onsets, stages and probabilities
    (tmp_path / "late.csv").write_text("# start: yesterday\nstage\nW\n")
    with pytest.raises(HypnogramError, match=r"late\.csv: its first line '# start: yesterday' is no start time"):
        Hypnogram.from_file(tmp_path / "late.csv")


NSRR = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation><SoftwareVersion>Compumedics</SoftwareVersion><EpochLength>30</EpochLength><ScoredEvents>
<ScoredEvent><EventType/><EventConcept>Recording Start Time</EventConcept><Start>0</Start><Duration>300.0</Duration>
<ClockTime>00.00.00 22.45.00</ClockTime></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Wake|0</EventConcept><Start>0.0</Start>
<Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 1 sleep|1</EventConcept><Start>60.0</Start>
<Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Respiratory|Respiratory</EventType><EventConcept>Hypopnea|Hypopnea</EventConcept>
<Start>70.2</Start><Duration>12.1</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 2 sleep|2</EventConcept><Start>90.0</Start>
<Duration>60.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 4 sleep|4</EventConcept><Start>150.0</Start>
<Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>REM sleep|5</EventConcept><Start>180.0</Start>
<Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Unscored|9</EventConcept><Start>210.0</Start>
<Duration>30.0</Duration></ScoredEvent>
<ScoredEvent><EventType>Stages|Stages</EventType><EventConcept>Stage 3 sleep|3</EventConcept><Start>270.0</Start>
<Duration>30.0</Duration></ScoredEvent>
</ScoredEvents></PSGAnnotation>
"""

PROFUSION = """<?xml version="1.0" encoding="utf-8"?>
<CMPStudyConfig><EpochLength>30</EpochLength><ScoredEvents></ScoredEvents><SleepStages>
<SleepStage>0</SleepStage><SleepStage>0</SleepStage><SleepStage>1</SleepStage><SleepStage>2</SleepStage>
<SleepStage>3</SleepStage><SleepStage>4</SleepStage><SleepStage>5</SleepStage><SleepStage>9</SleepStage>
</SleepStages></CMPStudyConfig>
"""


def test_nsrr_xml(tmp_path):
    (tmp_path / "shhs1-200001-nsrr.xml").write_text(NSRR)
    hyp = Hypnogram.from_file(tmp_path / "shhs1-200001-nsrr.xml")
    # W W N1 N2 N2 N3(stage 4) REM unscored [gap 240-270] N3
    assert hyp.stages.tolist() == [0, 0, 1, 2, 2, 3, 4, -1, 3]
    assert hyp.onsets_s.tolist() == [0, 30, 60, 90, 120, 150, 180, 210, 270]
    assert hyp.ignored == {"Recording Start Time": 1, "Hypopnea|Hypopnea": 1} and hyp.start is None
    assert hyp.contiguous().stages.tolist() == [0, 0, 1, 2, 2, 3, 4, -1, -1, 3]


def test_profusion_xml(tmp_path):
    (tmp_path / "night-profusion.xml").write_text(PROFUSION)
    hyp = Hypnogram.from_file(tmp_path / "night-profusion.xml")
    assert hyp.stages.tolist() == [0, 0, 1, 2, 3, 3, 4, -1] and hyp.onsets_s[-1] == 210.0
    (tmp_path / "bad.xml").write_text(PROFUSION.replace("<EpochLength>30", "<EpochLength>thirty"))
    with pytest.raises(HypnogramError, match=r"bad\.xml: EpochLength 'thirty' is no positive number"):
        Hypnogram.from_file(tmp_path / "bad.xml")
    (tmp_path / "twenty.xml").write_text(PROFUSION.replace("<EpochLength>30", "<EpochLength>20"))
    with pytest.raises(HypnogramError, match=r"twenty\.xml: stage annotation '0' at onset 0\.000 s lasts 20\.000 s"):
        Hypnogram.from_file(tmp_path / "twenty.xml")
    (tmp_path / "broken.xml").write_text("<CMPStudyConfig>")
    with pytest.raises(HypnogramError, match=r"broken\.xml: cannot read it as XML"):
        Hypnogram.from_file(tmp_path / "broken.xml")


def test_pc18_arousal_needs_its_header(tmp_path):
    (tmp_path / "tr00-0001.arousal").write_bytes(b"\x00\x00")
    with pytest.raises(HypnogramError, match=r"tr00-0001\.arousal: a PC18 \.arousal scoring needs its record's "
                                             r"header tr00-0001\.hea beside it"):
        Hypnogram.from_file(tmp_path / "tr00-0001.arousal")


@requires_shared("pc18/tr03-0005.arousal", "pc18/tr03-0005.hea")
def test_pc18_arousal_matches_the_preparations_window_labels():
    from part.data_prep.pc18_labels import read_stage_notes, window_labels
    from part.modalities.eeg.recordings.wfdb_reader import read_header

    path = SHARED_DATA / "pc18" / "tr03-0005.arousal"
    hyp = Hypnogram.from_file(path)
    header = read_header(path.with_suffix(".hea"))
    notes = read_stage_notes(path, float(header.fs))
    grid = window_labels(notes, int(header.sig_len), float(header.fs))
    onsets = (grid.first_start + grid.window_len * np.arange(grid.n_windows)) / grid.target_fs
    np.testing.assert_array_equal(hyp.labels_at(onsets), grid.labels)
    assert hyp.start_s == notes.onsets[0] / header.fs
    assert all(hyp.counts()[s] > 0 for s in ("W", "N1", "N2", "N3", "REM"))
