"""Prepare Sleep-EDF Expanded (PhysioNet sleep-edfx) for PART's EEG sleep staging.

    python data_prep/sleep_edf.py --src RAW --out PREP [--download] [--subset cassette|telemetry]
        [--limit N] [--channels "EEG Fpz-Cz,EEG Pz-Oz"] [--rename OLD=NEW] [--trim-wake-min 30]
        [--workers N] [--n-test K] [--n-finetune K] [--seed S] [--dtype float16] [--overwrite]
        [--synthetic N [--synthetic-hours 7,9]] [--base-url URL]

Pairs every ``SC4ssN??-PSG.edf`` under RAW with the ``SC4ssN??-Hypnogram.edf`` whose name agrees
up to the 7th character (telemetry: ``ST7ssN??``). The record id is ``SC4ssN`` (subject ``ss``,
night ``N``) and the subject id ``SC4ss``: both nights of a subject always land in the same split.
Labels: Sleep stage W/1/2/3/4/R -> W, N1, N2, N3 (3 and 4), REM; Sleep stage ? and Movement time
-> -1. ``--trim-wake-min 30`` (default) keeps 30 minutes of wake before the first and after the
last sleep epoch (the long wake periods of the cassette recordings are dropped; 0 keeps all).
Same pipeline and output format as data_prep/physionet2018.py and psg.py (0.1-30 Hz, 100 Hz,
30-s windows z-scored; PREP/records/, manifest.json, splits.json), read by
``recipes/eeg_sleep_edf.yaml``.

``--download`` first fetches the subset from PhysioNet (resumable, every file checked against the
dataset's SHA256SUMS.txt) into RAW/sleep-cassette/ or RAW/sleep-telemetry/; ``--limit N``: the
first N subjects (download and preparation). ``--synthetic N`` (1-100) first writes N SYNTHETIC subjects
(two nights each) in the exact layout into an empty RAW. Exit codes: 0 all prepared, 1 some
records failed (reasons listed), 2 bad arguments or input, 130 interrupted. Rerunning resumes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    from part.data_prep.cli import add_common_args, check_common_args, run_preparation
except ModuleNotFoundError as exc:  # `python data_prep/sleep_edf.py` without the toolkit installed
    sys.exit(f"error: {exc}; install the toolkit first (`pip install -e .` in the repository), then run "
             "`part-prepare-sleep-edf` or `python data_prep/sleep_edf.py`")
from part.data_prep.sleep_edf_download import BASE_URL, FOLDERS, PREFIXES  # noqa: E402
from part.errors import DataError, UserInputError  # noqa: E402

CHANNELS = "EEG Fpz-Cz,EEG Pz-Oz"
DATASET = "Sleep-EDF Expanded (PhysioNet sleep-edfx 1.0.0)"
MAX_SYNTHETIC = 100  # --synthetic subjects: two-digit ids 00-99 (write_synthetic_sleep_edf's limit)
_NAME = re.compile(r"^(?P<record>(?P<subject>(SC4|ST7)\d\d)\d)(?P<rest>\w\w)-(?P<kind>PSG|Hypnogram)\.edf$")


def _files(src: Path, subset: str) -> dict[str, dict[str, list[Path]]]:
    """``{first 7 characters: {"PSG": [paths], "Hypnogram": [paths]}}`` of the subset's files."""
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(src.rglob("*.edf")):
        match = _NAME.match(path.name)
        if match and path.name.startswith(PREFIXES[subset]):
            key = path.name[:7]
            found.setdefault(key, {"PSG": [], "Hypnogram": []})[match["kind"]].append(path)
    return found


