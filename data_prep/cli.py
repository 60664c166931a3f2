"""What the preparation command lines share: their common options, checks, summary and exit codes.

``physionet2018.py``, ``sleep_edf.py`` and ``psg.py`` (``part-prepare-pc18``, ``-sleep-edf``,
``-psg``) build their parsers with :func:`add_common_args` (psg/sleep_edf) and finish with
:func:`run_preparation`. Nothing here imports the signal code until a preparation runs, so
``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from functools import partial
from pathlib import Path

from part.errors import DataError, run_cli
from part.modalities.eeg.recordings.discovery import HYPNOGRAM_GLOB  # noqa: F401 (psg.py's default)



def add_common_args(p: argparse.ArgumentParser, channels: str | None, n_test: int, n_finetune: int,
                    trim: float) -> None:
    """The options psg.py and sleep_edf.py share."""
    add = p.add_argument
    add("--src", type=Path, required=True, help="directory of recordings (and hypnograms)")
    add("--out", type=Path, required=True, help="output directory of the prepared dataset")
    add("--channels", required=channels is None, default=channels,
        help='channel names to keep, comma-separated, in order (e.g. "C4-M1,F4-M1")')
    add("--rename", default=None, help='map file channel names to yours: "OLD=NEW,OLD2=NEW2" (e.g. "C4-A1=C4-M1")')
    add("--trim-wake-min", type=float, default=trim,
        help="minutes of wake kept before the first and after the last sleep epoch (0 or negative: keep all)")
    add("--workers", type=int, default=min(4, os.cpu_count() or 1), help="records prepared in parallel (processes)")
    add("--n-test", type=int, default=n_test, help="labelled subjects held out for testing")
    add("--n-finetune", type=int, default=n_finetune, help="labelled subjects for finetuning (the first draw; "
        "part-label-efficiency draws from every labelled subject outside the test split)")
    add("--seed", type=int, default=0, help="seed of the subject splits")
    add("--dtype", choices=("float16", "float32"), default="float16", help="storage type of the windows")
    add("--overwrite", action="store_true", help="redo every record; replaces an output of other parameters")
    add("--no-progress", action="store_true", help="no progress bar")


def check_common_args(p: argparse.ArgumentParser, args: argparse.Namespace):
    """Validate the shared options; return the preparation parameters (a ``prepare.PrepConfig``)."""
    from part.data_prep.prepare import PrepConfig
    from part.modalities.eeg.recordings.channels import parse_channels, parse_rename

    for name, minimum in (("workers", 1), ("n_test", 0), ("n_finetune", 0)):
        if getattr(args, name) < minimum:
            p.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    try:
        channels, rename = parse_channels(args.channels), parse_rename(args.rename)
    except DataError as exc:
        p.error(str(exc))
    trim = args.trim_wake_min if args.trim_wake_min > 0 else None
    return PrepConfig(channels=channels, dtype=args.dtype, rename=tuple(rename.items()), trim_wake_min=trim)


def summary(result, out: Path) -> str:
    """What was prepared, the splits, unlabelled recordings and failures, as printed lines."""
    m, s = result.manifest, result.splits
    unlabelled = sorted(n for n, r in m["records"].items() if not r.get("has_annotations"))
    unknown = m["totals"].get("unknown_stages") or {}
    lines = [
        f"prepared {len(m['records'])} records into {out} ({len(result.prepared)} now, "
        f"{len(result.skipped)} already done): {m['totals']['windows']} windows, label counts "
        f"{m['totals']['label_counts']}",
        f"splits (seed {s['seed']}): test {len(s['test'])}, finetune {len(s['finetune'])}, "
        f"pretrain {len(s['pretrain'])} records ({len(set(s['subjects'].values()))} subjects); finetune pool "
        f"{s.get('finetune_pool', '?')} labelled subjects outside test (the largest label-efficiency point)",
        *(f"warning: {w}" for w in result.warnings),
    ]
    if unlabelled:
        lines.append(f"{len(unlabelled)} recordings have no hypnogram and were prepared UNLABELLED (pretraining "
                     f"only): {', '.join(unlabelled[:10])}{' ...' if len(unlabelled) > 10 else ''}")
    if unknown:
        lines.append(f"unknown stage labels scored -1 (epochs): {unknown}")
    lines += flat_warnings(m["records"])
    if result.failed:
        lines.append(f"FAILED {len(result.failed)} records (listed under 'failed' in {out / 'manifest.json'}; "
                     "the others are prepared):")
        lines += [f"  {reason}" for reason in result.failed.values()]
    return "\n".join(lines)


def flat_warnings(records: dict, limit: int = 10) -> list[str]:
    """Warning lines for records with windows without signal (every channel flat) or with a
    channel flat in most windows (disconnected?), from the manifest's per-record counts."""
    lines = []
    silent = {n: r["no_signal_windows"] for n, r in records.items() if r.get("no_signal_windows")}
    if silent:
        shown = ", ".join(f"{n} ({k} of {records[n]['n_windows']})" for n, k in sorted(silent.items())[:limit])
        lines.append(f"warning: {len(silent)} records have windows without signal (every channel flat, e.g. a "
                     f"disconnected headbox): {shown}{' ...' if len(silent) > limit else ''}")
    dead = {n: [c for c, k in (r.get("flat_by_channel") or {}).items() if k > r["n_windows"] // 2]
            for n, r in sorted(records.items())}
    dead = {n: c for n, c in dead.items() if c}
    if dead:
        shown = ", ".join(f"{n} {c}" for n, c in list(dead.items())[:limit])
        lines.append(f"warning: {len(dead)} records have a channel flat in more than half of their windows "
                     f"(a disconnected electrode? check the montage): {shown}{' ...' if len(dead) > limit else ''}")
    return lines


def run_preparation(prepare) -> int:
    """Call ``prepare() -> (RunResult, out)``, print the summary; return the exit code
    (``part.errors.run_cli``: 2 bad input or a failed write, 130 interrupted; else the run's)."""
    def work() -> int:
        result, out = prepare()
        print(summary(result, out), file=sys.stderr if result.failed else sys.stdout)
        return result.exit_code
    return run_cli(work, os_error="the preparation stopped on a file error; finished records are kept, rerun the "
                                  "same command to resume",
                   interrupted="interrupted: finished records are kept; rerun the same command to resume")


def subject_function(pattern: str | None):
    """``--subject-regex`` -> a picklable ``name -> subject`` (None: each record its own subject)."""
    if not pattern:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"--subject-regex {pattern!r} is not a regular expression ({exc})") from None
    return partial(_subject, regex.pattern)


def _subject(pattern: str, name: str) -> str:
    match = re.search(pattern, name)
    return (match.group(1) if match and match.groups() else match.group(0)) if match else name


