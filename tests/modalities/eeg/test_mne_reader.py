"""part.modalities.eeg.recordings.mne_reader: channels by name (rename, loose prefix, bipolar derivations), micro-volts,
mixed sampling rates, FIF and WFDB dispatch, stage annotations inside a recording, and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from part.modalities.eeg.recordings.channels import ChannelSource, parse_channels, parse_rename, resolve_channels
from part.modalities.eeg.recordings.mne_reader import (combine, read_recording, read_recording_with_annotations,
                                                       recording_channels, stage_annotations)
from part.modalities.eeg.recordings.signal import EegRecording, RecordError
from part.modalities.eeg.recordings.windows import WindowConfig, recording_windows

RNG = np.random.default_rng(0)


def write_edf(path: Path, channels: list[tuple[str, float, np.ndarray]], annotations=(), record_s: float = 30) -> Path:
    """EDF(+) with ``(label, rate Hz, physical uV)`` signals and ``(onset, duration, text)`` annotations."""
    import edfio

    signals = [edfio.EdfSignal(np.asarray(x, np.float64), rate, label=label, physical_dimension="uV",
                               physical_range=(-1000.0, 1000.0)) for label, rate, x in channels]
    notes = [edfio.EdfAnnotation(o, d, t) for o, d, t in annotations]
    edfio.Edf(signals, data_record_duration=record_s, annotations=notes or None).write(path)
    return path


def edf_values(path: Path) -> dict[str, np.ndarray]:
    """The physical values of every signal as stored (after EDF quantisation), uV."""
    import edfio

    return {s.label: s.data for s in edfio.read_edf(path).signals}


def eeg(seconds: float, fs: float) -> np.ndarray:
    """EEG-like uV: a 7 Hz and a 25 Hz sine plus a random walk and white noise."""
    t = np.arange(int(round(seconds * fs))) / fs
    walk = np.cumsum(RNG.normal(0, 1, t.size)) * 0.5 / np.sqrt(fs / 100)
    return 40 * np.sin(2 * np.pi * 7 * t) + 20 * np.sin(2 * np.pi * 25 * t + 1) + walk + RNG.normal(0, 5, t.size)


@pytest.fixture(scope="module")
def montage_edf(tmp_path_factory) -> Path:
    """2 min at 100 Hz: referential F3, M2, a C4-A1 and a typed 'EEG Fpz-Cz', plus a 1 Hz temperature."""
    path = tmp_path_factory.mktemp("edf") / "night.edf"
    return write_edf(path, [("F3", 100, eeg(120, 100)), ("M2", 100, eeg(120, 100)), ("C4-A1", 100, eeg(120, 100)),
                            ("EEG Fpz-Cz", 100, eeg(120, 100)), ("Temp", 1, RNG.normal(0, 1, 120))])


def test_derivation_rename_and_loose_names_are_computed_in_microvolts(montage_edf):
    ref = edf_values(montage_edf)
    rec = read_recording(montage_edf, ["F3-M2", "C4-M1", "Fpz-Cz", "F3"], rename={"C4-A1": "C4-M1"})
    assert isinstance(rec, EegRecording) and rec.channels == ("F3-M2", "C4-M1", "Fpz-Cz", "F3") and rec.fs == 100
    uv = rec.uv()
    assert uv.shape == (4, 12000) and uv.dtype == np.float32
    np.testing.assert_allclose(uv[0], ref["F3"] - ref["M2"], atol=1e-3)
    np.testing.assert_allclose(uv[1], ref["C4-A1"], atol=1e-3)
    np.testing.assert_allclose(uv[2], ref["EEG Fpz-Cz"], atol=1e-3)
    np.testing.assert_allclose(uv[3], ref["F3"], atol=1e-3)
    assert recording_channels(montage_edf) == ["F3", "M2", "C4-A1", "EEG Fpz-Cz", "Temp"]
    assert [(s.first, s.second) for s in resolve_channels(["EEG F3", "EEG M2"], ["F3-M2"])] == [("EEG F3", "EEG M2")]


def test_parse_channels_and_rename():
    assert parse_channels(" C4-M1, F4-M1 ") == ("C4-M1", "F4-M1")
    assert parse_rename("C4-A1=C4-M1, C3-A2 = C3-M2") == {"C4-A1": "C4-M1", "C3-A2": "C3-M2"}
    with pytest.raises(RecordError, match="OLD=NEW"):
        parse_rename("C4-A1")
    with pytest.raises(RecordError, match="distinct"):
        parse_channels("C4,C4")


def test_combine_refuses_non_finite_samples_naming_the_channel():
    """The one builder of micro-volt recordings (file reader and staging): a NaN/Inf anywhere in a
    channel read is a one-line RecordError naming the record, the file and the channel."""
    rows = {"F3": np.zeros(1000), "M2": np.ones(1000), "Unused": np.full(1000, np.nan)}
    rows["M2"][[10, 500]] = [np.nan, np.inf]
    with pytest.raises(RecordError, match=r"^rec: night.edf channel 'M2' holds 2 non-finite sample\(s\) .* of 1000;"):
        combine("rec", 100.0, [ChannelSource("F3-M2", "F3", "M2")], rows, 1e6, "night.edf")
    out = combine("rec", 100.0, [ChannelSource("F3", "F3"), ChannelSource("F3-M2", "F3", "M2")],
                  {"F3": np.full(10, 2e-6), "M2": np.full(10, 5e-7)}, 1e6)
    assert out.channels == ("F3", "F3-M2") and out.digital.dtype == np.float32
    np.testing.assert_allclose(out.digital, [[2.0] * 10, [1.5] * 10], rtol=1e-6)


def test_missing_channel_lists_present_ones_and_the_syntax(montage_edf):
    with pytest.raises(RecordError) as err:
        read_recording(montage_edf, ["O1-M2"])
    msg = str(err.value)
    assert "night.edf" in msg and "'O1-M2'" in msg and "'C4-A1'" in msg and "--channels" in msg and "--rename" in msg
    assert "\n" not in msg


def test_channels_at_60_hz_or_less_are_refused(tmp_path):
    path = write_edf(tmp_path / "slow.edf", [("C4", 50, eeg(60, 50)), ("F4", 100, eeg(60, 100))])
    with pytest.raises(RecordError, match=r"slow\.edf samples channels \{'C4': 50\.0\}.*more than 60 Hz"):
        read_recording(path, ["C4", "F4"])
    assert read_recording(path, ["F4"]).fs == 100  # only the requested channels matter


def test_unreadable_and_unknown_files_name_the_file_and_the_reader(tmp_path):
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"0       not an edf header" * 10)
    with pytest.raises(RecordError, match=r"mne\.io\.read_raw_edf cannot read .*broken\.edf"):
        read_recording(bad, ["C4"])
    other = tmp_path / "night.xyz"
    other.write_bytes(b"x")
    with pytest.raises(RecordError, match=r"suffix '\.xyz'.*convert"):
        read_recording(other, ["C4"])


def test_mixed_rates_match_the_pipeline_at_each_channels_own_rate(tmp_path):
    """A (100 Hz) and B (200 Hz) in one EDF next to a 512 Hz channel that is not requested: MNE
    reports 200 Hz and upsamples A band-limited; the windows equal those made at A's own rate."""
    a, b = eeg(600, 100), eeg(600, 200)
    path = write_edf(tmp_path / "mixed.edf", [("A", 100, a), ("EMG", 512, RNG.normal(0, 5, 600 * 512)),
                                               ("B", 200, b)])
    ref = edf_values(path)
    rec = read_recording(path, ["A", "B"])
    assert rec.fs == 200 and rec.n_samples == 120000
    np.testing.assert_allclose(rec.uv()[1], ref["B"], atol=1e-3)
    assert read_recording(path, ["A"]).fs == 100
    config = WindowConfig(dtype="float32")
    got = recording_windows(rec, None, config).windows
    for c, (name, fs) in enumerate((("A", 100.0), ("B", 200.0))):
        single = EegRecording("x", (name,), fs, ref[name][None].astype(np.float32), np.ones(1), np.zeros(1), np.ones(1))
        want = recording_windows(single, None, config).windows[:, 0]
        assert got.shape[0] == want.shape[0] == 20
        np.testing.assert_allclose(got[1:-1, c], want[1:-1], atol=0.02)  # z-units; edges differ by padding


