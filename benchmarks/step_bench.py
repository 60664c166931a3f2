"""Time one PART training step against the reference steps, in ONE process, same batch.

Ours: ViT-S/4 on 32x32, 64 off-grid patches with the scale variant (dx, dy, dw, dh), 2048 pairs,
cross-attention head, forward + backward + AdamW (bf16 autocast on CUDA), as the engine runs it.
References (../shared/bench/reference_steps.py): "backbone" (timm ViT-S/4, no pos-embed: the floor)
and "part" (a plain PART implementation). Prints ms/step and the ratios ours/backbone and
ours/reference-part (median of repeated steps).

    python benchmarks/step_bench.py [--batch 16] [--device cpu] [--threads 2] [--kind part|part1d]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from part.modalities import get_modality  # noqa: E402
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE  # noqa: E402
from part.core.backbone import build_encoder  # noqa: E402
from part.registry import build_method, get_method  # noqa: E402


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("reference_steps", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_ours(kind: str, batch: int, device: str, compile_model: bool = False):
    """(step_fn, model) for our PART ('part': ViT-S/4 images; 'part1d': EEG) on random inputs."""
    torch.manual_seed(0)
    if kind == "part":
        modality = get_modality("image", image_size=32, channels=3, patch_size=4, scale_range=[0.5, 2.0])
        encoder = build_encoder("small")
        x = torch.randn(batch, 3, 32, 32, device=device)
        opts = get_method("part").options(num_pairs=2048)
    else:
        C, T = PC18_WINDOW_SHAPE
        modality = get_modality("eeg", channels=C, window_samples=T, patch_samples=100, num_patches=40)
        encoder = build_encoder("eeg")
        x = torch.randn(batch, C, T, device=device)
        opts = get_method("part").options(num_pairs=512)
    model = build_method("part", modality, encoder, modality.tokenizer(encoder.dim), opts).to(device)
    fwd = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    amp = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                         enabled=device.startswith("cuda"))

    def step():
        with amp:
            loss = fwd(x)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return step, model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=None, help="default 16 on CPU, 512 on CUDA")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 30 CUDA)")
    ap.add_argument("--kind", choices=["part", "part1d"], default="part")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd ours")
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "bench" / "reference_steps.py")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    B = a.batch or (512 if cuda else 16)
    n, warm = (a.steps or (30 if cuda else 5)), (5 if cuda else 2)
    ref = load_reference(a.reference)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {a.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {B}; median of {n} steps")
    rows = {}
    refs = ("backbone", "part") if a.kind == "part" else ("part1d",)
    for kind in refs:
        step, _ = ref.build_step(kind, B, a.device)
        rows[f"reference {kind}"] = ref.time_step(step, n=n, warmup=warm)
    step, model = build_ours(a.kind, B, a.device)
    rows["ours"] = ref.time_step(step, n=n, warmup=warm)
    if a.compile:
        step, _ = build_ours(a.kind, B, a.device, compile_model=True)
        rows["ours compiled"] = ref.time_step(step, n=n, warmup=warm + 2)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        print(f"ours peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    for k, s in rows.items():
        print(f"{k:20s} {s * 1e3:9.1f} ms/step {B / s:10.1f} items/s")
    for k in rows:
        if k.startswith("ours"):
            for r in refs:
                print(f"ratio {k}/{r}: {rows[k] / rows['reference ' + r]:.3f}")


if __name__ == "__main__":
    main()
