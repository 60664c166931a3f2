"""Read the EEG channels of any polysomnography file MNE reads, or of a PhysioNet WFDB record.

:func:`read_recording` turns ``path`` into an :class:`~part.modalities.eeg.recordings.signal.EegRecording` of the
requested ``channels`` (in that order, named as requested), ready for the shared signal pipeline
(``recordings/signal.py``). It is used by the preparation (``data_prep/prepare.py``) and by
the staging command alike.

Formats (by suffix, :data:`READERS`): ``.hea`` -> the fast WFDB reader
(``recordings/wfdb_reader.py``); EDF/EDF+ (``.edf``), BDF (``.bdf``), GDF (``.gdf``), FIF
(``.fif``, ``.fif.gz``), BrainVision (``.vhdr``) and EEGLAB (``.set``) -> ``mne.io.read_raw(path,
preload=False)``. Only the requested channels are loaded: EDF/BDF/GDF are opened with
``include=`` (the other signals are never decoded), the other formats are ``pick``-ed before
``get_data``. MNE gives volts; the result holds float32 micro-volts (gain 1, baseline 0).

Channel names are matched as ``channels.py`` describes (rename, loose names, bipolar derivations).

Mixed sampling rates: MNE's EDF/BDF/GDF readers report the highest rate among the channels
opened and upsample the others to it with FFT resampling (``mne.filter.resample``, band-limited)
over the whole record. Opening only the requested channels makes that rate the highest
*requested* rate (e.g. 100 Hz EEG in a file with 512 Hz EMG stays 100 Hz); a requested channel at
a lower rate is upsampled band-limited, which the 0.1-30 Hz pipeline turns into the same windows as
at its own rate (within the filter's pass-band ripple; tested). Every requested channel must be
sampled above :data:`MIN_FS` = 60 Hz (the band's 30 Hz edge needs a Nyquist frequency above 30 Hz).

EDF+/BDF+ files (``recordings/edf_records.py``): an EDF+D (discontinuous) file's gaps become
``EegRecording.segments`` (MNE reads its records as if contiguous), so are ``BAD_ACQ_SKIP``
annotations of other readers (:func:`skip_segments`); a subsecond start (the first record's
time-keeping onset) is kept in ``RecordingRead.start``. Channel labels written in UTF-8 are
read as UTF-8 (MNE decodes EDF labels as Latin-1).

Stage annotations stored in the recording itself (EDF+ annotations, FIF/BrainVision
annotations): :func:`stage_annotations` or :func:`read_recording_with_annotations`, both through
``hypnogram_io.scoring_from_raw``. Errors are :class:`RecordError`, one line naming
the file, what was expected and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from part.modalities.eeg.recordings.channels import ChannelSource, needed_channels, parse_channels, resolve_channels
from part.modalities.eeg.recordings.constants import EPOCH_S, MIN_FS
from part.modalities.eeg.recordings.edf_records import read_layout, record_segments, utf8_label
from part.modalities.eeg.recordings.hypnogram_edf import edf_size_problem
from part.modalities.eeg.recordings.signal import EegRecording, RecordError, Segment

# file suffix -> the MNE reader mne.io.read_raw dispatches to (for messages and discovery)
READERS: dict[str, str] = {
    ".edf": "mne.io.read_raw_edf",
    ".bdf": "mne.io.read_raw_bdf",
    ".gdf": "mne.io.read_raw_gdf",
    ".fif": "mne.io.read_raw_fif",
    ".fif.gz": "mne.io.read_raw_fif",
    ".vhdr": "mne.io.read_raw_brainvision",
    ".set": "mne.io.read_raw_eeglab",
}
EDF_FAMILY = (".edf", ".bdf", ".gdf")  # readers that take include= and may mix sampling rates


def suffix_of(path: str | Path) -> str:
    """The format suffix of ``path`` in lower case (``.fif.gz`` counts as one suffix)."""
    name = Path(path).name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else Path(name).suffix


def reader_name(path: str | Path) -> str:
    """The reader used for ``path``: ``wfdb_reader.read_eeg`` or the MNE reader's name."""
    suffix = suffix_of(path)
    if suffix == ".hea":
        return "part.modalities.eeg.recordings.wfdb_reader.read_eeg"
    return READERS.get(suffix, "mne.io.read_raw")


def recording_name(path: str | Path) -> str:
    """A recording's name: its file name less the format suffix (``night.fif.gz`` -> ``night``):
    record names of the preparation, output file stems of staging, ``Hypnogram.record``."""
    name, suffix = Path(path).name, suffix_of(path)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else name


