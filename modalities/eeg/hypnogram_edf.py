"""EDF+ hypnograms: their header start time, their alignment to a recording, and writing them.

Reading an EDF+ hypnogram's stages is :func:`modalities.eeg.hypnogram.read_hypnogram`; this module
holds what depends on the EDF header: :func:`edf_start` (the clock time as written),
:func:`align_to_recording` (onsets moved to the recording's time base, used by the preparation
and by staging alike), and the writers (:func:`write_hypnogram_edf`, Sleep-EDF style, atomic).
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Sequence

from modalities.eeg.hypnogram import EDF_SUFFIXES, SLEEP_EDF_LABELS, Hypnogram, HypnogramError
from part.atomic import atomic_write

MAX_OFFSET_S = 86400.0  # hypnogram/recording starts further apart: not the same night (or a date unknown)
EDF_UNKNOWN_DATE = date(1985, 1, 1)  # EDF's placeholder date (01.01.85, edfio's default): no real date known


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


def edf_start_known(start: datetime | None) -> bool:
    """Whether an EDF header's start (:func:`edf_start`) is a real date: not None nor EDF's
    placeholder date 01.01.85 (edfio writes it for an unknown or unrepresentable date)."""
    return start is not None and start.date() != EDF_UNKNOWN_DATE


def align_to_recording(hypnogram: Hypnogram, hypnogram_path: str | Path, recording_start: datetime | None,
                       recording_path: str | Path | None) -> tuple[Hypnogram, str | None]:
    """``hypnogram`` (read from ``hypnogram_path``, onsets from that file's start) with its onsets
    moved to seconds from the recording's start, and a note (None when there is nothing to say).

    Only an EDF+/BDF+ hypnogram has a start time (a text/CSV one is returned as given, no note).
    It is compared only with the start of an EDF/BDF recording (``recording_start``, else read from
    ``recording_path``'s header): both headers hold a clock time without time zone (MNE labels it
    UTC without converting), while other formats' start (FIF ``meas_date``, ...) is true UTC, so
    mixing them would shift the labels by the site's UTC offset: then the hypnogram is not aligned
    and the note says so. Start times more than :data:`MAX_OFFSET_S` apart: when both are real
    dates the scoring is of another night (another subject) and :class:`HypnogramError` says so;
    when either is EDF's placeholder date (01.01.85: unknown) it is not aligned, with a note."""
    hyp_start = edf_start(hypnogram_path)
    if hyp_start is None:
        return hypnogram, None
    name = Path(hypnogram_path).name
    if recording_path is None or Path(recording_path).suffix.lower() not in EDF_SUFFIXES:
        what = "its file is unknown" if recording_path is None else f"{Path(recording_path).name} is no EDF/BDF file"
        return hypnogram, (f"{name} starts at {hyp_start} (EDF header clock time) but the recording's start is not "
                           f"comparable ({what}; its start time may be UTC): not aligned, onsets count from the "
                           "recording's first sample")
    if isinstance(recording_start, datetime):
        rec_start = recording_start.replace(tzinfo=None)
    else:
        rec_start = edf_start(recording_path)
    if rec_start is None:
        return hypnogram, None
    offset = (hyp_start - rec_start).total_seconds()
    if abs(offset) > MAX_OFFSET_S:
        if edf_start_known(hyp_start) and edf_start_known(rec_start):
            raise HypnogramError(
                f"{name} starts at {hyp_start}, {Path(recording_path).name} at {rec_start}: "
                f"{abs(offset) / 86400:.1f} days apart; the scoring does not belong to this recording (pass the "
                "hypnogram of the same night)")
        unknown = " and ".join(n for n, s in ((name, hyp_start), (Path(recording_path).name, rec_start))
                               if not edf_start_known(s))
        return hypnogram, (f"start times {hyp_start} and {rec_start} differ by more than a day, and {unknown} "
                           "carries EDF's placeholder date 01.01.85 (date unknown): not aligned")
    if not offset:
        return hypnogram, None
    return Hypnogram(hypnogram.onsets_s + offset, hypnogram.stages, hypnogram.epoch_s, dict(hypnogram.unknown),
                     hypnogram.source, dict(hypnogram.ignored)), None


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


def write_hypnogram_edf(path: str | Path, hypnogram: Hypnogram, start: datetime | None = None) -> Path:
    """Write ``hypnogram`` as a Sleep-EDF style EDF+ hypnogram (``Sleep stage W/1/2/3/R/?``), runs
    of equal contiguous epochs merged into one annotation lasting a multiple of ``epoch_s``."""
    if hypnogram.n_epochs and hypnogram.start_s < 0:
        raise ValueError(f"write_hypnogram_edf({path}): the first epoch starts at {hypnogram.start_s} s; EDF+ "
                         "onsets here must be >= 0 (seconds from the recording's start)")
    run_start, run_end, run_stage = hypnogram.runs()
    labels = [SLEEP_EDF_LABELS[int(s)] for s in run_stage]
    return write_annotations_edf(path, run_start, run_end - run_start, labels, start)
