"""Reading, filtering, resampling and normalising PC18 EEG (modalities/eeg/recordings/signal.py, wfdb_reader.py).

Records are the REAL tr03-0005 header (shortened) and annotations from ../shared/data/pc18 next to
a MATLAB v4 ``.mat`` this test writes with scipy (int16 ``val`` 13 x n, 24-byte preamble).
"""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.signal

from part.modalities.eeg.recordings.signal import (EegRecording, FilterSpec, RecordError, filter_and_resample,
                                                   normalise_windows, resample_ratio, resampled_length)
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.wfdb_reader import read_eeg

from conftest import SHARED_DATA, requires_shared

SHARED = SHARED_DATA / "pc18"
needs_shared = requires_shared("pc18/tr03-0005.hea", "pc18/tr03-0005.arousal")
FS = 200


def write_record(dest: Path, name: str = "tr03-0005", minutes: float = 10.0, seed: int = 0,
                 annotations: bool = True, edit_header=None, digital: np.ndarray | None = None) -> np.ndarray:
    """Write ``dest/<name>.hea`` (the real tr03-0005 header, renamed, length set to the data),
    ``<name>.mat`` (MATLAB v4 int16 13 x n) and ``<name>.arousal`` (the real annotations).

    ``edit_header(text) -> text`` may alter the header. Returns the digital samples (13, n).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if digital is None:
        n = int(round(minutes * 60 * FS))
        rng = np.random.default_rng(seed)
        t = np.arange(n) / FS
        freqs = rng.uniform(1, 20, (13, 1))
        analog = rng.normal(0, 20, (13, n)) + 40 * np.sin(2 * np.pi * freqs * t) + rng.integers(-500, 500, (13, 1))
        digital = np.clip(analog, -32767, 32767).astype(np.int16)
    lines = (SHARED / "tr03-0005.hea").read_bytes().decode().split("\r\n")
    lines[0] = lines[0].replace("5147000", str(digital.shape[1]))
    text = "\r\n".join(lines).replace("tr03-0005", name)
    (dest / f"{name}.hea").write_bytes((edit_header(text) if edit_header else text).encode())
    scipy.io.savemat(dest / f"{name}.mat", {"val": digital}, format="4")
    if annotations:
        shutil.copyfile(SHARED / "tr03-0005.arousal", dest / f"{name}.arousal")
    return digital


def _sines(freqs: list[float], fs: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return np.sin(2 * np.pi * np.asarray(freqs)[:, None] * t).astype(np.float32)


def _recording(signal: np.ndarray, fs: float) -> EegRecording:
    c = signal.shape[0]
    return EegRecording("sines", tuple(f"ch{i}" for i in range(c)), fs, signal, np.ones(c), np.zeros(c), np.ones(c))


def _gain_db(x: np.ndarray, fs: float, edge_s: float = 20.0) -> np.ndarray:
    """Gain (dB) of unit-amplitude sinusoids from the RMS away from the edges."""
    core = x[:, int(edge_s * fs) : x.shape[1] - int(edge_s * fs)]
    return 20 * np.log10(np.sqrt(2) * np.sqrt(np.mean(core.astype(np.float64) ** 2, axis=1)))


@needs_shared
def test_read_eeg_matches_wfdb_across_chunks(tmp_path):
    import wfdb

    digital = write_record(tmp_path, minutes=3)
    rec = read_eeg(tmp_path / "tr03-0005.hea", chunk_frames=4097)  # several chunks, ragged end
    ref = wfdb.rdrecord(str(tmp_path / "tr03-0005"), channel_names=list(PC18_EEG_CHANNELS))
    assert rec.channels == PC18_EEG_CHANNELS and rec.fs == 200.0
    np.testing.assert_array_equal(rec.digital, digital[:6])
    np.testing.assert_allclose(rec.uv(), ref.p_signal.T, rtol=0, atol=1e-3)


@needs_shared
def test_read_eeg_picks_by_name_and_converts_to_microvolts(tmp_path):
    import wfdb

    def mv_with_baseline(text: str) -> str:  # F4-M1 stored in mV with gain 2 and baseline 10
        return text.replace("16+24 1/uV 16 0 5 1793 0 F4-M1", "16+24 2(10)/mV 16 0 5 1793 0 F4-M1")

    write_record(tmp_path, minutes=1, edit_header=mv_with_baseline)
    picked = ["O2-M1", "F4-M1"]
    rec = read_eeg(tmp_path / "tr03-0005.hea", picked)
    ref = wfdb.rdrecord(str(tmp_path / "tr03-0005"), channel_names=picked)
    assert ref.units == ["uV", "mV"]
    np.testing.assert_allclose(rec.uv(), ref.p_signal.T * np.array([[1.0], [1000.0]]), rtol=1e-6, atol=1e-3)


@needs_shared
def test_read_eeg_does_not_hold_the_other_signals(tmp_path):
    digital = write_record(tmp_path, minutes=40)  # 480,000 samples x 13 signals
    tracemalloc.start()
    rec = read_eeg(tmp_path / "tr03-0005.hea", chunk_frames=8192)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    all_signals = digital.nbytes  # what reading every signal would hold, at the least
    assert peak < rec.digital.nbytes + (1 << 20) < all_signals, (peak, rec.digital.nbytes, all_signals)


@needs_shared
@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "truncated"),
        ("missing_channel", "no signal named ['F3-M2']"),
        ("format_212", "format code 212"),
        ("invalid_samples", "invalid samples"),
        ("wrong_matrix", "MATLAB v4 preamble"),
        ("no_signal_file", "is missing"),
    ],
)
def test_read_eeg_rejects_bad_records_with_one_line_reason(tmp_path, damage, message):
    edits = {
        "missing_channel": lambda t: t.replace(" F3-M2", " F3-XX"),
        "format_212": lambda t: t.replace("16+24", "212+24"),
    }
    digital = write_record(tmp_path, minutes=1, edit_header=edits.get(damage))
    mat = tmp_path / "tr03-0005.mat"
    if damage == "truncate":
        mat.write_bytes(mat.read_bytes()[:-100])
    elif damage == "invalid_samples":
        digital[2, 500:503] = -32768
        scipy.io.savemat(mat, {"val": digital}, format="4")
    elif damage == "wrong_matrix":  # 13 x n in the header, a 12 x m matrix of the same size
        n = digital.shape[1]
        scipy.io.savemat(mat, {"val": np.zeros((12, n * 13 // 12 + 1), np.int16)}, format="4")
    elif damage == "no_signal_file":
        mat.unlink()
    with pytest.raises(RecordError) as info:
        read_eeg(tmp_path / "tr03-0005.hea")
    text = str(info.value)
    assert message in text and "tr03-0005" in text and "\n" not in text


def test_resample_ratio_and_length():
    assert resample_ratio(200) == (1, 2)
    assert resample_ratio(256) == (25, 64)
    assert resample_ratio(250) == (2, 5)
    assert resample_ratio(100) == (1, 1)
    assert resampled_length(5_147_000, 200) == 2_573_500
    assert resampled_length(1001, 200) == 501
    assert resampled_length(256 * 60, 256) == 6000


def test_bandpass_matches_mne_in_pass_band_and_stops_45_hz():
    import mne

    pass_band = [0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    x = _sines(pass_band + [45.0], FS, 120)
    ours = _gain_db(filter_and_resample(_recording(x, FS)), 100.0)
    theirs = _gain_db(mne.filter.filter_data(x.astype(np.float64), FS, 0.1, 30.0, verbose=False), FS)
    diff = ours[:-1] - theirs[:-1]
    assert np.all(np.abs(diff) <= 0.5), dict(zip(pass_band, diff.round(3)))
    assert np.all(np.abs(ours[:-1]) <= 0.5), ours  # and near 0 dB itself
    assert ours[-1] <= -20.0, f"45 Hz only {ours[-1]:.1f} dB down"
    assert theirs[-1] <= -20.0  # the reference behaves as documented, too


@pytest.mark.parametrize("fs", [100.0, 128.0, 250.0, 256.0, 512.0])
def test_other_input_rates_keep_pass_band_and_reject_above_output_nyquist(fs):
    x = _sines([10.0, 45.0, 70.0] if fs / 2 > 70 else [10.0, 45.0], fs, 60)
    y = filter_and_resample(_recording(x, fs))
    assert y.shape == (x.shape[0], resampled_length(x.shape[1], fs)) and y.dtype == np.float32
    gains = _gain_db(y, 100.0)
    assert abs(gains[0]) <= 0.5 and np.all(gains[1:] <= -20.0), gains
    spectrum = np.abs(np.fft.rfft(y[0, 2000:-2000]))
    assert abs(np.fft.rfftfreq(y.shape[1] - 4000, 1 / 100)[spectrum.argmax()] - 10.0) < 0.05


def test_filter_is_zero_phase_and_equals_band_pass_then_resample():
    t = np.arange(FS * 120) / FS
    rng = np.random.default_rng(1)
    x = (800.0 + 30 * np.sin(2 * np.pi * 5 * t) + rng.normal(0, 10, t.size)).astype(np.float32)[None]
    y = filter_and_resample(_recording(x, FS))[0]
    # zero phase: the 5 Hz component keeps the input's phase (least-squares fit of sin and cos)
    t_out = np.arange(y.size) / 100
    basis = np.stack([np.sin(2 * np.pi * 5 * t_out), np.cos(2 * np.pi * 5 * t_out)], axis=1)[1000:-1000]
    (a, b), *_ = np.linalg.lstsq(basis, y[1000:-1000], rcond=None)
    assert abs(np.arctan2(b, a)) < 0.01 and abs(np.hypot(a, b) - 30) < 0.5, (a, b)
    # the literal order (whole band-pass at 200 Hz, then polyphase resampling) gives the same signal
    spec = FilterSpec()
    padlen = int(spec.pad_s * FS)
    high = scipy.signal.sosfiltfilt(spec.highpass_sos(FS), x[0].astype(np.float64), padtype="even", padlen=padlen)
    literal = scipy.signal.resample_poly(high, 1, 2, window=spec.lowpass_fir(FS), padtype="antireflect")
    core = slice(1500, -1500)  # away from the 15 s at each edge where the paddings differ
    assert np.max(np.abs(y[core] - literal[core])) < 1e-3 * np.std(literal), np.max(np.abs(y[core] - literal[core]))


def test_record_edges_have_no_large_transients():
    t = np.arange(FS * 120) / FS  # 5 Hz, amplitude 30 uV, on an 800 uV offset drifting 2 uV/s
    x = (800.0 + 2 * t + 30 * np.sin(2 * np.pi * 5 * t + 1.0)).astype(np.float32)[None]
    y = filter_and_resample(_recording(x, FS))[0]
    for edge in (y[:100], y[-100:], y[6000:6100]):
        assert 25 < np.abs(edge).max() < 36, np.abs(edge).max()


def test_filter_rejects_rates_too_low_for_the_band():
    with pytest.raises(RecordError, match="does not fit"):
        FilterSpec().check(50.0, 100.0)
    with pytest.raises(RecordError, match="does not fit"):
        FilterSpec().check(200.0, 80.0)  # stop band 45 Hz above the output Nyquist 40 Hz


def test_normalise_windows_zscores_each_window_and_channel_and_counts_flat():
    rng = np.random.default_rng(2)
    signal = (rng.normal(5, 3, (3, 10_000)) * np.array([[1.0], [50.0], [0.2]])).astype(np.float32)
    signal[2, 1300:2300] = 7.0  # channel 2 flat through window 1 (from 1300 = 300 + 1000)
    original = signal.copy()
    out = normalise_windows(signal, first_start=300, n_windows=4, window_len=1000, dtype="float16")
    assert out.windows.shape == (4, 3, 1000) and out.windows.dtype == np.float16
    expected = original[:, 300:4300].reshape(3, 4, 1000).transpose(1, 0, 2)
    mean, std = expected.mean(-1, keepdims=True), expected.std(-1, keepdims=True)
    z = (expected - mean) / (std + 1e-6)
    np.testing.assert_allclose(out.windows.astype(np.float32), z, atol=1e-2, rtol=1e-2)
    flat = np.zeros((4, 3), bool)
    flat[1, 2] = True
    np.testing.assert_array_equal(out.flat, flat)
    assert np.all(out.windows[1, 2] == 0)
    with pytest.raises(ValueError):
        normalise_windows(original.copy(), first_start=300, n_windows=10, window_len=1000)
