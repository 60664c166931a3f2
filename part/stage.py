"""`python -m part.stage RUN_DIR RECORDING [RECORDING ...] --out DIR`: the installed `part-stage`
command (the EEG plugin's staging command line; `part-stage --help` says everything) under its
`python -m` name. It is found through the console-script entry point, so this module names no
plugin.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points


def main(argv=None) -> int:
    found = list(entry_points(group="console_scripts", name="part-stage"))
    if not found:
        print("error: no installed plugin provides the part-stage command; the EEG plugin does: reinstall the "
              "toolkit with `pip install -e .`", file=sys.stderr)
        return 2
    return found[0].load()(argv, prog="python -m part.stage")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
