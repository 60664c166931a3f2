"""The EEG signal pipeline shared by every reader and by staging: band-pass, resample, window,
normalise.

Readers (``recordings/wfdb_reader.py`` for PhysioNet WFDB records, ``mne_reader.py`` for any
MNE-readable PSG) give an :class:`EegRecording`: samples of the requested channels plus how to
turn them into micro-volts. The pipeline works on the continuous recording, never per window:

1. :func:`filter_and_resample` converts one channel at a time to float64 micro-volts and
   band-passes it 0.1-30 Hz with zero phase while resampling it to ``target_fs`` (100 Hz) from
   any input rate: the band's low-pass FIR is the anti-aliasing filter of
   ``scipy.signal.resample_poly`` (polyphase), the 0.1 Hz high-pass runs forward-backward
   (``sosfiltfilt``) at the output rate (:class:`FilterSpec`). Result ``(C, n_out)`` float32 uV.
2. :func:`normalise_windows` cuts ``(n_windows, C, L)`` windows from a grid start and z-scores
   each window and channel (``(x - mean) / (std + eps)``), counting flat windows.

Every problem with a recording raises :class:`RecordError` whose message is one line naming the
record, the file and what was expected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from part.errors import DataError

from part.modalities.eeg.recordings.constants import FLAT_STD_UV, NORM_EPS_UV, TARGET_FS

# physical unit in the header -> factor to micro-volts
UNIT_TO_UV: dict[str, float] = {"uV": 1.0, "µV": 1.0, "nV": 1e-3, "mV": 1e3, "V": 1e6}


class RecordError(DataError):
    """A record that cannot be prepared; the message is one line: record, file, expectation."""


@dataclass(frozen=True)
class FilterSpec:
    """Zero-phase band-pass ``l_freq``-``h_freq`` Hz fused with the polyphase resampling.

    - High edge: linear-phase FIR low-pass (Kaiser window, ``scipy.signal.firwin``), pass band
      up to ``h_freq``, stop band from ``h_stop`` with ``stop_db`` attenuation, -6 dB halfway.
      It is the anti-aliasing filter of ``scipy.signal.resample_poly``, which evaluates it only
      at the kept samples and removes its delay (zero phase); ``h_stop`` <= output Nyquist.
    - Low edge: Butterworth high-pass of order ``highpass_order`` per pass, forward and backward
      (``sosfiltfilt``, zero phase), ``l_freq`` = its -6 dB point, run at the output rate (a
      0.1 Hz high-pass commutes with resampling to 100 Hz; tested against the literal order).
      Edges padded by mirror (even) extension of ``pad_s`` seconds (odd extension would add a
      step where the edge sample is not at the local mean).
    Defaults: within 0.05 dB from 0.5 to 30 Hz, -6 dB at 37.5 Hz, >= 50 dB down from 45 Hz.
    """

    l_freq: float = 0.1
    h_freq: float = 30.0
    h_stop: float = 45.0
    stop_db: float = 50.0
    highpass_order: int = 2
    pad_s: float = 10.0

    def check(self, fs: float, target_fs: float) -> None:
        """Raise :class:`RecordError` unless the band fits input rate ``fs`` and ``target_fs``."""
        if not (0 < self.l_freq < self.h_freq < self.h_stop <= target_fs / 2 and self.h_freq < fs / 2):
            raise RecordError(
                f"band-pass {self.l_freq}-{self.h_freq} Hz (stop {self.h_stop} Hz) does not fit a "
                f"record sampled at {fs} Hz resampled to {target_fs} Hz: expected 0 < l_freq < "
                f"h_freq < h_stop <= {target_fs / 2} Hz and h_freq < {fs / 2} Hz"
            )

    def lowpass_fir(self, fs: float, up: int = 1) -> np.ndarray:
        """Odd-length linear-phase low-pass taps for the rate ``fs * up`` (Hz), unit DC gain."""
        import scipy.signal  # imported on first use here: command lines start without it

        rate = fs * up
        numtaps, beta = scipy.signal.kaiserord(self.stop_db, (self.h_stop - self.h_freq) / (rate / 2))
        cutoff = (self.h_freq + self.h_stop) / 2
        return scipy.signal.firwin(numtaps | 1, cutoff, window=("kaiser", beta), fs=rate)

    def highpass_sos(self, fs: float) -> np.ndarray:
        """Second-order sections (n_sections, 6) of the high-pass at rate ``fs`` (Hz)."""
        import scipy.signal

        return scipy.signal.butter(self.highpass_order, self.l_freq, "highpass", fs=fs, output="sos")

    def describe(self) -> dict:
        """JSON-ready description for the manifest."""
        return {
            "edges_hz": [self.l_freq, self.h_freq],
            "lowpass": f"linear-phase FIR, Kaiser window (scipy.signal.firwin), pass band to "
            f"{self.h_freq} Hz, stop band from {self.h_stop} Hz at -{self.stop_db} dB, -6 dB at "
            f"{(self.h_freq + self.h_stop) / 2} Hz; the anti-aliasing filter of "
            f"scipy.signal.resample_poly (delay removed: zero phase)",
            "highpass": f"Butterworth order {self.highpass_order} per pass, forward+backward "
            f"(scipy.signal.sosfiltfilt, zero phase), -6 dB at {self.l_freq} Hz, at the output rate, "
            f"mirror-extension padding of {self.pad_s} s",
            "applied": "on the continuous record (never per window), channel by channel, float64",
            **asdict(self),
        }


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording recorded without interruption: samples ``start:stop`` of its
    ``digital`` array, the first of them ``onset_s`` seconds after the recording's first sample
    (on the real clock: a gap before it, e.g. between the parts of an EDF+D file, is counted)."""

    onset_s: float
    start: int
    stop: int


