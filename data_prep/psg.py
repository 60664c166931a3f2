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
Stage spellings: modalities/eeg/recordings/constants.py (read by hypnogram_io.py); unknown ones are -1
and counted in the manifest.
--subject-regex: the subject id is the regex's first group on the record name (records of one
subject share a split), else each record is its own subject. Exit codes: 0 all prepared, 1 some
records failed (reasons listed), 2 bad arguments or input, 130 interrupted. Rerunning resumes.
"""

from __future__ import annotations

import argparse
import sys

try:
    from part.data_prep.cli import (HYPNOGRAM_GLOB, add_common_args, check_common_args, run_preparation,
                                    subject_function)
except ModuleNotFoundError as exc:  # `python data_prep/psg.py` without the toolkit installed
    sys.exit(f"error: {exc}; install the toolkit first (`pip install -e .` in the repository), then run "
             "`part-prepare-psg` or `python data_prep/psg.py`")

DATASET = "own polysomnography recordings (data_prep/psg.py)"


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
        from part.data_prep.prepare import RunSettings, prepare_sources
        from part.data_prep.psg_sources import find_psg
        from part.data_prep.splits import SplitSettings

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
