"""`part-stage RUN_DIR RECORDING [RECORDING ...] --out DIR` (also `python -m part.stage`): stage
overnight recordings with a finetuned EEG run.

RECORDING: any file MNE reads (EDF/BDF/GDF, FIF, BrainVision .vhdr, EEGLAB .set) or a WFDB
record's .hea header (PhysioNet 2018). Per recording, into --out (atomically):
<rec>.hypnogram.csv (onset_s,duration_s,stage,p_W,...,p_REM per 30-s epoch), <rec>.hypnogram.edf
(EDF+ annotations, Sleep-EDF style), <rec>.hypnogram.png, <rec>.stats.json (sleep statistics),
and with --hypnogram <rec>.agreement.json (kappa, accuracy, macro-F1, confusion, per-stage F1).
--hypnogram takes one scoring per RECORDING, in order (--hypnogram A.edf B.edf, or the flag
repeated); an EDF+ scoring whose header date is more than a day from the recording's is another
night's: that recording fails.

The model's channels are read by name; --channels "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz" maps model
channels to the recording's (MODEL=RECORDING; unmapped ones are looked up by their own name).
Exit codes: 0 every recording staged; 1 some recording failed (the others are written; an
--out directory this call created is removed again when nothing was written); 2 bad usage, run
directory or a --channels entry naming no channel of the model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from part.errors import UserInputError, run_cli, user_message


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finetuned run: <run.output_dir>/<run.name>")
    p.add_argument("recordings", type=Path, nargs="+", metavar="RECORDING",
                   help="recording files (EDF/BDF/GDF/FIF/BrainVision/EEGLAB or a WFDB .hea)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--channels", help='model=recording channel names, e.g. "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz"')
    p.add_argument("--hypnogram", type=Path, nargs="+", action="extend", metavar="FILE",
                   help="a scoring of the recording (EDF+ annotations or text/CSV) to align the 30-s windows "
                        "to and compare with; one per RECORDING, in the same order (--hypnogram A B, or the "
                        "flag repeated); put the recordings before it")
    p.add_argument("--checkpoint", default="best.pt", help="finetuned checkpoint in RUN_DIR/checkpoints "
                   "(default best.pt) or a path")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="default cpu")
    p.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    return p


def _check_usage(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[str]:
    if a.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.hypnogram and len(a.hypnogram) != len(a.recordings):
        hint = ("; the files after --hypnogram are all taken as hypnograms: put the recordings before it"
                if len(a.hypnogram) > len(a.recordings) else "")
        p.error(f"--hypnogram given {len(a.hypnogram)} file(s) for {len(a.recordings)} recording(s); give one "
                f"per RECORDING, in the same order (or none){hint}")
    from part.modalities.eeg.recordings.mne_reader import recording_name

    names = [recording_name(r) for r in a.recordings]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        p.error(f"recordings {twice} would write the same output files in --out; stage them into separate --out "
                f"directories")
    return names


def stage_one(stager, path: Path, name: str, a: argparse.Namespace, hypnogram: Path | None,
              channels: dict) -> str:
    """Stage one recording and write its files; returns the summary line (the statistics and the
    agreement are computed once, when the files are written, and cached on the hypnogram)."""
    from part.modalities.eeg.sleep.hypnogram import Hypnogram

    reference = None if hypnogram is None else Hypnogram.from_file(hypnogram)
    staged = stager.predict_file(path, channels=channels, hypnogram=reference, batch_size=a.batch_size)
    paths = staged.write(a.out, name, reference)
    stats = staged.statistics()
    line = (f"{name}: {len(staged)} epochs of {staged.epoch_s:g} s, TST {stats['tst_min']:.1f} min, "
            f"SE {stats['sleep_efficiency_pct'] or 0:.1f}%")
    if "agreement" in paths:
        agreement = staged.agreement(reference)
        kappa = agreement["kappa"]
        line += f", kappa {'n/a' if kappa is None else f'{kappa:.3f}'} vs {hypnogram.name}"
        if agreement["reference_offset_s"]:
            line += f" (aligned by start time: {agreement['reference_offset_s']:+g} s)"
        if agreement.get("reference_note"):
            line += f" (note: {agreement['reference_note']})"
    for warning in signal_warnings(staged):
        print(f"warning: {name}: {warning}", file=sys.stderr)
    return f"{line} -> {Path(a.out) / name}.{{{','.join(p.name[len(name) + 1:] for p in paths.values())}}}"


def signal_warnings(staged) -> list[str]:
    """What the staged hypnogram's ``info`` says about missing signal: epochs left unscored
    because every channel was flat, channels flat in more than half of the epochs."""
    info, n, out = staged.info, len(staged), []
    if info.get("no_signal_epochs"):
        out.append(f"{info['no_signal_epochs']} of {n} epochs have no signal (every channel flat) and are left "
                   "unscored (stage 'unscored' in the CSV; no_signal_epochs in stats.json)")
    dead = [c for c, k in (info.get("flat_epochs") or {}).items() if k > n // 2]
    if dead:
        out.append(f"channel(s) {dead} flat in more than half of the epochs (disconnected electrode?): the "
                   "stages rest on the other channels; map another channel with --channels")
    return out


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (what creating it adds)."""
    path, missing = path.absolute(), []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_empty(dirs: list[Path]) -> None:
    """Remove the directories this call created (deepest first) while they are empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (or gone): keep it and its parents
            return


def main(argv=None, prog: str = "part-stage") -> int:
    p = build_parser(prog)
    a = p.parse_args(argv)
    names = _check_usage(p, a)
    created = _missing_dirs(a.out)
    done: list[str] = []
    try:
        return run_cli(lambda: _stage_all(a, names, done),
                       interrupted=f"interrupted: the {len(done) or 'no'} recording(s) staged so far are complete in "
                                   f"{a.out}; rerun the command for the others")
    finally:
        if not done:
            _remove_if_empty(created)  # leave no empty --out behind


def _stage_all(a: argparse.Namespace, names: list[str], done: list[str]) -> int:
    """Load the stager (bad usage, run directory or --channels: UserInputError, exit 2), stage
    every recording (one failing is reported and the others go on) and return the exit code."""
    from part.modalities.eeg.recordings.channels import parse_channel_map
    from part.modalities.eeg.sleep.staging import Stager
    from part.training.rundir import check_writable

    channels = parse_channel_map(a.channels)
    check_writable(a.out, "--out")
    stager = Stager.from_run(a.run_dir, a.checkpoint, a.device)
    channels = stager.check_channel_map(channels)  # model-side names: the same for every recording
    failed = 0
    for i, (path, name) in enumerate(zip(a.recordings, names)):
        hypnogram = a.hypnogram[i] if a.hypnogram else None
        try:
            print(stage_one(stager, path, name, a, hypnogram, channels), flush=True)
            done.append(name)
        except UserInputError as exc:
            failed += 1
            message = user_message(exc)
            print(f"error: {message if path.name in message else f'{path}: {message}'}", file=sys.stderr)
        except Exception as exc:  # a bug or an unforeseen file problem: report it, stage the others
            failed += 1
            print(f"error: {path}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    if failed == len(names):
        print(f"no recording was staged ({failed} of {len(names)} failed, listed above)", file=sys.stderr)
    elif failed:
        print(f"{failed} of {len(names)} recordings failed (listed above); the others are written to {a.out}",
              file=sys.stderr)
    return 1 if failed else 0
