"""Benchmark: staging a night on the CPU, side by side with YASA, and the levers that make it fast.

    python benchmarks/stage_bench.py [--hours 8] [--repeats 3] [--threads 2] [--workdir DIR]
        [--agreement RUN_DIR RECORDING [RECORDING ...]]

Writes one SYNTHETIC Sleep-EDF-layout night of ``--hours`` (``SC4001E0-PSG.edf``, 100 Hz EEG,
``part.data_prep.sleep_edf_synthetic``) and measures in this one run:

1. the levers of the forward pass of the paper-size encoder (``eeg_sleep.yaml``: dim 256, depth
   16, 12.7M parameters, random weights: speed does not depend on them) on the night's windows:
   fp32 under ``no_grad`` / ``inference_mode`` at several batch sizes, bf16 autocast, dynamic
   int8 quantisation of the Linear layers, ONNX Runtime (when ``onnxruntime`` and ``onnx`` are
   installed; skipped with a message otherwise);
2. ``Stager.predict_file`` on the night (the code path of ``part-stage``: read 2 channels,
   band-pass + resample, windows, z-score, classify) for the demo-size and the paper-size
   encoder, with the stager's default precision (``auto``);
3. YASA (``yasa.SleepStaging(raw, eeg_name="EEG Fpz-Cz").predict()``, LightGBM on hand-made
   features) on the same EDF after reading it, when ``yasa`` is installed (this script installs
   nothing; skipped with a message otherwise);
4. whole processes, as a user runs them: ``part-stage RUN night.edf --out DIR`` (a temporary run
   directory holding the paper-size model) against ``python -c "import mne, yasa; ..."``
   reading and staging the same night;
5. with ``--agreement RUN_DIR RECORDING...`` (a trained run and recordings it can read, e.g.
   ``demo_runs/eeg_sleep_demo_part demo_data/raw/syn00-0010.hea``): the share of epochs each
   lever stages as fp32 does (target >= 99.5 %).

Times are medians of ``--repeats`` runs after one warm-up; ratios are against references timed
in the same run.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")
YASA_SCRIPT = ("import sys, time; import mne, yasa; "
               "raw = mne.io.read_raw_edf(sys.argv[1], include=['EEG Fpz-Cz'], preload=True, verbose='error'); "
               "t0 = time.perf_counter(); hyp = yasa.SleepStaging(raw, eeg_name='EEG Fpz-Cz').predict(); "
               "print(time.perf_counter() - t0)")


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def card_for(recipe_name: str) -> dict:
    """A finetuned checkpoint's card for the recipe's encoder on 2 channels at 100 Hz."""
    from part.config.loader import load_recipe, recipe_to_dict
    from part.modalities.eeg.recordings.constants import CLASS_NAMES
    from part.modalities.eeg.recordings.signal import FilterSpec

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


def run_dir_for(recipe_name: str, work: Path) -> Path:
    """A run directory whose checkpoints/best.pt holds the recipe's model (random weights) and card."""
    from part.inference import build_classifier
    from part.training.checkpoint import save_checkpoint

    card = card_for(recipe_name)
    run = work / f"run_{Path(recipe_name).stem}"
    torch.manual_seed(0)
    save_checkpoint(run / "checkpoints" / "best.pt", {"model": build_classifier(card).state_dict(), "card": card})
    return run


