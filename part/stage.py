"""`python -m part.stage RUN_DIR RECORDING [RECORDING ...] --out DIR` (the same as `part-stage`):
stage recordings with a finetuned EEG run. The command belongs to the EEG plugin
(``part.modalities.eeg.sleep.cli``, where `--help` is); this is its `python -m` name in the
toolkit's namespace.
"""
from __future__ import annotations

import os
import sys


def main(argv=None) -> int:
    from part.modalities.eeg.sleep.cli import main as stage_main

    return stage_main(argv, prog="python -m part.stage")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
