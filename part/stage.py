"""`python -m part.stage RUN_DIR RECORDING [RECORDING ...] --out DIR [--channels "F3-M2=EEG Fpz-Cz,..."]
[--hypnogram FILE ...] [--device cpu|cuda] [--batch-size N]` (also `part-stage`): stage recordings with a
finetuned run; see `--help`.

Generic: the command line belongs to the plugin that registers the tool ``stage_cli`` (the EEG
plugin's ``modalities/eeg/staging_cli.py``), found through the registry; the core imports no plugin.
Exit codes: 0 every recording staged, 1 some recording failed (the others are written), 2 bad
usage or input.
"""
from __future__ import annotations

import os
import sys

from part.errors import UserInputError, user_message
from part.registry import get_tool


def main(argv=None) -> int:
    try:
        cli = get_tool("stage_cli")
    except (KeyError, UserInputError) as exc:
        print(f"error: no installed plugin provides staging ({user_message(exc)}); the EEG plugin does: "
              f"reinstall the toolkit with `pip install -e .`", file=sys.stderr)
        return 2
    return cli(argv, prog="python -m part.stage")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
