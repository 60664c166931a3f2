"""SYNTHETIC nights in the Sleep-EDF Expanded layout, for demos and test fixtures (not patient data).

``write_sleep_edf_night(directory, subject, night, hours, seed)`` writes one night as two files,
named as in Sleep-EDF Expanded (the two names agree up to the 7th character):

- sleep-cassette: ``SC4{ss}{N}E0-PSG.edf`` and ``SC4{ss}{N}E{C}-Hypnogram.edf`` (e.g.
  ``SC4001E0-PSG.edf`` / ``SC4001EC-Hypnogram.edf``), ``C`` the scorer's letter;
- sleep-telemetry (``layout="telemetry"``): ``ST7{ss}{N}J0-PSG.edf`` / ``ST7{ss}{N}J{C}-Hypnogram.edf``.

PSG: plain EDF, 30-s data records, 12-bit digital range (-2048..2047). Cassette channels
``EEG Fpz-Cz``, ``EEG Pz-Oz``, ``EOG horizontal`` at 100 Hz in uV; ``Resp oro-nasal``, ``EMG
submental`` (1-s RMS, uV), ``Temp rectal`` (DegC), ``Event marker`` at 1 Hz. Telemetry channels
``EEG Fpz-Cz``, ``EEG Pz-Oz``, ``EOG horizontal``, ``EMG submental`` at 100 Hz and ``Marker`` at
10 Hz. Physical ranges are of the order of the real files' (EEG about +-200 uV).

Hypnogram: an EDF+ annotations file with the same start, the real label strings (``Sleep stage
W/1/2/3/4/R/?``, ``Movement time``), consecutive equal epochs merged. The night is a long wake
period (15-25 % of the recording), the sleep of ``pc18_synthetic.draw_hypnogram`` (NREM/REM
cycles), a wake period (8-15 %), then 1-2 ``Sleep stage ?`` epochs; the recording runs 3-8 %
past the hypnogram's end (unscored). R&K stage 4 is the middle half of each N3 run; one brief
awakening is scored ``Movement time`` and one sleep epoch ``Sleep stage ?``.

Signals come from the PC18 generator (``pc18_synthetic.simulate_signals``, 200 Hz): Fpz-Cz from
its F3-M2, Pz-Oz from O1-M2 (posterior alpha), EOG from E1-M2, EMG from Chin1-Chin2, respiration
from AIRFLOW, so the stages are visible as in the PC18 demo. The subject's physiology depends on
``(seed, subject)``, the night on ``(seed, subject, night)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import scipy.signal
from scipy.ndimage import uniform_filter1d

from part.data_prep.pc18_synthetic import EPOCH, FS, N1, N3, W, draw_hypnogram, draw_subject, simulate_signals
from part.modalities.eeg.recordings.constants import EPOCH_S
from part.modalities.eeg.recordings.hypnogram_edf import write_annotations_edf
from part.atomic import atomic_write

DIGITAL_RANGE = (-2048, 2047)
RECORD_S = 30  # data record duration of the PSG files (s)
SCORERS = "CHJMPUVW"  # hypnogram file letter after the PSG's 7 characters
LAYOUTS = {"cassette": ("SC4", "E"), "telemetry": ("ST7", "J")}
# label, rate (Hz), unit, physical range
CASSETTE_CHANNELS = (
    ("EEG Fpz-Cz", 100, "uV", (-192.0, 192.0)), ("EEG Pz-Oz", 100, "uV", (-197.0, 196.0)),
    ("EOG horizontal", 100, "uV", (-1009.0, 1009.0)), ("Resp oro-nasal", 1, "", (-2048.0, 2047.0)),
    ("EMG submental", 1, "uV", (0.0, 250.0)), ("Temp rectal", 1, "DegC", (34.0, 40.0)),
    ("Event marker", 1, "", (-2048.0, 2047.0)),
)
TELEMETRY_CHANNELS = (
    ("EEG Fpz-Cz", 100, "uV", (-192.0, 192.0)), ("EEG Pz-Oz", 100, "uV", (-197.0, 196.0)),
    ("EOG horizontal", 100, "uV", (-1009.0, 1009.0)), ("EMG submental", 100, "uV", (-500.0, 500.0)),
    ("Marker", 10, "", (-2048.0, 2047.0)),
)
STAGE_TEXT = np.array(["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage R"],
                      dtype=object)  # indexed by stage code
PC18_INDEX = {"F3-M2": 0, "O1-M2": 4, "E1-M2": 6, "Chin1-Chin2": 7, "AIRFLOW": 10}  # rows of simulate_signals


def file_names(subject: int, night: int, scorer: str, layout: str = "cassette") -> tuple[str, str]:
    """(PSG name, hypnogram name) of a night, e.g. ``("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf")``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    if not (0 <= subject <= 99 and 1 <= night <= 9):
        raise ValueError(f"subject must be 0..99 and night 1..9, got subject={subject}, night={night}")
    prefix, mid = LAYOUTS[layout]
    stem = f"{prefix}{subject:02d}{night}{mid}"
    return f"{stem}0-PSG.edf", f"{stem}{scorer}-Hypnogram.edf"