def find_sleep_edf(src: Path, subset: str = "cassette",
                   limit: int | None = None) -> tuple[list, dict[str, str]]:
    """``prepare.RecordSource`` records (record ``SC4ssN``, subject ``SC4ss``) of the first ``limit`` subjects under
    ``src``, and ``{name: reason}`` for unusable files. Raises DataError when none is found."""
    from part.data_prep.prepare import RecordSource
    from part.data_prep.psg_sources import read_psg

    src = Path(src)
    if not src.is_dir():
        raise DataError(f"--src {src} is not a directory; use --download or --synthetic N to fill it, or point it "
                        "at the folder holding sleep-cassette/")
    found = _files(src, subset)
    subjects = sorted({key[:5] for key in found})[:limit]
    sources, failed = [], {}
    for key in sorted(k for k in found if k[:5] in subjects):
        psgs, hyps = found[key]["PSG"], found[key]["Hypnogram"]
        record = key[:6]
        if len(psgs) != 1 or len(hyps) > 1:
            names = [p.name for p in psgs + hyps]
            failed[record] = (f"{record}: expected one {key}?-PSG.edf and at most one {key}?-Hypnogram.edf under "
                              f"{src}, found {names}: remove the extra copies")
            continue
        sources.append(RecordSource(record, psgs[0], hyps[0] if hyps else None, subset, read_psg, key[:5],
                                    {"root": src}))
    if not sources and not failed:
        raise DataError(
            f"no Sleep-EDF {subset} night ({PREFIXES[subset]}ssN??-PSG.edf) under --src {src}; fetch them with "
            f"--download (into {src / FOLDERS[subset]}) or write synthetic ones with --synthetic N")
    return sources, failed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sleep_edf.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, channels=CHANNELS, n_test=20, n_finetune=10, trim=30.0)
    add = p.add_argument
    add("--subset", choices=sorted(FOLDERS), default="cassette", help="sleep-cassette (SC) or sleep-telemetry (ST)")
    add("--limit", type=int, help="only the first N subjects (download and preparation)")
    add("--download", action="store_true", help="first download the subset from PhysioNet into --src")
    add("--base-url", default=BASE_URL, help="PhysioNet file server folder of sleep-edfx")
    add("--synthetic", type=int, metavar="N", help="first write N synthetic subjects (2 nights each) into --src")
    add("--synthetic-hours", default="7,9", help="night length range of --synthetic, hours: LOW,HIGH")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[float, float]:
    if args.download and args.synthetic is not None:
        p.error("--download and --synthetic exclude each other: pick one source of nights")
    for name in ("limit", "synthetic"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.synthetic is not None and args.synthetic > MAX_SYNTHETIC:
        p.error(f"--synthetic must be <= {MAX_SYNTHETIC} (Sleep-EDF subject numbers have two digits, 00-99), "
                f"got {args.synthetic}")
    try:
        hours = tuple(float(h) for h in args.synthetic_hours.split(","))
        low, high = (hours * 2)[:2] if len(hours) == 1 else hours
    except ValueError:
        p.error(f"--synthetic-hours {args.synthetic_hours!r}: expected LOW,HIGH hours, e.g. 7,9")
    if not 0.5 <= low <= high <= 24:
        p.error(f"--synthetic-hours {args.synthetic_hours!r}: expected 0.5 <= LOW <= HIGH <= 24")
    return low, high


def _fetch(args: argparse.Namespace, hours: tuple[float, float]) -> None:
    """Run --download or --synthetic into --src."""
    if args.download:
        from part.data_prep.sleep_edf_download import download_sleep_edf

        paths = download_sleep_edf(args.src, args.subset, args.limit, args.base_url, args.workers,
                                   progress=not args.no_progress)
        print(f"downloaded {len(paths)} files into {args.src / FOLDERS[args.subset]}", file=sys.stderr)
    if args.synthetic is not None:
        from part.data_prep.sleep_edf_synthetic import write_synthetic_sleep_edf

        try:
            paths = write_synthetic_sleep_edf(args.src, args.synthetic, seed=args.seed, hours=hours,
                                              layout=args.subset)
        except FileExistsError as exc:
            raise UserInputError(f"--synthetic: {exc}") from None
        print(f"wrote {len(paths) // 2} SYNTHETIC nights ({args.synthetic} subjects) into {args.src}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = check_common_args(parser, args)
    hours = _check(parser, args)

    def prepare():
        from part.data_prep.prepare import RunSettings, prepare_sources
        from part.data_prep.splits import SplitSettings

        _fetch(args, hours)
        sources, failed = find_sleep_edf(args.src, args.subset, args.limit)
        extra = {"rename": dict(config.rename), "subset": args.subset,
                 "label_map": "Sleep stage W/1/2/3/4/R -> W/N1/N2/N3/N3/REM; Sleep stage ?, Movement time -> -1"}
        run = RunSettings(f"{DATASET}, sleep-{args.subset}", args.src, None, extra, "Sleep-EDF nights")
        result = prepare_sources(sources, args.out, run, config, failed, args.workers,
                                 SplitSettings(args.n_test, args.n_finetune, args.seed),
                                 overwrite=args.overwrite, progress=not args.no_progress,
                                 synthetic=args.synthetic is not None)
        return result, args.out

    return run_preparation(prepare)


if __name__ == "__main__":
    sys.exit(main())
