"""Calibrated staging and cohort files (``modalities/eeg/sleep/cohort.py``), with the tiny run
trained on SYNTHETIC PC18 records (``staging_night.make_night``): the card's temperature divides
the logits in ``Stager``, an uncalibrated checkpoint says so once; ``part-stage FOLDER`` writes
cohort.csv, cohort_agreement.json/.md and cohort_bland_altman.png, numbers checked against
direct computations, flags and new statistics read generically, and a rerun that skips every
night writes the same files."""
from __future__ import annotations

import csv
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from part.evaluation.metrics import classification_metrics
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.sleep.cohort import bland_altman, confusion_scores, subject_of, write_cohort
from part.modalities.eeg.sleep.staging import Stager
from part.stage import main as stage_main
from conftest import run_main
from staging_night import make_night, write_edf


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("cohort"))


def test_stager_divides_the_logits_by_the_cards_temperature(night, tmp_path):
    calibrated = tmp_path / "calibrated"
    (calibrated / "checkpoints").mkdir(parents=True)
    state = torch.load(night["run"] / "checkpoints" / "best.pt", weights_only=True)
    state["card"]["temperature"] = 2.0
    torch.save(state, calibrated / "checkpoints" / "best.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibrated checkpoint warns about nothing
        hot = Stager.from_run(calibrated, precision="fp32")
    with pytest.warns(UserWarning, match="has no calibration temperature.*uncalibrated"):
        raw = Stager.from_run(night["run"], precision="fp32")
    windows = raw.windows(raw_recording(night)).windows[:20]
    p_raw, p_hot = raw.classify(windows), hot.classify(windows)
    expected = np.exp(np.log(p_raw) / 2.0)
    np.testing.assert_allclose(p_hot, expected / expected.sum(1, keepdims=True), rtol=1e-6, atol=1e-9)
    assert np.array_equal(p_raw.argmax(1), p_hot.argmax(1))
    assert hot.predict_file(night["edf"]).info["temperature"] == 2.0


def raw_recording(night):
    from part.modalities.eeg.recordings.wfdb_reader import read_eeg
    return read_eeg(night["hea"], PC18_EEG_CHANNELS)


def test_uncalibrated_checkpoint_is_said_once_per_part_stage_call(night, tmp_path):
    other = shutil.copy(night["edf"], tmp_path / "other.edf")
    res = run_main(stage_main, [night["run"], night["edf"], other, "--out", tmp_path / "o", "--no-progress"])
    assert res.returncode == 0 and res.stderr.count("uncalibrated") == 1, res.stderr
    assert "warning: checkpoint" in res.stderr


@pytest.fixture(scope="module")
def cohort(night, tmp_path_factory):
    """A folder of three nights (two scored, of different lengths; one unscored) staged in one call."""
    folder = tmp_path_factory.mktemp("nights")
    uv, fs = night["uv"], night["fs"]
    for name, seconds in (("nightA", uv.shape[1] // fs), ("nightB", 240), ("nightC", 200)):
        write_edf(folder / f"{name}.edf", PC18_EEG_CHANNELS, uv[:, :int(seconds * fs)], fs)
    for name in ("nightA", "nightB"):
        shutil.copy(night["scoring"], folder / f"{name}-Hypnogram.edf")
    out = folder.parent / (folder.name + "_out")
    res = run_main(stage_main, [night["run"], folder, "--out", out, "--no-progress"])
    assert res.returncode == 0, res.stderr
    return out, res, folder


def _rows(out):
    with open(out / "cohort.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_cohort_csv_has_one_row_per_night_with_every_statistic(cohort):
    out, res, _ = cohort
    assert "cohort: cohort.csv, cohort_agreement.json, cohort_agreement.md, cohort_bland_altman.png" in res.stdout
    rows = {r["record"]: r for r in _rows(out)}
    assert sorted(rows) == ["nightA", "nightB", "nightC"]
    for name, row in rows.items():
        stats = json.loads((out / f"{name}.stats.json").read_text())
        assert float(row["tst_min"]) == stats["tst_min"] and float(row["minutes.N2"]) == stats["minutes"]["N2"]
        assert row["start"] == stats["start"] and row["subject"] == name
        assert float(row["duration_min"]) == stats["n_epochs"] * 0.5 and row["no_signal_epochs"] == "0"
    agreement = json.loads((out / "nightA.agreement.json").read_text())
    assert float(rows["nightA"]["kappa"]) == pytest.approx(agreement["kappa"])
    assert rows["nightC"]["kappa"] == "" and rows["nightC"]["macro_f1"] == ""


def test_cohort_agreement_matches_direct_computations(cohort):
    out, _, _ = cohort
    result = json.loads((out / "cohort_agreement.json").read_text())
    assert result["n_scored_nights"] == 2 and result["nights"] == ["nightA", "nightB"]
    agreements = [json.loads((out / f"{n}.agreement.json").read_text()) for n in ("nightA", "nightB")]
    # paired TST from the agreement's confusion (rows = scorer, columns = model; sleep = classes 1..4)
    diffs = []
    for name, a in zip(("nightA", "nightB"), agreements):
        paired = json.loads((out / f"{name}.paired_stats.json").read_text())
        c = np.asarray(a["confusion"])
        assert paired["model"]["tst_min"] == pytest.approx(c[:, 1:].sum() * 0.5)
        assert paired["scorer"]["tst_min"] == pytest.approx(c[1:, :].sum() * 0.5)
        assert paired["epochs_compared"] == c.sum()
        diffs.append(paired["model"]["tst_min"] - paired["scorer"]["tst_min"])
    tst = result["statistics"]["tst_min"]
    assert tst["bias"] == pytest.approx(np.mean(diffs)) and tst["sd"] == pytest.approx(np.std(diffs, ddof=1))
    assert tst["loa_upper"] == pytest.approx(np.mean(diffs) + 1.96 * np.std(diffs, ddof=1)) and tst["n"] == 2
    confusion = sum(np.asarray(a["confusion"]) for a in agreements)
    truth = np.repeat(np.repeat(np.arange(5), 5), confusion.ravel())
    pred = np.repeat(np.tile(np.arange(5), 5), confusion.ravel())
    direct = classification_metrics(truth, pred, list(range(5)))
    for key in ("kappa", "accuracy", "macro_f1"):
        assert result["pooled"][key] == pytest.approx(direct[key])
    kappas = [a["kappa"] for a in agreements]
    assert result["per_night_kappa"]["mean"] == pytest.approx(np.mean(kappas))
    assert result["per_night_kappa"]["sd"] == pytest.approx(np.std(kappas, ddof=1))
    md = (out / "cohort_agreement.md").read_text()
    assert "Bland-Altman" in md and "| tst_min | 2 |" in md and "chance: 0" in md
    assert (out / "cohort_bland_altman.png").stat().st_size > 5000


def test_a_rerun_that_skips_every_night_writes_the_same_cohort_files(cohort, night):
    out, _, folder = cohort
    before = {f: (out / f).read_text() for f in ("cohort.csv", "cohort_agreement.json", "cohort_agreement.md")}
    for f in before:
        (out / f).unlink()
    res = run_main(stage_main, [night["run"], folder, "--out", out, "--no-progress"])
    assert res.returncode == 0 and "3 of 3 recordings already staged" in res.stdout
    assert {f: (out / f).read_text() for f in before} == before


def test_flags_and_new_statistics_are_read_generically(cohort, tmp_path):
    out, _, _ = cohort
    for f in out.glob("nightA.*.json"):
        shutil.copy(f, tmp_path / f.name)
    stats = json.loads((tmp_path / "nightA.stats.json").read_text())
    stats.update(flags={"soremp": True}, sol_5min_min=3.5,
                 info={"no_signal_epochs": 2, "flat_epochs": {"C3": 2, "O1": 1}})
    (tmp_path / "nightA.stats.json").write_text(json.dumps(stats))
    agreement = json.loads((tmp_path / "nightA.agreement.json").read_text())
    agreement["flags"] = {"lag_warning": False, "low_agreement": True}
    (tmp_path / "nightA.agreement.json").write_text(json.dumps(agreement))
    write_cohort(tmp_path, ["nightA", "missing"])
    (row,) = _rows(tmp_path)
    assert row["flag.soremp"] == "True" and row["flag.lag_warning"] == "False" and row["flag.low_agreement"] == "True"
    assert row["sol_5min_min"] == "3.5" and row["no_signal_epochs"] == "2" and row["flat_epochs"] == "3"
    assert "definitions" not in " ".join(row)


def test_bland_altman_and_confusion_scores_by_hand():
    ba = bland_altman([10, 12, None, 20], [8, 13, 5, 15])
    d = np.array([2.0, -1.0, 5.0])
    assert ba["n"] == 3 and ba["bias"] == pytest.approx(d.mean()) and ba["sd"] == pytest.approx(d.std(ddof=1))
    assert ba["loa_lower"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
    assert bland_altman([1], [2])["sd"] is None
    c = np.array([[5, 1], [2, 2]])
    s = confusion_scores(c)
    po, pe = 0.7, (6 * 7 + 4 * 3) / 100
    assert s["kappa"] == pytest.approx((po - pe) / (1 - pe)) and s["accuracy"] == 0.7
    assert s["macro_f1"] == pytest.approx((10 / 13 + 4 / 7) / 2)
    assert subject_of("SC4012E0") == "SC401" and subject_of("tr03-0005") == "tr03-0005"


def test_scoring_files_follow_the_latest_staging_of_a_night(night, tmp_path):
    """A night staged alone with --hypnogram, then skipped in a folder call, counts in the
    Bland-Altman agreement (paired_stats.json is written whenever there is a scoring); restaged
    without its scoring, its agreement.json and paired_stats.json go (the cohort no longer
    counts it as scored)."""
    folder, out = tmp_path / "nights", tmp_path / "out"
    folder.mkdir()
    uv, fs = night["uv"], night["fs"]
    for name, seconds in (("nightA", uv.shape[1] // fs), ("nightB", 240)):
        write_edf(folder / f"{name}.edf", PC18_EEG_CHANNELS, uv[:, :int(seconds * fs)], fs)
        shutil.copy(night["scoring"], folder / f"{name}-Hypnogram.edf")
    alone = [night["run"], folder / "nightA.edf", "--out", out, "--no-progress"]
    assert run_main(stage_main, [*alone, "--hypnogram", folder / "nightA-Hypnogram.edf"]).returncode == 0
    assert (out / "nightA.paired_stats.json").is_file() and (out / "nightA.agreement.json").is_file()
    res = run_main(stage_main, [night["run"], folder, "--out", out, "--no-progress"])
    assert res.returncode == 0 and "1 of 2 recordings already staged" in res.stdout
    result = json.loads((out / "cohort_agreement.json").read_text())
    assert result["nights"] == ["nightA", "nightB"] and result["statistics"]["tst_min"]["n"] == 2
    res = run_main(stage_main, alone)
    assert res.returncode == 0 and "nightA: restaged: the scoring changed" in res.stdout
    assert not (out / "nightA.paired_stats.json").exists() and not (out / "nightA.agreement.json").exists()
    write_cohort(out, ["nightA", "nightB"])
    result = json.loads((out / "cohort_agreement.json").read_text())
    assert result["nights"] == ["nightB"] and result["statistics"]["tst_min"]["n"] == 1
    assert {r["record"]: r["kappa"] for r in _rows(out)}["nightA"] == ""
