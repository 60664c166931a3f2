"""Sleep statistics (modalities/eeg/sleep/stats.py) on a hand-built hypnogram with hand-computed
numbers, and the edge cases (no sleep, no REM, nothing scored)."""
import re
import warnings

import numpy as np
import pytest

from part.modalities.eeg.sleep.stats import sleep_statistics, soremp_warning

W, N1, N2, N3, R, U = 0, 1, 2, 3, 4, -1
# epoch: 0  1  2  3  4  5   6   7   8  9   10  11  12 13 14 15  16 17 18
NIGHT = [U, U, W, W, W, N1, N2, N2, W, N2, N3, N3, U, R, R, N2, W, W, U]


def test_hand_built_night():
    s = sleep_statistics(NIGHT, epoch_s=30)
    # scored period: epochs 2..17 = 16 epochs = 8 min; sleep: 5,6,7,9,10,11,13,14,15 = 9 epochs
    assert s["n_epochs"] == 19 and s["n_scored"] == 15
    assert s["tib_min"] == 8.0
    assert s["tst_min"] == 4.5
    assert s["sleep_efficiency_pct"] == pytest.approx(56.25)
    assert s["sol_min"] == 1.5            # epochs 2, 3, 4 awake before the first sleep epoch (5)
    assert s["rem_latency_min"] == 4.0    # sleep onset 5 -> first REM 13: 8 epochs
    assert s["waso_min"] == 0.5           # epoch 8; the final wake (16, 17) is after the last sleep
    assert s["unscored_min"] == 0.5       # epoch 12, inside the scored period
    assert s["minutes"] == {"W": 3.0, "N1": 0.5, "N2": 2.0, "N3": 1.0, "REM": 1.0}
    assert s["percent_of_tst"] == pytest.approx({"N1": 11.111, "N2": 44.444, "N3": 22.222, "REM": 22.222},
                                                abs=1e-3)
    assert set(s["definitions"]) >= {"tib_min", "sol_min", "waso_min", "rem_latency_min"}


def test_epoch_length_scales_minutes():
    s = sleep_statistics(NIGHT, epoch_s=20)
    assert s["tib_min"] == pytest.approx(16 * 20 / 60, abs=1e-3) and s["epoch_s"] == 20.0


def test_no_sleep_no_rem_nothing_scored():
    awake = sleep_statistics([W, W, U, W])
    assert awake["tst_min"] == 0.0 and awake["sleep_efficiency_pct"] == 0.0
    assert awake["sol_min"] is None and awake["rem_latency_min"] is None and awake["waso_min"] is None
    assert awake["percent_of_tst"]["N2"] is None
    no_rem = sleep_statistics([W, N2, N3, W])
    assert no_rem["rem_latency_min"] is None and no_rem["sol_min"] == 0.5
    empty = sleep_statistics([U, U])
    assert empty["tib_min"] == 0.0 and empty["sleep_efficiency_pct"] is None


def test_bad_values_and_class_names():
    with pytest.raises(ValueError, match="-1 .*0..4"):
        sleep_statistics([0, 7])
    with pytest.raises(ValueError, match="REM or R"):
        sleep_statistics([0, 1], class_names=("W", "N1"))
    assert sleep_statistics([0, 1, 2], class_names=("Wake", "N2", "R"))["rem_latency_min"] == 0.5


# ---------------------------------------------------------------- issue 25: SPT, SME, SFI, SOL_5min, latencies
LAT_KEYS = ("lat_n1_from_start_min", "lat_n2_from_start_min", "lat_n3_from_start_min", "lat_rem_from_start_min",
            "n1_latency_from_onset_min", "n2_latency_from_onset_min", "n3_latency_from_onset_min",
            "rem_latency_from_onset_min")


def _check(s, expected):
    for key, value in expected.items():
        assert s[key] == (None if value is None else pytest.approx(value, abs=1e-3)), key


