"""Benchmark: prepare one full-length night, our pipeline against the usual MNE path, for the
PC18 WFDB reader and for an EDF night read through MNE (Sleep-EDF layout).

    python benchmarks/prep_bench.py [--workdir DIR] [--repeats 3] [--hours 22] [--json OUT.json]
        [--skip-pc18] [--skip-sleep-edf]

PC18: one record of the size of tr03-0005 (13 signals x 5,147,000 int16 samples at 200 Hz, the
real header and annotations from ../shared/data/pc18 next to a MATLAB v4 .mat written here).
Sleep-EDF: one SYNTHETIC night of ``--hours`` (22 h by default, about the longest SC night) in
the exact layout (``SC4001E0-PSG.edf``: 3 channels at 100 Hz + 4 at 1 Hz, 30-s data records,
and its EDF+ hypnogram), written by ``part.data_prep.sleep_edf_synthetic.write_sleep_edf_night``.
Each measurement runs in a fresh Python process (imports excluded from the time, included in
the memory), the two paths alternating ``--repeats`` times:

- ``pc18_ours``: ``part.data_prep.prepare.prepare_record`` with the PC18 reader (fast WFDB read of
  6 EEG channels, band-pass, resample to 100 Hz, label, window, z-score, write float16 .npy);
- ``pc18_mne``: ``wfdb.rdrecord`` of the 6 channels, ``mne.io.RawArray``, ``raw.filter(0.1, 30)``,
  ``raw.resample(100)``, windowing and z-scoring in memory (no labels, no writing);
- ``sedf_ours``: ``prepare_record`` with the MNE-based reader of ``data_prep/psg_sources.py``
  (EEG Fpz-Cz and Pz-Oz, hypnogram, no wake trimming: the whole night);
- ``sedf_mne``: ``mne.io.read_raw_edf`` + ``pick`` of the 2 EEG channels + ``load_data``,
  ``raw.filter(0.1, 30)``, ``raw.resample(100)``, windowing and z-scoring in memory;
- ``*_stages``: our stages one by one (time only).

Peak memory is the process's peak resident set (``VmHWM``). Targets: the PC18 WFDB path at
least 5x faster than MNE, peak memory per worker at most 500 MB. Prints tables and ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data" / "pc18"
RECORD = "tr03-0005"
N_SAMPLES, N_SIGNALS, FS = 5_147_000, 13, 200
SLEEP_EDF_CHANNELS = ("EEG Fpz-Cz", "EEG Pz-Oz")


def write_full_record(dest: Path, n_samples: int = N_SAMPLES, seed: int = 0) -> Path:
    """The real tr03-0005 header and .arousal plus a v4 .mat of EEG-like int16 noise (13 x n)."""
    import scipy.io

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED / f"{RECORD}.arousal", dest / f"{RECORD}.arousal")
    header = (SHARED / f"{RECORD}.hea").read_bytes()
    (dest / f"{RECORD}.hea").write_bytes(header.replace(str(N_SAMPLES).encode(), str(n_samples).encode(), 1))
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / FS
    val = np.empty((N_SIGNALS, n_samples), dtype=np.int16)
    for c in range(N_SIGNALS):  # 1/f-ish background + 10 Hz alpha + offset, in uV (gain 1)
        noise = np.cumsum(rng.normal(0, 1, n_samples)) * 0.05 + rng.normal(0, 15, n_samples)
        val[c] = np.clip(noise + 20 * np.sin(2 * np.pi * 10 * t) + rng.integers(-300, 300), -32767, 32767)
    scipy.io.savemat(dest / f"{RECORD}.mat", {"val": val}, format="4")
    return dest / f"{RECORD}.hea"


def _peak_mb() -> float:
    """Peak resident set of this process since its exec, MB (VmHWM; ru_maxrss would include
    the parent's resident set at fork time)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_pc18_ours(header: Path, out: Path) -> dict:
    from part.data_prep.pc18_prepare import PrepConfig, pc18_source, prepare_record

    imports_mb = _peak_mb()
    source = pc18_source(RECORD, header, header.with_suffix(".arousal"), "training")
    start = time.perf_counter()
    info = prepare_record(source, out, PrepConfig())
    return {"seconds": time.perf_counter() - start, "imports_peak_mb": imports_mb, "n_windows": info["n_windows"]}


def _mne_windows(raw, n_channels: int) -> int:
    """MNE's band-pass and resampling, then our windowing + z-score in memory; returns windows."""
    raw.filter(0.1, 30.0, verbose=False)
    raw.resample(100.0, verbose=False)
    x = raw.get_data() * 1e6
    n_windows = x.shape[1] // 3000
    w = x[:, : n_windows * 3000].reshape(n_channels, n_windows, 3000).transpose(1, 0, 2)
    z = ((w - w.mean(-1, keepdims=True)) / (w.std(-1, keepdims=True) + 1e-6)).astype(np.float16)
    return int(z.shape[0])


def child_pc18_mne(header: Path, out: Path) -> dict:
    import mne
    import wfdb

    from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS

    imports_mb = _peak_mb()
    start = time.perf_counter()
    record = wfdb.rdrecord(str(header.with_suffix("")), channel_names=list(PC18_EEG_CHANNELS))
    info = mne.create_info(list(PC18_EEG_CHANNELS), record.fs, "eeg")
    raw = mne.io.RawArray(record.p_signal.T * 1e-6, info, verbose=False)
    del record
    n_windows = _mne_windows(raw, len(PC18_EEG_CHANNELS))
    return {"seconds": time.perf_counter() - start, "imports_peak_mb": imports_mb, "n_windows": n_windows}


def child_pc18_stages(header: Path, out: Path) -> dict:
    from part.data_prep.pc18_labels import read_stage_notes, window_labels
    from part.modalities.eeg.recordings.signal import filter_and_resample, normalise_windows
    from part.modalities.eeg.recordings.wfdb_reader import read_eeg

    times, start = {}, time.perf_counter()
    rec = read_eeg(header)
    times["read_6_channels"] = time.perf_counter() - start
    grid = window_labels(read_stage_notes(header.with_suffix(".arousal"), rec.fs), rec.n_samples, rec.fs)
    times["labels"] = time.perf_counter() - start - sum(times.values())
    signal = filter_and_resample(rec)
    times["filter_and_resample"] = time.perf_counter() - start - sum(times.values())
    normalise_windows(signal, grid.first_start, grid.n_windows, grid.window_len)
    times["window_and_normalise"] = time.perf_counter() - start - sum(times.values())
    return {"seconds": time.perf_counter() - start, "stages": times}


def _sedf_source(psg: Path):
    from part.data_prep.prepare import PrepConfig, RecordSource
    from part.data_prep.psg_sources import read_psg

    hypnogram = next(psg.parent.glob(psg.name[:7] + "*-Hypnogram.edf"))
    source = RecordSource(psg.name[:6], psg, hypnogram, "cassette", read_psg, psg.name[:5], {"root": psg.parent})
    return source, PrepConfig(channels=SLEEP_EDF_CHANNELS)


def child_sedf_ours(psg: Path, out: Path) -> dict:
    from part.data_prep.prepare import prepare_record

    imports_mb = _peak_mb()
    source, config = _sedf_source(psg)
    start = time.perf_counter()
    info = prepare_record(source, out, config)
    return {"seconds": time.perf_counter() - start, "imports_peak_mb": imports_mb, "n_windows": info["n_windows"]}


def child_sedf_mne(psg: Path, out: Path) -> dict:
    import mne

    imports_mb = _peak_mb()
    start = time.perf_counter()
    raw = mne.io.read_raw_edf(psg, preload=False, verbose="error").pick(list(SLEEP_EDF_CHANNELS)).load_data()
    n_windows = _mne_windows(raw, len(SLEEP_EDF_CHANNELS))
    return {"seconds": time.perf_counter() - start, "imports_peak_mb": imports_mb, "n_windows": n_windows}


def child_sedf_stages(psg: Path, out: Path) -> dict:
    from part.data_prep.psg_sources import read_psg
    from part.modalities.eeg.recordings.signal import filter_and_resample, normalise_windows

    source, config = _sedf_source(psg)
    start = time.perf_counter()
    result = read_psg(source, config)  # hypnogram + the 2 EEG channels through MNE + grid
    times = {"read_2_channels_and_hypnogram": time.perf_counter() - start}
    signal = filter_and_resample(result.recording)
    times["filter_and_resample"] = time.perf_counter() - start - sum(times.values())
    grid = result.grid
    normalise_windows(signal, grid.first_start, grid.n_windows, grid.window_len)
    times["window_and_normalise"] = time.perf_counter() - start - sum(times.values())
    return {"seconds": time.perf_counter() - start, "stages": times}


CHILDREN = {"pc18_ours": child_pc18_ours, "pc18_mne": child_pc18_mne, "pc18_stages": child_pc18_stages,
            "sedf_ours": child_sedf_ours, "sedf_mne": child_sedf_mne, "sedf_stages": child_sedf_stages}


def measure(mode: str, header: Path, out: Path) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--header", str(header), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(kind: str, path: Path, out: Path, repeats: int) -> dict:
    """Alternate ``<kind>_ours`` and ``<kind>_mne`` ``repeats`` times, then time our stages."""
    runs: dict[str, list[dict]] = {"ours": [], "mne": []}
    for _ in range(repeats):  # interleaved, so that machine load hits both alike
        for mode in runs:
            runs[mode].append(measure(f"{kind}_{mode}", path, out))
    stages = measure(f"{kind}_stages", path, out)
    summary = {
        mode: {
            "median_s": statistics.median(r["seconds"] for r in rs),
            "min_s": min(r["seconds"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "imports_peak_mb": max(r["imports_peak_mb"] for r in rs),
            "n_windows": rs[0]["n_windows"],
        }
        for mode, rs in runs.items()
    }
    speedup = summary["mne"]["median_s"] / summary["ours"]["median_s"]
    return {"summary": summary, "speedup_vs_mne": speedup, "our_stages_s": stages["stages"], "runs": runs}


def print_report(title: str, report: dict, target: float | None) -> None:
    summary, speedup = report["summary"], report["speedup_vs_mne"]
    print(f"\n{title}")
    print(f"{'path':<6} {'median s':>9} {'min s':>7} {'peak RSS MB':>12} {'after imports MB':>17} {'windows':>8}")
    for mode, s in summary.items():
        row = f"{s['median_s']:9.2f} {s['min_s']:7.2f} {s['peak_rss_mb']:12.0f} {s['imports_peak_mb']:17.0f}"
        print(f"{mode:<6} {row} {s['n_windows']:8d}")
    print("our stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["our_stages_s"].items()))
    goal = f" (target >= {target:g}x: {'met' if speedup >= target else 'NOT met'})" if target else ""
    print(f"speed-up vs MNE: {speedup:.1f}x{goal}; our peak memory {summary['ours']['peak_rss_mb']:.0f} MB (target "
          f"<= 500 MB: {'met' if summary['ours']['peak_rss_mb'] <= 500 else 'NOT met'}); memory ratio MNE/ours "
          f"{summary['mne']['peak_rss_mb'] / summary['ours']['peak_rss_mb']:.1f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, help="where to write the records (default: a temp dir, removed)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-samples", type=int, default=N_SAMPLES, help="PC18 record length (default: tr03-0005's)")
    p.add_argument("--hours", type=float, default=22.0, help="length of the Sleep-EDF night")
    p.add_argument("--skip-pc18", action="store_true")
    p.add_argument("--skip-sleep-edf", action="store_true")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--header", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        result = CHILDREN[args.child](args.header, args.out)
        print(json.dumps({**result, "peak_rss_mb": _peak_mb()}))
        return 0
    pc18 = not args.skip_pc18 and (SHARED / f"{RECORD}.hea").is_file()
    if not args.skip_pc18 and not pc18:
        print(f"note: the real {RECORD}.hea/.arousal are not in {SHARED}; skipping the PC18 comparison",
              file=sys.stderr)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prep_bench_"))
    report: dict = {"repeats": args.repeats}
    try:
        if pc18:
            start = time.perf_counter()
            header = write_full_record(work / "raw", args.n_samples)
            mat = header.with_suffix(".mat")
            print(f"wrote {mat} ({mat.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
            report["pc18"] = {"record": f"{N_SIGNALS} x {args.n_samples} int16 at {FS} Hz",
                              **compare("pc18", header, work / "out", args.repeats)}
            print_report("PC18 (WFDB reader) vs MNE", report["pc18"], 5.0)
        if not args.skip_sleep_edf:
            sys.path.insert(0, str(REPO))
            from part.data_prep.sleep_edf_synthetic import write_sleep_edf_night

            start = time.perf_counter()
            psg, _ = write_sleep_edf_night(work / "sedf", 0, 1, args.hours, seed=0)
            print(f"wrote {psg} ({psg.stat().st_size / 1e6:.1f} MB, {args.hours:g} h) in "
                  f"{time.perf_counter() - start:.1f} s")
            report["sleep_edf"] = {"record": f"{args.hours:g} h Sleep-EDF-layout night, 2 EEG channels at 100 Hz",
                                   **compare("sedf", psg, work / "out", args.repeats)}
            print_report(f"Sleep-EDF night ({args.hours:g} h, MNE reader) vs MNE", report["sleep_edf"], None)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