def _night_stages(n_epochs: int, sub, rng: np.random.Generator) -> tuple[np.ndarray, int, int, int]:
    """Stage codes (n_epochs,) int8 of the signal, and the scored epochs (pre-wake, sleep, total)."""
    n_tail = max(1, round(n_epochs * rng.uniform(0.03, 0.08)))
    n_pre = round(n_epochs * rng.uniform(0.15, 0.25))
    n_post = round(n_epochs * rng.uniform(0.08, 0.15))
    n_sleep = n_epochs - n_tail - n_pre - n_post
    sleep = draw_hypnogram(n_sleep, sub, rng)
    stages = np.concatenate([np.full(n_pre, W, np.int8), sleep, np.full(n_post + n_tail, W, np.int8)])
    return stages, n_pre, n_sleep, n_epochs - n_tail


def _stage_texts(stages: np.ndarray, n_pre: int, n_sleep: int, n_scored: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Sleep-EDF label of each scored epoch (n_scored,) object: R&K 3/4, Movement time and ?."""
    scored = stages[:n_scored]
    texts = STAGE_TEXT[scored]
    n3_edges = np.flatnonzero(np.diff(np.r_[0, (scored == N3).astype(np.int8), 0]))
    for start, stop in zip(n3_edges[::2], n3_edges[1::2]):  # a handful of N3 runs
        if stop - start >= 4:
            texts[start + (stop - start) // 4: stop - (stop - start) // 4] = "Sleep stage 4"
    asleep = n_pre + int(np.argmax(stages[n_pre:n_pre + n_sleep] != W))  # first epoch of sleep
    inside = np.arange(asleep, n_pre + n_sleep)
    for code in (W, N1):  # a brief awakening if any, else an N1 epoch
        candidates = inside[stages[inside] == code]
        if candidates.size:
            texts[rng.choice(candidates)] = "Movement time"
            break
    sleeping = inside[(stages[inside] != W) & (texts[inside] != "Movement time")]
    if sleeping.size:
        texts[rng.choice(sleeping)] = "Sleep stage ?"
    texts[n_scored - int(rng.integers(1, 3)):] = "Sleep stage ?"
    return texts


def _annotation_runs(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Consecutive equal labels merged: (onsets s, durations s, labels)."""
    first = np.flatnonzero(np.r_[True, texts[1:] != texts[:-1]])
    length = np.diff(np.r_[first, texts.size])
    return first * EPOCH_S, length * EPOCH_S, [str(t) for t in texts[first]]


def _to_rate(x: np.ndarray, rate: int, how: str = "resample") -> np.ndarray:
    """(..., n) at the generator's FS -> (..., n * rate / FS): polyphase resampling, or per-block
    RMS / mean (``how="rms"`` / ``"mean"``) for the 1-Hz style channels."""
    if how == "resample":
        return scipy.signal.resample_poly(x, rate, FS, axis=-1)
    blocks = x.reshape(*x.shape[:-1], -1, FS // rate)
    return np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=-1)) if how == "rms" else blocks.mean(axis=-1)


