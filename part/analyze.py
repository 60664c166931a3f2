"""`python -m part.analyze RUN_DIR [--from pretrain] [--n-items K] [--out DIR] [--seed S]` (also
`part-analyze`): what a run's pretext model has learnt (paper section 5.1, Figs. 4-6).

Rebuilds the method from `RUN_DIR/checkpoints/pretext.pt` (written at the end of pretraining)
and the run's `config.yaml`, takes the first K items of the run's test split, samples their
patches as in pretraining (seeded by --seed) and writes into --out (default `RUN_DIR/analysis`):
`reconstruction.png` (original | true placement | predicted placement, one reference patch at its
true place), `mixing.png` (images: patches of two items assembled), `uncertainty.png` (spread of
each patch's predicted position over all references), `symmetry.png` (Theta unordered, sorted by
position, and the truth), `theta.npy` (K, N, N, T), `theta_true.npy`, `geometry.npy` and
`analysis.json` (antisymmetry error, per-target errors, R^2 on off-grid and grid patches, the
patch geometry and checkpoint used; definitions in `part/evaluation/analysis.py`).

Exit codes: 0 done; 2 bad input (no run directory, no pretext.pt, a method without a relative
head, unreadable data), one line on stderr; 1 the model predicts non-finite values.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from part.errors import ConfigError, DataError, run_cli

SOURCES = {"pretrain": "pretext.pt"}


class NonFinite(Exception):
    """The model's predictions hold NaN or Inf (exit code 1)."""


def _recipe(run_dir: Path):
    from part.config import load_recipe
    from part.registry import method_spec

    if not (run_dir / "config.yaml").is_file():
        raise DataError(f"'{run_dir}' is not a run directory (no config.yaml); pass "
                        f"<run.output_dir>/<run.name> of a run of python -m part.train")
    recipe = load_recipe(run_dir / "config.yaml", ())
    if not method_spec(recipe.method.name).pretrains:
        raise ConfigError(f"run '{run_dir}' trains method '{recipe.method.name}', which has no "
                          f"pretraining stage and so no pretext model to analyse; part.analyze "
                          f"needs a run of a PART-type method (part, part_grid)")
    return recipe


def _test_items(bundle, n_items: int, say):
    """The first min(K, test size) test items stacked (K, ...), and their indices."""
    import torch

    n = len(bundle.test)
    if n == 0:
        raise DataError("the run's test split is empty; nothing to analyse")
    if n_items > n:
        say(f"--n-items {n_items} is more than the {n} items of the test split; using {n}")
        n_items = n
    x = torch.stack([torch.as_tensor(bundle.test[i][0]) for i in range(n_items)])
    return x.float(), list(range(n_items))


def analyze_run(run_dir: str | Path, n_items: int = 8, out: str | Path | None = None, seed: int = 0,
                device: str = "auto", source: str = "pretrain", say=print) -> dict:
    """Analyse a run (module doc); returns the analysis.json content."""
    import torch

    from part.config import recipe_to_dict
    from part.evaluation.analysis import analyze, check_relative
    from part.evaluation.analysis_plots import write_analysis
    from part.inference import resolve_device
    from part.registry import dataset_spec
    from part.training.pretext import build_pretext, load_pretext, pretext_path, pretext_recipe
    from part.training.rundir import check_writable

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "analysis"
    recipe = _recipe(run_dir)
    state = load_pretext(run_dir)
    pretext = pretext_recipe(state, recipe)
    method, modality = build_pretext(state, pretext)
    check_relative(method, pretext.method.name)
    bundle = dataset_spec(recipe.modality.name, recipe.data.name).load(recipe.data, recipe.run.seed, 0)
    saved = dict(state.get("input_info") or {})
    if saved and recipe_to_dict(dict(bundle.input_info)) != saved:
        raise DataError(f"the run's data now give {dict(bundle.input_info)} but the pretext model "
                        f"was trained on {saved}; restore the data the run was trained on")
    check_writable(out, "--out")
    dev = resolve_device(device)
    x, items = _test_items(bundle, n_items, say)
    result = analyze(method.to(dev), modality, x.to(dev), seed, items)
    if not all(torch.isfinite(torch.as_tensor(a)).all() for a in (result.theta, result.placed)):
        raise NonFinite("the pretext model predicts NaN or Inf (a diverged pretraining?); "
                        "check metrics.jsonl")
    context = {"run_dir": str(run_dir), "checkpoint": str(pretext_path(run_dir)), "source": source,
               "method": pretext.method.name, "method_options": state["method_options"],
               "modality": pretext.modality.name, "modality_options": state["modality_options"],
               "model": state["model"], "input_info": saved, "seed": seed}
    paths = write_analysis(out, result, modality, context)
    m = result.metrics
    say(f"analysis of {len(items)} test items ({result.sampling} patches, N = {result.theta.shape[1]}) "
        f"in {out}: {', '.join(sorted(p.name for p in paths))}")
    say(f"antisymmetry error {m['symmetry_error']:.4f}; mean abs error "
        + ", ".join(f"{k} {v:.4f}" for k, v in m["mae_per_target"].items())
        + f"; R^2 off-grid {_r2(m, 'offgrid')}, grid {_r2(m, 'grid')}"
        + "; R^2 by pair type " + ", ".join(f"{t} {_fmt(v['r2'])} ({v['pairs']} pairs)"
                                            for t, v in (m.get("r2_by_pair_type") or {}).items() if t != "self"))
    return json.loads((out / "analysis.json").read_text())


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _r2(metrics: dict, key: str) -> str:
    """'0.3767 (dx 0.7225, dy 0.0140)': pooled and per target."""
    per = metrics.get(f"r2_{key}_per_target") or {}
    return _fmt(metrics[f"r2_{key}"]) + (f" ({', '.join(f'{n} {_fmt(v)}' for n, v in per.items())})" if per else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.analyze", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from", dest="source", choices=sorted(SOURCES), default="pretrain",
                    help="which model: pretrain = checkpoints/pretext.pt (the whole pretext model)")
    ap.add_argument("--n-items", type=int, default=8, help="test items to analyse (default 8)")
    ap.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/analysis")
    ap.add_argument("--seed", type=int, default=0, help="patch sampling and reference choice")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    a = ap.parse_args(argv)
    if a.n_items < 1:
        print(f"error: --n-items must be >= 1, got {a.n_items}", file=sys.stderr)
        return 2

    def work() -> None:
        analyze_run(a.run_dir, a.n_items, a.out, a.seed, a.device, a.source)
    return run_cli(work, codes={NonFinite: 1}, os_error="cannot write the analysis")


if __name__ == "__main__":
    sys.exit(main())
