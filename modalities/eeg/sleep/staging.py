"""Sleep staging of new recordings with a finetuned EEG run: the Python API behind ``part-stage``
(its command line: ``cli.py``)::

    from part.modalities.eeg import Stager
    stager = Stager.from_run("runs/eeg_sleep_part")          # checkpoints/best.pt and its card
    hyp = stager.predict_file("night.edf", channels={"F3-M2": "EEG Fpz-Cz", "C3-M2": "EEG Pz-Oz"})
    hyp.stages, hyp.proba, hyp.onsets_s                       # (n,) stage codes, (n, 5), (n,) seconds
    hyp.to_csv("night.hypnogram.csv"); hyp.plot("night.hypnogram.png"); hyp.statistics()

Staging returns a :class:`~part.modalities.eeg.sleep.hypnogram.Hypnogram` (stage codes 0 W ...
4 REM, the probabilities per epoch, the recording's start). Everything the model needs comes
from the finetuned checkpoint's card (``part/inference.py``): the channel names and order, the
output rate, the window length, the band-pass, the normalisation and the storage dtype of the
training windows. Preprocessing is exactly the training preparation's
(``recordings/windows.py``: band-pass fused with the resampling on the continuous recording,
30-s windows, each window and channel z-scored, rounded to the training dtype). Windows start at
the recording's first sample, or on the epoch grid of a scoring when one is given (as in the
preparation: the onset of its first epoch, scored or not, modulo 30 s), after putting the scoring
on the recording's clock by the two start times (``Hypnogram.aligned_to``).

Windows without signal (every channel flat: std below the card's ``flat_std_uv``, or flat /
clipped for more than ``FLAT_EPOCH_SHARE`` of the window, ``recordings/flatness.py``; e.g. a
disconnected headbox, zero-filled data, the half-zero edge of a dropout) are not staged: stage
-1 (unscored), NaN probabilities, counted in the hypnogram's ``info`` (``no_signal_epochs``; per
channel ``flat_epochs``), which ``stats.json`` carries and the command line warns about. A
recording without signal in any window is refused (RecordError) rather than staged.

Recordings with gaps (EDF+D, ``recording.segments``): windows of the grid lie wholly inside one
segment, each segment filtered on its own; the hypnogram's ``onsets_s`` are the true onsets
(no epoch in a gap; ``info["gap_epochs"]`` counts the grid's epochs dropped), and an EDF+
file's subsecond start is kept in ``start``.

Channels (``recordings/channels.py``): each model channel is read from the recording channel
``channels`` maps it to ({model name: recording name}; the CLI's ``--channels "F3-M2=EEG
Fpz-Cz,..."``), else from the one of the same name, else from a file name the training
preparation renamed to it. Names match exactly, else up to case, an ``EEG `` prefix and a
``-REF`` suffix; a bipolar ``A-B`` absent from the recording is derived as A - B.

Units: :meth:`Stager.predict_array` takes volts ``(C, n)``, like ``mne.io.RawArray`` (MNE's
convention), and refuses data whose typical channel std exceeds 10 mV (micro-volts passed by
mistake). Files are read in their own units (WFDB gain/units, MNE's volts). Every sample of the
channels read must be finite (a NaN would spread over the whole channel in the band-pass): else a
one-line RecordError names the recording, the channel and the number of NaN/Inf samples.
"""
from __future__ import annotations

import warnings
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from part.errors import DataError
from part.inference import FinetunedModel, load_finetuned
from part.modalities.eeg.recordings import mne_reader
from part.modalities.eeg.recordings.channels import ModelChannels, Selection, expand, needed_channels
from part.modalities.eeg.recordings.constants import CLASS_NAMES, EPOCH_S, FLAT_STD_UV, NORM_EPS_UV
from part.modalities.eeg.recordings.hypnogram_edf import known_start, recording_clock
from part.modalities.eeg.recordings.signal import EegRecording, FilterSpec, RecordError
from part.modalities.eeg.recordings.windows import (RecordingWindows, WindowConfig, output_length, recording_windows,
                                                    unlabelled_grid, window_grid)
from part.modalities.eeg.sleep.hypnogram import Hypnogram, stage_codes

