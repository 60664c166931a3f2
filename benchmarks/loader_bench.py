"""Loader benchmark: windows/s that the EEG dataset delivers through a torch DataLoader.

Writes its own prepared directory (float16 records, like ``data_prep/physionet2018.py``'s
default output; 20 records x 900 windows = 648 MB by default) into a temp directory, reads it
once to warm the page cache, then times shuffled batches of 256 with 0 and 2 workers.
Target (issue 5, item 8): at least 10,000 windows/s. Run::

    .venv/bin/python benchmarks/loader_bench.py [--records 20] [--windows 900] [--batches 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from part.atomic import atomic_write_json  # noqa: E402
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS  # noqa: E402
from part.modalities.eeg.datasets import PreparedEEG  # noqa: E402
from part.registry import get_modality  # noqa: E402
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE  # noqa: E402
from part.modalities.eeg.recordings.prepared import FORMAT_VERSION  # noqa: E402

C, L = PC18_WINDOW_SHAPE


def write_prepared(root: Path, n_records: int, n_windows: int, seed: int = 0) -> list[str]:
    """Prepared-format directory with random float16 windows (n_windows, 6, 3000) per record."""
    rng = np.random.default_rng(seed)
    (root / "records").mkdir(parents=True)
    names, records = [], {}
    for i in range(n_records):
        name = f"bench-{i:04d}"
        np.save(root / "records" / f"{name}.npy", rng.standard_normal((n_windows, C, L), np.float32).astype(np.float16))
        labels = rng.integers(-1, 5, n_windows).astype(np.int8)
        np.save(root / "records" / f"{name}.labels.npy", labels)
        records[name] = {"n_windows": n_windows, "labelled_windows": int((labels >= 0).sum()), "subject": name}
        names.append(name)
    manifest = {"format_version": FORMAT_VERSION, "status": "complete", "params_hash": "bench", "window_samples": L,
                "channels": list(PC18_EEG_CHANNELS), "dtype": "float16",
                "records": records, "failed": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return names


def warm_cache(root: Path) -> None:
    """Read every file once so the timings measure a warm page cache, not the disk."""
    for path in (root / "records").glob("*.npy"):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def time_loader(dataset: Dataset, batch: int, workers: int, n_batches: int, seed: int = 0) -> float:
    """Windows per second delivered by a shuffled DataLoader over ``dataset``.

    One untimed batch first (worker start-up), then ``n_batches`` timed batches; the sampler
    draws fresh permutations as needed, so ``n_batches`` may exceed one epoch.
    """
    sampler = RandomSampler(dataset, num_samples=batch * (n_batches + 1 + 2 * workers),
                            generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(n_batches):
        x = next(it)[0]
        n += x.shape[0]
    elapsed = time.perf_counter() - t0
    del it
    return n / elapsed


def time_sampler(device: str, batch: int, n_batches: int) -> float:
    """30-s windows/s of PART's sampler alone (40 random 1-s windows each, continuous starts) on a
    batch already on `device` (random float32 data): sample_windows + extract_fixed_windows."""
    modality = get_modality("eeg", channels=C, window_samples=L)
    x = torch.randn(batch, C, L, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    modality.sample(x)
    sync()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        modality.sample(x)
    sync()
    return batch * n_batches / (time.perf_counter() - t0)


def time_loader_and_sampler(dataset: Dataset, batch: int, n_batches: int, device: str) -> float:
    """Windows/s of loading + moving to `device` (pinned memory on CUDA, so the copy is
    asynchronous) + PART's 40 random 1-s windows per 30-s window."""
    modality = get_modality("eeg", channels=C, window_samples=L)
    sampler = RandomSampler(dataset, num_samples=batch * (n_batches + 1),
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                        pin_memory=device.startswith("cuda"))
    it = iter(loader)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    modality.sample(next(it)[0].to(device))
    sync()
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches):
        x = next(it)[0].to(device, non_blocking=True)
        modality.sample(x)
        n += x.shape[0]
    sync()
    return n / (time.perf_counter() - t0)


class PerItem(Dataset):
    """The same dataset without ``__getitems__``: one ``__getitem__`` per window (for comparison)."""

    def __init__(self, ds: PreparedEEG):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20)
    ap.add_argument("--windows", type=int, default=900)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the temp data (default: system temp)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="device the sampler runs on (as in training)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", action="store_true", help="also time a PART-1D step against the reference")
    ap.add_argument("--sampler-only", action="store_true",
                    help="only the sampler on resident batches, CPU and --device (no files written)")
    ap.add_argument("--json", type=Path, default=None, help="also write the windows/s rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rates = {}
    for device in dict.fromkeys(["cpu", args.device]):
        rate = time_sampler(device, args.batch, args.batches)
        rates[f"sampler alone on {device}"] = rate
        print(f"{'PART sampler alone':28s} batch {args.batch} resident on {device}: {rate:10,.0f} windows/s "
              f"(synthetic data; 40 x 1-s windows each)")
    if args.sampler_only:
        if args.json:
            atomic_write_json(args.json, {"data": "synthetic", "threads": args.threads, "windows_s": rates})
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="part-loader-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        names = write_prepared(tmp, args.records, args.windows)
        warm_cache(tmp)
        size = sum(p.stat().st_size for p in (tmp / "records").glob("*.npy")) / 2**20
        print(f"prepared {args.records} records x {args.windows} windows float16 ({size:.0f} MiB) in "
              f"{time.perf_counter() - t0:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads")
        ds = PreparedEEG(tmp, names, labelled_only=False)
        rows = [("PreparedEEG (__getitems__)", ds, w) for w in (0, 2)] + [("per-item __getitem__", PerItem(ds), 0)]
        for label, dataset, workers in rows:
            rate = time_loader(dataset, args.batch, workers, args.batches)
            rates[f"{label}, workers {workers}"] = rate
            print(f"{label:28s} batch {args.batch} shuffled, workers {workers}: {rate:10,.0f} windows/s"
                  f"{'  (target >= 10,000)' if dataset is ds else ''}")
        rate = time_loader_and_sampler(ds, args.batch, min(args.batches, 20), args.device)
        rates[f"loader + copy + sampler on {args.device}"] = rate
        if args.json:
            atomic_write_json(args.json, {"data": "synthetic", "threads": args.threads, "windows_s": rates})
        print(f"{'loader + PART sampler':28s} batch {args.batch} shuffled, sampler on {args.device}: "
              f"{rate:10,.0f} windows/s")
        if args.step:
            from step_bench import main as step_main
            step_main(["--kind", "part1d", "--device", args.device, "--threads", str(args.threads)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
