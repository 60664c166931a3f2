"""Benchmark: the frozen-feature probes' two costs, each against a reference timed in the same run.

    python benchmarks/probe_bench.py [--windows 2048] [--batch 256] [--size demo|eeg]
        [--queries 200000] [--bank 10000] [--dim 256] [--threads 2] [--repeats 3]

1. Feature extraction (``part.evaluation.features.extract_features``: SYNTHETIC EEG-size windows
   (6 x 3000) read batch by batch through ``read_batch``, as the EEG datasets are,
   ``FrozenEncoder`` in inference mode, features to the CPU) against the staging forward pass
   (``PatchClassifier`` logits under ``torch.inference_mode`` on the same windows already in
   one tensor, the same batch), in windows/s; target: ratio >= 1 (extraction at least as fast), within noise.
2. The weighted kNN (``part.evaluation.probes.knn_predict``, k = 20, T = 0.07, 1024 queries per
   chunk) of ``--queries`` random feature vectors against a bank of ``--bank`` (the paper's
   protocol: 10 finetune subjects ~ 10k windows, 200 test subjects ~ 200k windows) against the
   bare similarity matmuls of the same shapes (the floor); target: < 60 s on 2 cores.

Times are medians of ``--repeats`` runs after one warm-up, reference and candidate measured
alternately. Weights are random (speed does not
depend on them); the data are synthetic.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

class WindowsInMemory(TensorDataset):
    """Windows in one tensor with the batched ``read_batch`` of the EEG datasets (a gather)."""

    def read_batch(self, items):
        return self.tensors[0][items], self.tensors[1][items]


SIZES = {"demo": (64, 4, 4), "eeg": (256, 16, 8)}  # (dim, depth, heads): eeg_sleep_demo / eeg_sleep


def timed_pair(reference, candidate, repeats: int) -> tuple[tuple, tuple]:
    """((wall s, CPU s) of ``reference()``, (wall s, CPU s) of ``candidate()``): medians, measured
    alternately after one warm-up each (a change in the machine's load hits both alike). CPU
    seconds (this process, all its threads) hardly depend on other processes' load: CPU s /
    threads estimates the wall time on as many idle cores."""
    reference(), candidate()
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((reference, candidate), times):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out.append((time.perf_counter() - t0, time.process_time() - c0))
    return tuple(tuple(statistics.median(x) for x in zip(*t)) for t in times)


def extraction(args) -> None:
    from part.core.backbone import ViTEncoder
    from part.core.classifier import PatchClassifier
    from part.evaluation.features import FrozenEncoder, extract_features
    from part.registry import get_modality

    dim, depth, heads = SIZES[args.size]
    modality = get_modality("eeg", channels=6, window_samples=3000)
    torch.manual_seed(0)
    encoder, tokenizer = ViTEncoder(dim, depth, heads), modality.tokenizer(dim)
    frozen = FrozenEncoder(modality, tokenizer, encoder).eval()
    clf = PatchClassifier(modality, modality.tokenizer(dim), ViTEncoder(dim, depth, heads), 5).eval()
    x = torch.randn(args.windows, 6, 3000)
    data = WindowsInMemory(x, torch.zeros(args.windows, dtype=torch.long))
    device = torch.device("cpu")

    def staging():
        with torch.inference_mode():
            for chunk in x.split(args.batch):
                clf(chunk)
    t_ref, t_feat = timed_pair(staging, lambda: extract_features(frozen, data, args.batch, device), args.repeats)
    print(f"1. feature extraction, {args.size} encoder (dim {dim}, depth {depth}), batch {args.batch}, "
          f"{args.windows} SYNTHETIC windows 6 x 3000 (windows per wall s / per CPU s):")
    print(f"   staging forward (reference) {args.windows / t_ref[0]:9.1f} / {args.windows / t_ref[1]:9.1f}")
    print(f"   extract_features            {args.windows / t_feat[0]:9.1f} / {args.windows / t_feat[1]:9.1f}   "
          f"ratio {t_ref[0] / t_feat[0]:.2f} / {t_ref[1] / t_feat[1]:.2f} (target >= 1)")


def knn(args) -> None:
    from part.evaluation.probes import KNN_CHUNK, knn_predict

    g = torch.Generator().manual_seed(0)
    bank = torch.randn(args.bank, args.dim, generator=g)
    labels = torch.randint(0, 5, (args.bank,), generator=g)
    queries = torch.randn(args.queries, args.dim, generator=g)
    bank_t = bank.T.contiguous()

    def matmuls():
        for q in queries.split(KNN_CHUNK):
            q @ bank_t
    t_ref, t_knn = timed_pair(matmuls, lambda: knn_predict(bank, labels, queries, 5, 20, 0.07), args.repeats)
    print(f"2. weighted kNN (k=20, T=0.07), {args.queries} queries x {args.bank} bank, dim {args.dim} "
          f"(random features):")
    print(f"   bare similarity matmuls (reference) {t_ref[0]:7.2f} wall s, {t_ref[1]:7.2f} CPU s")
    print(f"   knn_predict                         {t_knn[0]:7.2f} wall s, {t_knn[1]:7.2f} CPU s   ratio "
          f"{t_knn[1] / t_ref[1]:.2f} (CPU); on {args.threads} idle cores ~{t_knn[1] / args.threads:.1f} s, "
          f"target < 60 s: {'met' if t_knn[1] / args.threads < 60 else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", choices=tuple(SIZES), default="demo")
    ap.add_argument("--queries", type=int, default=200_000)
    ap.add_argument("--bank", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", choices=("extraction", "knn"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU, fp32; medians of {args.repeats} runs")
    if args.skip != "extraction":
        extraction(args)
    if args.skip != "knn":
        knn(args)


if __name__ == "__main__":
    main()
