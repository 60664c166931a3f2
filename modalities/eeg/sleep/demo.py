"""`make demo`: sleep staging end to end on SYNTHETIC PhysioNet-2018-format records.

1. writes synthetic records in the exact 2018 layout and prepares them
   (`part-prepare-pc18 --synthetic`), unless already prepared;
2. runs the demo recipes (PART, PART-grid, MAE, supervised from scratch; the same finetuning
   budget), each resumable; with ``--eeg-baselines`` also the EEG field's self-supervised
   baselines (relative positioning, temporal shuffling, CPC; ``make demo-eeg-ssl``);
3. prints their Cohen's kappas with `python -m part.compare`, each run's calibration (ECE of the
   test split before and after temperature scaling), then per run the finetune, linear-probe and
   kNN kappas (stages ``linear_probe``, ``knn``, which the demo adds to each recipe's stages, with
   ``evaluate.knn_monitor``: frozen features of the pretrained encoder) with the chance levels,
   and where the reports are;
4. writes the first test records as stageable EDF nights with EDF+ scorings under
   ``DATA/edf/`` and ``DATA/edf_other_names/`` (``demo_nights.py``) for README's "Stage a night".
The data are synthetic: the numbers show the pipeline works, not how PART does on real EEG.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from part import compare, train
from part.config import load_recipe
from part.config.recipes import find_recipe

RECIPES = ("eeg_sleep_demo", "eeg_sleep_demo_part_grid", "eeg_sleep_demo_mae", "eeg_sleep_demo_supervised")
EEG_BASELINES = ("eeg_sleep_demo_rp", "eeg_sleep_demo_ts", "eeg_sleep_demo_cpc")
PROBES = ("linear_probe", "knn")  # stages added to every demo run (supervised: its finetuned encoder)


def prepare(data: Path, records: int, n_test: int, n_finetune: int) -> None:
    if (data / "prep" / "splits.json").exists():
        print(f"using the prepared synthetic data in {data / 'prep'}")
        held = len(json.loads((data / "prep" / "splits.json").read_text()).get("finetune") or [])
        if held != n_finetune:
            print(f"note: it holds {held} finetune records, not {n_finetune} (the demo recipes hold 1 out of training "
                  f"to fit the calibration temperature on); delete {data} to prepare it afresh")
        return
    cmd = [sys.executable, "-m", "part.data_prep.physionet2018", "--synthetic", str(records),
           "--src", str(data / "raw"), "--out", str(data / "prep"), "--n-test", str(n_test),
           "--n-finetune", str(n_finetune), "--no-progress"]
    print("$ part-prepare-pc18 " + " ".join(cmd[3:]), flush=True)
    if subprocess.call(cmd) != 0:
        sys.exit("error: preparing the synthetic demo data failed (see above)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.modalities.eeg.sleep.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("demo_data"))
    ap.add_argument("--runs", type=Path, default=Path("demo_runs"))
    ap.add_argument("--records", type=int, default=12)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--n-finetune", type=int, default=5)
    ap.add_argument("--eeg-baselines", action="store_true",
                    help="also run relative positioning, temporal shuffling and CPC (the same budget)")
    a = ap.parse_args(argv)
    print("PART demo on SYNTHETIC sleep EEG (generated records, not real recordings)\n", flush=True)
    prepare(a.data, a.records, a.n_test, a.n_finetune)
    run_dirs = []
    for recipe in RECIPES + (EEG_BASELINES if a.eeg_baselines else ()):
        print(f"\n=== {recipe} ===", flush=True)
        stages = load_recipe(find_recipe(recipe), ()).run.stages + list(PROBES)  # + the frozen-feature protocols
        code = train.main([recipe, f"data.root={a.data / 'prep'}", f"run.output_dir={a.runs}",
                           f"run.stages=[{','.join(stages)}]", "evaluate.knn_monitor=true"])
        if code != 0:
            return code
        run_dirs.append(a.runs / load_recipe(find_recipe(recipe), ()).run.name)
    print("\n=== comparison (SYNTHETIC data; the paper's numbers are for real PC18 recordings) ===")
    code = compare.main([str(d) for d in run_dirs] + ["--out", str(a.runs)])
    print_calibration(run_dirs)
    print_protocols(run_dirs)
    print("\nreports: " + ", ".join(str(d / "report" / "report.md") for d in run_dirs))
    from part.modalities.eeg.sleep.demo_nights import write_demo_nights
    nights = write_demo_nights(a.data / "raw", a.data / "prep", a.data)
    print(f"stageable SYNTHETIC EDF nights with their scorings (test records): {', '.join(map(str, nights))}; "
          f"try: part-stage {run_dirs[0]} {a.data / 'edf'} --out staged/")
    return code


def print_calibration(run_dirs) -> None:
    """Each run's ECE (10 bins, top class) and NLL on the test split, before and after its
    temperature (report.json's ``calibration``)."""
    print("\n=== calibration on the test split (SYNTHETIC data; ECE 0 = calibrated, 10 equal-width bins) ===")
    print(f"{'run':34s} {'T':>6s} {'ECE before':>11s} {'ECE after':>10s} {'NLL before':>11s} {'NLL after':>10s}")
    for d in run_dirs:
        report = d / "report" / "report.json"
        cal = json.loads(report.read_text()).get("calibration") if report.is_file() else None
        if not cal:
            print(f"{d.name:34s} (no calibration in {report})")
            continue
        after = cal.get("after") or {}
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{d.name:34s} {fmt(cal.get('temperature')):>6s} {fmt(cal['before']['ece']):>11s} "
              f"{fmt(after.get('ece')):>10s} {fmt(cal['before']['nll']):>11s} {fmt(after.get('nll')):>10s}")


def print_protocols(run_dirs) -> None:
    """Test kappa of finetuning, the linear probe and the kNN per run, with the chance levels."""
    print("\n=== evaluation protocols (SYNTHETIC data; Cohen's kappa on the test subjects; chance: kappa 0) ===")
    print(f"{'run':34} {'finetune':>13} {'linear probe':>13} {'kNN':>13}   chance accuracy (majority class)")
    for d in run_dirs:
        reports = [d / "report" / "report.json", d / "report" / "linear_probe" / "report.json",
                   d / "report" / "knn" / "report.json"]
        found = [json.loads(r.read_text()) if r.exists() else {} for r in reports]
        kappas = [_kappa_text(r) for r in found]
        chance = found[1].get("chance") or found[2].get("chance") or {}
        acc = chance.get("accuracy")
        reference = "REFERENCE" in str((found[1].get("protocol") or {}).get("features", ""))
        print(f"{d.name + (' *' if reference else ''):34} {kappas[0]:>13} {kappas[1]:>13} {kappas[2]:>13}   "
              + (f"{acc:.3f} ({chance.get('majority_class')})" if acc is not None else "n/a"))
    print("kappa: mean ± std over the finetune draws (as the comparison); linear probe and kNN: frozen pretrained "
          "encoder; * no pretraining: its own finetuned encoder (a reference)")


def _kappa_text(report: dict) -> str:
    """'mean ± std' of a report's kappa over its repeats, else its single kappa, else 'n/a'."""
    repeats = report.get("repeats") or {}
    if isinstance(repeats, dict) and repeats.get("kappa_std") is not None:
        return f"{repeats['kappa_mean']:.3f} ± {repeats['kappa_std']:.3f}"
    return f"{report['kappa']:.3f}" if isinstance(report.get("kappa"), float) else "n/a"


if __name__ == "__main__":
    sys.exit(main())
