"""Prepare your own polysomnography recordings (any EDF/BDF/FIF/BrainVision/EEGLAB file) for PART.

    python data_prep/psg.py --src DIR --out PREP --channels "C4-M1,F4-M1" [--rename "C4-A1=C4-M1"]
        [--hypnogram-glob "*Hypnogram*"] [--subject-regex REGEX] [--trim-wake-min 0] [--workers N]
        [--n-test K] [--n-finetune K] [--seed S] [--dtype float16] [--overwrite]

Every recording under DIR is read with MNE (only the --channels, matched by name after --rename;
a bipolar "A-B" absent from the file is derived from A and B), band-passed 0.1-30 Hz (zero phase),
resampled to 100 Hz, cut into 30-s windows on the hypnogram's epoch grid and z-scored per window
and channel: the same pipeline and output format as data_prep/physionet2018.py (PREP/records/,
manifest.json, splits.json). Every EEG recipe reads it: set ``data.name: sleep_edf`` (described by
the manifest's dataset line, no PC18 paper reference; ``data.name: pc18`` reads it too but reports
it against the PC18 paper's numbers).

Hypnograms: files matching --hypnogram-glob (EDF+ annotations, or .txt/.csv/.tsv with one stage
per 30-s epoch) pair with the recording in the same folder whose name shares the longest prefix
(SC4001E0-PSG.edf <- SC4001EC-Hypnogram.edf); without one, the stage annotations inside the
recording are used; without any, the recording is prepared UNLABELLED (pretraining only).
Stage spellings: modalities/eeg/hypnogram.py; unknown ones are -1 and counted in the manifest.
--subject-regex: the subject id is the regex's first group on the record name (records of one
subject share a split), else each record is its own subject. Exit codes: 0 all prepared, 1 some
records failed (reasons listed), 2 bad arguments or input, 130 interrupted. Rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from functools import partial
from pathlib import Path

try:
    import data_prep  # noqa: F401
except ImportError:  # run as `python data_prep/psg.py` without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.pc18_splits import SplitSettings
from data_prep.prepare import PrepConfig, RunResult, RunSettings, prepare_sources
from data_prep.psg_sources import HYPNOGRAM_GLOB, find_psg
from modalities.eeg.mne_reader import parse_channels, parse_rename
from part.errors import DataError, UserInputError

DATASET = "own polysomnography recordings (data_prep/psg.py)"


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
    add("--n-finetune", type=int, default=n_finetune, help="labelled subjects for finetuning")
    add("--seed", type=int, default=0, help="seed of the subject splits")
    add("--dtype", choices=("float16", "float32"), default="float16", help="storage type of the windows")
    add("--overwrite", action="store_true", help="redo every record; replaces an output of other parameters")
    add("--no-progress", action="store_true", help="no progress bar")


def check_common_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> PrepConfig:
    """Validate the shared options; return the preparation parameters."""
    for name, minimum in (("workers", 1), ("n_test", 0), ("n_finetune", 0)):
        if getattr(args, name) < minimum:
            p.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    try:
        channels, rename = parse_channels(args.channels), parse_rename(args.rename)
    except DataError as exc:
        p.error(str(exc))
    trim = args.trim_wake_min if args.trim_wake_min > 0 else None
    return PrepConfig(channels=channels, dtype=args.dtype, rename=tuple(rename.items()), trim_wake_min=trim)


def summary(result: RunResult, out: Path) -> str:
    """What was prepared, the splits, unlabelled recordings and failures, as printed lines."""
    m, s = result.manifest, result.splits
    unlabelled = sorted(n for n, r in m["records"].items() if not r.get("has_annotations"))
    unknown = m["totals"].get("unknown_stages") or {}
    lines = [
        f"prepared {len(m['records'])} records into {out} ({len(result.prepared)} now, "
        f"{len(result.skipped)} already done): {m['totals']['windows']} windows, label counts "
        f"{m['totals']['label_counts']}",
        f"splits (seed {s['seed']}): test {len(s['test'])}, finetune {len(s['finetune'])}, "
        f"pretrain {len(s['pretrain'])} records ({len(set(s['subjects'].values()))} subjects)",
        *(f"warning: {w}" for w in result.warnings),
    ]
    if unlabelled:
        lines.append(f"{len(unlabelled)} recordings have no hypnogram and were prepared UNLABELLED (pretraining "
                     f"only): {', '.join(unlabelled[:10])}{' ...' if len(unlabelled) > 10 else ''}")
    if unknown:
        lines.append(f"unknown stage labels scored -1 (epochs): {unknown}")
    if result.failed:
        lines.append(f"FAILED {len(result.failed)} records (listed under 'failed' in {out / 'manifest.json'}; "
                     "the others are prepared):")
        lines += [f"  {reason}" for reason in result.failed.values()]
    return "\n".join(lines)


def run_preparation(prepare) -> int:
    """Call ``prepare() -> (RunResult, out)``, print the summary; return the exit code."""
    try:
        result, out = prepare()
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk or a read-only --out while writing the manifest
        print(f"error: {exc}; finished records are kept, rerun the same command to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished records are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary(result, out), file=sys.stderr if result.failed else sys.stdout)
    return result.exit_code


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="psg.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, channels=None, n_test=2, n_finetune=2, trim=0.0)
    p.add_argument("--hypnogram-glob", default=HYPNOGRAM_GLOB, help="file names of hypnograms (fnmatch pattern)")
    p.add_argument("--subject-regex", help=r'subject id = first group on the record name, e.g. "^(SC4\d\d)"')
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = check_common_args(parser, args)

    def prepare():
        sources, failed = find_psg(args.src, args.hypnogram_glob, subject_function(args.subject_regex))
        extra = {"rename": dict(config.rename), "hypnogram_glob": args.hypnogram_glob}
        run = RunSettings(DATASET, args.src, None, extra, "recordings")
        result = prepare_sources(sources, args.out, run, config, failed, args.workers,
                                 SplitSettings(args.n_test, args.n_finetune, args.seed),
                                 overwrite=args.overwrite, progress=not args.no_progress)
        return result, args.out

    return run_preparation(prepare)


if __name__ == "__main__":
    sys.exit(main())
