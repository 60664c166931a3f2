"""Benchmark: staging speed, in nights per minute, for the demo-size and the paper-size encoder.

    python benchmarks/stage_bench.py [--hours 8] [--repeats 3] [--threads 2] [--workdir DIR]

Writes one SYNTHETIC Sleep-EDF-layout night of ``--hours`` (``SC4001E0-PSG.edf``, 100 Hz EEG,
``part.data_prep.sleep_edf_synthetic``) and stages it with ``Stager.predict_file`` (the code path of
``python -m part.stage``: read 2 channels with MNE, band-pass + resample, 30-s windows, z-score,
classify) for two encoders built from the shipped recipes, with random weights (speed does not
depend on them): ``eeg_sleep_demo.yaml`` (dim 64, depth 4) and ``eeg_sleep.yaml`` (the paper's
12.9M-parameter encoder, dim 256, depth 16). Both are given the night's two EEG channels.
Prints per encoder the median wall time of the whole call, its split into preprocessing and
classification, and nights per minute; the ratio paper/demo is measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from part.data_prep.sleep_edf_synthetic import write_sleep_edf_night  # noqa: E402
from part.modalities.eeg.recordings.mne_reader import read_recording  # noqa: E402
from part.modalities.eeg.recordings.constants import CLASS_NAMES  # noqa: E402
from part.modalities.eeg.recordings.signal import FilterSpec  # noqa: E402
from part.modalities.eeg.sleep.staging import Stager  # noqa: E402
from part.config.loader import load_recipe, recipe_to_dict  # noqa: E402
from part.inference import FinetunedModel, build_classifier  # noqa: E402

CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")


def card_for(recipe_name: str) -> dict:
    """A finetuned checkpoint's card for the recipe's encoder on 2 channels at 100 Hz."""
    r = load_recipe(REPO / "recipes" / recipe_name)
    modality = {**recipe_to_dict(r.modality), "channels": len(CHANNELS)}
    return {
        "card_version": 1, "class_names": list(CLASS_NAMES), "method": r.method.name, "dataset": "sleep_edf",
        "modality": {"name": "eeg", "options": modality},
        "input_info": {"channels": len(CHANNELS), "window_samples": 3000},
        "model": recipe_to_dict(r.model), "run": recipe_name,
        "data": {"channels": list(CHANNELS), "sampling_rate": 100.0, "window_s": 30.0, "window_samples": 3000,
                 "filter": FilterSpec().describe(), "normalisation": {"eps": 1e-6, "flat_std_uv": 0.1},
                 "dtype": "float16"},
    }


def stager_for(recipe_name: str) -> tuple[Stager, int]:
    card = card_for(recipe_name)
    model = build_classifier(card).eval()
    n_params = sum(p.numel() for p in model.parameters())
    return Stager(FinetunedModel(model, card, Path(recipe_name), Path("."), torch.device("cpu"))), n_params


def measure(stager: Stager, psg: Path, repeats: int) -> dict:
    """Median seconds of the whole predict_file call and of its two parts."""
    total, prep = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = stager.predict_file(psg)
        total.append(time.perf_counter() - t0)
        t1 = time.perf_counter()  # preprocessing alone: read + windows, no model
        stager.windows(read_recording(psg, CHANNELS))
        prep.append(time.perf_counter() - t1)
    t, p = statistics.median(total), statistics.median(prep)
    return {"total_s": t, "prep_s": p, "classify_s": max(0.0, t - p), "windows": len(result.stages),
            "nights_per_min": 60.0 / t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="stage_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    psg, _ = write_sleep_edf_night(work, subject=0, night=1, hours=args.hours, seed=0)
    print(f"night: {psg.name}, {args.hours:g} h; torch threads {torch.get_num_threads()}; {args.repeats} repeats")
    rows = {}
    for name in ("eeg_sleep_demo.yaml", "eeg_sleep.yaml"):
        stager, n_params = stager_for(name)
        rows[name] = {**measure(stager, psg, args.repeats), "params_m": n_params / 1e6}
    print(f"{'encoder (recipe)':<22}{'params':>8}{'windows':>9}{'total s':>9}{'prep s':>8}{'model s':>9}"
          f"{'nights/min':>12}")
    for name, r in rows.items():
        print(f"{name:<22}{r['params_m']:>7.2f}M{r['windows']:>9}{r['total_s']:>9.2f}{r['prep_s']:>8.2f}"
              f"{r['classify_s']:>9.2f}{r['nights_per_min']:>12.2f}")
    demo, paper = rows["eeg_sleep_demo.yaml"], rows["eeg_sleep.yaml"]
    print(f"paper-size / demo-size time per night: {paper['total_s'] / demo['total_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
