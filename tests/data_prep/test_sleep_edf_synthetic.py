"""SYNTHETIC Sleep-EDF Expanded nights (data_prep/sleep_edf_synthetic.py): the real file names,
channel labels, rates and 30-s records read back with MNE and edfio, a Sleep-EDF style hypnogram
that reads back, and stage information in the signals."""

from __future__ import annotations

import re

import edfio
import mne
import numpy as np
import pytest
import scipy.signal

from part.data_prep.sleep_edf_synthetic import file_names, write_sleep_edf_night, write_synthetic_sleep_edf
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.modalities.eeg.recordings.windows import window_grid

CASSETTE = {"EEG Fpz-Cz": (100, "uV"), "EEG Pz-Oz": (100, "uV"), "EOG horizontal": (100, "uV"),
            "Resp oro-nasal": (1, ""), "EMG submental": (1, "uV"), "Temp rectal": (1, "DegC"),
            "Event marker": (1, "")}
TELEMETRY = {"EEG Fpz-Cz": (100, "uV"), "EEG Pz-Oz": (100, "uV"), "EOG horizontal": (100, "uV"),
             "EMG submental": (100, "uV"), "Marker": (10, "")}


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sleep-edf")
    cassette = write_sleep_edf_night(directory, subject=1, night=2, hours=1.5, seed=7)
    telemetry = write_sleep_edf_night(directory, subject=3, night=1, hours=0.5, seed=7, layout="telemetry")
    return {"cassette": cassette, "telemetry": telemetry}


def test_file_names_are_the_real_ones(nights):
    psg, hyp = nights["cassette"]
    assert psg.name == "SC4012E0-PSG.edf"
    assert re.fullmatch(r"SC4012E[A-Z]-Hypnogram\.edf", hyp.name) and hyp.name[:7] == psg.name[:7]
    psg, hyp = nights["telemetry"]
    assert psg.name == "ST7031J0-PSG.edf"
    assert re.fullmatch(r"ST7031J[A-Z]-Hypnogram\.edf", hyp.name)
    assert file_names(0, 1, "C") == ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf")
    assert sorted(p.name for p in psg.parent.iterdir()) == sorted(p.name for n in nights.values() for p in n)


@pytest.mark.parametrize("layout,channels,hours", [("cassette", CASSETTE, 1.5), ("telemetry", TELEMETRY, 0.5)])
def test_psg_channels_rates_and_records(nights, layout, channels, hours):
    psg, _ = nights[layout]
    assert psg.read_bytes()[:8] == b"0       "
    raw = mne.io.read_raw_edf(psg, verbose="error")
    assert raw.ch_names == list(channels)
    assert raw.info["sfreq"] == 100.0 and raw.n_times == int(hours * 3600 * 100)
    edf = edfio.read_edf(psg)
    assert edf.data_record_duration == 30 and edf.num_data_records == hours * 120
    assert edf.annotations == ()  # a plain EDF like the real PSG files
    for signal in edf.signals:
        rate, unit = channels[signal.label]
        assert (signal.sampling_frequency, signal.physical_dimension) == (rate, unit)
        assert (signal.digital_min, signal.digital_max) == (-2048, 2047)
        assert signal.data.size == hours * 3600 * rate
    eeg = raw.get_data(picks=["EEG Fpz-Cz", "EEG Pz-Oz"], units="uV")
    assert 5 < eeg.std() < 80 and np.abs(eeg).max() <= 197


def test_hypnogram_reads_back_in_the_sleep_edf_style(nights):
    psg, hyp_path = nights["cassette"]
    duration = 1.5 * 3600
    ann = mne.read_annotations(hyp_path)
    assert {"Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4", "Sleep stage R",
            "Sleep stage ?", "Movement time"} == set(ann.description)
    assert np.all(ann.duration % 30 == 0) and np.all(ann.onset[1:] == ann.onset[:-1] + ann.duration[:-1])
    assert all(a != b for a, b in zip(ann.description[1:], ann.description[:-1]))  # equal epochs merged
    assert ann.description[0] == "Sleep stage W" and ann.duration[0] >= 0.15 * duration  # long wake first
    assert ann.description[-1] == "Sleep stage ?" and ann.description[-2] == "Sleep stage W"
    hyp = Hypnogram.from_file(hyp_path)
    assert hyp.start_s == 0 and 0.9 * duration <= hyp.end_s < duration  # the recording runs past it
    assert hyp.unknown == {} and hyp.n_epochs == hyp.end_s / 30
    counts = hyp.counts()
    assert all(counts[k] > 0 for k in ("W", "N1", "N2", "N3", "REM")) and counts["unlabelled"] >= 3
    a, b = edfio.read_edf(hyp_path), edfio.read_edf(psg)
    assert (a.startdate, a.starttime) == (b.startdate, b.starttime)


def _band_power(windows: np.ndarray, lo: float, hi: float) -> np.ndarray:
    f, p = scipy.signal.welch(windows, fs=100, nperseg=400, axis=-1)
    return p[..., (f >= lo) & (f < hi)].sum(axis=-1)


def test_signals_carry_the_stages(nights):
    psg, hyp_path = nights["cassette"]
    raw = mne.io.read_raw_edf(psg, verbose="error")
    grid = window_grid(Hypnogram.from_file(hyp_path), raw.n_times / 100, 100.0)
    x = raw.get_data(picks=["EEG Fpz-Cz", "EEG Pz-Oz"], units="uV")
    windows = x[:, grid.first_start:grid.first_start + grid.n_windows * 3000].reshape(2, grid.n_windows, 3000)
    wake, deep = grid.labels == 0, grid.labels == 3
    delta, alpha = _band_power(windows[0], 0.5, 2), _band_power(windows[1], 8, 12)
    assert np.median(delta[deep]) > 5 * np.median(delta[wake])
    assert np.median(alpha[wake]) > 3 * np.median(alpha[deep])
    emg = next(s.data for s in edfio.read_edf(psg).signals if s.label == "EMG submental")  # 1 Hz (MNE: 100 Hz)
    emg = emg[grid.first_start // 100:][: grid.n_windows * 30].reshape(grid.n_windows, 30).mean(axis=1)
    assert np.median(emg[grid.labels == 4]) < 0.3 * np.median(emg[wake])  # REM atonia


def test_two_nights_per_subject_into_an_empty_directory(tmp_path):
    paths = write_synthetic_sleep_edf(tmp_path, n_subjects=1, seed=3, hours=(0.5, 0.6))
    assert [p.name[:7] for p in paths] == ["SC4001E", "SC4001E", "SC4002E", "SC4002E"]
    assert [p.name.endswith("-PSG.edf") for p in paths] == [True, False, True, False]
    assert all(p.is_file() for p in paths)
    with pytest.raises(FileExistsError, match="already holds Sleep-EDF nights"):
        write_synthetic_sleep_edf(tmp_path, n_subjects=1)


@pytest.mark.parametrize("kwargs", [dict(layout="ambulatory"), dict(subject=100), dict(night=0), dict(hours=0.2)])
def test_bad_arguments(tmp_path, kwargs):
    args = dict(directory=tmp_path, subject=0, night=1, hours=1.0, seed=0) | kwargs
    with pytest.raises(ValueError):
        write_sleep_edf_night(**args)