def _psg_signals(phys: np.ndarray, stages: np.ndarray, layout: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The layout's channels (in order) from the PC18 signals ``phys`` (13, n) at FS."""
    eeg = _to_rate(np.stack([0.6 * phys[PC18_INDEX["F3-M2"]], 0.6 * phys[PC18_INDEX["O1-M2"]],
                             phys[PC18_INDEX["E1-M2"]]]), 100)
    chin = phys[PC18_INDEX["Chin1-Chin2"]]
    n_s = phys.shape[1] // FS
    if layout == "telemetry":
        return [*eeg, _to_rate(chin, 100), np.zeros(n_s * 10)]
    asleep = np.repeat((stages != W).astype(np.float64), RECORD_S)[:n_s]
    temp = 36.9 - 0.4 * uniform_filter1d(asleep, 1800, mode="nearest")  # falls during sleep (DegC)
    temp += 0.02 * rng.standard_normal(n_s)
    resp = _to_rate(phys[PC18_INDEX["AIRFLOW"]], 1, "mean")
    return [*eeg, resp, _to_rate(chin, 1, "rms"), temp, np.zeros(n_s)]


def _write_psg(path: Path, signals: list[np.ndarray], layout: str, start: datetime) -> None:
    import edfio

    channels = CASSETTE_CHANNELS if layout == "cassette" else TELEMETRY_CHANNELS
    edf_signals = [
        edfio.EdfSignal(np.clip(x, *phys_range).astype(np.float64), rate, label=label, physical_dimension=unit,
                        physical_range=phys_range, digital_range=DIGITAL_RANGE)
        for x, (label, rate, unit, phys_range) in zip(signals, channels)
    ]
    edf = edfio.Edf(edf_signals, patient=edfio.Patient(name="SYNTHETIC", additional=("not_patient_data",)),
                    recording=edfio.Recording(startdate=start.date(), additional=("PART_synthetic",)),
                    starttime=start.time(), data_record_duration=RECORD_S)
    atomic_write(path, edf.write)


def write_sleep_edf_night(directory: str | Path, subject: int, night: int, hours: float, seed: int,
                          layout: str = "cassette") -> tuple[Path, Path]:
    """Write one SYNTHETIC night (PSG + hypnogram, see the module docstring) into ``directory``.

    ``hours`` (0.5 to 24) is rounded to whole 30-s epochs. The hypnogram is written first, the
    PSG last. Returns (PSG path, hypnogram path).
    """
    if not 0.5 <= hours <= 24:
        raise ValueError(f"hours must be within 0.5..24, got {hours}")
    file_names(subject, night, "C", layout)  # checks the arguments
    sub = draw_subject(np.random.default_rng([seed, subject]))
    rng = np.random.default_rng([seed, subject, night])
    n_epochs = int(round(hours * 3600 / EPOCH_S))
    stages, n_pre, n_sleep, n_scored = _night_stages(n_epochs, sub, rng)
    texts = _stage_texts(stages, n_pre, n_sleep, n_scored, rng)
    psg_name, hyp_name = file_names(subject, night, SCORERS[int(rng.integers(len(SCORERS)))], layout)
    start = datetime(1989, 4, 24) + timedelta(days=3 * subject + night - 1, minutes=int(rng.integers(21 * 60, 23 * 60)))
    phys, _ = simulate_signals(stages, 0, n_epochs * EPOCH, sub, rng)
    signals = _psg_signals(phys, stages, layout, rng)
    del phys
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_annotations_edf(directory / hyp_name, *_annotation_runs(texts), start=start)
    _write_psg(directory / psg_name, signals, layout, start)
    return directory / psg_name, directory / hyp_name


def write_synthetic_sleep_edf(directory: str | Path, n_subjects: int, seed: int = 0,
                              hours: tuple[float, float] = (7.0, 9.0), layout: str = "cassette") -> list[Path]:
    """Write nights 1 and 2 of subjects ``0 .. n_subjects - 1`` (SYNTHETIC) into ``directory``.

    Each night lasts ``hours`` (low, high), drawn uniformly from ``(seed, subject, night)``.
    Returns every file written: per night its PSG, then its hypnogram.

    Raises:
        FileExistsError: ``directory`` already holds a ``*-PSG.edf``.
        ValueError: ``n_subjects`` outside 1..100 or a bad ``hours`` range.
    """
    directory = Path(directory)
    if not 1 <= n_subjects <= 100 or not 0.5 <= hours[0] <= hours[1] <= 24:
        raise ValueError(f"need 1 <= n_subjects <= 100 and 0.5 <= hours[0] <= hours[1] <= 24, got "
                         f"n_subjects={n_subjects}, hours={hours}")
    existing = sorted(directory.glob("*-PSG.edf")) if directory.is_dir() else []
    if existing:
        raise FileExistsError(f"{directory} already holds Sleep-EDF nights ({existing[0].name}, {len(existing)} "
                              "PSG files); synthetic nights go into an empty directory: choose another one")
    paths: list[Path] = []
    for subject in range(n_subjects):
        for night in (1, 2):
            length = float(np.random.default_rng([seed, subject, night, 1]).uniform(*hours))
            paths.extend(write_sleep_edf_night(directory, subject, night, length, seed, layout))
    return paths
