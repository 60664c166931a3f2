"""EDF headers and EDF+ hypnograms: start times, truncated files, the alignment of a scoring to its
recording, writing hypnograms.

Reading an EDF+ hypnogram's stages is ``hypnogram_io.read_scoring``; this module holds what
depends on the EDF header: :func:`edf_start` (the clock time as written), :func:`edf_size_problem`
(a file shorter than its header says: a cut-off copy or download), :func:`clock_offset`
(the rule that puts a scoring on its recording's clock, used by the preparation, by staging and
by ``Hypnogram.agreement``), :func:`align_to_recording` (that rule for a scoring file and a
recording file), and the writers (:func:`write_hypnogram_edf`, Sleep-EDF style, atomic).

Clocks: an EDF/BDF header holds a local clock time without time zone (MNE labels it UTC without
converting it); other formats' start (FIF ``meas_date``, ...) is true UTC. A start is therefore
kept as a *naive* datetime when it is a header's clock time and as an *aware* one (UTC) when it
is true UTC; two starts are comparable only when both are naive or both aware.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from part.atomic import atomic_write
from part.errors import DataError
from part.modalities.eeg.recordings.constants import SLEEP_EDF_LABELS
from part.modalities.eeg.recordings.edf_records import read_layout

EDF_SUFFIXES = (".edf", ".bdf")
MAX_OFFSET_S = 86400.0  # hypnogram/recording starts further apart: not the same night (or a date unknown)
EDF_UNKNOWN_DATE = date(1985, 1, 1)  # EDF's placeholder date (01.01.85, edfio's default): no real date known
EDF_UNKNOWN_START = datetime(1985, 1, 1)  # EDF's placeholder start 01.01.85 00.00.00: no clock time known


class HypnogramError(DataError):
    """A scoring file or scoring annotations that cannot be used; one line naming the file."""


def edf_start(path: str | Path) -> datetime | None:
    """Start of an EDF(+)/BDF(+) file from its header's ``dd.mm.yy`` / ``hh.mm.ss`` fields (years
    85-99 are 19xx): the clock time as written, without time zone; None for another format or an
    unreadable header."""
    if Path(path).suffix.lower() not in EDF_SUFFIXES:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(184)
        day, month, year = (int(v) for v in head[168:176].decode("ascii").split("."))
        hour, minute, second = (int(v) for v in head[176:184].decode("ascii").split("."))
        return datetime(year + (1900 if year >= 85 else 2000), month, day, hour, minute, second)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def edf_size_problem(path: str | Path) -> str | None:
    """Why an EDF(+)/BDF(+) file is shorter than its header says, or None (complete, another
    format, a header giving -1 records, i.e. unknown, or one that cannot be parsed: the reader
    says so). The header's record count, record duration and samples per record give the data's
    size (2 bytes a sample in EDF, 3 in BDF); a file cut off (an interrupted copy or download)
    holds fewer whole records than its header says."""
    path = Path(path)
    layout = read_layout(path)
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if layout is None or size is None:
        return None
    n_records, duration, header_bytes = layout.n_records, layout.record_s, layout.header_bytes
    record_bytes = sum(layout.samples) * layout.width
    if n_records < 0 or record_bytes <= 0 or size >= header_bytes + n_records * record_bytes:
        return None
    held = max(0, size - header_bytes) // record_bytes
    return (f"{path.name} is truncated: its header says {n_records} data records of {duration:g} s "
            f"({n_records * duration / 3600:.2f} h) but the file holds {held} ({held * duration / 3600:.2f} h, "
            f"{size} of {header_bytes + n_records * record_bytes} bytes); copy or download it again (an "
            "interrupted transfer?)")


def edf_annotation_only(path: str | Path) -> bool:
    """Whether an EDF(+)/BDF(+) file holds no signal but annotations (a hypnogram, as Sleep-EDF's
    ``*-Hypnogram.edf``): every signal of its header is ``EDF Annotations`` / ``BDF Annotations``."""
    layout = read_layout(path)
    return layout is not None and all(label in ("EDF Annotations", "BDF Annotations") for label in layout.labels)


def edf_start_known(start: datetime | None) -> bool:
    """Whether an EDF header's start (:func:`edf_start`) is a real date: not None nor EDF's
    placeholder date 01.01.85 (edfio writes it for an unknown or unrepresentable date)."""
    return start is not None and start.replace(tzinfo=None).date() != EDF_UNKNOWN_DATE


def known_start(start: Any) -> datetime | None:
    """``start`` if it is a datetime other than EDF's placeholder start 01.01.85 00:00:00 (edfio's
    default: no clock time known), else None. Time zones are kept."""
    if not isinstance(start, datetime):
        return None
    return None if start.replace(tzinfo=None) == EDF_UNKNOWN_START else start


def clock_offset(scoring_start: datetime | None, scoring_name: str, recording_start: datetime | None,
                 recording_name: str, not_comparable: str | None = None) -> tuple[float, str | None]:
    """(seconds to add to a scoring's onsets to count them from the recording's start, a note or
    None) for a scoring starting at ``scoring_start`` and its recording at ``recording_start``.

    No shift and no note without a scoring start (text/CSV files). No shift, with a note saying
    why, when the recording's start is unknown, when ``not_comparable`` gives a reason, or for a
    naive start against an aware one (see the module docstring). Starts more than
    :data:`MAX_OFFSET_S` apart: when both are real dates the scoring is of another night and
    :class:`HypnogramError` says so; when either is EDF's placeholder date (01.01.85: unknown) no shift,
    with a note."""
    if scoring_start is None:
        return 0.0, None
    if not_comparable is None and recording_start is None:
        not_comparable = f"{recording_name or 'the recording'}'s start time is unknown"
    elif not_comparable is None and (scoring_start.tzinfo is None) != (recording_start.tzinfo is None):
        not_comparable = (f"{recording_name}'s start is {'UTC' if recording_start.tzinfo else 'a clock time'}, "
                          f"{scoring_name}'s {'UTC' if scoring_start.tzinfo else 'an EDF header clock time'}")
    if not_comparable:
        return 0.0, (f"{scoring_name} starts at {scoring_start} but the recording's start is not comparable "
                     f"({not_comparable}): not aligned, onsets count from the recording's first sample")
    offset = (scoring_start - recording_start).total_seconds()
    if abs(offset) <= MAX_OFFSET_S:
        return offset, None
    hyp, rec = scoring_start.replace(tzinfo=None), recording_start.replace(tzinfo=None)
    if edf_start_known(hyp) and edf_start_known(rec):
        raise HypnogramError(f"{scoring_name} starts at {hyp}, {recording_name} at {rec}: "
                             f"{abs(offset) / 86400:.1f} days apart; the scoring does not belong to this recording "
                             "(pass the hypnogram of the same night)")
    unknown = " and ".join(n for n, s in ((scoring_name, hyp), (recording_name, rec)) if not edf_start_known(s))
    return 0.0, (f"start times {hyp} and {rec} differ by more than a day, and {unknown} carries EDF's placeholder "
                 "date 01.01.85 (date unknown): not aligned")


def recording_clock(start: Any, path: str | Path | None) -> datetime | None:
    """A recording's start as the clock rule compares it (module docstring): the clock time of an
    EDF/BDF or WFDB header as a naive datetime (MNE labels an EDF header's time UTC without
    converting it: the label is dropped), any other format's start (MNE ``meas_date``: UTC) as
    an aware UTC datetime; None when unknown (or EDF's placeholder start)."""
    if not isinstance(start, datetime):
        return None
    header_clock = path is None or Path(path).suffix.lower() in (*EDF_SUFFIXES, ".hea")
    if header_clock:
        return known_start(start.replace(tzinfo=None))
    return known_start(start if start.tzinfo else start.replace(tzinfo=timezone.utc))


def align_to_recording(hypnogram, hypnogram_path: str | Path, recording_start: datetime | None,
                       recording_path: str | Path | None):
    """(``hypnogram`` read from ``hypnogram_path``, put on the recording's clock, a note or None):
    the preparation's alignment, the same rule as staging's (``Hypnogram.aligned_to`` with
    :func:`clock_offset`): the scoring's start is its EDF header's clock time (text/CSV files have
    none: no shift), compared with an EDF/BDF recording's clock time (``recording_start``, else
    read from ``recording_path``'s header). Another recording format's start may be UTC: not
    aligned, with a note. Returned as given when nothing moves. Raises :class:`HypnogramError`
    for a scoring of another night."""
    scoring = hypnogram.replace(start=known_start(edf_start(hypnogram_path)), source=Path(hypnogram_path).name)
    rec_name = "" if recording_path is None else Path(recording_path).name
    reason = None
    if recording_path is None or Path(recording_path).suffix.lower() not in EDF_SUFFIXES:
        reason = ("its file is unknown" if recording_path is None else f"{rec_name} is no EDF/BDF file") + \
            "; its start time may be UTC"
        start = None
    else:
        start = recording_clock(recording_start, recording_path) if isinstance(recording_start, datetime) \
            else known_start(edf_start(recording_path))
    aligned = scoring.aligned_to(start, rec_name, not_comparable=reason)
    return (aligned if aligned.offset_s != scoring.offset_s else hypnogram), aligned.note


def write_annotations_edf(path: str | Path, onsets_s, durations_s, descriptions: Sequence[str],
                          start: datetime | None = None) -> Path:
    """Write an annotations-only EDF+ file (no signals), atomically, with edfio.

    ``onsets_s`` / ``durations_s`` in seconds from ``start`` (the header's start date and time;
    None: edfio's defaults, 01.01.85 00:00:00). EDF holds dates 1985-2084 only: another year
    leaves the date unknown (the time is kept).
    """
    import edfio

    annotations = [edfio.EdfAnnotation(float(o), float(d), str(t))
                   for o, d, t in zip(onsets_s, durations_s, descriptions)]
    header = {}
    if start is not None:
        date = start.date() if 1985 <= start.year <= 2084 else None
        header = {"starttime": start.time(), "recording": edfio.Recording(startdate=date)}
    edf = edfio.Edf([], annotations=annotations, **header)
    return atomic_write(path, edf.write)


def write_hypnogram_edf(path: str | Path, hypnogram, start: datetime | None = None) -> Path:
    """Write a hypnogram (a ``Hypnogram``: anything whose ``runs()`` gives ``(start_s (r,), end_s
    (r,), stage (r,))``, equal contiguous epochs merged) as a Sleep-EDF style EDF+ hypnogram
    (``Sleep stage W/1/2/3/R/?``), one annotation per run, onsets in seconds from ``start``."""
    run_start, run_end, run_stage = hypnogram.runs()
    if len(run_start) and run_start[0] < 0:
        raise ValueError(f"write_hypnogram_edf({path}): the first epoch starts at {run_start[0]} s; EDF+ "
                         "onsets here must be >= 0 (seconds from the recording's start)")
    labels = [SLEEP_EDF_LABELS[int(s)] for s in run_stage]
    return write_annotations_edf(path, run_start, run_end - run_start, labels, start)
