"""Sleep statistics (modalities/eeg/sleep/stats.py) on a hand-built hypnogram with hand-computed
numbers, and the edge cases (no sleep, no REM, nothing scored)."""
import pytest

from part.modalities.eeg.sleep.stats import sleep_statistics

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