def test_fif_in_volts_becomes_microvolts_and_its_annotations_are_a_hypnogram(tmp_path):
    import mne

    data = np.stack([eeg(90, 256), eeg(90, 256), eeg(90, 256)]) * 1e-6  # volts
    raw = mne.io.RawArray(data, mne.create_info(["F3", "M2", "C4"], 256.0, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([0, 30, 60], [30, 30, 30], ["Sleep stage W", "N1", "Lights on?"]))
    path = tmp_path / "night_raw.fif"
    raw.save(path, verbose="error")
    rec, hyp = read_recording_with_annotations(path, ["F3-M2", "C4"])
    assert rec.fs == 256 and rec.channels == ("F3-M2", "C4")
    np.testing.assert_allclose(rec.uv(), np.stack([data[0] - data[1], data[2]]) * 1e6, atol=1e-3)
    assert hyp["stages"].tolist() == [0, 1] and hyp["onsets_s"].tolist() == [0.0, 30.0]
    assert stage_annotations(path)["stages"].tolist() == [0, 1]


def test_edf_plus_annotations_inside_the_recording(tmp_path):
    notes = [(0, 60, "Sleep stage W"), (60, 30, "Sleep stage 2"), (90, 30, "Sleep stage X")]
    path = write_edf(tmp_path / "plus.edf", [("C4", 100, eeg(150, 100))], notes)
    hyp = stage_annotations(path)
    assert hyp["stages"].tolist() == [0, 0, 2, -1] and hyp["unknown"] == {"Sleep stage X": 1}


def test_wfdb_headers_use_the_fast_reader_with_derivations(tmp_path):
    import wfdb

    digital = RNG.integers(-2000, 2000, (6000, 2)).astype(np.int16)
    wfdb.wrsamp("rec", fs=200, units=["uV", "mV"], sig_name=["F3", "M2"], d_signal=digital, fmt=["16", "16"],
                adc_gain=[2.0, 4.0], baseline=[0, 10], write_dir=str(tmp_path))
    header = tmp_path / "rec.hea"
    plain = read_recording(header, ["F3"])
    assert plain.digital.dtype == np.int16 and plain.channels == ("F3",)  # integer samples kept
    derived = read_recording(header, ["F3-M2"])
    want = digital[:, 0] / 2.0 - (digital[:, 1] - 10) / 4.0 * 1000
    np.testing.assert_allclose(derived.uv()[0], want, rtol=1e-6, atol=1e-3)
    assert stage_annotations(header) is None
