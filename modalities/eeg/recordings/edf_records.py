"""EDF+/BDF+ data records on the real clock, and EDF channel labels in UTF-8.

MNE (1.x) reads an EDF+D (discontinuous) file as if its data records followed each other without
gaps, and drops the subsecond part of the start. The true onset of every data record is in the
file: the first TAL ("time-keeping annotation", ``+<seconds>\\x14\\x14\\x00``) of each record's
``EDF Annotations`` signal, in seconds after the header's start time (whole seconds). This module
reads those onsets (one strided read of the annotation bytes, parsed vectorised) and turns them
into :class:`~part.modalities.eeg.recordings.signal.Segment` s: runs of records that follow each
other, each with its onset and its samples. A plain EDF/BDF (no annotation signal) or an EDF+C
file whose records are contiguous is one segment; an EDF+C file still gives its subsecond start.

Labels: EDF labels are ASCII by the standard, but real files carry UTF-8 ("EEG Fpz–Cz"). MNE
decodes them as Latin-1 ('EEG Fpzâ\\x80\\x93Cz'); :func:`utf8_label` re-decodes such a name as
UTF-8 where its bytes are valid UTF-8 (else keeps it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from part.modalities.eeg.recordings.signal import Segment

ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
GAP_TOLERANCE_S = 1e-3  # s: records further apart than their duration (+ this) leave a gap
TAL_BYTES = 24  # bytes read from the start of each record's annotation signal: "+<onset>\x14\x14\x00"


def utf8_label(name: str) -> str:
    """A channel name MNE decoded as Latin-1, decoded as UTF-8 when its bytes are valid UTF-8
    ('EEG Fpzâ\\x80\\x93Cz' -> 'EEG Fpz–Cz'); unchanged otherwise (plain ASCII, real Latin-1)."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


@dataclass(frozen=True)
class EdfLayout:
    """What an EDF(+)/BDF(+) header says about the data records: ``plus`` ("EDF+C", "EDF+D", ...
    or ""), ``n_records``, ``record_s`` (duration of a record, s), ``samples`` (per record, per
    signal), ``labels``, ``header_bytes``, ``width`` (bytes per sample: 2 EDF, 3 BDF)."""

    plus: str
    n_records: int
    record_s: float
    samples: tuple[int, ...]
    labels: tuple[str, ...]
    header_bytes: int
    width: int

    @property
    def discontinuous(self) -> bool:
        return self.plus.endswith("+D")

    @property
    def annotation_signal(self) -> int | None:
        """Index of the first ``EDF Annotations`` signal (the time-keeping one), or None."""
        return next((i for i, label in enumerate(self.labels) if label in ANNOTATION_LABELS), None)


def read_layout(path: str | Path) -> EdfLayout | None:
    """The header layout of an EDF/BDF file, or None (another format or an unparsable header:
    the reader reports that)."""
    if Path(path).suffix.lower() not in (".edf", ".bdf"):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            ns = int(head[252:256].decode("ascii"))
            labels = tuple(f.read(16).strip().decode("latin-1") for _ in range(ns))  # as MNE decodes them
            f.seek(256 + ns * 216)  # transducer 80, dimension and ranges 5 x 8, prefilter 80
            samples = tuple(int(f.read(8).decode("ascii")) for _ in range(ns))
        return EdfLayout(head[192:236].decode("latin-1").strip(), int(head[236:244].decode("ascii")),
                         float(head[244:252].decode("ascii")), samples, labels,
                         int(head[184:192].decode("ascii")), 3 if head[:1] == b"\xff" else 2)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def record_onsets(path: str | Path, layout: EdfLayout | None = None,
                  limit: int | None = None) -> np.ndarray | None:
    """Onset of each data record (n_records,) float64 (the first ``limit`` records only when
    given), seconds after the header's start time, from the records' time-keeping TALs; None
    for a file without an annotation signal (plain EDF/BDF:
    records follow each other from 0) or whose TALs cannot be parsed."""
    layout = read_layout(path) if layout is None else layout
    if layout is None or layout.annotation_signal is None or layout.n_records <= 0:
        return None
    index = layout.annotation_signal
    record_bytes = sum(layout.samples) * layout.width
    offset = sum(layout.samples[:index]) * layout.width
    length = min(TAL_BYTES, layout.samples[index] * layout.width)
    n = layout.n_records if limit is None else min(limit, layout.n_records)
    data = np.memmap(path, np.uint8, "r", layout.header_bytes, (n, record_bytes))
    tals = np.ascontiguousarray(data[:, offset:offset + length]).view(f"S{length}").reshape(-1)
    first = np.char.partition(tals, b"\x14")[:, 0]
    try:
        return first.astype(np.float64)
    except ValueError:
        return None


def record_segments(path: str | Path, fs: float) -> tuple[float, tuple[Segment, ...]]:
    """(start offset, segments) of an EDF(+)/BDF(+) file read at ``fs`` Hz as one array of its data
    records in file order (as MNE returns them): ``start offset`` = the first record's onset
    (the subsecond part of the start; 0.0 without TALs), ``segments`` = runs of records without
    a gap between them, onsets counted from the first record; () for one contiguous run."""
    layout = read_layout(path)
    onsets = None if layout is None else record_onsets(path, layout, None if layout.discontinuous else 1)
    if onsets is None or onsets.size == 0:
        return 0.0, ()
    first = float(onsets[0])
    if not layout.discontinuous:
        return first, ()
    breaks = np.flatnonzero(np.diff(onsets) > layout.record_s + GAP_TOLERANCE_S) + 1
    if breaks.size == 0:
        return first, ()
    per_record = int(round(layout.record_s * fs))
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [onsets.size]])
    return first, tuple(Segment(float(onsets[a] - first), int(a) * per_record, int(b) * per_record)
                        for a, b in zip(starts, stops))
