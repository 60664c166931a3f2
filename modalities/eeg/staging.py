"""Sleep staging of new recordings with a finetuned EEG run: the Python API behind
``python -m part.stage`` (its command line: ``modalities/eeg/staging_cli.py``)::

    from part import Stager
    stager = Stager.from_run("runs/eeg_sleep_part")          # checkpoints/best.pt and its card
    result = stager.predict_file("night.edf", channels={"F3-M2": "EEG Fpz-Cz", "C3-M2": "EEG Pz-Oz"})
    result.stages, result.proba, result.onsets                # (n,) int, (n, 5), (n,) seconds
    result.to_csv("night.hypnogram.csv"); result.plot("night.hypnogram.png"); result.statistics()

Everything the model needs comes from the finetuned checkpoint's card (``part/inference.py``):
the channel names and order, the output rate, the window length, the band-pass, the
normalisation and the storage dtype of the training windows. Preprocessing is exactly the
training preparation's (``modalities/eeg/windows.py``: band-pass fused with the resampling on
the continuous recording, 30-s windows, each window and channel z-scored, rounded to the
training dtype). Windows start at the recording's first sample, or on the epoch grid of a
hypnogram when one is given (as in the preparation: the onset of its first epoch, scored or not,
modulo 30 s). An EDF+/BDF+ hypnogram file is first aligned with the recording by the start times of
the two headers, as in the preparation (``hypnogram_edf.align_to_recording``; the shift and any reason
not to align are in the result and its agreement.json).

Channels: each model channel is read from the recording channel ``channels`` maps it to ({model
name: recording name}; the CLI's ``--channels "F3-M2=EEG Fpz-Cz,..."``), else from the one of the
same name, else from a file name the training preparation renamed to it (``--rename`` of
``data_prep``, recorded in the card). Names match exactly, else up to case, an ``EEG `` prefix and a
``-REF`` suffix; a bipolar ``A-B`` absent from the recording is derived as A - B. One recording
channel may serve several model channels (less accurate than the montage the model learnt).

Units: :meth:`Stager.predict_array` takes volts ``(C, n)``, like ``mne.io.RawArray`` (MNE's
convention), and refuses data whose typical channel std exceeds 10 mV (micro-volts passed by
mistake). Files are read in their own units (WFDB gain/units, MNE's volts). Every sample of the
channels read must be finite (a NaN would spread over the whole channel in the band-pass): else a
one-line RecordError names the recording, the channel and the number of NaN/Inf samples.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from modalities.eeg import mne_reader
from modalities.eeg.hypnogram import Hypnogram
from modalities.eeg.windows import window_grid
from modalities.eeg.hypnogram_edf import align_to_recording
from modalities.eeg.signal import EegRecording, FilterSpec, RecordError
from modalities.eeg.staging_result import StagingResult, codes_to_classes, load_scoring
from modalities.eeg.windows import (RecordingWindows, WindowConfig, output_length, recording_windows,
                                    unlabelled_grid)
from part.errors import DataError
from part.inference import FinetunedModel, load_finetuned

MAX_VOLTS_STD = 1e-2  # V: a typical EEG channel std is 1e-5 V; 10 mV means the data are not in volts
CHANNELS_SYNTAX = '--channels "F3-M2=EEG Fpz-Cz,..."'
UNKNOWN_START = datetime(1985, 1, 1)  # EDF's placeholder start (edfio's default): no clock time known


class ChannelError(RecordError):
    """The recording lacks channels the model needs; the message says how to map them."""


def parse_channel_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz"`` (or a mapping) -> {model channel: recording channel}."""
    return mne_reader.parse_pairs(text, "--channels", "MODEL=RECORDING", "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz",
                                  " (the model's name, then the recording's)")


@dataclass(frozen=True)
class _Selection:
    """``targets``: the distinct recording channels read; ``rows``: for each model channel, its
    row in ``targets``; ``sources``: mne_reader.ChannelSource of each target (derivations)."""

    targets: tuple[str, ...]
    rows: tuple[int, ...]
    sources: tuple


