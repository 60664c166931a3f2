"""`part-stage RUN_DIR RECORDING|FOLDER [...] --out DIR` (also `python -m part.stage`): stage
overnight recordings with a finetuned EEG run.

RECORDING: any file MNE reads (EDF/BDF/GDF, FIF, BrainVision .vhdr, EEGLAB .set) or a WFDB
record's .hea header (PhysioNet 2018). FOLDER: every recording under it (recursively; hidden
files skipped), each paired with the scoring file in its folder whose name shares the longest
prefix with it (files matching --hypnogram-glob, default *Hypnogram*, and annotation-only EDF+
files are scorings, not recordings), all staged in this one process. Per recording, into --out
(atomically, <rec>.stats.json last): <rec>.hypnogram.csv (onset_s,duration_s,stage,p_W,...,p_REM
per 30-s epoch), <rec>.hypnogram.edf (EDF+ annotations, Sleep-EDF style), <rec>.hypnogram.png,
<rec>.stats.json (sleep statistics, flags: soremp) and, with a scoring, <rec>.agreement.json (kappa,
accuracy, macro-F1, confusion, per-stage F1, the kappa over lags of +/-60 min: lag_scan, flags:
lag_warning, low_agreement). A sleep-onset REM period, a scoring that agrees better at another
lag (nothing is shifted) or poorly at every lag is warned about, one line each. One part-stage
per --out: a second one is refused (exit 2) naming the holder (an OS lock on --out/.lock,
``part/dirlock.py``). A rerun skips the recordings already staged: those whose stats.json records
the same source (``info.staged_from``: the recording's and scoring's path, size and mtime, the
checkpoint's SHA-256); a changed one is restaged (one line saying what changed), another
recording with the same name is refused as a name clash (exit 1); --overwrite redoes them all.
Several recordings or a FOLDER also give <rec>.paired_stats.json (the model's and the scorer's
statistics on the epochs both scored) and the cohort files (``cohort.py``): cohort.csv (a row per
night) and, with scored nights, cohort_agreement.json/.md (Bland-Altman bias and limits per
statistic, pooled and per-night kappa) and cohort_bland_altman.png, rebuilt from the per-night
files on every call (a rerun that skips every night writes them in full).
--hypnogram takes one scoring per RECORDING file, in order (--hypnogram A.edf B.edf, or the flag
repeated); an EDF+ scoring whose header date is more than a day from the recording's is another
night's: that recording fails.

The model's channels are read by name; --channels "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz" maps model
channels to the recording's (MODEL=RECORDING; unmapped ones are looked up by their own name).
--precision auto (default) runs the model in bf16 where the hardware computes it (a CUDA GPU, a
CPU with AVX512-BF16/AMX), else fp32; int8 (CPU only) quantises its Linear layers.
Exit codes: 0 every recording staged (or already staged); 1 some recording failed or clashed (the
others are written; an --out directory this call created is removed again when nothing was
written); 2 bad usage, run directory, checkpoint, a --channels entry naming no channel of the
model, or --out in use by another part-stage; 130
interrupted (the recordings finished so far are complete).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import NamedTuple, Optional

from part.atomic import file_sha256
from part.errors import UserInputError, run_cli, user_message
from part.modalities.eeg.recordings.discovery import HYPNOGRAM_GLOB


class Night(NamedTuple):
    """One recording to stage: its file, output name and scoring file (or None)."""

    path: Path
    name: str
    hypnogram: Optional[Path]


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finetuned run: <run.output_dir>/<run.name>")
    p.add_argument("recordings", type=Path, nargs="+", metavar="RECORDING",
                   help="recording files (EDF/BDF/GDF/FIF/BrainVision/EEGLAB or a WFDB .hea) or folders of them")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--channels", help='model=recording channel names, e.g. "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz"')
    p.add_argument("--hypnogram", type=Path, nargs="+", action="extend", metavar="FILE",
                   help="a scoring of the recording (EDF+ annotations, text/CSV, NSRR/Profusion XML, a PC18 .arousal "
                        "beside its .hea, or Hypnogram JSON) to align the 30-s windows "
                        "to and compare with; one per RECORDING file, in the same order (--hypnogram A B, or "
                        "the flag repeated); put the recordings before it. Folders pair their own scorings")
    p.add_argument("--hypnogram-glob", default=HYPNOGRAM_GLOB,
                   help=f"names of scoring files inside FOLDER arguments (fnmatch, default {HYPNOGRAM_GLOB})")
    p.add_argument("--checkpoint", default="best.pt", help="finetuned checkpoint in RUN_DIR/checkpoints "
                   "(default best.pt) or a path")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="default cpu")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                   help="arithmetic of the forward pass (default auto: bf16 where the hardware has it)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default 64)")
    p.add_argument("--overwrite", action="store_true", help="redo recordings whose outputs are already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_usage(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[Night]:
    """The nights to stage (folders expanded and paired), or a usage error (exit 2)."""
    if a.batch_size is not None and a.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {a.batch_size}")
    folders = [r for r in a.recordings if r.is_dir()]
    if a.hypnogram and folders:
        p.error(f"--hypnogram names scorings of RECORDING files; {folders[0]} is a folder, whose scorings are "
                f"paired by name (--hypnogram-glob): stage folders and files with --hypnogram in separate calls")
    if a.hypnogram and len(a.hypnogram) != len(a.recordings):
        hint = ("; the files after --hypnogram are all taken as hypnograms: put the recordings before it"
                if len(a.hypnogram) > len(a.recordings) else "")
        p.error(f"--hypnogram given {len(a.hypnogram)} file(s) for {len(a.recordings)} recording(s); give one "
                f"per RECORDING, in the same order (or none){hint}")
    nights = _expand(a, p)
    names = [n.name for n in nights]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        p.error(f"recordings {twice} would write the same output files in --out; stage them into separate --out "
                f"directories")
    return nights


def _expand(a: argparse.Namespace, p: argparse.ArgumentParser) -> list[Night]:
    """Recording files as given (with their --hypnogram), folders as their recordings, each
    paired with its folder's scoring (``recordings.discovery``); a folder without recordings is a
    usage error; scorings that pair with nothing are warned about."""
    from part.modalities.eeg.recordings.discovery import pair_hypnograms, scan
    from part.modalities.eeg.recordings.mne_reader import READERS, recording_name

    nights = []
    for i, path in enumerate(a.recordings):
        if not path.is_dir():
            nights.append(Night(path, recording_name(path), a.hypnogram[i] if a.hypnogram else None))
            continue
        found, scorings = scan(path, a.hypnogram_glob, (*READERS, ".hea"))
        if not found:
            p.error(f"folder {path} holds no recording (files ending in {', '.join(sorted({*READERS, '.hea'}))})")
        pairs, unpaired = pair_hypnograms(found, scorings)
        for reason in unpaired.values():
            print(f"warning: {reason}; staged without a scoring", file=sys.stderr)
        nights += [Night(r, recording_name(r), pairs.get(r)) for r in found]
    return nights


def source_record(night: Night, checkpoint_sha256: str, channels: dict | None = None,
                  precision: str | None = None) -> dict:
    """What a night is staged from, recorded in its stats.json (``info.staged_from``): the
    recording's (and scoring's) absolute path, size and mtime (ns), a WFDB record's signal files
    too (``recording.data``), the checkpoint's SHA-256, the checked ``--channels`` map (model
    channel -> recording channel; {} = every channel found by name) and the resolved precision
    (fp32, bf16 or int8)."""
    def file(path: Path | None) -> dict | None:
        if path is None:
            return None
        st = path.stat()
        return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    recording = file(night.path)
    if night.path.suffix.lower() == ".hea":
        recording["data"] = [file(f) for f in _wfdb_signal_files(night.path) if f.is_file()]
    return {"recording": recording, "hypnogram": file(night.hypnogram), "checkpoint_sha256": checkpoint_sha256,
            "channels": dict(channels or {}), "precision": precision}


def _wfdb_signal_files(header: Path) -> list[Path]:
    """The signal files a WFDB header names ([] when it cannot be parsed: staging reports that)."""
    from part.errors import DataError
    from part.modalities.eeg.recordings.wfdb_reader import read_header
    try:
        return [header.parent / f for f in dict.fromkeys(read_header(header).file_name or [])]
    except DataError:
        return []


def staged_state(night: Night, out: Path, source: dict) -> tuple[str, str]:
    """``(state, why)`` of a night in ``out``: ``"new"`` (no stats.json: stats.json is written
    last, so a night without one is unfinished), ``"done"`` (its stats.json records this very
    ``source``), ``"changed"`` (staged from the same file, but it, its scoring or the checkpoint
    changed since, or it was staged with another ``--channels`` map or precision, or stats.json
    records no source: restaged) or ``"clash"`` (staged from another
    recording with the same name)."""
    marker = out / f"{night.name}.stats.json"
    if not marker.is_file():
        return "new", ""
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("info", {}).get("staged_from")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("recording"), dict):
        return "changed", f"{marker.name} records no source (written by an earlier version, or damaged)"
    if recorded == source:
        return "done", ""
    old_path = recorded["recording"].get("path")
    if old_path != source["recording"]["path"]:
        return "clash", (f"{out} already holds '{night.name}' staged from another recording, {old_path}; "
                         f"stage {night.path} into another --out (or rename it), or pass --overwrite to replace "
                         "those results")
    parts = (("the recording", "recording"), ("the scoring", "hypnogram"),
             ("the model checkpoint", "checkpoint_sha256"))
    changed = [what for what, key in parts if recorded.get(key) != source[key]]
    settings = (("the --channels map", "channels"), ("the precision", "precision"))
    changed += [f"{what} ({recorded.get(key)} -> {source[key]})" for what, key in settings
                if recorded.get(key) != source[key]]
    return "changed", f"{' and '.join(changed)} changed since {marker.name} was written"


def stage_one(stager, night: Night, a: argparse.Namespace, channels: dict, source: dict | None = None) -> str:
    """Stage one recording and write its files; returns the summary line (the statistics and the
    agreement are computed once, when the files are written, and cached on the hypnogram)."""
    from part.modalities.eeg.sleep.hypnogram import Hypnogram
    from part.modalities.eeg.sleep.scoring_check import ScoringWarning

    name = night.name
    reference = None if night.hypnogram is None else Hypnogram.from_file(night.hypnogram, stager.config.window_s)
    kwargs = {} if a.batch_size is None else {"batch_size": a.batch_size}
    staged = stager.predict_file(night.path, channels=channels, hypnogram=reference, **kwargs)
    if source is not None:
        staged.info["staged_from"] = source
    from part.modalities.eeg.sleep.cohort import PAIRED_SUFFIX, write_paired
    if reference is not None:  # before stats.json, the night's done marker; a later folder call counts it
        write_paired(a.out, name, staged, reference)
    else:  # a restaged night without its scoring: no stale scorer statistics left for the cohort
        (Path(a.out) / f"{name}{PAIRED_SUFFIX}").unlink(missing_ok=True)
    with warnings.catch_warnings():  # the scoring checks are printed below, one line each
        warnings.simplefilter("ignore", ScoringWarning)
        paths = staged.write(a.out, name, reference)
    stats = staged.statistics()
    line = (f"{name}: {len(staged)} epochs of {staged.epoch_s:g} s, TST {stats['tst_min']:.1f} min, "
            f"SE {stats['sleep_efficiency_pct'] or 0:.1f}%")
    if "agreement" in paths:
        agreement = staged.agreement(reference)
        kappa = agreement["kappa"]
        line += f", kappa {'n/a' if kappa is None else f'{kappa:.3f}'} vs {night.hypnogram.name}"
        if agreement["reference_offset_s"]:
            line += f" (aligned by start time: {agreement['reference_offset_s']:+g} s)"
        if agreement.get("reference_note"):
            line += f" (note: {agreement['reference_note']})"
    for warning in signal_warnings(staged) + scoring_warnings(staged, reference, stats):
        print(f"warning: {name}: {warning}", file=sys.stderr)
    return f"{line} -> {Path(a.out) / name}.{{{','.join(p.name[len(name) + 1:] for p in paths.values())}}}"


def scoring_warnings(staged, reference, stats: dict) -> list[str]:
    """The sleep-onset REM line of the statistics and the lag / low-agreement lines of the
    agreement with ``reference`` (``scoring_check``), already computed and cached."""
    from part.modalities.eeg.sleep.stats import soremp_warning

    soremp = soremp_warning(stats)
    return ([soremp] if soremp else []) + ([] if reference is None else staged.agreement(reference)["warnings"])


def signal_warnings(staged) -> list[str]:
    """What the staged hypnogram's ``info`` says about missing signal: epochs left unscored
    because every channel was flat (``recordings/flatness.py``), and one line per channel flat or
    clipped in more than ``FLAT_CHANNEL_WARN_SHARE`` of the epochs (naming the share)."""
    from part.modalities.eeg.recordings.constants import FLAT_CHANNEL_WARN_SHARE, FLAT_EPOCH_SHARE

    info, n, out = staged.info, len(staged), []
    if info.get("no_signal_epochs"):
        out.append(f"{info['no_signal_epochs']} of {n} epochs have no signal (every channel flat, zero or clipped for "
                   f"more than {FLAT_EPOCH_SHARE:.0%} of the epoch) and are left unscored (stage 'unscored' in the "
                   "CSV; no_signal_epochs in stats.json; not counted in TST)")
    for channel, k in (info.get("flat_epochs") or {}).items():
        if k > FLAT_CHANNEL_WARN_SHARE * n:
            out.append(f"channel {channel!r} is flat or clipped in {k} of {n} epochs ({k / n:.0%}, more than "
                       f"{FLAT_CHANNEL_WARN_SHARE:.0%}: a loose or saturated electrode?); its epochs rest on the other "
                       "channels: map another recording channel to it with --channels if it has one")
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
    nights = _check_usage(p, a)
    a.cohort = len(nights) > 1 or any(r.is_dir() for r in a.recordings)  # cohort files (cohort.py)
    created = _missing_dirs(a.out)
    done: list[str] = []
    try:
        return run_cli(lambda: _stage_all(a, nights, done),
                       interrupted=lambda: f"interrupted: the {len(done) or 'no'} recording(s) staged so far are "
                                           f"complete in {a.out}; rerun the command for the others (finished ones "
                                           "are skipped)")
    finally:
        if not done:
            _remove_if_empty(created)  # leave no empty --out behind


def _stage_all(a: argparse.Namespace, nights: list[Night], done: list[str]) -> int:
    """Lock --out (one part-stage per output folder: a second is refused, naming the holder),
    load the stager (bad usage, run directory or --channels: UserInputError, exit 2), stage every
    night not staged yet (one failing is reported and the others go on) with a progress bar over
    the nights, and return the exit code."""
    from part.dirlock import DirLock
    from part.modalities.eeg.recordings.channels import parse_channel_map
    from part.training.rundir import check_writable

    channels = parse_channel_map(a.channels)
    check_writable(a.out, "--out")
    with DirLock(a.out, "--out directory", "another part-stage",
                 "wait for it to finish or stop it, or stage into another --out", remove=True):
        return _stage_locked(a, nights, done, channels)


def _stage_locked(a: argparse.Namespace, nights: list[Night], done: list[str], channels: dict) -> int:
    """:func:`_stage_all` once --out is locked."""
    from tqdm.auto import tqdm

    from part.modalities.eeg.recordings.channels import ChannelError
    from part.modalities.eeg.sleep.staging import Stager

    with warnings.catch_warnings(record=True) as said:  # e.g. an uncalibrated checkpoint: said once, plainly
        warnings.simplefilter("always")
        stager = Stager.from_run(a.run_dir, a.checkpoint, a.device, a.precision)
    channels = stager.check_channel_map(channels)  # model-side names: the same for every recording
    for warning in said:  # after the usage checks: an error comes first
        print(f"warning: {warning.message}", file=sys.stderr)
    sha = file_sha256(stager.finetuned.checkpoint)
    sources = {n: source_record(n, sha, channels, stager.precision)  # a missing file fails when staged, one line
               for n in nights if n.path.is_file() and (n.hypnogram is None or n.hypnogram.is_file())}
    states = {n: ("new", "") if a.overwrite or n not in sources else staged_state(n, a.out, sources[n]) for n in nights}
    skipped = [n for n in nights if states[n][0] == "done"]
    if skipped:
        print(f"{len(skipped)} of {len(nights)} recordings already staged in {a.out} from the same files and "
              "checkpoint: skipped (--overwrite redoes them)", flush=True)
    failed, channel_errors = 0, {}
    for night, (state, why) in states.items():
        if state == "clash":
            failed += 1
            print(f"error: {night.path}: name clash: {why}", file=sys.stderr)
        elif state == "changed":
            print(f"{night.name}: restaged: {why}", flush=True)
    todo = [n for n in nights if states[n][0] in ("new", "changed")]
    bar = tqdm(todo, desc="nights", unit="night", disable=a.no_progress or len(todo) < 2 or None, file=sys.stderr)
    for night in bar:
        try:
            bar.write(stage_one(stager, night, a, channels, sources.get(night)), file=sys.stdout)
            done.append(night.name)
        except UserInputError as exc:
            failed += 1
            message = user_message(exc)
            if isinstance(exc, ChannelError):  # the same montage fails every night alike: explained once
                key = message.replace(str(night.path), "<recording>")
                if key in channel_errors:
                    bar.write(f"error: {night.path}: the same channels are missing as in {channel_errors[key]} "
                              "(see above)", file=sys.stderr)
                    continue
                channel_errors[key] = night.path.name
            bar.write(f"error: {message if night.path.name in message else f'{night.path}: {message}'}",
                      file=sys.stderr)
        except Exception as exc:  # a bug or an unforeseen file problem: report it, stage the others
            failed += 1
            bar.write(f"error: {night.path}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    bar.close()
    done.extend(n.name for n in skipped)
    if a.cohort:
        from part.modalities.eeg.sleep.cohort import write_cohort
        written = write_cohort(a.out, [n.name for n in nights if states[n][0] != "clash"])
        if written:
            print(f"cohort: {', '.join(p.name for p in written.values())} in {a.out}", flush=True)
    attempted = len(nights) - len(skipped)
    if attempted and failed == attempted:
        print(f"no recording was staged ({failed} of {attempted} failed, listed above)", file=sys.stderr)
    elif failed:
        print(f"{failed} of {attempted} recordings failed (listed above); the others are written to {a.out}",
              file=sys.stderr)
    return 1 if failed else 0
