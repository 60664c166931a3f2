"""`python -m part.label_efficiency RUN_DIR [RUN_DIR ...] --points 1 2 5 10 all --draws K --out DIR`
(also `part-label-efficiency`): kappa against the number of labelled subjects (images: the label
fraction, e.g. --points 1% 10% all) for finished pretraining runs, by finetuning, a linear probe
and a kNN on the same pretrained encoder, K seeded draws of the labelled data per point.

Writes DIR/label_efficiency.{md,json,png} (mean ± std over the draws, every method in one figure
with the chance line) and one sub-run per run and point under DIR/runs/. Draws never use test
subjects. Rerunning the same command skips the finished points and resumes an interrupted one.
Extra dotted.key=value overrides (--set) apply to every sub-run, e.g. --set finetune.epochs=5.
The logic is in ``part.evaluation.label_efficiency``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from part.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.label_efficiency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished pretraining runs (part-train output)")
    ap.add_argument("--points", nargs="+", default=["1", "2", "5", "10", "all"],
                    help="labelled subjects per point (images: fractions such as 1%% 10%%), or 'all' "
                         "(default: 1 2 5 10 all)")
    ap.add_argument("--draws", type=int, default=3, help="seeded draws of the labelled data per point (default 3)")
    ap.add_argument("--out", required=True, help="folder for the table, the plot and the sub-runs")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="recipe overrides for every sub-run, e.g. finetune.epochs=5 run.device=cpu")
    args = ap.parse_args(argv)

    def work() -> None:
        from part.evaluation.label_efficiency import sweep

        paths = sweep(args.runs, args.points, args.draws, args.out, args.set)
        print(paths["markdown"].read_text(encoding="utf-8"))
        print(f"wrote {paths['markdown']}, {paths['json']} and {paths['png']}")
    return run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