@dataclass
class EegRecording:
    """Digital samples of the requested channels and how to turn them into micro-volts.

    ``digital`` (C, n) integer samples, ``gain`` / ``baseline`` (C,) from the header
    (physical = (digital - baseline) / gain in the header unit), ``uv_per_unit`` (C,) factor from
    the header unit to uV, ``fs`` in Hz. ``segments``: the uninterrupted stretches of a
    recording with gaps (EDF+D), in order; () when the samples are one contiguous stretch.
    """

    record: str
    channels: tuple[str, ...]
    fs: float
    digital: np.ndarray
    gain: np.ndarray
    baseline: np.ndarray
    uv_per_unit: np.ndarray
    segments: tuple[Segment, ...] = ()

    @property
    def n_samples(self) -> int:
        return self.digital.shape[1]

    def pieces(self) -> tuple[Segment, ...]:
        """The segments, or one segment of every sample when the recording has no gap."""
        return self.segments or (Segment(0.0, 0, self.n_samples),)

    @property
    def duration_s(self) -> float:
        """Seconds from the first sample to the end of the last, gaps included."""
        last = self.pieces()[-1]
        return last.onset_s + (last.stop - last.start) / self.fs

    def piece(self, segment: Segment) -> "EegRecording":
        """The samples of one segment as a recording without gaps (a view, not a copy)."""
        return EegRecording(self.record, self.channels, self.fs, self.digital[:, segment.start:segment.stop],
                            self.gain, self.baseline, self.uv_per_unit)

    def channel_uv(self, index: int, dtype=np.float32) -> np.ndarray:
        """Channel ``index`` in micro-volts, (n,) of ``dtype``."""
        scale = self.uv_per_unit[index] / self.gain[index]
        out = self.digital[index].astype(dtype)
        if self.baseline[index] != 0:
            out -= self.baseline[index]
        if scale != 1:
            out *= scale
        return out

    def uv(self) -> np.ndarray:
        """All channels in micro-volts, float32 (C, n)."""
        return np.stack([self.channel_uv(i) for i in range(len(self.channels))])



