"""`python -m part.compare RUN_DIR [RUN_DIR ...] --out DIR` (also `part-compare`): several runs
side by side next to the paper's numbers. The logic is in `part.evaluation.compare`."""
import sys

from part.evaluation.compare import main

if __name__ == "__main__":
    sys.exit(main())
