"""Where does a PART step spend its time? Component timings and the top kernels of one step.

    python benchmarks/profile_step.py [--batch 512] [--device cuda] [--json rows.json]

Times (median, forward + backward) the patch sampler, the encoder alone and the relative head
alone (every attention path the device runs: triton (CUDA with Triton), fused, logits; 2048
pairs over 64 tokens, bf16 autocast on CUDA), then the whole step, and prints torch.profiler's
top kernels (CUDA). Inputs are random tensors (synthetic).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_bench import build_ours  # noqa: E402
from part.atomic import atomic_write_json  # noqa: E402
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
    ap.add_argument("--repeats", type=int, default=20, help="timed repeats per row (median)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows (ms) as JSON here")
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

    n, warm = a.repeats, min(5, a.repeats)
    cuda_triton = dev.startswith("cuda") and importlib.util.find_spec("triton") is not None
    modes = (["triton"] if cuda_triton else []) + ["fused", "logits"]
    rows = {"sampler (sample + extract)": timed(lambda: model.modality.sample(x), dev, n, warm),
            "encoder fwd+bwd": timed(encoder_only, dev, n, warm)}
    for mode in modes:
        rows[f"head fwd+bwd, {mode}"] = timed(lambda: head_only(mode), dev, n, warm)
    model.head.attention = "auto"
    rows["whole step (auto)"] = timed(step, dev, n, warm)
    print(f"device: {torch.cuda.get_device_name() if dev.startswith('cuda') else 'CPU'}; batch {B}; "
          f"median of {n}; synthetic inputs")
    for k, v in rows.items():
        print(f"{k:30s} {v:8.2f} ms")
    if a.json:
        atomic_write_json(a.json, {"batch": B, "device": dev, "data": "synthetic (random tensors)",
                                   "ms": rows})
    if dev.startswith("cuda"):
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60))


if __name__ == "__main__":
    main()