def test_isolated_rem_inside_wake():
    # epochs: W 0-9, R 10, W 11-39, N1 40-41, N2 42-61, N3 62-71, R 72-81, W 82-85, N2 86-91, W 92-94
    night = [W] * 10 + [R] + [W] * 29 + [N1] * 2 + [N2] * 20 + [N3] * 10 + [R] * 10 + [W] * 4 + [N2] * 6 + [W] * 3
    s = sleep_statistics(night)
    # sleep epochs: 10, 40..81 (42), 86..91 (6) = 49 -> 24.5 min; SPT 10..91 = 82 epochs = 41 min
    _check(s, {"tib_min": 47.5, "tst_min": 24.5, "spt_min": 41.0, "sleep_efficiency_pct": 100 * 24.5 / 47.5,
               "sme_pct": 100 * 24.5 / 41.0,
               "sfi_per_h": 3 / (24.5 / 60),  # R10->W11, R81->W82, N2 91->W92
               "sol_min": 5.0,                # the isolated REM epoch is sleep onset
               "sol_5min_min": 20.0,          # the first 10 consecutive sleep epochs start at 40
               "waso_min": (29 + 4) * 0.5,
               "lat_rem_from_start_min": 5.0, "rem_latency_from_onset_min": 0.0, "rem_latency_min": 0.0,
               "lat_n1_from_start_min": 20.0, "n1_latency_from_onset_min": 15.0,
               "lat_n2_from_start_min": 21.0, "n2_latency_from_onset_min": 16.0,
               "lat_n3_from_start_min": 31.0, "n3_latency_from_onset_min": 26.0})
    assert s["flags"] == {"soremp": True}
    assert soremp_warning(s).startswith("sleep-onset REM period: REM 0 min after sleep onset (<= 15 min; SOL 5 min, "
                                        "SOL_5min 20 min)")


def test_n1_flicker_and_no_rem_at_onset():
    # W 0-5, N1 6, W 7-9, N1 10, W 11-12, N2 13-48, R 49-50, W 51-52
    night = [W] * 6 + [N1] + [W] * 3 + [N1] + [W] * 2 + [N2] * 36 + [R] * 2 + [W] * 2
    s = sleep_statistics(night)
    _check(s, {"tib_min": 26.5, "tst_min": 20.0, "spt_min": 22.5, "sleep_efficiency_pct": 100 * 20 / 26.5,
               "sme_pct": 100 * 20 / 22.5, "sfi_per_h": 3 / (20 / 60), "sol_min": 3.0, "sol_5min_min": 6.5,
               "waso_min": 2.5, "lat_n1_from_start_min": 3.0, "n1_latency_from_onset_min": 0.0,
               "lat_n2_from_start_min": 6.5, "n2_latency_from_onset_min": 3.5, "lat_n3_from_start_min": None,
               "n3_latency_from_onset_min": None, "lat_rem_from_start_min": 24.5,
               "rem_latency_from_onset_min": 21.5, "rem_latency_min": 21.5})
    assert s["flags"] == {"soremp": False} and soremp_warning(s) is None


def test_soremp_threshold_is_inclusive_at_15_min():
    at = sleep_statistics([W] + [N2] * 30 + [R])       # REM 30 epochs = 15.0 min after onset
    after = sleep_statistics([W] + [N2] * 31 + [R])    # 15.5 min
    assert at["rem_latency_from_onset_min"] == 15.0 and at["flags"]["soremp"] is True
    assert after["flags"]["soremp"] is False


def test_unscored_gaps_on_the_real_clock():
    from part.modalities.eeg.sleep import Hypnogram

    # W 0-1, N2 2-7, [gap: 8, 9], N2 10-15, W 16, N2 17-26, R 27 (slots of 30 s; the gap has no epochs)
    stages = [W, W] + [N2] * 6 + [N2] * 6 + [W] + [N2] * 10 + [R]
    slots = list(range(8)) + list(range(10, 28))
    s = Hypnogram(stages, onsets_s=[30.0 * k for k in slots]).statistics()
    assert s["n_epochs"] == 28 and s["n_scored"] == 26
    _check(s, {"tib_min": 14.0, "tst_min": 11.5, "spt_min": 13.0, "unscored_min": 1.0, "sol_min": 1.0,
               "sol_5min_min": 8.5,  # 6 + 6 sleep epochs split by the gap are no 5-min run; 17-27 is
               "waso_min": 0.5, "sfi_per_h": 1 / (11.5 / 60), "lat_rem_from_start_min": 13.5,
               "rem_latency_from_onset_min": 12.5, "sme_pct": 100 * 11.5 / 13.0})
    assert s["flags"]["soremp"] is True
    # a sleep -> wake transition across unscored epochs counts (consecutive scored epochs)
    assert sleep_statistics([N2, U, W, N2])["sfi_per_h"] == pytest.approx(1 / (1.0 / 60))


