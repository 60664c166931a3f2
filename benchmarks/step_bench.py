"""Time one PART training step against the reference steps, in ONE process, same batch.

Ours ('part'): ViT-S/4 on 32x32, 64 off-grid patches with the scale variant (dx, dy, dw, dh),
2048 pairs, cross-attention head, forward + backward + AdamW (bf16 autocast on CUDA), as the
engine runs it. 'part1d': the paper-size EEG encoder, 40 windows, 512 pairs. 'imagenet': the
`imagenet_vitb` size, ViT-B/16 at 224 (196 patches), 4802 pairs, against a bare timm ViT-B/16
backbone step (no position embedding, 1000 classes; built here). References
(../shared/bench/reference_steps.py): "backbone" (timm ViT-S/4, no pos-embed: the floor), "part"
(a plain PART implementation), "part1d". Prints ms/step, items/s, the ratios ours/reference
(median of repeated steps) and, on CUDA, each step's peak memory (only that model resident).

    python benchmarks/step_bench.py [--batch 16] [--device cpu] [--threads 2] [--kind part|part1d|imagenet]
        [--compile] [--compile-reference] [--json rows.json]

--compile adds our torch.compile'd step; --compile-reference adds it and the compiled reference
floor (the backbone; for part1d the reference PART-1D) in the same process, so compiled ours /
compiled backbone is one process's ratio.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from part.atomic import atomic_write_json  # noqa: E402
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE  # noqa: E402
from part.core.backbone import build_encoder  # noqa: E402
from part.registry import build_method, get_method, get_modality  # noqa: E402

REFERENCES = {"part": ("backbone", "part"), "part1d": ("part1d",), "imagenet": ("backbone",)}
COMPILED_REFERENCE = {"part": "backbone", "part1d": "part1d", "imagenet": "backbone"}


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("reference_steps", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _train_step(model, loss_fn, device: str):
    """forward (bf16 autocast on CUDA) + backward + AdamW, as one zero-argument function."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    amp = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                         enabled=device.startswith("cuda"))

    def step():
        with amp:
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return step


def build_ours(kind: str, batch: int, device: str, compile_model: bool = False):
    """(step_fn, model) for our PART on random inputs: 'part' (ViT-S/4 images), 'part1d' (EEG)
    or 'imagenet' (ViT-B/16 at 224, 4802 pairs)."""
    torch.manual_seed(0)
    if kind == "part":
        modality = get_modality("image", image_size=32, channels=3, patch_size=4, scale_range=[0.5, 2.0])
        encoder = build_encoder("small")
        x = torch.randn(batch, 3, 32, 32, device=device)
        opts = get_method("part").options(num_pairs=2048)
    elif kind == "imagenet":
        modality = get_modality("image", image_size=224, channels=3, patch_size=16, num_patches=196)
        encoder = build_encoder("base")
        x = torch.randn(batch, 3, 224, 224, device=device)
        opts = get_method("part").options(num_pairs=4802)
    else:
        C, T = PC18_WINDOW_SHAPE
        modality = get_modality("eeg", channels=C, window_samples=T, patch_samples=100, num_patches=40)
        encoder = build_encoder("eeg")
        x = torch.randn(batch, C, T, device=device)
        opts = get_method("part").options(num_pairs=512)
    model = build_method("part", modality, encoder, modality.tokenizer(encoder.dim), opts).to(device)
    fwd = torch.compile(model) if compile_model else model
    return _train_step(model, lambda: fwd(x)["loss"], device), model


def build_vitb_backbone(batch: int, device: str):
    """(step_fn, model): the bare timm ViT-B/16 at 224 (no position embedding, [CLS] token, 1000
    classes), cross-entropy, as reference_steps.py builds its ViT-S/4 backbone."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", num_classes=1000, pos_embed="none",
                              global_pool="token").to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    return _train_step(model, lambda: F.cross_entropy(model(x), y), device), model


def measure(build, time_step, n: int, warm: int, cuda: bool):
    """Build a step, time it (median seconds over n after warm), and on CUDA its peak memory
    in bytes with only this model resident; the model is freed before returning."""
    step, model = build()
    seconds = time_step(step, n=n, warmup=warm)
    peak = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    del step, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return seconds, peak


def run(a) -> dict:
    """All rows of one invocation, written to a.json (when given) after each row: {"device",
    "batch", "kind", "rows": {name: {ms, items_s, peak_gib}}, "ratios": {name: value}}."""
    torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    B = a.batch or ((128 if a.kind == "imagenet" else 512) if cuda else 16)
    n, warm = (a.steps or (30 if cuda else 5)), (5 if cuda else 2)
    ref = load_reference(a.reference)
    name = torch.cuda.get_device_name() if cuda else f"CPU, {a.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; {a.kind}, batch {B}; median of {n} steps"
          f"{'; peak memory with only that model resident' if cuda else ''}")
    refs = REFERENCES[a.kind]

    def reference(kind, compiled=False):
        if a.kind == "imagenet":
            step, model = build_vitb_backbone(B, a.device)
        else:
            step, model = ref.build_step(kind, B, a.device)
        if compiled:
            model.compile()  # in place: the reference's own step closure calls the compiled forward
        return step, model
    builds = {f"reference {r}": (lambda r=r: reference(r), warm) for r in refs}
    builds["ours"] = (lambda: build_ours(a.kind, B, a.device), warm)
    if a.compile or a.compile_reference:
        builds["ours compiled"] = (lambda: build_ours(a.kind, B, a.device, compile_model=True), warm + 2)
    if a.compile_reference:
        r = COMPILED_REFERENCE[a.kind]
        builds[f"reference {r} compiled"] = (lambda: reference(r, compiled=True), warm + 2)
    rows = {}
    result = {"device": name, "torch": torch.__version__, "kind": a.kind, "batch": B, "steps": n,
              "data": "synthetic (random tensors)", "rows": rows, "ratios": {}}
    for label, (build, w) in builds.items():
        seconds, peak = measure(build, ref.time_step, n, w, cuda)
        rows[label] = {"ms": seconds * 1e3, "items_s": B / seconds,
                       "peak_gib": None if peak is None else peak / 2**30}
        mem = "" if peak is None else f" {peak / 2**30:8.2f} GiB peak"
        print(f"{label:30s} {seconds * 1e3:9.1f} ms/step {B / seconds:10.1f} items/s{mem}")
        if a.json:  # after every row: a time limit hit later keeps the rows measured so far
            atomic_write_json(a.json, result)
    ratios = result["ratios"]
    for k in rows:
        if not k.startswith("ours"):
            continue
        for r in rows:
            # eager ours against eager references; compiled ours against all of them
            if r.startswith("reference") and (k.endswith("compiled") or not r.endswith("compiled")):
                ratios[f"{k} / {r}"] = rows[k]["ms"] / rows[r]["ms"]
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.3f}")
    if a.json:
        atomic_write_json(a.json, result)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=None, help="default 16 on CPU; CUDA: 512 (imagenet: 128)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 CPU, 30 CUDA)")
    ap.add_argument("--kind", choices=sorted(REFERENCES), default="part")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd ours")
    ap.add_argument("--compile-reference", action="store_true",
                    help="also time the compiled reference floor and compiled ours (same process)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "bench" / "reference_steps.py")
    a = ap.parse_args(argv)
    if not a.reference.is_file():
        ap.error(f"--reference {a.reference}: no such file; pass the path of reference_steps.py")
    run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