class Stager:
    """Stages recordings with a finetuned EEG model (see the module docstring).

    Attributes: ``channels`` (the model's channel names, in order), ``class_names``,
    ``config`` (a ``WindowConfig``: target_fs, window_s, dtype, filter, eps, flat_std_uv),
    ``card`` (the checkpoint's description), ``device``.
    """

    def __init__(self, finetuned: FinetunedModel):
        self.finetuned, self.card, self.device = finetuned, finetuned.card, finetuned.device
        where = f"checkpoint '{finetuned.checkpoint}'"
        if self.card["modality"]["name"] != "eeg":
            raise DataError(f"{where} holds a {self.card['modality']['name']!r} model; the sleep stager "
                            f"takes runs of the 'eeg' modality")
        self.channels, self.config = _window_config(self.card["data"], where)
        self.class_names = list(self.card["class_names"])
        self.rename = dict(self.card["data"].get("rename") or {})  # {file name: model channel}

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str | Path = "best.pt",
                 device: str | torch.device = "cpu") -> "Stager":
        """The stager of ``RUN_DIR/checkpoints/<checkpoint>`` on ``device`` (cpu, cuda, auto)."""
        return cls(load_finetuned(run_dir, checkpoint, device))

    def __repr__(self) -> str:
        return (f"Stager(run={str(self.finetuned.run_dir)!r}, channels={list(self.channels)}, "
                f"classes={self.class_names}, {self.config.window_s:g}-s windows at "
                f"{self.config.target_fs:g} Hz, device={self.device})")

    # ------------------------------------------------------------------ inputs -> recording
    def predict_file(self, path: str | Path, channels: str | Mapping[str, str] | None = None,
                     hypnogram: Any = None, batch_size: int = 256) -> StagingResult:
        """Stage a recording file: any MNE-readable PSG (EDF/BDF/GDF/FIF/BrainVision/EEGLAB) or a
        WFDB ``.hea`` record. ``hypnogram``: a scoring (path or Hypnogram) to align the windows
        to and compare with. The file is opened twice at most: its header (channel names, start
        time), then the samples of the channels needed."""
        path = Path(path)
        if not path.is_file():
            raise RecordError(f"{path}: no such recording file; expected an EDF/BDF/GDF/FIF/BrainVision/"
                              f"EEGLAB file or a WFDB .hea header")
        if mne_reader.suffix_of(path) == ".hea":
            from modalities.eeg.wfdb_reader import read_header
            header, raw = read_header(path), None
            present, start = list(header.sig_name), _wfdb_start(header)
        else:
            raw = mne_reader.open_raw(path)
            present, start = list(raw.ch_names), raw.info.get("meas_date")
        selection = self._select(present, channels, str(path))
        recording = mne_reader.read_recording_full(path, selection.targets, annotations=False, raw=raw).recording
        return self.predict_recording(_expand(recording, selection, self.channels), hypnogram, start, str(path),
                                      batch_size)

    def predict(self, raw, channels: str | Mapping[str, str] | None = None, hypnogram: Any = None,
                batch_size: int = 256) -> StagingResult:
        """Stage an ``mne.io.BaseRaw`` (only the channels needed are loaded)."""
        name = Path(raw.filenames[0]).name if getattr(raw, "filenames", None) and raw.filenames[0] else "raw"
        selection = self._select(raw.ch_names, channels, name)
        needed = mne_reader.needed_channels(selection.sources)
        volts = raw.get_data(picks=needed)
        recording = self._from_volts(name, float(raw.info["sfreq"]), selection, dict(zip(needed, volts)))
        return self.predict_recording(_expand(recording, selection, self.channels), hypnogram,
                                      raw.info.get("meas_date"), name, batch_size)

    def predict_array(self, data: Any, sfreq: float, ch_names: Sequence[str],
                      channels: str | Mapping[str, str] | None = None, hypnogram: Any = None,
                      start: datetime | None = None, name: str = "array", batch_size: int = 256) -> StagingResult:
        """Stage ``data`` (C, n) in VOLTS (as ``mne.io.RawArray``) sampled at ``sfreq`` Hz, rows
        named ``ch_names``; ``start``: the recording's start (clock time on the plot)."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] != len(ch_names):
            raise DataError(f"{name}: data of shape {data.shape} for {len(ch_names)} channel names; expected "
                            f"(channels, samples) with one name per row")
        selection = self._select(list(ch_names), channels, name)
        rows = {n: data[list(ch_names).index(n)] for n in mne_reader.needed_channels(selection.sources)}
        recording = self._from_volts(name, float(sfreq), selection, rows)
        return self.predict_recording(_expand(recording, selection, self.channels), hypnogram,
                                      start, name, batch_size)

    @staticmethod
    def _from_volts(name: str, fs: float, selection: "_Selection", volts: Mapping[str, np.ndarray]) -> EegRecording:
        """The selection's recording channels in float32 uV from rows in volts by recording channel
        name (``mne_reader.combine``: RecordError on a NaN/Inf sample), refused when not in volts."""
        recording = mne_reader.combine(name, fs, selection.sources, volts, 1e6)
        _check_volts(recording.digital, name)
        return recording

    # ------------------------------------------------------------------ the one staging path
    def predict_recording(self, recording: EegRecording, hypnogram: Any = None, start: datetime | None = None,
                          source: str | None = None, batch_size: int = 256) -> StagingResult:
        """Stage an EegRecording holding the model's channels in order: filter, resample, window
        and normalise as in training, then classify every window. ``start``: the recording's start
        (datetime; the plot's clock time, and the hypnogram file's alignment); ``source``: its file
        (or name)."""
        source = source or recording.record
        cfg = self.config
        scoring, offset, note = _aligned_scoring(hypnogram, start, source)
        windows = self.windows(recording, scoring, source)
        proba = self.classify(windows.windows, batch_size)
        onsets = windows.first_start_s + np.arange(windows.n_windows) * cfg.window_s
        reference = None if scoring is None else codes_to_classes(windows.labels, self.class_names)
        return StagingResult(recording.record, proba.argmax(1).astype(np.int64), proba, onsets,
                             self.class_names, cfg.window_s, _naive(start), reference, source,
                             None if scoring is None else scoring.source, offset, note)

    def windows(self, recording: EegRecording, hypnogram: Any = None, source: str | None = None,
                start: datetime | None = None) -> RecordingWindows:
        """The model's input windows of a recording, prepared exactly as the training data were
        (``windows.recording_windows`` with the card's settings): (n, C, L) in the training dtype,
        on the grid of ``hypnogram``'s epochs when given (a hypnogram file aligned with the
        recording ``source`` starting at ``start``, as in :meth:`predict_recording`), else from the
        first sample; ``labels`` are the hypnogram's stage codes (-1 unscored)."""
        cfg, source = self.config, source or recording.record
        if recording.fs <= 2 * cfg.filter.h_freq:
            raise RecordError(f"{source}: sampled at {recording.fs:g} Hz; the model's preparation band-passes "
                              f"to {cfg.filter.h_freq:g} Hz and needs more than {2 * cfg.filter.h_freq:g} Hz")
        if output_length(recording, cfg) < cfg.window_len:
            raise RecordError(f"{source}: {recording.n_samples / recording.fs:.1f} s long, shorter than one "
                              f"{cfg.window_s:g}-s window; expected a recording of at least {cfg.window_s:g} s")
        scoring = _aligned_scoring(hypnogram, start, source)[0]
        grid = (unlabelled_grid(recording, cfg) if scoring is None else
                window_grid(scoring, recording.n_samples / recording.fs, cfg.target_fs, cfg.window_s))
        return recording_windows(recording, grid, cfg)

    @torch.no_grad()
    def classify(self, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (n, classes) float64 (softmax of the logits) of normalised windows
        (n, C, L) in any float dtype, ``batch_size`` windows per forward pass."""
        if batch_size < 1:
            raise DataError(f"--batch-size {batch_size}: expected a positive number of windows per batch")
        model, out = self.finetuned.model, []
        for i in range(0, len(windows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch_size])).to(self.device, torch.float32)
            out.append(model(x).double().softmax(-1).cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------ channels
    def _default_name(self, channel: str, present: Sequence[str]) -> str:
        """The recording channel read for a model channel without --channels entry: its own
        name, else a file name the training preparation renamed to it (the card's ``rename``)."""
        try:
            if _resolve(present, channel) is not None:
                return channel
        except RecordError:  # matches several channels: _select reports it
            return channel
        for file_name in (f for f, ours in self.rename.items() if ours == channel):
            try:
                if _resolve(present, file_name) is not None:
                    return file_name
            except RecordError:
                continue
        return channel

    def check_channel_map(self, channels: str | Mapping[str, str] | None, where: str | None = None) -> dict[str, str]:
        """``channels`` parsed (:func:`parse_channel_map`) and checked on the model's side: a
        ChannelError naming the model's channels when it maps a channel the model does not have
        (the same mistake for every recording; the CLI checks it once, before staging any)."""
        mapping = parse_channel_map(channels)
        unknown = [m for m in mapping if m not in self.channels]
        if unknown:
            flipped = [m for m in unknown if mapping[m] in self.channels]
            hint = (f" ({', '.join(f'{m}={mapping[m]}' for m in flipped)} looks reversed: the model's channel comes "
                    "first)") if flipped else ""
            raise ChannelError(f"{where + ': ' if where else ''}--channels maps {unknown}, which the model does not "
                               f"have{hint}; the model's channels are {list(self.channels)}: write MODEL=RECORDING "
                               f"with a model channel first, e.g. --channels \"{self.channels[0]}=<recording "
                               f"channel>\"")
        return mapping

    def _present(self, name: str, present: Sequence[str]) -> bool:
        """Whether ``name`` is found in ``present`` (exactly, loosely or derived) as one channel."""
        try:
            return _resolve(present, name) is not None
        except RecordError:  # matches several channels
            return False

    def _select(self, present: Sequence[str], channels: Any, where: str) -> _Selection:
        """Which recording channels give each model channel; ChannelError when some are absent."""
        mapping = self.check_channel_map(channels, where)
        if not present:
            raise ChannelError(f"{where} holds no signals (an annotations-only EDF, e.g. a hypnogram? pass it with "
                               "--hypnogram)")
        wanted = [mapping.get(m) or self._default_name(m, present) for m in self.channels]
        targets = tuple(dict.fromkeys(wanted))
        found, missing = [], []
        for t in targets:
            try:
                source = _resolve(present, t)
            except RecordError as exc:  # a name matching several channels
                reason = str(exc).split("; pick one")[0]
                raise ChannelError(f"{where}: {reason}; name the one to use with {CHANNELS_SYNTAX} "
                                   f"(MODEL=RECORDING)") from None
            (missing if source is None else found).append(t if source is None else source)
        if missing:
            raise ChannelError(f"{where}: {self._missing_help(present, mapping, wanted, missing, found)}")
        return _Selection(targets, tuple(targets.index(w) for w in wanted), tuple(found))

    def _missing_help(self, present: Sequence[str], mapping: Mapping[str, str], wanted: Sequence[str],
                      missing: Sequence[str], found: Sequence) -> str:
        """What is missing and how to fix it: a suggestion mapping only the model channels that are
        absent under their own (or the card's renamed) names, or "omit --channels" when every model
        channel is present under its own name and only a --channels entry names an absent channel."""
        absent = [m for m, w in zip(self.channels, wanted) if w in missing]
        own = {m: self._present(self._default_name(m, present), present) for m in self.channels}
        wrong = [m for m in absent if m in mapping and own[m]]  # mapped away from a channel that is present
        if all(own.values()):
            names = ", ".join(repr(mapping[m]) for m in wrong)
            return (f"{names} {'is' if len(wrong) == 1 else 'are'} not in the recording (channels: {list(present)}); "
                    "the model's channels are all present under their own names: omit --channels")
        need = [m for m in absent if not own[m]]
        used = mne_reader.needed_channels([*found, *(_resolve(present, self._default_name(m, present))
                                                     for m in self.channels if own[m])])
        text = (f"the recording has no channel {list(missing)} (nor channels to derive them from); "
                f"{_channel_help(self.channels, present, need, used)}")
        if wrong:
            text += (f"; {', '.join(repr(m) for m in wrong)} {'is' if len(wrong) == 1 else 'are'} present under "
                     f"{'its' if len(wrong) == 1 else 'their'} own name: drop "
                     f"{', '.join(f'{m}={mapping[m]}' for m in wrong)} from --channels")
        return text


def _resolve(present: Sequence[str], name: str):
    """mne_reader's ChannelSource of ``name`` among ``present`` (exact, loose, derived) or None;
    RecordError when the name matches several channels."""
    try:
        return mne_reader.resolve_channels(list(present), [name])[0]
    except RecordError as exc:
        if "matches several" in str(exc):
            raise
        return None


def _channel_help(model: Sequence[str], present: Sequence[str], need: Sequence[str], used: Sequence[str]) -> str:
    """The channels expected and present, and a --channels suggestion for the model channels
    ``need`` (those absent), paired with recording channels not ``used`` by the others."""
    spare = [p for p in present if p not in used] or list(present)
    pairs = ",".join(f"{m}={spare[i % len(spare)]}" for i, m in enumerate(need[:2]))
    return (f"the model expects the channels {list(model)} (in this order) and the recording has "
            f"{list(present)}: map each missing model channel to a recording channel with --channels "
            f"\"{pairs}{',...' if len(need) > 2 else ''}\" (syntax {CHANNELS_SYNTAX}, MODEL=RECORDING; "
            f"Python: Stager.predict_file(path, channels={{'{need[0]}': '...'}}))")


def _expand(recording: EegRecording, selection: _Selection, channels: Sequence[str]) -> EegRecording:
    """The recording with one row per model channel (a target may serve several), named as the model's."""
    rows = list(selection.rows)
    if rows == list(range(len(selection.targets))):
        return EegRecording(recording.record, tuple(channels), recording.fs, recording.digital,
                            recording.gain, recording.baseline, recording.uv_per_unit)
    return EegRecording(recording.record, tuple(channels), recording.fs, recording.digital[rows],
                        np.asarray(recording.gain)[rows], np.asarray(recording.baseline)[rows],
                        np.asarray(recording.uv_per_unit)[rows])


def _check_volts(uv: np.ndarray, name: str) -> None:
    """Refuse data that were evidently not in volts: ``uv`` (C, n) finite micro-volts converted
    from them whose typical channel std exceeds 10 mV."""
    step = max(1, uv.shape[1] // 100_000)  # a strided sample of the signal is enough
    typical = float(np.median(np.std(uv[:, ::step], axis=1, dtype=np.float64))) * 1e-6 if uv.size else 0.0
    if typical > MAX_VOLTS_STD:
        raise DataError(f"{name}: the channels' typical std is {typical:.3g}, far above EEG in volts "
                        f"(~1e-5 V): predict_array takes volts like mne.io.RawArray; pass data * 1e-6 for "
                        f"micro-volts")


def _window_config(data: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], WindowConfig]:
    """The model's channel names and window settings from the card's data description."""
    def need(key):
        if data.get(key) in (None, [], {}):
            raise DataError(f"{where}: its data description lacks {key!r}, so recordings cannot be prepared "
                            f"as in training; refinetune the run on data prepared by this toolkit version")
        return data[key]
    filt, norm = need("filter"), need("normalisation")
    spec = FilterSpec(**{f.name: filt[f.name] for f in fields(FilterSpec) if f.name in filt})
    config = WindowConfig(target_fs=float(need("sampling_rate")), window_s=float(need("window_s")),
                          dtype=str(need("dtype")), filter=spec, eps=float(norm.get("eps", 1e-6)),
                          flat_std_uv=float(norm.get("flat_std_uv", 0.1)))
    return tuple(need("channels")), config


def _naive(start: Any) -> datetime | None:
    """A datetime without time zone (MNE gives the EDF header's clock time labelled UTC); None
    for no datetime or EDF's placeholder start 01.01.85 00:00:00."""
    start = start.replace(tzinfo=None) if isinstance(start, datetime) else None
    return None if start == UNKNOWN_START else start


def _wfdb_start(header) -> datetime | None:
    """A WFDB header's start (base date and time), or None when it lacks either."""
    if header.base_date is not None and header.base_time is not None:
        return datetime.combine(header.base_date, header.base_time)
    return None


def _aligned_scoring(hypnogram: Any, start: Any, source: str) -> tuple[Hypnogram | None, float, str | None]:
    """(scoring, seconds added to its onsets, note): ``hypnogram`` loaded (``load_scoring``) and,
    when it is a file, aligned with the recording ``source`` starting at ``start`` by the files'
    start times (``hypnogram_edf.align_to_recording``, as the preparation does; the note says why not).
    A Hypnogram object is taken as given (onsets from the recording's start)."""
    scoring = load_scoring(hypnogram)
    if scoring is None or not isinstance(hypnogram, (str, Path)):
        return scoring, 0.0, None
    aligned, note = align_to_recording(scoring, hypnogram, start if isinstance(start, datetime) else None, source)
    return aligned, aligned.start_s - scoring.start_s, note