def resample_ratio(fs: float, target_fs: float = TARGET_FS) -> tuple[int, int]:
    """(up, down) integers with ``target_fs / fs = up / down`` (rates rounded to 1 mHz)."""
    ratio = Fraction(round(target_fs * 1000), round(fs * 1000))
    return ratio.numerator, ratio.denominator


def resampled_length(n_samples: int, fs: float, target_fs: float = TARGET_FS) -> int:
    """Number of output samples ``resample_poly`` gives: ceil(n * up / down)."""
    up, down = resample_ratio(fs, target_fs)
    return -(-n_samples * up // down)


def filter_and_resample(
    recording: EegRecording, spec: FilterSpec = FilterSpec(), target_fs: float = TARGET_FS
) -> np.ndarray:
    """Band-pass each channel of ``recording`` (see :class:`FilterSpec`) while resampling it to
    ``target_fs`` with ``resample_poly``, on the continuous record.

    Works channel by channel in float64 (a float32 0.1 Hz high-pass is off by ~1% of the signal)
    to bound memory. Returns (C, n_out) float32 uV, ``n_out = resampled_length(n, fs, target_fs)``.
    """
    import scipy.signal

    fs = recording.fs
    spec.check(fs, target_fs)
    up, down = resample_ratio(fs, target_fs)
    fir = spec.lowpass_fir(fs, up)
    sos = spec.highpass_sos(target_fs)
    n_out = resampled_length(recording.n_samples, fs, target_fs)
    padlen = min(n_out - 1, int(round(spec.pad_s * target_fs)))
    out = np.empty((len(recording.channels), n_out), dtype=np.float32)
    for c in range(len(recording.channels)):
        x = recording.channel_uv(c, np.float64)
        if up == down:  # no rate change: the same FIR, centred (zero phase)
            padded = np.pad(x, fir.size // 2, mode="reflect", reflect_type="odd")
            low = scipy.signal.convolve(padded, fir, mode="valid")
        else:
            low = scipy.signal.resample_poly(x, up, down, window=fir, padtype="antireflect")
        del x
        out[c] = scipy.signal.sosfiltfilt(sos, low, padtype="even", padlen=padlen)
    return out


@dataclass(frozen=True)
class NormalisedWindows:
    """``windows`` (n_windows, C, L) in ``dtype``, z-scored per window and channel;
    ``flat`` (n_windows, C) bool: std below ``flat_std_uv`` before normalisation."""

    windows: np.ndarray
    flat: np.ndarray


def normalise_windows(
    signal: np.ndarray,
    first_start: int,
    n_windows: int,
    window_len: int,
    dtype: str = "float16",
    eps: float = NORM_EPS_UV,
    flat_std_uv: float = FLAT_STD_UV,
) -> NormalisedWindows:
    """Cut ``n_windows`` windows of ``window_len`` samples from ``signal`` (C, n) starting at
    ``first_start`` and z-score each window and channel: ``(x - mean) / (std + eps)``.

    ``signal`` is modified in place (the windowed part); returns :class:`NormalisedWindows`.
    """
    channels = signal.shape[0]
    stop = first_start + n_windows * window_len
    if n_windows < 1 or stop > signal.shape[1] or first_start < 0:
        raise ValueError(
            f"{n_windows} windows of {window_len} from {first_start} do not fit a signal of "
            f"{signal.shape[1]} samples"
        )
    seg = signal[:, first_start:stop].reshape(channels, n_windows, window_len)
    seg -= seg.mean(axis=-1, dtype=np.float64, keepdims=True).astype(seg.dtype)
    std = np.sqrt(np.einsum("cwl,cwl->cw", seg, seg, dtype=np.float64) / window_len)
    seg *= (1.0 / (std + eps)).astype(seg.dtype)[..., None]
    windows = seg.transpose(1, 0, 2).astype(np.dtype(dtype), order="C")
    return NormalisedWindows(windows=windows, flat=(std < flat_std_uv).T)