def open_raw(path: str | Path, include: Sequence[str] | None = None):
    """``mne.io.read_raw(path, preload=False)`` (header only), ``include=`` for EDF/BDF/GDF.

    EDF/BDF/GDF channel names are UTF-8 where their bytes are (``edf_records.utf8_label``; MNE
    decodes them as Latin-1), in the Raw and in ``include``. Raises :class:`RecordError` naming
    the file and the reader when MNE cannot read it, or when an EDF/BDF file is shorter than its
    header says (``hypnogram_edf.edf_size_problem``).
    """
    import mne

    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in READERS:
        raise RecordError(
            f"{recording_name(path)}: {path} has suffix {suffix!r}, which no reader here takes; expected one of "
            f"{sorted(READERS)} or a WFDB .hea header: convert the file (e.g. to EDF) first"
        )
    truncated = edf_size_problem(path)
    if truncated:  # MNE would read what is there with a warning only
        raise RecordError(f"{recording_name(path)}: {truncated}")
    kwargs = {}
    if include is not None and suffix in EDF_FAMILY:  # MNE's include= takes its own (Latin-1) names
        layout = read_layout(path)
        to_mne = {utf8_label(n): n for n in (layout.labels if layout else ())}
        kwargs = {"include": [to_mne.get(n, n) for n in include]}
    try:
        raw = mne.io.read_raw(path, preload=False, verbose="error", **kwargs)
    except Exception as exc:  # MNE raises many types on bad files
        raise RecordError(
            f"{recording_name(path)}: {READERS[suffix]} cannot read {path}: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}; expected a valid {suffix} file: check or re-export it"
        ) from None
    if suffix in EDF_FAMILY:
        utf8 = {n: utf8_label(n) for n in raw.ch_names}
        renamed = {n: u for n, u in utf8.items() if u != n and u not in raw.ch_names}
        if renamed and len(set(utf8.values())) == len(utf8):
            raw.rename_channels(renamed, verbose="error")
    return raw


def recording_channels(path: str | Path) -> list[str]:
    """Names of the channels ``path`` holds (its header only), in file order."""
    path = Path(path)
    if suffix_of(path) == ".hea":
        from part.modalities.eeg.recordings.wfdb_reader import read_header

        return list(read_header(path).sig_name)
    return list(open_raw(path).ch_names)


def _native_rates(raw, names: Sequence[str]) -> dict[str, float]:
    """Sampling rate of each channel ``names`` (original names) as stored in the file, Hz.

    EDF/BDF/GDF store a rate per signal (``_raw_extras``: samples per data record / record
    length); other formats have one rate (``raw.info["sfreq"]``)."""
    fs = float(raw.info["sfreq"])
    try:
        extras = raw._raw_extras[0]
        per_record = np.asarray(extras["n_samps"])[np.asarray(extras["sel"])]
        length = np.asarray(extras["record_length"], dtype=np.float64)
        rates = dict(zip(extras["ch_names"], per_record * length[1] / length[0]))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return {n: fs for n in names}
    return {n: float(rates.get(n, fs)) for n in names}


def _check_rates(path: Path, rates: Mapping[str, float]) -> None:
    low = {n: r for n, r in rates.items() if r <= MIN_FS}
    if low:
        raise RecordError(
            f"{recording_name(path)}: {path.name} samples channels {low} (Hz); expected more than {MIN_FS:g} Hz for "
            f"the 0.1-30 Hz band-pass (its 30 Hz edge needs a Nyquist frequency above 30 Hz): choose EEG channels "
            f"sampled faster with --channels"
        )


def check_finite(record: str, rows: Mapping[str, np.ndarray], where: str = "") -> None:
    """RecordError naming ``record`` (and ``where``, e.g. the file), the channel and how many of
    its samples are NaN/Inf when a row of ``rows`` ({channel: samples}) is not all finite. One
    sum per row (a NaN or Inf anywhere makes it non-finite); samples are counted only then."""
    suspect = [n for n, row in rows.items() if not np.isfinite(np.sum(row, dtype=np.float64))]
    counts = {n: k for n in suspect if (k := int(np.count_nonzero(~np.isfinite(rows[n])))) > 0}
    if counts:
        name, k = next(iter(counts.items()))
        others = f" (and channels {list(counts)[1:]})" if len(counts) > 1 else ""
        raise RecordError(
            f"{record}: {where + ' ' if where else ''}channel {name!r} holds {k} non-finite sample(s) (NaN or Inf) "
            f"of {len(rows[name])}{others}; expected finite samples throughout (one NaN spreads over the whole "
            f"channel in the band-pass): fill or cut out the gap, or choose another channel"
        )


