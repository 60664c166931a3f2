"""`python -m part.compare RUN_DIR [RUN_DIR ...] [--out DIR]` (also `part-compare`): several
finished runs side by side next to the paper's numbers (``comparison.md``, ``.json``, ``.png``).

Runs must share their test data and finetuning budget (``data.name``, ``data.root``,
``data.limit_test``, ``data.limit_train``, ``finetune.epochs``, ``finetune.batch_size``), else
the comparison is refused (exit code 2) naming both runs and the differing value. The logic is in
``part.evaluation.compare``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from part.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (python -m part.train output)")
    ap.add_argument("--out", default=None, help="folder for comparison.{md,json,png} "
                                                "(default: the runs' common parent folder)")
    args = ap.parse_args(argv)

    def work() -> None:
        from part.evaluation.compare import compare

        paths = compare(args.runs, args.out)
        print(paths["markdown"].read_text(encoding="utf-8"))
        print(f"wrote {paths['markdown']}, {paths['json']} and {paths['png']}")
    return run_cli(work)


if __name__ == "__main__":
    sys.exit(main())
