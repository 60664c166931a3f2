"""Scorings checked before they are trusted (sleep/scoring_check.py, issue 25 item 3): kappa over
lags of +/-60 min in one batched computation, checked against scikit-learn lag by lag; the lag
warning (a scoring 30 min late), the low-agreement warning (another night's scoring); nothing is
shifted. Synthetic hypnograms only."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from part.modalities.eeg.sleep import Hypnogram
from part.modalities.eeg.sleep.scoring_check import (LAG_GAIN_KAPPA, LOW_KAPPA, ScoringWarning, kappa_by_lag,
                                                      lag_scan)


def _night(seed: int, n: int = 600) -> np.ndarray:
    """A synthetic 5-h night: stage runs of 2-20 epochs (30 s) drawn from a fixed generator."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 20, n)
    stages = rng.integers(0, 5, n)
    return np.repeat(stages, lengths)[:n]


def _scan(staged: Hypnogram, reference: Hypnogram) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = staged.agreement(reference)
    result["caught"] = [str(w.message) for w in caught if issubclass(w.category, ScoringWarning)]
    return result


def test_kappa_by_lag_is_sklearns_kappa_row_by_row():
    rng = np.random.default_rng(0)
    truth = rng.integers(-1, 5, (7, 50))
    staged = rng.integers(-1, 5, 50)
    kappa, n = kappa_by_lag(truth, staged, 5)
    for row in range(7):
        ok = (truth[row] >= 0) & (staged >= 0)
        assert n[row] == ok.sum()
        assert kappa[row] == pytest.approx(cohen_kappa_score(truth[row][ok], staged[ok], labels=range(5)))
    single, _ = kappa_by_lag(np.zeros((1, 5), int), np.zeros(5, int), 5)  # one class in both: undefined
    assert np.isnan(single[0])


def test_a_scoring_30_min_late_is_found_and_not_shifted():
    stages = _night(1)
    staged = Hypnogram(stages, source="night.edf")
    late = Hypnogram(stages, onsets_s=1800.0 + 30.0 * np.arange(stages.size), scorer="late.csv")
    result = _scan(staged, late)
    scan = result["lag_scan"]
    assert len(scan["lags_s"]) == 241 and scan["lags_s"][0] == -3600.0 and scan["lags_s"][-1] == 3600.0
    assert scan["best_lag_s"] == 1800.0 and scan["best_kappa"] == 1.0
    assert scan["kappa_at_0"] < 1.0 - LAG_GAIN_KAPPA
    assert result["kappa"] == pytest.approx(scan["kappa_at_0"], abs=1e-4)  # the scan's lag 0 is the agreement
    assert result["flags"] == {"lag_warning": True, "low_agreement": False}
    assert len(result["caught"]) == 1 and result["caught"] == result["warnings"]
    assert "late.csv agrees best with night when moved by -1800 s (-30 min): kappa 1.000" in result["warnings"][0]
    assert "Nothing was shifted" in result["warnings"][0] and "moved_by(-1800)" in result["warnings"][0]
    # the advised fix works: moved back, lag 0 is best and nothing is flagged
    fixed = _scan(staged, late.moved_by(-1800))
    assert fixed["kappa"] == 1.0 and fixed["flags"] == {"lag_warning": False, "low_agreement": False}
    assert fixed["caught"] == [] and late.onsets_s[0] == 1800.0  # the original is unchanged
    # every lag's kappa is the one computed by hand on the shifted epochs (a few lags checked)
    for lag_epochs in (-7, 0, 3, 60):
        k = scan["kappa"][120 + lag_epochs]
        idx = np.arange(stages.size) + lag_epochs - 60  # reference epoch at t + lag (the reference starts 60 later)
        ok = (idx >= 0) & (idx < stages.size)
        assert k == pytest.approx(cohen_kappa_score(stages[idx[ok]], stages[ok], labels=range(5)), abs=1e-4)


