"""The one Hypnogram object (sleep/hypnogram.py): stage codes, probabilities, start time and
scorer; CSV and EDF+ round trips, statistics, agreement aligned by start time, plot, and the
checks on what it is given."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from matplotlib.figure import Figure

from part.errors import DataError
from part.modalities.eeg.recordings.hypnogram_io import HypnogramError
from part.modalities.eeg.sleep import Hypnogram
from part.modalities.eeg.sleep.hypnogram import stage_codes

START = datetime(2021, 3, 4, 22, 45, 0)
NIGHT = np.array([0, 0, 1, 2, 2, 3, 3, 2, 4, 4, 0, 2, -1, 2])


def _proba(stages, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((len(stages), 5)) * 0.2
    p[np.arange(len(stages)), np.clip(stages, 0, 4)] += 1.0
    return p / p.sum(1, keepdims=True)


def test_defaults_and_views():
    hyp = Hypnogram(NIGHT, source="night1.edf")
    assert hyp.stages.dtype == np.int8 and len(hyp) == hyp.n_epochs == 14
    np.testing.assert_array_equal(hyp.onsets_s, 30.0 * np.arange(14))
    assert hyp.record == "night1" and (hyp.start_s, hyp.end_s) == (0.0, 420.0)
    assert hyp.stage_names.tolist()[:3] == ["W", "W", "N1"] and hyp.stage_names[12] == "unscored"
    assert hyp.counts() == {"W": 3, "N1": 1, "N2": 5, "N3": 2, "REM": 2, "unlabelled": 1}
    assert Hypnogram(NIGHT, source="x.fif.gz").record == "x"


def test_bad_input_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match=r"stage codes -1\.\.4"):
        Hypnogram([0, 5, 2])
    with pytest.raises(ValueError, match="stage codes"):
        Hypnogram([0.5, 1.0])
    with pytest.raises(ValueError, match="at least 30.0 s apart"):
        Hypnogram([0, 1], onsets_s=[0, 10])
    with pytest.raises(ValueError, match=r"probabilities of shape \(3, 4\); expected \(3, 5\)"):
        Hypnogram([0, 1, 2], proba=np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="epoch 1's probabilities .* are no distribution; expected .* summing to 1"):
        Hypnogram([0, 1], proba=[[1, 0, 0, 0, 0], [0.5, 0, 0, 0, 0]])
    ok = Hypnogram([0, -1], proba=[[1, 0, 0, 0, 0], [np.nan] * 5])  # an epoch without probabilities
    assert np.isnan(ok.proba[1]).all()


def test_stage_codes_of_class_names():
    np.testing.assert_array_equal(stage_codes(["W", "N1", "N2", "N3", "REM"]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(stage_codes(["Wake", "R", "N2"]), [0, 4, 2])
    with pytest.raises(DataError, match=r"classes \['cat'\] are no sleep stages"):
        stage_codes(["W", "cat"])
    with pytest.raises(DataError, match=r"classes \['N3', 'N4'\] name the same sleep stage"):
        stage_codes(["W", "N1", "N2", "N3", "N4", "REM"])  # R&K 4 is N3: probabilities would be lost


def test_the_object_is_immutable_and_keeps_the_callers_arrays():
    stages = NIGHT.copy()
    hyp = Hypnogram(stages)
    with pytest.raises(ValueError, match="read-only"):
        hyp.stages[0] = 4
    stages[0] = 4  # the caller's array is the caller's
    assert hyp.stages[0] == 0 and hyp.statistics()["minutes"]["W"] == 1.5


def test_aligning_twice_is_aligning_once():
    recording = Hypnogram(NIGHT, start=START, source="n.edf")
    later = Hypnogram(NIGHT[2:], start=START + timedelta(seconds=60), source="ref.edf")
    once = later.aligned_to(recording)
    assert once.offset_s == 60.0 and once.start == START and once.onsets_s[0] == 60.0
    twice = once.aligned_to(recording)
    assert twice.offset_s == 60.0 and twice.onsets_s[0] == 60.0 and twice is once
    assert recording.agreement(once)["reference_offset_s"] == 0.0 and recording.agreement(once)["kappa"] == 1.0


def test_statistics_count_the_time_between_epochs():
    """Epochs at 0, 30 s and at 1 h, 1 h 30 s: the scored period is 61 min, not 2 min."""
    hyp = Hypnogram([0, 2, 2, 0], onsets_s=[0.0, 30.0, 3600.0, 3630.0])
    stats = hyp.statistics()
    assert stats["tib_min"] == 61.0 and stats["tst_min"] == 1.0 and stats["unscored_min"] == 59.0
    assert stats["waso_min"] == 0.0 and stats["n_epochs"] == 122


def test_csv_round_trip_keeps_stages_onsets_and_probabilities(tmp_path):
    proba = _proba(NIGHT)
    proba[12] = np.nan  # the unscored epoch has none
    hyp = Hypnogram(NIGHT, proba, onsets_s=15.0 + 30.0 * np.arange(14), scorer="model", source="n.edf")
    path = hyp.to_csv(tmp_path / "n.hypnogram.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "onset_s,duration_s,stage,p_W,p_N1,p_N2,p_N3,p_REM"
    assert lines[13] == "375.000,30.000,unscored,,,,,"
    back = Hypnogram.from_file(path)
    np.testing.assert_array_equal(back.stages, hyp.stages)
    np.testing.assert_allclose(back.onsets_s, hyp.onsets_s)
    np.testing.assert_allclose(back.proba, proba, atol=1e-6)
    assert back.scorer == "n.hypnogram.csv" and back.start is None
    plain = Hypnogram(NIGHT).to_csv(tmp_path / "plain.csv")
    assert plain.read_text().splitlines()[0] == "onset_s,duration_s,stage"
    assert Hypnogram.from_file(plain).proba is None


def test_edf_round_trip_keeps_the_start(tmp_path):
    hyp = Hypnogram(NIGHT, start=START)
    back = Hypnogram.from_file(hyp.to_edf(tmp_path / "n-Hypnogram.edf"))
    np.testing.assert_array_equal(back.stages, NIGHT)
    assert back.start == START and back.start.tzinfo is None  # an EDF header's clock time: naive
    unknown = Hypnogram.from_file(Hypnogram(NIGHT).to_edf(tmp_path / "u.edf"))
    assert unknown.start is None  # EDF's placeholder start 01.01.85 00:00:00 means unknown


def test_statistics_carry_the_provenance():
    hyp = Hypnogram(NIGHT, start=START, scorer="model", source="n.edf", info={"no_signal_epochs": 1})
    stats = hyp.statistics()
    assert stats["record"] == "n" and stats["scorer"] == "model" and stats["start"] == START.isoformat()
    assert stats["tib_min"] == 7.0 and stats["tst_min"] == 5.0 and stats["info"] == {"no_signal_epochs": 1}
    assert hyp.statistics() is stats  # computed once


def test_agreement_aligns_the_reference_by_start_time(tmp_path):
    """A reference scoring that starts 60 s after the recording is moved by 60 s before the
    comparison (as the preparation aligns it); the confusion counts only epochs scored in both."""
    staged = Hypnogram(NIGHT, _proba(NIGHT), start=START, source="n.edf")
    later = Hypnogram(NIGHT[2:], start=START + timedelta(seconds=60), source="ref.edf")
    agreement = staged.agreement(later)
    assert agreement["reference_offset_s"] == 60.0 and "reference_note" not in agreement
    assert agreement["kappa"] == 1.0 and agreement["n_compared"] == 11  # 12 reference epochs, one unscored
    ref_file = later.to_edf(tmp_path / "ref.edf")
    assert staged.agreement(ref_file)["reference_offset_s"] == 60.0  # a file, aligned the same way
    same = Hypnogram(NIGHT, start=START)
    assert staged.agreement(same)["kappa"] == 1.0 and staged.agreement(same)["reference_offset_s"] == 0.0
    shifted = Hypnogram(NIGHT[2:], source="ref")  # no start: taken as from the recording's start
    assert staged.agreement(shifted)["reference_offset_s"] == 0.0 and staged.agreement(shifted)["kappa"] < 1.0
    utc = Hypnogram(NIGHT, start=START.replace(tzinfo=timezone.utc), source="x.fif")
    note = utc.agreement(Hypnogram(NIGHT, start=START, source="h.edf"))["reference_note"]
    assert "not comparable" in note and "UTC" in note  # a UTC start and a header clock time: not mixed
    with pytest.raises(HypnogramError, match="6.0 days apart; the scoring does not belong to this recording"):
        staged.agreement(Hypnogram(NIGHT, start=START + timedelta(days=6), source="other.edf"))
    with pytest.raises(DataError, match="none of its scored epochs covers a staged"):
        staged.agreement(Hypnogram(NIGHT, onsets_s=3600 + 30.0 * np.arange(14), source="late"))


def test_unscored_staged_epochs_are_left_out_of_the_agreement():
    staged = Hypnogram([0, -1, 2, 2])
    agreement = staged.agreement(Hypnogram([0, 1, 2, 2]))
    assert agreement["n_compared"] == 3 and agreement["accuracy"] == 1.0


def test_plot_returns_a_figure_or_writes_a_png(tmp_path):
    staged = Hypnogram(NIGHT, _proba(NIGHT), start=START, source="n.edf")
    fig = staged.plot(reference=Hypnogram(NIGHT, start=START))
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and "kappa 1.000" in fig.axes[0].get_title()
    assert staged.plot(tmp_path / "n.png").read_bytes().startswith(b"\x89PNG")
    scoring = Hypnogram(NIGHT, start=START).to_csv(tmp_path / "ref.csv")
    assert "kappa 1.000" in staged.plot(reference=scoring).axes[0].get_title()  # a scoring file too
    disjoint = Hypnogram([-1] * 4 + [2] * 10)  # scored only where nothing is staged: no kappa in the title
    assert "kappa" not in Hypnogram([2] * 4 + [-1] * 10).plot(reference=disjoint).axes[0].get_title()


def test_an_empty_hypnogram_cannot_be_written_as_edf(tmp_path):
    with pytest.raises(DataError, match="no epoch to write"):
        Hypnogram([]).to_edf(tmp_path / "e.edf")


def test_an_aware_start_is_written_as_its_utc_clock(tmp_path):
    local = datetime(2021, 3, 4, 23, 45, tzinfo=timezone(timedelta(hours=1)))
    back = Hypnogram.from_file(Hypnogram(NIGHT, start=local).to_edf(tmp_path / "u.edf"))
    assert back.start == datetime(2021, 3, 4, 22, 45)


def test_contiguous_fills_gaps_with_unscored_epochs():
    hyp = Hypnogram([0, 2, 4], _proba([0, 2, 4]), onsets_s=[15.0, 45.0, 105.0])
    filled = hyp.contiguous()
    np.testing.assert_array_equal(filled.stages, [0, 2, -1, 4])
    np.testing.assert_allclose(filled.onsets_s, [15, 45, 75, 105])
    assert np.isnan(filled.proba[2]).all() and filled.contiguous() is filled
    off_grid = Hypnogram([0, 2, 4], onsets_s=[0.0, 45.0, 75.0])  # the last slot is right, the middle is not
    assert off_grid.contiguous() is not off_grid
    np.testing.assert_array_equal(off_grid.contiguous().stages, [0, -1, 2, 4])  # 45 s -> slot 2, 75 s -> slot 3


def test_write_puts_every_file_in_place(tmp_path):
    staged = Hypnogram(NIGHT, _proba(NIGHT), start=START, scorer="model", source="night.edf")
    paths = staged.write(tmp_path, reference=Hypnogram(NIGHT, start=START, source="ref.edf"))
    assert sorted(p.name for p in paths.values()) == [
        "night.agreement.json", "night.hypnogram.csv", "night.hypnogram.edf", "night.hypnogram.png", "night.stats.json"]
    assert "agreement" not in staged.write(tmp_path / "alone")