def combine(record: str, fs: float, sources: Sequence[ChannelSource], rows: Mapping[str, np.ndarray],
            scale: float = 1.0, where: str = "") -> EegRecording:
    """EegRecording (float32 uV, gain 1, baseline 0), one row per source named ``source.name``,
    from per-file-channel rows ``rows[name] * scale`` (``scale`` = 1e6 for volts; a derivation is
    computed in float64), after :func:`check_finite` of the rows the sources read."""
    check_finite(record, {n: rows[n] for n in needed_channels(sources)}, where)
    n = len(next(iter(rows.values())))
    out = np.empty((len(sources), n), dtype=np.float32)
    for i, s in enumerate(sources):
        row = rows[s.first] if s.second is None else np.subtract(rows[s.first], rows[s.second], dtype=np.float64)
        out[i] = row * scale if scale != 1.0 else row
    ones = np.ones(len(sources))
    return EegRecording(record, tuple(s.name for s in sources), fs, out, ones, np.zeros(len(sources)), ones)


def _read_wfdb(path: Path, channels: Sequence[str], rename: Mapping[str, str] | None) -> EegRecording:
    """The WFDB fast path; renamed/loose names map back to the header's names, derivations in uV."""
    from part.modalities.eeg.recordings.wfdb_reader import read_eeg, read_header

    present = list(read_header(path).sig_name)
    try:
        sources = resolve_channels(present, channels, rename)
    except RecordError as exc:
        raise RecordError(f"{path.stem}: header {path.name}: {exc}") from None
    back = {(rename or {}).get(p, p): p for p in present}
    needed = needed_channels(sources)
    rec = read_eeg(path, [back[n] for n in needed])
    if all(s.second is None for s in sources) and [s.first for s in sources] == needed:
        rec.channels = tuple(channels)  # plain selection: keep the integer samples
        return rec
    uv = {n: rec.channel_uv(i, np.float64) for i, n in enumerate(needed)}
    return combine(rec.record, rec.fs, sources, uv)


def _read_mne(raw, path: Path, channels: Sequence[str], rename: Mapping[str, str] | None) -> EegRecording:
    """Load only the needed channels of ``raw`` (header-only Raw of ``path``) as float32 uV."""
    record = recording_name(path)
    try:
        sources = resolve_channels(raw.ch_names, channels, rename)
    except RecordError as exc:
        raise RecordError(f"{record}: {path.name}: {exc}") from None
    back = {(rename or {}).get(p, p): p for p in raw.ch_names}
    needed = [back[n] for n in needed_channels(sources)]
    _check_rates(path, _native_rates(raw, needed))
    if suffix_of(path) in EDF_FAMILY:
        raw = open_raw(path, include=needed)  # rate = highest requested rate, others never decoded
    raw = raw.pick(needed)
    from mne.io.constants import FIFF

    units = {ch["ch_name"]: ch["unit"] for ch in raw.info["chs"]}
    not_volts = {n: str(units[n]) for n in needed if units[n] != FIFF.FIFF_UNIT_V}
    if not_volts:
        raise RecordError(f"{record}: {path.name} channels {not_volts} are not voltages (MNE unit); expected "
                          f"EEG channels in V/mV/uV: choose others with --channels")
    try:
        data = raw.get_data(picks=needed)  # (C, n) float64 volts
    except Exception as exc:
        raise RecordError(f"{record}: {reader_name(path)} cannot read the samples of {path}: "
                          f"{type(exc).__name__}: {exc}; the file may be truncated: check or re-export it") from None
    volts = {(rename or {}).get(n, n): row for n, row in zip(needed, data)}
    recording = combine(record, float(raw.info["sfreq"]), sources, volts, 1e6, path.name)
    _, segments = record_segments(path, recording.fs)
    segments = segments or skip_segments(raw, recording.n_samples)
    if segments and segments[-1].stop != recording.n_samples:
        raise RecordError(f"{record}: {path.name} is EDF+D (discontinuous) but its data records give "
                          f"{segments[-1].stop} samples at {recording.fs:g} Hz, not the {recording.n_samples} "
                          "read; expected records of one length: re-export the file as EDF+C")
    recording.segments = segments
    return recording


