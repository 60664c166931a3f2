"""Where does a PART step spend its time? Component timings and the top kernels of one step.

    python benchmarks/profile_step.py [--batch 512] [--device cuda]

Times (median, forward + backward) the patch sampler, the encoder alone and the relative head
alone (both attention paths), then the whole step, and prints torch.profiler's top kernels.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_bench import build_ours  # noqa: E402
from part.core.pairs import sample_pairs  # noqa: E402


def timed(fn, device, n=20, warm=5):
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warm):
        fn()
    sync()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2] * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    dev, B = a.device, a.batch
    step, model = build_ours("part", B, dev)
    amp = torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=dev.startswith("cuda"))
    x = torch.randn(B, 3, 32, 32, device=dev)
    patches, geom = model.modality.sample(x)
    with amp:
        z0 = model.encoder(model.tokenizer(patches))[:, 1:].detach().requires_grad_()

    def encoder_only():
        with amp:
            z = model.encoder(model.tokenizer(patches))
        z.float().square().mean().backward()

    def head_only(mode):
        model.head.attention = mode
        ref, tgt = sample_pairs(B, z0.shape[1], 2048, device=dev)
        with amp:
            out = model.head(z0, ref, tgt)
        out.float().square().mean().backward()

    rows = {"sampler (sample + extract)": timed(lambda: model.modality.sample(x), dev),
            "encoder fwd+bwd": timed(encoder_only, dev),
            "head fwd+bwd, fused": timed(lambda: head_only("fused"), dev),
            "head fwd+bwd, logits": timed(lambda: head_only("logits"), dev)}
    model.head.attention = "auto"
    rows["whole step (auto)"] = timed(step, dev)
    for k, v in rows.items():
        print(f"{k:30s} {v:8.2f} ms")
    if dev.startswith("cuda"):
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
