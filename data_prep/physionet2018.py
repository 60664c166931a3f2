"""Prepare the PhysioNet/CinC Challenge 2018 polysomnography for PART's EEG sleep staging.

    python data_prep/physionet2018.py --src RAW --out PREP [--workers N] [--dtype float16]
        [--channels F3-M2 ...] [--n-test 200] [--n-finetune 10] [--seed 0] [--metadata CSV]
        [--overwrite] [--download --split training|test [--limit N] [--base-url URL]]
        [--synthetic N]

Reads every record under RAW (found by its .hea, flat or in training/<rec>/, test/<rec>/), keeps
the EEG channels by name, band-passes 0.1-30 Hz (zero phase), resamples to 100 Hz, cuts 30-s
windows on the grid of the stage onsets, labels them from the .arousal stage notes and z-scores
each window and channel. Writes PREP/records/<rec>.npy, <rec>.labels.npy, PREP/manifest.json and
PREP/splits.json (layout: data_prep/pc18_prepare.py). Rerunning the same command resumes.
``--download`` first fetches records from PhysioNet into RAW; ``--synthetic N`` first writes N
synthetic demo records into RAW. Exit codes: 0 all prepared, 1 some records failed (listed in the
manifest and at the end), 2 bad arguments or an output prepared with other parameters, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

try:
    from part.data_prep.cli import run_preparation
except ModuleNotFoundError as exc:  # `python data_prep/physionet2018.py` without the toolkit installed
    sys.exit(f"error: {exc}; install the toolkit first (`pip install -e .` in the repository), then run "
             "`part-prepare-pc18` or `python data_prep/physionet2018.py`")
from part.errors import UserInputError  # noqa: E402
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS  # noqa: E402

DEFAULT_BASE_URL = "https://physionet.org/files/challenge-2018/1.0.0/"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="physionet2018.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--src", type=Path, required=True, help="directory of raw PC18 records (--download/--synthetic write it)")
    add("--out", type=Path, required=True, help="output directory of the prepared dataset")
    add("--workers", type=int, default=min(4, os.cpu_count() or 1), help="records prepared in parallel (processes)")
    add("--dtype", choices=("float16", "float32"), default="float16", help="storage type of the windows")
    add("--channels", nargs="+", default=list(PC18_EEG_CHANNELS), metavar="NAME", help="signal names to keep, in order")
    add("--n-test", type=int, default=200, help="labelled subjects held out for testing")
    add("--n-finetune", type=int, default=10, help="labelled subjects for finetuning")
    add("--seed", type=int, default=0, help="seed of the subject splits (and of --synthetic)")
    add("--metadata", type=Path, help="CSV with columns Record, Age, Sex (e.g. sleep_records.csv)")
    add("--overwrite", action="store_true", help="redo every record; replaces an output of other parameters")
    add("--download", action="store_true", help="first download records from PhysioNet into --src/<split>/")
    add("--split", choices=("training", "test"), help="which PC18 split --download fetches")
    add("--limit", type=int, help="download at most this many records")
    add("--base-url", default=DEFAULT_BASE_URL, help="PhysioNet file server base URL")
    add("--synthetic", type=int, metavar="N", help="first write N synthetic demo records into an empty --src")
    add("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.download and args.synthetic is not None:
        p.error("--download and --synthetic exclude each other: pick one source of records")
    if args.download and not args.split:
        p.error("--download needs --split training or --split test")
    if (args.split or args.limit is not None) and not args.download:
        p.error("--split and --limit only apply with --download")
    for name in ("workers", "n_test", "n_finetune", "limit", "synthetic"):
        value = getattr(args, name)
        minimum = 1 if name in ("workers", "limit", "synthetic") else 0
        if value is not None and value < minimum:
            p.error(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


def _fetch(args: argparse.Namespace) -> None:
    """Run --download or --synthetic into --src (both modules are imported only when asked for)."""
    if args.download:
        try:
            from part.data_prep.pc18_download import download_records
        except ModuleNotFoundError as exc:
            raise UserInputError(
                f"--download is not available here ({exc}); get the records by hand into --src"
            ) from None

        progress = not args.no_progress
        paths = download_records(args.src, args.split, args.limit, args.base_url, args.workers, progress=progress)
        print(f"downloaded {len(paths)} {args.split} records into {args.src / args.split}", file=sys.stderr)
    if args.synthetic is not None:
        try:
            from part.data_prep.pc18_synthetic import write_synthetic_records
        except ModuleNotFoundError as exc:
            raise UserInputError(f"--synthetic is not available here ({exc})") from None

        args.src.mkdir(parents=True, exist_ok=True)
        try:
            names = write_synthetic_records(args.src, args.synthetic, seed=args.seed)
        except FileExistsError as exc:
            raise UserInputError(f"--synthetic: {exc}") from None
        print(f"wrote {len(names)} synthetic records into {args.src}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)

    def prepare():
        from part.data_prep.pc18_prepare import PrepConfig, SplitSettings, prepare_dataset

        _fetch(args)
        return prepare_dataset(
            args.src,
            args.out,
            PrepConfig(channels=tuple(args.channels), dtype=args.dtype),
            workers=args.workers,
            splits=SplitSettings(args.n_test, args.n_finetune, args.seed),
            metadata=args.metadata,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            synthetic=args.synthetic is not None,
        ), args.out
    return run_preparation(prepare)


if __name__ == "__main__":
    sys.exit(main())