def test_another_nights_scoring_is_flagged_low():
    staged = Hypnogram(_night(1), source="night.edf")
    # an unrelated scoring: stages drawn independently per epoch (the maximum over 241 lags of a chance
    # kappa stays well below 0.2 here; long runs of chance agreement could pass it, as the README says)
    other = Hypnogram(np.random.default_rng(2).integers(0, 5, 600), scorer="other.csv")
    result = _scan(staged, other)
    assert result["lag_scan"]["best_kappa"] < LOW_KAPPA and result["flags"]["low_agreement"] is True
    assert any("may belong to another recording" in w for w in result["caught"])


def test_a_matching_scoring_raises_nothing_and_json_records_the_scan(tmp_path):
    stages = _night(3)
    staged = Hypnogram(stages, source="n.edf")
    result = _scan(staged, Hypnogram(stages, scorer="ref.csv"))
    assert result["flags"] == {"lag_warning": False, "low_agreement": False} and result["caught"] == []
    assert result["lag_scan"]["best_lag_s"] == 0.0  # ties go to the lag nearest 0
    staged.write(tmp_path, "n", Hypnogram(stages, scorer="ref.csv"))
    saved = json.loads((tmp_path / "n.agreement.json").read_text())
    assert set(saved["lag_scan"]) >= {"lags_s", "kappa", "best_lag_s", "best_kappa"}
    assert saved["flags"] == {"lag_warning": False, "low_agreement": False}


def test_lags_comparing_too_few_epochs_are_null():
    stages = _night(4, n=40)  # 20 min: lags beyond 10 min compare fewer than half of lag 0's epochs
    scan = lag_scan(Hypnogram(stages), Hypnogram(stages))["lag_scan"]
    n0 = scan["n_compared"][120]
    for k, n in zip(scan["kappa"], scan["n_compared"]):
        assert (k is None) == (n < 0.5 * n0) or (k is None and n == 0)


def test_a_header_clock_30_min_late_is_aligned_then_flagged_with_the_fix(tmp_path):
    """A scoring whose start time says 30 min later than its stages really began: the start-time
    alignment moves it by +30 min (as before), and the scan finds the way back."""
    from datetime import datetime, timedelta

    start = datetime(2021, 3, 4, 22, 45)
    stages = _night(6)
    staged = Hypnogram(stages, start=start, source="night.edf")
    wrong_clock = Hypnogram(stages, start=start + timedelta(minutes=30), scorer="wrong.csv")
    path = wrong_clock.to_csv(tmp_path / "wrong.csv")
    result = _scan(staged, path)
    assert result["reference_offset_s"] == 1800.0 and result["lag_scan"]["best_lag_s"] == 1800.0
    assert result["flags"]["lag_warning"] and "moved_by(-1800)" in result["warnings"][0]
    fixed = Hypnogram.from_file(path).moved_by(-1800)
    assert staged.agreement(fixed)["kappa"] == 1.0 and staged.agreement(fixed)["flags"]["lag_warning"] is False


def test_the_plot_and_the_plain_agreement_do_not_scan():
    """The plot's title (and the evaluation report's hypnograms, scored vs predicted by a model in
    training) use the plain agreement: no scan, no warning; the checked one warns once."""
    stages = _night(1)
    staged = Hypnogram(stages, source="night.edf")
    late = Hypnogram(stages, onsets_s=1800.0 + 30.0 * np.arange(stages.size), scorer="late.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        staged.plot(reference=late)
        plain = staged.agreement(late, check_lags=False)
        assert not [w for w in caught if issubclass(w.category, ScoringWarning)]
        assert "lag_scan" not in plain and "flags" not in plain
        staged.agreement(late)
        staged.agreement(late)  # cached: warned once
    assert len([w for w in caught if issubclass(w.category, ScoringWarning)]) == 1


def test_kappa_undefined_at_every_lag_raises_no_flag():
    awake = Hypnogram([0] * 200)
    result = lag_scan(awake, Hypnogram([0] * 200))
    assert result["lag_scan"]["best_kappa"] is None and all(k is None for k in result["lag_scan"]["kappa"])
    assert result["flags"] == {"lag_warning": False, "low_agreement": False} and result["warnings"] == []
