"""SYNTHETIC PhysioNet 2018 records: the real 2018 layout (checked against tr03-0005), readable by
wfdb and scipy, plausible hypnograms, and stage rhythms visible in the spectra."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.signal
import wfdb

from part.modalities.eeg.recordings.constants import PC18_STAGE_NOTES
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.data_prep.pc18_wfdb_files import SIGNALS
from part.data_prep.pc18_synthetic import (EPOCH, EVENT_KINDS, FS, HEADER_COMMENT, N1, N2, N3, R, W,
                                      _hypnogram, write_synthetic_records)

from conftest import SHARED_DATA, requires_shared

REAL = SHARED_DATA / "pc18"
needs_real = requires_shared("pc18/tr03-0005.hea", "pc18/tr03-0005.arousal", "pc18/tr03-0029.arousal")
STAGES = set(PC18_STAGE_NOTES)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    src = tmp_path_factory.mktemp("syn")
    t0 = time.perf_counter()
    names = write_synthetic_records(src, 2, seed=3, minutes=(20, 25))
    return src, names, time.perf_counter() - t0


def _epoch_labels(src: Path, rec: str, n_samples: int) -> np.ndarray:
    """Per 30-s epoch (from sample 0) stage code, -1 before the first stage note."""
    ann = wfdb.rdann(str(src / rec), "arousal")
    stage = [(s, PC18_STAGE_NOTES[a]) for s, a in zip(ann.sample, ann.aux_note) if a in STAGES]
    labels = np.full(n_samples // EPOCH, -1)
    for (start, code), end in zip(stage, [s for s, _ in stage[1:]] + [n_samples]):
        labels[start // EPOCH: end // EPOCH] = code
    return labels


def test_small_records_are_fast(tmp_path):
    t0 = time.perf_counter()
    names = write_synthetic_records(tmp_path, 2, minutes=(10, 12))
    elapsed = time.perf_counter() - t0
    assert names == ["syn00-0001", "syn00-0002"]
    assert elapsed < 2.0, f"2 records of 10-12 min took {elapsed:.2f} s"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}{e}" for n in names for e in (".hea", ".mat", ".arousal"))


@needs_real
def test_header_matches_the_real_2018_layout(records):
    src, names, _ = records
    real = wfdb.rdheader(str(REAL / "tr03-0005"))
    raw = (src / f"{names[0]}.hea").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") and raw.endswith(b"\r\n")  # CRLF like the real one
    hdr = wfdb.rdheader(str(src / names[0]))
    for field in ("sig_name", "units", "adc_gain", "baseline", "fmt", "byte_offset", "adc_res", "adc_zero",
                  "n_sig", "fs"):
        assert getattr(hdr, field) == getattr(real, field), field
    assert hdr.file_name == [f"{names[0]}.mat"] * 13
    assert any(HEADER_COMMENT in c for c in hdr.comments)
    assert 20 * 60 * FS <= hdr.sig_len <= 25 * 60 * FS


def test_eeg_signals_and_stage_codes_are_the_pc18_constants(records):
    src, names, _ = records
    hdr = wfdb.rdheader(str(src / names[0]))
    assert tuple(hdr.sig_name[:6]) == tuple(s[0] for s in SIGNALS[:6]) == PC18_EEG_CHANNELS
    assert (W, N1, N2, N3, R) == tuple(PC18_STAGE_NOTES[n] for n in ("W", "N1", "N2", "N3", "R")) == (0, 1, 2, 3, 4)
    notes = set(wfdb.rdann(str(src / names[0]), "arousal").aux_note)
    assert set(PC18_STAGE_NOTES) <= notes  # every stage written with its PC18 note


def test_mat_is_matlab_v4_int16_that_wfdb_reads(records):
    src, names, _ = records
    rec = wfdb.rdrecord(str(src / names[0]), physical=False)
    mat = scipy.io.loadmat(str(src / f"{names[0]}.mat"))
    assert mat["val"].dtype == np.int16 and mat["val"].shape == (13, rec.sig_len)
    np.testing.assert_array_equal(mat["val"].T, rec.d_signal)
    # The header's initial values and 16-bit checksums are the signal's own.
    np.testing.assert_array_equal(rec.init_value, rec.d_signal[0])
    check = (rec.d_signal.sum(0, dtype=np.int64) + 32768) % 65536 - 32768
    np.testing.assert_array_equal(rec.checksum, check)
    assert (rec.d_signal != -32768).all()  # WFDB's invalid-sample code never appears
    phys = wfdb.rdrecord(str(src / names[0])).p_signal
    sao2, ecg = phys[:, 11], phys[:, 12]
    assert 85 < sao2.min() and sao2.max() < 100 and 93 < np.median(sao2) < 99
    assert 0.6 < ecg.max() < 2.0  # R peaks around 1 mV


@needs_real
def test_annotations_are_encoded_like_the_real_file(records):
    src, names, _ = records
    real = wfdb.rdann(str(REAL / "tr03-0005"), "arousal")
    ann = wfdb.rdann(str(src / names[0]), "arousal")
    assert ann.fs == real.fs == FS
    assert set(ann.symbol) == set(real.symbol) == {'"'}
    codes = {}  # note -> (subtype, chan, num) in the real files: stage notes chan 0, brackets chan 1
    for a in (real, wfdb.rdann(str(REAL / "tr03-0029"), "arousal")):
        codes.update({n: (s, c, m) for n, s, c, m in zip(a.aux_note, a.subtype, a.chan, a.num)})
    mine = {n: (s, c, m) for n, s, c, m in zip(ann.aux_note, ann.subtype, ann.chan, ann.num)}
    assert {n: codes[n] for n in mine} == mine
    assert (np.diff(ann.sample) >= 0).all()
    stage = [(s, n) for s, n in zip(ann.sample, ann.aux_note) if n in STAGES]
    assert [n for _, n in stage[:2]] == ["W", "N1"]
    assert all((s - stage[0][0]) % EPOCH == 0 for s, _ in stage)
    assert all(a != b for (_, a), (_, b) in zip(stage, stage[1:]))  # a note at each change, like the real file
    events = [n for n in ann.aux_note if n not in STAGES]
    assert len(events) >= 4 and events[0::2] == [f"({n[:-1]}" for n in events[1::2]]
    assert {e.strip("()") for e in events} <= set(EVENT_KINDS)


def test_every_stage_appears_even_in_short_records(tmp_path):
    names = write_synthetic_records(tmp_path, 3, seed=5, minutes=(10, 12))
    for rec in names:
        notes = set(wfdb.rdann(str(tmp_path / rec), "arousal").aux_note)
        assert STAGES <= notes, (rec, notes)


def test_stage_rhythms_show_in_the_spectra(records):
    src, names, _ = records
    power = {k: [] for k in range(5)}
    for rec in names:
        sig = wfdb.rdrecord(str(src / rec)).p_signal
        labels = _epoch_labels(src, rec, len(sig))
        epochs = sig[: labels.size * EPOCH].reshape(labels.size, EPOCH, 13)
        f, p = scipy.signal.welch(epochs, fs=FS, nperseg=2 * FS, axis=1)  # (epochs, freq, 13)
        for k in range(5):
            power[k].append(p[labels == k])
    p = {k: np.concatenate(v) for k, v in power.items()}
    band = lambda k, lo, hi, ch: p[k][:, (f >= lo) & (f < hi), ch].sum(1).mean()  # noqa: E731
    O1, C3, F3, EMG = 4, 2, 0, 7
    assert band(N3, 0.5, 2, F3) > 5 * band(W, 0.5, 2, F3)  # high-amplitude delta
    assert band(W, 8, 12, O1) > 5 * band(N3, 8, 12, O1)  # posterior alpha in wake
    assert band(N1, 4, 7, C3) > 2 * band(W, 4, 7, C3)  # theta in N1
    assert band(N2, 12, 15, C3) > 3 * band(N1, 12, 15, C3)  # spindles
    assert band(R, 0.5, 30, F3) < 0.5 * band(N2, 0.5, 30, F3)  # low-amplitude REM
    assert band(R, 20, 90, EMG) < 0.3 * band(W, 20, 90, EMG)  # REM atonia
    sig = wfdb.rdrecord(str(src / names[0]), channels=list(range(6))).p_signal
    corr = np.corrcoef(sig.T)
    off = corr[~np.eye(6, dtype=bool)]
    assert off.min() > 0.2 and off.max() < 0.99  # correlated but distinct derivations


def test_hypnogram_cycles_like_a_night():
    rng = np.random.default_rng(0)
    hyp = _hypnogram(960, 180, rng)  # 8 h, 90-min cycles
    assert hyp.dtype == np.int8 and hyp.size == 960
    assert hyp[0] == W and hyp[np.argmax(hyp != W)] == N1
    first, last = hyp[:320], hyp[-320:]
    assert (first == N3).sum() > 3 * max((last == N3).sum(), 1)  # N3 mostly early
    assert (last == R).sum() > 1.5 * (first == R).sum()  # REM lengthens
    onset = np.argmax(hyp == N2)
    assert 0 < (hyp[onset:] == W).sum() < 0.1 * hyp.size  # brief awakenings after sleep onset
    assert np.count_nonzero(np.diff(np.flatnonzero(np.diff(hyp) != 0))) > 10


def test_deterministic_and_independent_of_n(tmp_path):
    a = write_synthetic_records(tmp_path / "a", 1, seed=7, minutes=(10, 11))
    b = write_synthetic_records(tmp_path / "b", 2, seed=7, minutes=(10, 11))
    c = write_synthetic_records(tmp_path / "c", 1, seed=8, minutes=(10, 11))
    for ext in (".hea", ".mat", ".arousal"):
        assert (tmp_path / "a" / f"{a[0]}{ext}").read_bytes() == (tmp_path / "b" / f"{b[0]}{ext}").read_bytes()
    assert (tmp_path / "a" / f"{a[0]}.mat").read_bytes() != (tmp_path / "c" / f"{c[0]}.mat").read_bytes()


def test_refuses_a_directory_that_holds_records(tmp_path):
    (tmp_path / "tr03-0005.hea").write_text("x")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        write_synthetic_records(tmp_path, 1, minutes=(10, 11))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tr03-0005.hea"]  # nothing written
    with pytest.raises(ValueError, match="minutes"):
        write_synthetic_records(tmp_path / "new", 1, minutes=(12, 10))
