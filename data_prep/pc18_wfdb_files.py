"""Files in the exact layout of a PhysioNet/CinC 2018 training record (``tr03-0005``): the
13 signals and their header fields, the MATLAB v4 ``.mat``, the WFDB header and the ``.arousal``
annotations. Used by the SYNTHETIC record generator (``pc18_synthetic.py``)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import wfdb

from part.atomic import atomic_write
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS

FS = 200  # Hz, as in the 2018 challenge
# (name, header gain/units field, gain, baseline): copied from tr03-0005.hea
SIGNALS = tuple((n, "1/uV", 1.0, 0) for n in PC18_EEG_CHANNELS) + (
    ("E1-M2", "1/uV", 1.0, 0), ("Chin1-Chin2", "1/uV", 1.0, 0), ("ABD", "1/uV", 1.0, 0),
    ("CHEST", "1/uV", 1.0, 0), ("AIRFLOW", "1/uV", 1.0, 0),
    ("SaO2", "655.35(-32768)/%", 655.35, -32768), ("ECG", "1000/mV", 1000.0, 0),
)
# Annotation subtype codes as in the real .arousal files: stage notes, then (open, close) brackets.
STAGE_SUBTYPE = {"W": 5, "N1": 3, "N2": 2, "N3": 1, "R": 4}
EVENT_SUBTYPE = {"arousal_rera": (0, 1), "resp_centralapnea": (12, 13), "resp_hypopnea": (16, 17),
                 "resp_obstructiveapnea": (22, 23)}


def to_digital(phys: np.ndarray) -> np.ndarray:
    """Physical (13, n) -> interleaved digital (n, 13) int16; -32768 is WFDB's invalid sample."""
    gain = np.array([s[2] for s in SIGNALS], np.float32)[:, None]
    base = np.array([s[3] for s in SIGNALS], np.float32)[:, None]
    return np.clip(np.rint(phys * gain + base), -32767, 32767).astype(np.int16).T.copy()


def write_mat(path: Path, val_nt: np.ndarray) -> None:
    """MATLAB v4 file with int16 matrix ``val`` (13 x n) from interleaved (n, 13) samples."""
    n, m = val_nt.shape
    # type 30 = little-endian (M=0), int16 (P=3), full numeric matrix (T=0); name 'val\\0'.
    head = np.array([30, m, n, 0, 4], "<i4").tobytes() + b"val\x00"
    assert len(head) == 24  # the '+24' byte offset in the header
    atomic_write(path, lambda f: (f.write(head), f.write(val_nt.astype("<i2", copy=False).tobytes())))


def header_text(rec: str, val_nt: np.ndarray, comments: list[str]) -> str:
    """WFDB header text (CRLF) with initial values and 16-bit checksums of each signal."""
    n = val_nt.shape[0]
    check = (val_nt.sum(axis=0, dtype=np.int64) + 32768) % 65536 - 32768
    lines = [f"{rec} {len(SIGNALS)} {FS} {n}"]
    for j, (name, gain_units, _, _) in enumerate(SIGNALS):
        lines.append(f"{rec}.mat 16+24 {gain_units} 16 0 {int(val_nt[0, j])} {int(check[j])} 0 {name}")
    lines += [f"# {c}" for c in comments]
    return "\r\n".join(lines) + "\r\n"


def write_arousal(src: Path, rec: str, notes: list[tuple[int, int, int, str]]) -> None:
    """``src/<rec>.arousal`` from (sample, channel, subtype, note) tuples, sorted by sample;
    every note has symbol '"' as in the real files. Written in a temporary folder, then moved."""
    sample, chan, subtype, aux = zip(*sorted(notes, key=lambda x: x[0]))
    with tempfile.TemporaryDirectory(dir=src, prefix=".synthetic-") as tmp:
        wfdb.wrann(rec, "arousal", np.array(sample), symbol=['"'] * len(aux), subtype=np.array(subtype),
                   chan=np.array(chan), aux_note=list(aux), fs=FS, write_dir=tmp)
        os.replace(Path(tmp) / f"{rec}.arousal", src / f"{rec}.arousal")