def night_gflop(model, windows: np.ndarray) -> float:
    """GFLOP of the model's forward pass over all ``windows`` (matmuls and attention, counted by
    ``torch.utils.flop_counter`` on one batch of 64 and scaled)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.from_numpy(np.ascontiguousarray(windows[:64])).float()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9 * len(windows) / len(x)


def levers(stager, windows: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """Seconds to classify ``windows`` per lever (the model's forward pass only)."""
    from part.modalities.eeg.sleep.staging import int8_linear
    model = stager.finetuned.model
    x = torch.from_numpy(np.ascontiguousarray(windows)).float()

    def forward(m, bs, ctx=torch.inference_mode, bf16=False):
        with ctx():
            for i in range(0, len(x), bs):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    m(x[i:i + bs])
    rows = [("fp32 no_grad, batch 256 (before)", median_time(lambda: forward(model, 256, torch.no_grad), repeats))]
    for bs in (32, 64, 256):
        rows.append((f"fp32 inference_mode, batch {bs}", median_time(lambda: forward(model, bs), repeats)))
    rows.append(("bf16 autocast, batch 64", median_time(lambda: forward(model, 64, bf16=True), repeats)))
    int8 = int8_linear(model)
    rows.append(("int8 dynamic (Linear), batch 64", median_time(lambda: forward(int8, 64), repeats)))
    session = ort_session(model, x[:8])
    if session is None:
        print("ONNX Runtime: not measured (pip install onnxruntime onnx to include it)")
    else:
        arr = x.numpy()
        rows.append(("ONNX Runtime fp32, batch 64", median_time(
            lambda: [session.run(None, {"x": arr[i:i + 64]}) for i in range(0, len(arr), 64)], repeats)))
    return rows


def ort_session(model, example):
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def agreement(run_dir: Path, recordings: list[Path]) -> list[tuple[str, float, int]]:
    """Share of epochs each lever stages as fp32 does, over ``recordings`` staged by the run."""
    from part.modalities.eeg.sleep.staging import Stager

    base = Stager.from_run(run_dir, precision="fp32")
    windows = [base.windows(_read(base, r)).windows for r in recordings]
    x = np.concatenate(windows)
    ref = base.classify(x).argmax(1)
    return [(f"{p} (--precision {p})", float((Stager(base.finetuned, p).classify(x).argmax(1) == ref).mean()),
             len(ref)) for p in ("bf16", "int8")]


def _read(stager, path: Path):
    from part.modalities.eeg.recordings.mne_reader import read_recording
    return read_recording(path, stager.channels)


def yasa_seconds(psg: Path, repeats: int) -> tuple[float | None, float | None, str]:
    """YASA's staging after reading: the first night of a fresh process (numba compiles its
    feature code then) and the median of later nights in the same process."""
    try:
        import mne
        import yasa
    except ImportError:
        return None, None, "not installed (pip install yasa to compare)"
    firsts = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", YASA_SCRIPT, str(psg)], capture_output=True, text=True, check=True)
        firsts.append(float(done.stdout.split()[-1]))
    raw = mne.io.read_raw_edf(psg, include=[CHANNELS[0]], preload=True, verbose="error")
    later = median_time(lambda: yasa.SleepStaging(raw, eeg_name=CHANNELS[0]).predict(), repeats)
    return statistics.median(firsts), later, f"yasa {yasa.__version__}"


def process_seconds(cmd: list[str], repeats: int) -> float:
    def once():
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} failed: {done.stderr[-1500:]}")
    return median_time(once, repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--agreement", nargs="+", type=Path, metavar="PATH", help="RUN_DIR RECORDING [RECORDING ...]")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from part.data_prep.sleep_edf_synthetic import write_sleep_edf_night
    from part.modalities.eeg.sleep.staging import Stager

    work = a.workdir or Path(tempfile.mkdtemp(prefix="stage_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    psg, _ = write_sleep_edf_night(work, subject=0, night=1, hours=a.hours, seed=0)
    print(f"night: {psg.name}, {a.hours:g} h; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{a.repeats} repeats (median)\n")
    runs = {name: run_dir_for(name, work) for name in ("eeg_sleep_demo.yaml", "eeg_sleep.yaml")}
    paper = Stager.from_run(runs["eeg_sleep.yaml"])
    windows = paper.windows(_read(paper, psg)).windows
    print(f"1. forward pass of the paper-size encoder on the night's {len(windows)} windows")
    rows = levers(paper, windows, a.repeats)
    before = rows[0][1]
    gflop = night_gflop(paper.finetuned.model, windows)
    print(f"model work: {gflop:.0f} GFLOP per night\n")
    print("| lever | s | speed-up | GFLOP/s |\n|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} | {before / s:.2f}x | {gflop / s:.0f} |")
    print(f"\n2. Stager.predict_file (read + prepare + classify), precision auto = {paper.precision}")
    print("| encoder | params | s per night | nights / min |\n|---|---|---|---|")
    totals = {}
    for name, run in runs.items():
        stager = Stager.from_run(run)
        n = sum(p.numel() for p in stager.finetuned.model.parameters())
        totals[name] = median_time(lambda: stager.predict_file(psg), a.repeats)
        print(f"| {name} | {n / 1e6:.2f}M | {totals[name]:.2f} | {60 / totals[name]:.1f} |")
    for precision in ("int8", "fp32"):
        stager = Stager.from_run(runs["eeg_sleep.yaml"], precision=precision)
        totals[precision] = median_time(lambda: stager.predict_file(psg), a.repeats)
        print(f"| eeg_sleep.yaml, --precision {precision} | | {totals[precision]:.2f} | {60 / totals[precision]:.1f} |")
    first, later, what = yasa_seconds(psg, a.repeats)
    print(f"\n3. YASA SleepStaging(...).predict() after reading: {what}")
    if first is not None:
        ours = min(totals["eeg_sleep.yaml"], totals["int8"])
        print("| YASA night | s | paper-size PART (fastest precision) / YASA |\n|---|---|---|")
        print(f"| first in a process (numba compiles) | {first:.2f} | {ours / first:.2f} |")
        print(f"| later in the same process | {later:.2f} | {ours / later:.2f} |")
    yasa_s = first
    out = work / "staged"
    ours = process_seconds([str(Path(sys.executable).parent / "part-stage"), str(runs["eeg_sleep.yaml"]), str(psg),
                            "--out", str(out), "--overwrite", "--no-progress"], a.repeats)
    line = f"\n4. whole processes: part-stage (paper-size) {ours:.2f} s"
    if yasa_s is not None:
        theirs = process_seconds([sys.executable, "-c", YASA_SCRIPT, str(psg)], a.repeats)
        line += f", python -c 'import yasa ...' {theirs:.2f} s; ratio {ours / theirs:.2f} (target <= 1.5)"
    print(line)
    if a.agreement:
        run_dir, recordings = a.agreement[0], a.agreement[1:]
        print(f"\n5. epochs staged as fp32 stages them, {run_dir} on {len(recordings)} recordings")
        print("| lever | agreement | epochs |\n|---|---|---|")
        for name, share, n in agreement(run_dir, recordings):
            print(f"| {name} | {100 * share:.2f} % | {n} |")
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