def test_all_wake_has_no_sleep_quantities():
    s = sleep_statistics([W] * 4)
    assert s["spt_min"] == 0.0 and s["tst_min"] == 0.0 and s["sleep_efficiency_pct"] == 0.0
    assert all(s[k] is None for k in ("sme_pct", "sfi_per_h", "sol_min", "sol_5min_min", "waso_min", *LAT_KEYS))
    assert s["flags"] == {"soremp": False}


def test_persistent_sleep_needs_whole_minutes_of_epochs():
    # 20-s epochs: 5 min = 15 epochs; 14 are not enough
    s = sleep_statistics([W] + [N2] * 14 + [W] + [N2] * 15, epoch_s=20)
    assert s["sol_5min_min"] == pytest.approx(16 * 20 / 60, abs=1e-3) and s["sol_min"] == pytest.approx(20 / 60,
                                                                                                          abs=1e-3)


def test_every_key_has_a_definition():
    s = sleep_statistics(NIGHT)
    defined = set(s["definitions"])
    for key in set(s) - {"epoch_s", "n_epochs", "n_scored", "definitions", "flags"}:
        generic = re.sub(r"(?<=lat_)(n1|n2|n3|rem)|^(n1|n2|n3|rem)(?=_latency_from)", "<stage>", key)
        assert key in defined or generic in defined, key
    assert {f"flags.{k}" for k in s["flags"]} <= defined


def test_matches_yasa_where_installed():
    yasa = pytest.importorskip("yasa", reason="yasa is not installed (pip install yasa to compare with it)")
    rng = np.random.default_rng(3)
    base = [W] * 12 + [R] + [W] * 5 + [N1] * 3 + [N2] * 30 + [N3] * 20 + [W] * 2 + [N2] * 15 + [R] * 12
    night = np.array(base + list(rng.integers(0, 5, 120)) + [N2] * 3 + [W] * 6)
    ours = sleep_statistics(night)
    theirs = yasa.Hypnogram(np.array(["WAKE", "N1", "N2", "N3", "REM"])[night], freq="30s").sleep_statistics()
    pairs = {"TIB": "tib_min", "SPT": "spt_min", "WASO": "waso_min", "TST": "tst_min", "SE": "sleep_efficiency_pct",
             "SME": "sme_pct", "SFI": "sfi_per_h", "SOL": "sol_min", "SOL_5min": "sol_5min_min",
             "Lat_REM": "lat_rem_from_start_min"}
    for theirs_key, ours_key in pairs.items():
        assert ours[ours_key] == pytest.approx(float(theirs[theirs_key]), abs=1e-3), theirs_key
    for stage in ("N1", "N2", "N3", "REM"):
        assert ours["minutes"][stage] == pytest.approx(float(theirs[stage]), abs=1e-3)
        assert ours["percent_of_tst"][stage] == pytest.approx(float(theirs[f"%{stage}"]), abs=1e-3)
    with warnings.catch_warnings():  # yasa 0.8 deprecates the function; it alone has Lat_N1..N3
        warnings.simplefilter("ignore", FutureWarning)
        old = yasa.sleep_statistics(night, sf_hyp=1 / 30)
    for stage in ("N1", "N2", "N3", "REM"):
        assert ours[f"lat_{stage.lower()}_from_start_min"] == pytest.approx(float(old[f"Lat_{stage}"]), abs=1e-3)
        assert ours[f"{stage.lower()}_latency_from_onset_min"] == pytest.approx(
            float(old[f"Lat_{stage}"]) - float(old["SOL"]), abs=1e-3)
