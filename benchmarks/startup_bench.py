"""How fast the command lines start: ``<script> --help`` of every installed ``part-*`` console
script, as a ratio to ``python -c "import torch"`` measured in the same run (target < 0.3), plus
the heavy packages each one imported (none expected).

    python benchmarks/startup_bench.py [--repeats 5]

Each command runs as a fresh process (the installed script, as a user types it); times are the
median of ``--repeats`` runs after one warm-up run (the page cache), wall clock.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

HEAVY = ("torch", "sklearn", "timm", "torchvision", "mne", "matplotlib", "scipy", "wfdb")
PROBE = ("import sys, runpy; sys.argv = [sys.argv[1], '--help']\n"
         "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit:\n    pass\n"
         f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))), file=sys.stderr)")


def wall(cmd: list[str], repeats: int) -> float:
    """Median wall time (s) of ``cmd`` over ``repeats`` runs after one warm-up."""
    subprocess.run(cmd, capture_output=True, check=False)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    bindir = Path(sys.executable).parent
    torch_s = wall([sys.executable, "-c", "import torch"], a.repeats)
    bare_s = wall([sys.executable, "-c", "pass"], a.repeats)
    print(f"reference: python -c 'import torch' {torch_s:.3f} s; bare interpreter {bare_s:.3f} s "
          f"(median of {a.repeats})\n")
    print("| command | --help (s) | ratio to import torch | heavy packages imported |")
    print("|---|---|---|---|")
    worst = 0.0
    for ep in sorted(entry_points(group="console_scripts"), key=lambda e: e.name):
        if not ep.name.startswith("part-"):
            continue
        script = shutil.which(ep.name, path=str(bindir)) or shutil.which(ep.name)
        if script is None:
            print(f"| {ep.name} | not installed | | |")
            continue
        seconds = wall([script, "--help"], a.repeats)
        heavy = subprocess.run([sys.executable, "-c", PROBE, script], capture_output=True, text=True).stderr
        heavy = heavy.strip().splitlines()[-1] if heavy.strip() else ""
        worst = max(worst, seconds / torch_s)
        print(f"| {ep.name} | {seconds:.3f} | {seconds / torch_s:.2f} | {heavy or 'none'} |")
    print(f"\nworst ratio {worst:.2f} (target < 0.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
