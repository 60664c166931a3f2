"""The tiny staging run the staging tests share (:func:`make_night`: each test module wraps it
in a module-scoped ``night`` fixture) and an exact EDF writer."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from part.config import load_recipe
from part.data_prep.pc18_labels import read_stage_notes
from part.data_prep.pc18_prepare import SplitSettings, prepare_dataset
from part.data_prep.pc18_synthetic import write_synthetic_records
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.hypnogram_edf import write_hypnogram_edf
from part.modalities.eeg.recordings.wfdb_reader import read_eeg
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.modalities.eeg.sleep.staging import Stager
from part.training.runner import run

ROOT = Path(__file__).resolve().parents[3]
REC = "syn00-0003"  # the test split's record (n_test=1 takes the last one)
START = datetime(2021, 3, 4, 22, 45, 0)


def write_edf(path: Path, names, uv: np.ndarray, fs: float, start: datetime | None = START) -> Path:
    """An EDF of (C, n) micro-volt integers, exact (physical range = digital range)."""
    import edfio
    signals = [edfio.EdfSignal(row.astype(np.float64), fs, label=name, physical_dimension="uV",
                               physical_range=(-32768, 32767)) for name, row in zip(names, uv)]
    header = {} if start is None else {"starttime": start.time(), "recording": edfio.Recording(startdate=start.date())}
    edfio.Edf(signals, **header).write(path)
    return path


def make_night(base: Path) -> dict:
    """Into ``base``: three 5-6 min SYNTHETIC PC18 records prepared, a supervised dim-16 depth-1
    model finetuned for one epoch, and the test record as .hea, as EDF (same samples, a start
    time), as a 2-channel EDF with other names, and its scoring as an EDF+ hypnogram."""
    write_synthetic_records(base / "raw", 3, seed=0, minutes=(5, 6))
    result = prepare_dataset(base / "raw", base / "prep", splits=SplitSettings(n_test=1, n_finetune=1, seed=0),
                             progress=False)
    assert not result.failed and result.splits["test"] == [REC]
    recipe = load_recipe(ROOT / "recipes/eeg_sleep_demo.yaml", [
        f"data.root={base / 'prep'}", f"run.output_dir={base / 'runs'}", "run.name=tiny", "run.device=cpu",
        "method.name=supervised", "run.stages=[finetune]", "model.dim=16", "model.depth=1", "model.heads=2",
        "finetune.epochs=1", "finetune.batch_size=32", "evaluate.repeats=1"])
    run(recipe)
    hea = base / "raw" / f"{REC}.hea"
    rec = read_eeg(hea, PC18_EEG_CHANNELS)
    whole = int(rec.n_samples // rec.fs * rec.fs)  # EDF data records of 1 s: whole seconds
    uv = rec.digital[:, :whole].astype(np.float64)  # gain 1 uV, baseline 0 (the synthetic PC18 layout)
    edf = write_edf(base / f"{REC}.edf", PC18_EEG_CHANNELS, uv, rec.fs)
    two = write_edf(base / "two.edf", ["EEG Fpz-Cz", "EEG Pz-Oz"], uv[[0, 4]], rec.fs, start=None)
    notes = read_stage_notes(base / "raw" / f"{REC}.arousal", rec.fs)
    onsets = notes.onsets[0] / rec.fs + 30.0 * np.arange(int((rec.n_samples - notes.onsets[0]) // (30 * rec.fs)))
    stages = notes.stages[np.searchsorted(notes.onsets / rec.fs, onsets, side="right") - 1]
    scoring = write_hypnogram_edf(base / f"{REC}-Hypnogram.edf", Hypnogram(stages, onsets_s=onsets, source="synthetic"))
    stager = Stager.from_run(base / "runs" / "tiny")
    return {"base": base, "run": base / "runs" / "tiny", "hea": hea, "edf": edf, "two": two, "scoring": scoring,
            "uv": uv, "fs": rec.fs, "stager": stager}


def write_edf_plus(path: Path, names, uv: np.ndarray, fs: float, start: datetime = START, gaps: dict | None = None,
                   subsecond: float = 0.0) -> Path:
    """An EDF+ file of (C, n) micro-volt integers in 1-s data records (edfio writes an EDF+C file,
    then its header and time-keeping TALs are patched): labels ``names`` in UTF-8 (edfio writes
    ASCII only), the first record ``subsecond`` s after the header's start, and, with ``gaps``
    ({record index: seconds}), an EDF+D file whose records from that index on start that much
    later (each gap adds to the later ones)."""
    import edfio
    placeholders = [f"L{i}".ljust(len(n.encode()), "x") for i, n in enumerate(names)]
    signals = [edfio.EdfSignal(row.astype(np.float64), fs, label=p, physical_dimension="uV",
                               physical_range=(-32768, 32767)) for p, row in zip(placeholders, uv)]
    starttime = start.time().replace(microsecond=int(round(subsecond * 1e6)))
    edf = edfio.Edf(signals, starttime=starttime, recording=edfio.Recording(startdate=start.date()),
                    annotations=[edfio.EdfAnnotation(0, None, "x" * 16)])  # room for longer TALs
    edf.write(path)
    data = bytearray(path.read_bytes())
    ns, header = int(data[252:256]), int(data[184:192])
    for i, name in enumerate(names):
        data[256 + 16 * i:256 + 16 * (i + 1)] = name.encode().ljust(16)
    samples = [int(data[256 + ns * 216 + 8 * i:256 + ns * 216 + 8 * (i + 1)]) for i in range(ns)]
    record, tal = 2 * sum(samples), 2 * samples[-1]  # the annotation signal is the last
    shift = np.cumsum([(gaps or {}).get(k, 0.0) for k in range(int(data[236:244]))])
    if gaps:
        data[192:236] = b"EDF+D".ljust(44)
    for k, extra in enumerate(shift):
        at = header + k * record + record - tal
        data[at:at + tal] = f"+{k + subsecond + extra:g}\x14\x14\x00".encode().ljust(tal, b"\x00")
    path.write_bytes(bytes(data))
    return path
