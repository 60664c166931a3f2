"""Stageable EDF nights for ``make demo``: the demo's SYNTHETIC test records (held out of every
training stage) written as EDF recordings in the demo model's channels, each with its scoring as
a Sleep-EDF style EDF+ hypnogram, so that README's "Stage a night" commands run as printed::

    demo_data/edf/night1.edf  night1-Hypnogram.edf  night2.edf ...      (model channel names)
    demo_data/edf_other_names/night4.edf  night4-Hypnogram.edf          (other names + EOG, EMG)

The second folder holds one night whose EEG channels carry other names (``EEG F3-A2`` for
``F3-M2``, ...) beside an EOG and an EMG channel: it needs ``--channels``. Signals are the raw
records' micro-volts (the PC18 layout: 200 Hz, whole seconds kept); scorings are the prepared
labels (one per 30-s window from the record's first window). Files are written atomically.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from part.atomic import atomic_write
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.hypnogram_edf import write_hypnogram_edf
from part.modalities.eeg.recordings.prepared import load_manifest, load_splits, open_record
from part.modalities.eeg.recordings.wfdb_reader import read_eeg
from part.modalities.eeg.sleep.hypnogram import Hypnogram

START = datetime(2021, 3, 4, 22, 30, 0)  # synthetic records carry no start: a plausible bedtime
OTHER_NAMES = {c: f"EEG {c.split('-')[0]}-{'A2' if c.endswith('M2') else 'A1'}" for c in PC18_EEG_CHANNELS}
EXTRA = {"E1-M2": "EOG horizontal", "Chin1-Chin2": "EMG submental"}  # PC18 channel -> EDF name
EDF_DIR, OTHER_DIR = "edf", "edf_other_names"


def _micro_volts(recording) -> np.ndarray:
    """(C, n) float64 micro-volts of an EegRecording, whole seconds only (EDF 1-s data records)."""
    whole = int(recording.n_samples // recording.fs * recording.fs)
    digital = recording.digital[:, :whole].astype(np.float64)
    scale = np.asarray(recording.uv_per_unit, np.float64) / np.asarray(recording.gain, np.float64)
    return (digital - np.asarray(recording.baseline, np.float64)[:, None]) * scale[:, None]


def write_edf(path: Path, names, uv: np.ndarray, fs: float, start: datetime = START) -> Path:
    """An EDF recording of ``uv`` (C, n) micro-volts at ``fs`` Hz, channels ``names``, atomically."""
    import edfio

    limit = float(np.ceil(np.abs(uv).max() + 1.0))
    signals = [edfio.EdfSignal(row, fs, label=name, physical_dimension="uV", physical_range=(-limit, limit))
               for name, row in zip(names, uv)]
    edf = edfio.Edf(signals, starttime=start.time(), recording=edfio.Recording(startdate=start.date()))
    return atomic_write(path, edf.write)


def _scoring(prep: Path, manifest: dict, record: str) -> Hypnogram:
    """The prepared labels of ``record`` as a Hypnogram (onsets from its first window's start)."""
    _, labels = open_record(prep, manifest, record)
    first = float(manifest["records"][record].get("first_window_start_s") or 0.0)
    return Hypnogram(np.asarray(labels), onsets_s=first + 30.0 * np.arange(labels.size), start=START,
                     source=record)


def write_demo_nights(raw: str | Path, prep: str | Path, out: str | Path, n_nights: int = 3) -> list[Path]:
    """The first ``n_nights`` test records of ``prep``/splits.json (raw WFDB files in ``raw``) as
    ``out/edf/night<k>.edf`` + ``night<k>-Hypnogram.edf`` and the next one as
    ``out/edf_other_names/night<k+1>.edf`` (+ scoring); returns the recordings written. Nights
    already written are kept."""
    raw, prep, out = Path(raw), Path(prep), Path(out)
    manifest, tests = load_manifest(prep), load_splits(prep)["test"]
    written = []
    for k, record in enumerate(tests[:n_nights + 1], start=1):
        other = k > n_nights
        folder = out / (OTHER_DIR if other else EDF_DIR)
        path = folder / f"night{k}.edf"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            eeg = read_eeg(raw / f"{record}.hea", PC18_EEG_CHANNELS)
            uv, names = _micro_volts(eeg), list(PC18_EEG_CHANNELS)
            if other:
                uv = np.concatenate([uv, _micro_volts(read_eeg(raw / f"{record}.hea", list(EXTRA)))])
                names = [OTHER_NAMES[c] for c in names] + list(EXTRA.values())
            write_hypnogram_edf(folder / f"night{k}-Hypnogram.edf", _scoring(prep, manifest, record), START)
            write_edf(path, names, uv, eeg.fs)  # last: its presence marks the night written
        written.append(path)
    return written


def other_names_channels() -> str:
    """The ``--channels`` value that maps the demo model's channels to the other-names night's."""
    return ",".join(f"{model}={name}" for model, name in OTHER_NAMES.items())