MAX_VOLTS_STD = 1e-2  # V: a typical EEG channel std is 1e-5 V; 10 mV means the data are not in volts
BATCH_SIZE = 64  # windows per forward pass: the fastest on a 2-core CPU (benchmarks/stage_bench.py)
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU, or a CPU with AVX512-BF16 or AMX
    (where oneDNN's bf16 kernels are about twice as fast as fp32; elsewhere they are emulated)."""
    if device.type == "cuda":
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence guarded
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``int8`` for ``precision`` (``auto``: bf16 where the hardware has it)."""
    if precision not in PRECISIONS:
        raise DataError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise DataError(f"precision 'int8' runs on the CPU only (device {device}); use --precision bf16 on a GPU")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def int8_linear(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (weights quantised once,
    activations per batch: ``torch.ao.quantization.quantize_dynamic``); CPU only."""
    import copy
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


class Stager:
    """Stages recordings with a finetuned EEG model (see the module docstring).

    Attributes: ``channels`` (the model's channel names, in order), ``class_names``,
    ``config`` (a ``WindowConfig``: target_fs, window_s, dtype, filter, eps, flat_std_uv),
    ``card`` (the checkpoint's description), ``device``, ``precision`` (``fp32``, ``bf16`` or
    ``int8``: the arithmetic of the forward pass), ``model`` (the module that runs it),
    ``scorer`` (the hypnograms' scorer).

    ``precision="auto"`` (the default) runs the model under bf16 autocast where the hardware
    has bf16 arithmetic (a CUDA GPU; a CPU with AVX512-BF16 or AMX) and in fp32 elsewhere: about
    2x faster on such a CPU with the same stages on >= 99.5 % of epochs (``benchmarks/
    stage_bench.py`` measures the agreement); ``"fp32"`` forces full precision; ``"int8"`` (CPU
    only) quantises the Linear layers' weights to int8 (dynamic quantisation: activations are
    quantised per batch), the fastest on a CPU without bf16.
    """

    def __init__(self, finetuned: FinetunedModel, precision: str = "auto"):
        self.finetuned, self.card, self.device = finetuned, finetuned.card, finetuned.device
        where = f"checkpoint '{finetuned.checkpoint}'"
        if self.card["modality"]["name"] != "eeg":
            raise DataError(f"{where} holds a {self.card['modality']['name']!r} model; the sleep stager "
                            f"takes runs of the 'eeg' modality")
        self.channels, self.config = _window_config(self.card["data"], where)
        self.class_names = list(self.card["class_names"])
        self.codes = stage_codes(self.class_names)  # model class -> stage code
        self.montage = ModelChannels(self.channels, self.card["data"].get("rename"))
        self.precision = resolve_precision(precision, self.device)
        self.model = int8_linear(finetuned.model) if self.precision == "int8" else finetuned.model
        self.scorer = f"{Path(finetuned.run_dir).name} ({Path(finetuned.checkpoint).name})"
        self.temperature = self.card.get("temperature")  # None: uncalibrated (part.evaluation.calibration)
        if self.temperature is None:
            warnings.warn(f"{where} has no calibration temperature (finetuned without finetune.calibration_fraction "
                          "or before calibration existed): its stage probabilities are uncalibrated", UserWarning,
                          stacklevel=2)

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str | Path = "best.pt",
                 device: str | torch.device = "cpu", precision: str = "auto") -> "Stager":
        """The stager of ``RUN_DIR/checkpoints/<checkpoint>`` on ``device`` (cpu, cuda, auto) in
        ``precision`` (auto, fp32, bf16, int8). A checkpoint file that cannot be loaded is a
        DataError that speaks of staging (:func:`staging_advice`)."""
        return cls(load_finetuned(run_dir, checkpoint, device, advice=staging_advice(Path(run_dir))), precision)

    def __repr__(self) -> str:
        return (f"Stager(run={str(self.finetuned.run_dir)!r}, channels={list(self.channels)}, "
                f"classes={self.class_names}, {self.config.window_s:g}-s windows at "
                f"{self.config.target_fs:g} Hz, device={self.device}, precision={self.precision})")

    def check_channel_map(self, channels: str | Mapping[str, str] | None, where: str | None = None) -> dict[str, str]:
        """``channels`` parsed and checked against the model's channels (``ModelChannels.check_map``)."""
        return self.montage.check_map(channels, where)

    # ------------------------------------------------------------------ inputs -> recording
    def predict_file(self, path: str | Path, channels: str | Mapping[str, str] | None = None,
                     hypnogram: Any = None, batch_size: int = BATCH_SIZE) -> Hypnogram:
        """Stage a recording file: any MNE-readable PSG (EDF/BDF/GDF/FIF/BrainVision/EEGLAB) or a
        WFDB ``.hea`` record. ``hypnogram``: a scoring (path or Hypnogram) to align the windows
        to. The file is opened twice at most: its header (channel names, start time), then the
        samples of the channels needed."""
        path = Path(path)
        if not path.is_file():
            raise RecordError(f"{path}: no such recording file; expected an EDF/BDF/GDF/FIF/BrainVision/"
                              f"EEGLAB file or a WFDB .hea header")
        if mne_reader.suffix_of(path) == ".hea":
            from part.modalities.eeg.recordings.wfdb_reader import read_header
            header, raw = read_header(path), None
            present, start = list(header.sig_name), _wfdb_start(header)
        else:
            raw = mne_reader.open_raw(path)
            present, start = list(raw.ch_names), _raw_start(raw, path)
        selection = self.montage.select(present, channels, str(path))
        read = mne_reader.read_recording_full(path, selection.targets, annotations=False, raw=raw)
        if start is not None and read.start_offset_s:  # an EDF+ file's subsecond start
            start += timedelta(microseconds=round(read.start_offset_s * 1e6))
        return self.predict_recording(expand(read.recording, selection, self.channels), hypnogram, start, str(path),
                                      batch_size)

    def predict(self, raw, channels: str | Mapping[str, str] | None = None, hypnogram: Any = None,
                batch_size: int = BATCH_SIZE) -> Hypnogram:
        """Stage an ``mne.io.BaseRaw`` (only the channels needed are loaded; its ``BAD_ACQ_SKIP``
        annotations are gaps, as in :meth:`predict_file`)."""
        name = Path(raw.filenames[0]).name if getattr(raw, "filenames", None) and raw.filenames[0] else "raw"
        selection = self.montage.select(raw.ch_names, channels, name)
        needed = needed_channels(selection.sources)
        volts = raw.get_data(picks=needed)
        recording = self._from_volts(name, float(raw.info["sfreq"]), selection, dict(zip(needed, volts)))
        recording.segments = mne_reader.skip_segments(raw, recording.n_samples)  # BAD_ACQ_SKIP: gaps
        return self.predict_recording(expand(recording, selection, self.channels), hypnogram,
                                      _raw_start(raw, name), name, batch_size)

    def predict_array(self, data: Any, sfreq: float, ch_names: Sequence[str],
                      channels: str | Mapping[str, str] | None = None, hypnogram: Any = None,
                      start: datetime | None = None, name: str = "array",
                      batch_size: int = BATCH_SIZE) -> Hypnogram:
        """Stage ``data`` (C, n) in VOLTS (as ``mne.io.RawArray``) sampled at ``sfreq`` Hz, rows
        named ``ch_names``; ``start``: the recording's start (naive: a clock time; aware: UTC)."""
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[0] != len(ch_names):
            raise DataError(f"{name}: data of shape {data.shape} for {len(ch_names)} channel names; expected "
                            f"(channels, samples) with one name per row")
        selection = self.montage.select(list(ch_names), channels, name)
        rows = {n: data[list(ch_names).index(n)] for n in needed_channels(selection.sources)}
        recording = self._from_volts(name, float(sfreq), selection, rows)
        return self.predict_recording(expand(recording, selection, self.channels), hypnogram,
                                      start, name, batch_size)

    @staticmethod
    def _from_volts(name: str, fs: float, selection: Selection, volts: Mapping[str, np.ndarray]) -> EegRecording:
        """The selection's recording channels in float32 uV from rows in volts by recording channel
        name (``mne_reader.combine``: RecordError on a NaN/Inf sample), refused when not in volts."""
        recording = mne_reader.combine(name, fs, selection.sources, volts, 1e6)
        _check_volts(recording.digital, name)
        return recording

    # ------------------------------------------------------------------ the one staging path
    def predict_recording(self, recording: EegRecording, hypnogram: Any = None, start: datetime | None = None,
                          source: str | None = None, batch_size: int = BATCH_SIZE) -> Hypnogram:
        """Stage an EegRecording holding the model's channels in order: filter, resample, window
        and normalise as in training, then classify every window with signal. ``start``: the
        recording's start (the plot's clock time, and the scoring's alignment); ``source``: its
        file (or name)."""
        source, start = source or recording.record, known_start(start)
        windows = self.windows(recording, hypnogram, source, start)
        cfg, n = self.config, windows.n_windows
        no_signal = windows.flat.all(1)
        if no_signal.all():
            raise RecordError(f"{source}: no signal in any of its {n} {cfg.window_s:g}-s windows (every channel flat: "
                              f"std below {cfg.flat_std_uv:g} uV in each); nothing to stage: check the file and the "
                              "channels read (--channels)")
        proba = np.full((n, len(CLASS_NAMES)), np.nan)
        stages = np.full(n, -1, np.int64)
        if (~no_signal).any():
            model_proba = self.classify(windows.windows[~no_signal], batch_size)
            proba[np.ix_(~no_signal, self.codes)] = model_proba
            proba[~no_signal] = np.nan_to_num(proba[~no_signal])  # stages the model lacks: probability 0
            stages[~no_signal] = self.codes[model_proba.argmax(1)]
        flat = windows.flat.sum(0)
        info = {"precision": self.precision, "temperature": self.temperature}
        if windows.flat.any():
            info.update(no_signal_epochs=int(no_signal.sum()),
                        flat_epochs={c: int(k) for c, k in zip(self.channels, flat) if k})
        if windows.gap_windows:
            info["gap_epochs"] = windows.gap_windows
        return Hypnogram(stages, proba, onsets_s=windows.onsets_s, epoch_s=cfg.window_s, start=start,
                         scorer=self.scorer, source=source, info=info)

    def windows(self, recording: EegRecording, hypnogram: Any = None, source: str | None = None,
                start: datetime | None = None) -> RecordingWindows:
        """The model's input windows of a recording, prepared exactly as the training data were
        (``windows.recording_windows`` with the card's settings): (n, C, L) in the training dtype,
        on the grid of ``hypnogram``'s epochs when given (a scoring file or Hypnogram, put on the
        clock of the recording ``source`` starting at ``start``), else from the first sample;
        ``labels`` are the scoring's stage codes (-1 unscored)."""
        cfg, source = self.config, source or recording.record
        if recording.fs <= 2 * cfg.filter.h_freq:
            raise RecordError(f"{source}: sampled at {recording.fs:g} Hz; the model's preparation band-passes "
                              f"to {cfg.filter.h_freq:g} Hz and needs more than {2 * cfg.filter.h_freq:g} Hz")
        if output_length(recording, cfg) < cfg.window_len:
            raise RecordError(f"{source}: {recording.duration_s:.1f} s long, shorter than one "
                              f"{cfg.window_s:g}-s window; expected a recording of at least {cfg.window_s:g} s")
        scoring = self.reference(hypnogram, start, source, cfg.window_s)
        grid = (unlabelled_grid(recording, cfg) if scoring is None else
                window_grid(scoring, recording.duration_s, cfg.target_fs, cfg.window_s))
        return recording_windows(recording, grid, cfg)

    @staticmethod
    def reference(hypnogram: Any, start: datetime | None, source: str, epoch_s: float = EPOCH_S) -> Hypnogram | None:
        """``hypnogram`` (None, a Hypnogram or a scoring file of ``epoch_s`` epochs) on the clock of
        the recording ``source`` starting at ``start`` (``Hypnogram.aligned_to``)."""
        if hypnogram is None:
            return None
        if not isinstance(hypnogram, Hypnogram):
            if not isinstance(hypnogram, (str, Path)):
                raise TypeError(f"hypnogram: expected a path or a Hypnogram, got {type(hypnogram).__name__}")
            hypnogram = Hypnogram.from_file(hypnogram, epoch_s)
        return hypnogram.aligned_to(known_start(start), Path(source).name)

    @torch.inference_mode()
    def classify(self, windows: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Class probabilities (n, classes) float64 (softmax of the fp32 logits divided by the
        card's calibration ``temperature``, when it has one) of normalised windows (n, C, L) in any
        float dtype, ``batch_size`` windows per forward pass, in the stager's ``precision``."""
        if batch_size < 1:
            raise DataError(f"--batch-size {batch_size}: expected a positive number of windows per batch")
        model, out = self.model, []
        bf16 = self.precision == "bf16"
        for i in range(0, len(windows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i:i + batch_size])).to(self.device, torch.float32)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            out.append((logits.double() / (self.temperature or 1.0)).softmax(-1).cpu().numpy())
        return np.concatenate(out)


def staging_advice(run_dir: Path) -> str:
    """What to do when a checkpoint of ``run_dir`` cannot be loaded for staging (instead of the
    training advice, delete it and rerun): pass another finetuned checkpoint of the run, copy
    the checkpoint again, or train the model again."""
    folder = run_dir / "checkpoints"
    held = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    other = (f"stage with another finetuned checkpoint of the run (--checkpoint NAME; {folder} holds {held}), "
             if held else "")
    return (f"it cannot be used for staging: {other}copy the checkpoint again if it is a copy, or train the "
            "model again (part-train with the run's recipe and a new run.name) and stage with that run")


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
                          dtype=str(need("dtype")), filter=spec, eps=float(norm.get("eps", NORM_EPS_UV)),
                          flat_std_uv=float(norm.get("flat_std_uv", FLAT_STD_UV)))
    return tuple(need("channels")), config


def _raw_start(raw, path: str | Path) -> datetime | None:
    """The clock time of an MNE Raw's first data sample (``meas_date`` is that of sample 0 of the
    acquisition: a cropped Raw or a FIF file starts ``first_time`` seconds later), by the clock
    rule of ``hypnogram_edf.recording_clock``."""
    start = raw.info.get("meas_date")
    if not isinstance(start, datetime):
        return None
    return recording_clock(start + timedelta(seconds=float(raw.first_time)), path)


def _wfdb_start(header) -> datetime | None:
    """A WFDB header's start (base date and time, a clock time), or None when it lacks either."""
    if header.base_date is not None and header.base_time is not None:
        return datetime.combine(header.base_date, header.base_time)
    return None
