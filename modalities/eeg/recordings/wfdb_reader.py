"""Fast reader of PhysioNet WFDB records (PhysioNet/CinC 2018): only the requested columns.

:func:`read_eeg` parses the WFDB header with ``wfdb.rdheader``, picks the requested signals BY
NAME and reads only their columns of the interleaved signal file (PC18: MATLAB v4 ``.mat``,
header format ``16+24`` = int16 after a 24-byte preamble) in chunks, so the other signals are
never held in memory. Result: an :class:`~part.modalities.eeg.recordings.signal.EegRecording` of digital samples
``(C, n)`` plus gain, baseline and unit scale, exactly what ``wfdb.rdrecord(...,
channel_names=...)`` would give (tested). Several times faster than a generic reader (see
``benchmarks/prep_bench.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import wfdb

from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.signal import UNIT_TO_UV, EegRecording, RecordError


# WFDB format code -> (numpy dtype of one sample, the "invalid sample" sentinel wfdb reads as NaN).
# Only uncompressed formats whose samples numpy can read directly are supported.
SAMPLE_FORMATS: dict[str, tuple[str, int]] = {
    "16": ("<i2", -(2**15)),
    "61": (">i2", -(2**15)),
    "32": ("<i4", -(2**31)),
}
_MAT_V4_INT16_TYPE = 30  # MATLAB v4 type code M0 O0 P3 (int16) T0 (numeric, full matrix)


@dataclass(frozen=True)
class _Layout:
    """Where the requested channels sit in the interleaved signal file."""

    path: Path
    dtype: np.dtype
    sentinel: int
    byte_offset: int
    frame_width: int  # number of signals interleaved in the file
    columns: tuple[int, ...]  # column of each requested channel within a frame
    n_samples: int


def read_header(header_path: Path):
    """``wfdb.rdheader`` of ``header_path`` (a ``.hea`` file) or a one-line :class:`RecordError`."""
    header_path = Path(header_path)
    try:
        return wfdb.rdheader(str(header_path.with_suffix("")))
    except Exception as exc:  # wfdb raises many types on malformed headers
        raise RecordError(
            f"{header_path.stem}: cannot parse WFDB header {header_path}: {type(exc).__name__}: "
            f"{exc}; expected a WFDB header such as the PC18 .hea files"
        ) from None


def _layout(header, header_path: Path, channels: Sequence[str]) -> tuple[_Layout, list[int]]:
    """Check the header for ``channels`` and return the file layout and their signal indices."""
    name, hea = header_path.stem, header_path.name
    missing = [c for c in channels if c not in header.sig_name]
    if missing:
        raise RecordError(
            f"{name}: header {hea} has no signal named {missing}; it has {header.sig_name}; "
            f"pass --channels with names this header uses or drop the record"
        )
    indices = [header.sig_name.index(c) for c in channels]
    files = {header.file_name[i] for i in indices}
    if len(files) != 1:
        raise RecordError(
            f"{name}: requested channels are spread over files {sorted(files)} in {hea}; expected "
            "one signal file"
        )
    file_name = files.pop()
    in_file = [i for i, f in enumerate(header.file_name) if f == file_name]
    for i in indices:
        fmt = header.fmt[i]
        if fmt not in SAMPLE_FORMATS:
            raise RecordError(
                f"{name}: signal {header.sig_name[i]} in {hea} has format code {fmt}; supported: "
                f"{sorted(SAMPLE_FORMATS)} (uncompressed; PC18 uses 16+24)"
            )
        if header.samps_per_frame[i] not in (1, None) or header.skew[i] not in (0, None):
            raise RecordError(
                f"{name}: signal {header.sig_name[i]} in {hea} uses samples-per-frame or skew; "
                "expected one sample per frame, no skew"
            )
    fmts = {header.fmt[i] for i in in_file}
    offsets = {header.byte_offset[i] or 0 for i in in_file}
    if len(fmts) != 1 or len(offsets) != 1:
        raise RecordError(
            f"{name}: signals of {file_name} in {hea} mix formats {sorted(fmts)} or byte offsets "
            f"{sorted(offsets)}; expected one of each"
        )
    if not header.sig_len:
        raise RecordError(
            f"{name}: header {hea} gives no signal length; expected 'name n_sig fs n_samples' on "
            "its first line"
        )
    fmt = fmts.pop()
    dtype, sentinel = SAMPLE_FORMATS[fmt]
    layout = _Layout(
        path=header_path.parent / file_name,
        dtype=np.dtype(dtype),
        sentinel=sentinel,
        byte_offset=offsets.pop(),
        frame_width=len(in_file),
        columns=tuple(in_file.index(i) for i in indices),
        n_samples=int(header.sig_len),
    )
    return layout, indices


def _check_signal_file(layout: _Layout, record: str) -> None:
    """Size check, and for ``.mat`` files the MATLAB v4 preamble against the header."""
    path = layout.path
    if not path.is_file():
        raise RecordError(
            f"{record}: signal file {path} is missing; the header names it; download the record "
            "again"
        )
    expected = layout.byte_offset + layout.frame_width * layout.n_samples * layout.dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise RecordError(
            f"{record}: {path.name} has {size} bytes; the header says {layout.frame_width} signals x "
            f"{layout.n_samples} samples of {layout.dtype.itemsize} bytes after {layout.byte_offset} "
            f"bytes = {expected} bytes; the file is truncated: download it again"
        )
    if path.suffix == ".mat" and layout.byte_offset >= 20 and layout.dtype == np.dtype("<i2"):
        with open(path, "rb") as f:
            mat_type, rows, cols, imag, _ = np.frombuffer(f.read(20), "<i4")
        if (mat_type, rows, cols, imag) != (_MAT_V4_INT16_TYPE, layout.frame_width, layout.n_samples, 0):
            raise RecordError(
                f"{record}: {path.name} MATLAB v4 preamble says type {mat_type}, {rows} x {cols}; "
                f"the header says int16 (type 30), {layout.frame_width} x {layout.n_samples}; "
                f"the files do not belong together: download the record again"
            )


def read_eeg(
    header_path: Path, channels: Sequence[str] = PC18_EEG_CHANNELS, chunk_frames: int = 1 << 18
) -> EegRecording:
    """Read only ``channels`` (by name, in that order) of the record whose header is ``header_path``.

    Reads the interleaved file ``chunk_frames`` frames at a time and keeps only the requested
    columns, so memory is ``C x n`` digital samples plus one chunk. Raises :class:`RecordError` on
    a missing channel, an unsupported format, a truncated file or invalid (NaN) samples.
    """
    header_path = Path(header_path)
    header = read_header(header_path)
    record = header_path.stem
    layout, indices = _layout(header, header_path, channels)
    units = [header.units[i] for i in indices]
    unknown = sorted({u for u in units if u not in UNIT_TO_UV})
    gains = np.array([header.adc_gain[i] for i in indices], dtype=np.float64)
    if unknown or not np.all(gains != 0):
        raise RecordError(
            f"{record}: header {header_path.name} gives units {units} and gains {gains.tolist()}; "
            f"expected voltage units {sorted(UNIT_TO_UV)} and non-zero gains"
        )
    _check_signal_file(layout, record)
    n, width, cols = layout.n_samples, layout.frame_width, np.asarray(layout.columns)
    digital = np.empty((len(cols), n), dtype=layout.dtype.newbyteorder("="))
    buffer = np.empty((min(chunk_frames, n), width), dtype=layout.dtype)
    with open(layout.path, "rb") as f:
        f.seek(layout.byte_offset)
        for start in range(0, n, buffer.shape[0]):
            frames = min(buffer.shape[0], n - start)
            view = buffer[:frames]
            if f.readinto(memoryview(view).cast("B")) != view.nbytes:
                raise RecordError(
                    f"{record}: {layout.path.name} ended before sample {start + frames}; the "
                    f"header says {n} samples: download it again"
                )
            digital[:, start : start + frames] = view[:, cols].T
    invalid = np.array([np.count_nonzero(row == layout.sentinel) for row in digital])  # no (C, n) temp
    if invalid.any():
        bad = {channels[i]: int(c) for i, c in enumerate(invalid) if c}
        raise RecordError(
            f"{record}: {layout.path.name} has invalid samples (WFDB sentinel {layout.sentinel}, "
            f"read as NaN by wfdb) in {bad}; expected finite samples in every requested channel"
        )
    return EegRecording(
        record=record,
        channels=tuple(channels),
        fs=float(header.fs),
        digital=digital,
        gain=gains,
        baseline=np.array([header.baseline[i] for i in indices], dtype=np.float64),
        uv_per_unit=np.array([UNIT_TO_UV[u] for u in units]),
    )
