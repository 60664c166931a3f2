"""`python -m part.train RECIPE [dotted.key=value ...]` (also `part-train`): run the recipe's
stages in order.

RECIPE is a YAML file, or the bare name of a recipe shipped with the toolkit (e.g.
`eeg_sleep_demo`, see `python -m part.train --list`). Everything lands in the run directory
`<run.output_dir>/<run.name>`: `config.yaml` (fully resolved), `metrics.jsonl`, `checkpoints/`
(`last.pt`, `pretrain.pt`, `finetuned.pt`, `best.pt`), `report/`. Rerunning the same command
resumes an interrupted run (`run.resume=auto`); finished stages are not rerun. Multi-GPU /
multi-node: `torchrun --nproc_per_node=K -m part.train RECIPE`. Bad recipes or data exit with
code 2 and a one-paragraph message; nothing written is overwritten.
"""
from __future__ import annotations

import argparse
import os
import sys

from part.config.recipes import find_recipe, shipped_recipes
from part.errors import run_cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", nargs="?", help="YAML recipe file, or a shipped recipe's name "
                    "(e.g. recipes/digits_demo.yaml or eeg_sleep_demo)")
    ap.add_argument("overrides", nargs="*", help="dotted.key=value, e.g. pretrain.epochs=3 run.device=cpu")
    ap.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    a = ap.parse_args(argv)
    if a.list or a.recipe is None:
        print("\n".join(shipped_recipes()) if a.list else ap.format_usage().strip())
        return 0 if a.list else 2

    def work() -> None:
        from part.config import load_recipe  # after parsing: `--help` imports neither torch nor sklearn
        from part.training.runner import run

        run(load_recipe(find_recipe(a.recipe), a.overrides))
    return run_cli(work, interrupted="interrupted before training started; nothing to resume")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