def skip_segments(raw, n_samples: int) -> tuple[Segment, ...]:
    """The segments between the gaps an MNE reader reports as ``BAD_ACQ_SKIP`` annotations (data
    there filled in; FIF/BrainVision/EEGLAB files with acquisition skips), () without any. Shape
    of the result: see :class:`~part.modalities.eeg.recordings.signal.Segment`; a segment's
    onset is its first sample / fs (the filled samples keep the real clock)."""
    notes = raw.annotations
    skips = [i for i, d in enumerate(notes.description) if str(d).upper().startswith("BAD_ACQ_SKIP")]
    if not skips:
        return ()
    fs = float(raw.info["sfreq"])
    onsets = notes.onset[skips] - (raw.first_time if notes.orig_time is not None else 0.0)
    starts = np.clip(np.rint(onsets * fs), 0, n_samples).astype(np.int64)
    stops = np.clip(np.rint((onsets + notes.duration[skips]) * fs), 0, n_samples).astype(np.int64)
    covered = np.zeros(n_samples + 2, np.int64)  # +1 at a skip's start, -1 at its stop
    np.add.at(covered, starts + 1, 1)
    np.add.at(covered, stops + 1, -1)
    kept = np.concatenate([[False], np.cumsum(covered)[1:-1] == 0, [False]])
    edges = np.flatnonzero(np.diff(kept.astype(np.int8)))
    return tuple(Segment(float(a / fs), int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]))


def read_recording(path: str | Path, channels: Sequence[str], rename: Mapping[str, str] | None = None) -> EegRecording:
    """The requested ``channels`` of the recording at ``path`` as an EegRecording (C, n) at one
    rate ``fs`` (Hz), named as requested, in micro-volts (``channel_uv``/``uv``).

    ``rename`` maps the file's names to ours before matching (module docstring). Raises
    :class:`RecordError` for an unreadable file, an absent channel (listing the channels
    present), a channel sampled at 60 Hz or less, or non-finite samples.
    """
    return read_recording_full(path, channels, rename, annotations=False).recording


def read_recording_with_annotations(
    path: str | Path, channels: Sequence[str], rename: Mapping[str, str] | None = None, annotations: bool = True
):
    """``(read_recording(...), stage annotations of the file or None)`` opening the file once.

    The annotations are a scoring (``hypnogram_io.scoring_from_raw``: the keyword arguments of a
    ``Hypnogram``), or None when the file holds no stage annotation; always None for WFDB records,
    whose stages live in a separate ``.arousal`` file. ``annotations=False`` skips them (None).
    """
    read = read_recording_full(path, channels, rename, annotations)
    return read.recording, read.scoring


@dataclass
class RecordingRead:
    """``recording``; ``scoring``: its own stage annotations (``hypnogram_io.scoring_from_raw``)
    or None; ``start``: the recording's start (MNE ``meas_date``, timezone-aware UTC, plus the
    subsecond ``start_offset_s``) or None when the file has none; ``start_offset_s``: an EDF+/BDF+
    file's first data record's onset after the header's whole-second start time (else 0)."""

    recording: EegRecording
    scoring: dict | None
    start: datetime | None
    start_offset_s: float = 0.0


def read_recording_full(path: str | Path, channels: Sequence[str], rename: Mapping[str, str] | None = None,
                        annotations: bool = True, raw=None, epoch_s: float = EPOCH_S) -> RecordingRead:
    """:func:`read_recording_with_annotations` plus the recording's start time. ``raw``: the
    header-only Raw of ``path`` when the caller already opened it (:func:`open_raw`; not reopened);
    ``epoch_s``: the scoring epoch of the stage annotations."""
    path = Path(path)
    channels = parse_channels(channels)
    if suffix_of(path) == ".hea":
        return RecordingRead(_read_wfdb(path, channels, rename), None, None)
    raw = open_raw(path) if raw is None else raw
    scoring = _scoring(raw, epoch_s) if annotations else None
    recording = _read_mne(raw, path, channels, rename)
    offset, _ = record_segments(path, recording.fs) if suffix_of(path) in EDF_FAMILY else (0.0, ())
    start = raw.info.get("meas_date")
    start = start + timedelta(seconds=offset) if isinstance(start, datetime) and offset else start
    return RecordingRead(recording, scoring, start, offset)


def _scoring(raw, epoch_s: float = EPOCH_S) -> dict | None:
    """``scoring_from_raw(raw, epoch_s)``: a scoring or None; HypnogramError (a DataError naming
    the file) for stage annotations that are not ``epoch_s`` epochs or overlap."""
    from part.modalities.eeg.recordings.hypnogram_io import scoring_from_raw

    return scoring_from_raw(raw, epoch_s)


def stage_annotations(path: str | Path, epoch_s: float = EPOCH_S) -> dict | None:
    """The stage annotations (``epoch_s`` epochs) stored in the recording ``path`` itself as a
    scoring (``Hypnogram(**stage_annotations(path))``), or None (none there, or a WFDB record)."""
    path = Path(path)
    if suffix_of(path) == ".hea":
        return None
    return _scoring(open_raw(path), epoch_s)
