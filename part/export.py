"""`python -m part.export RUN_DIR [--out FILE] [--from pretrain|finetuned]`: a run's encoder as a
timm `VisionTransformer` state dict, for any modality, with a sidecar JSON (`FILE.json`) saying
how to build the timm model and how its inputs were made.

Keys follow timm: `cls_token`, `pos_embed` (finetuned weights only: PART pretrains without one),
`patch_embed.proj.*` (the linear tokenizer as timm's Conv2d patch embedding), `blocks.*`,
`norm.*`, and `head.*` for a finetuned classifier. The layout comes from the modality's fixed
grid: images (B, C, H, W) with patches P x P as usual; 1-D signals (B, C, T) (EEG) as images of
one row, img_size (1, T) and patch_size (1, P), the input reshaped (B, C, 1, T).

The sidecar (written atomically beside the weights): `timm` (the constructor, its keyword
arguments and the call as one line), `input` (shape per item, how to reshape), `channels` (names
in order, or their number), `sampling_rate` / `image_size`, `band_pass`, `normalisation`,
`class_names`, `temperature` (finetuned: divide the logits by it for calibrated probabilities;
None = uncalibrated), and `source` (run directory, checkpoint file and its sha256), plus the finetuned
checkpoint's whole model `card` (`part/inference.py`) when one exists in the run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from part.atomic import file_sha256
from part.errors import ConfigError, DataError, run_cli

SIDECAR_VERSION = 1
TIMM_CLASS = "timm.models.vision_transformer.VisionTransformer"
CHECKPOINTS = {"pretrain": "pretrain.pt", "finetuned": "finetuned.pt"}


def _checkpoint(run_dir: Path, source: str) -> Path:
    path = run_dir / "checkpoints" / CHECKPOINTS[source]
    if not path.is_file():
        stage = "pretrain" if source == "pretrain" else "finetune"
        raise DataError(f"run directory '{run_dir}' has no checkpoints/{path.name}: its {stage} stage has not "
                        f"finished; finish it first (`part-train {run_dir / 'config.yaml'}` resumes the run; "
                        f"add 'run.stages=[{stage}]' to run only that stage), or export --from "
                        f"{'finetuned' if source == 'pretrain' else 'pretrain'}")
    return path


def timm_layout(modality) -> dict:
    """The timm VisionTransformer input layout of a modality's fixed grid: {"img_size": (H, W),
    "patch_size": (ph, pw), "in_chans": C} (1-D grids: H = 1, ph = 1). ConfigError for grids
    that are not 1-D or 2-D or whose patch values are not C whole cells."""
    grid = tuple(int(n) for n in modality.grid_shape)  # raster order, slowest axis first
    cell = getattr(modality, "grid_cell", None)
    if cell is None or len(grid) not in (1, 2) or len(cell) != len(grid):
        raise ConfigError(f"modality {modality.name!r} has no timm VisionTransformer layout (grid_shape="
                          f"{grid}, grid_cell={cell}): export needs a 1-D or 2-D grid of cells")
    patch = tuple(int(round(c)) for c in reversed(cell))  # raster order
    if len(grid) == 1:
        grid, patch = (1, *grid), (1, *patch)
    per_channel = math.prod(patch)
    if modality.patch_dim % per_channel:
        raise ConfigError(f"modality {modality.name!r}: patch_dim={modality.patch_dim} is not channels x "
                          f"{'x'.join(map(str, patch))} cell values, so it has no timm patch embedding")
    return {"img_size": (grid[0] * patch[0], grid[1] * patch[1]), "patch_size": patch,
            "in_chans": modality.patch_dim // per_channel}


def _card(run_dir: Path, source: str, state: dict) -> dict | None:
    """The finetuned model card of the run: the exported checkpoint's, else a finetuned
    checkpoint's of the same run (same data), else rebuilt from config.yaml + the data (None when
    that fails: the sidecar then says the data description is unknown)."""
    from part.inference import _card_from_config
    from part.training.checkpoint import load_checkpoint

    if state.get("card"):
        return state["card"]
    for name in ("best.pt", "finetuned.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file() and (card := load_checkpoint(path).get("card")):
            return card
    try:
        return _card_from_config(run_dir, run_dir / "checkpoints" / CHECKPOINTS[source])
    except DataError:
        return None


def export(run_dir: Path, source: str = "pretrain") -> tuple[dict, dict]:
    """(state dict under timm's key names, sidecar dict) of ``checkpoints/pretrain.pt`` or
    ``checkpoints/finetuned.pt``; see the module docstring."""
    from part.config import load_recipe
    from part.config.loader import recipe_to_dict
    from part.core.backbone import timm_state_dict
    from part.registry import get_modality
    from part.training.checkpoint import load_checkpoint

    path = _checkpoint(run_dir, source)
    recipe = load_recipe(run_dir / "config.yaml", ())
    state = load_checkpoint(path)
    card = _card(run_dir, source, state)
    if source == "pretrain":
        tokenizer, encoder, head = state["tokenizer"], dict(state["encoder"]), {}
    else:
        model = state["model"]
        tokenizer = {k[len("tokenizer."):]: v for k, v in model.items() if k.startswith("tokenizer.")}
        encoder = {k[len("encoder."):]: v for k, v in model.items() if k.startswith("encoder.")}
        head = {k: v for k, v in model.items() if k.startswith("head.")}
    info = (card or {}).get("input_info")
    if info is None:  # a pretrain-only run: the data's input_info saved with the pretext model
        pretext = run_dir / "checkpoints" / "pretext.pt"
        info = load_checkpoint(pretext).get("input_info", {}) if pretext.is_file() else {}
    modality = get_modality(recipe.modality.name, recipe.modality, **info)
    layout = timm_layout(modality)
    weight = modality.timm_patch_embed(recipe.modality, tokenizer["weight"])  # a modality's own layout
    if weight.dim() == 2:  # default: patch values channel-major over the grid cell
        weight = weight.reshape(weight.shape[0], layout["in_chans"], *layout["patch_size"])
    sd = {**timm_state_dict(encoder, weight, tokenizer["bias"]), **head}
    sidecar = _sidecar(run_dir, path, source, recipe_to_dict(recipe.model), layout, card, head, modality)
    return sd, sidecar


def _sidecar(run_dir: Path, path: Path, source: str, model: dict, layout: dict, card: dict | None,
             head: dict, modality) -> dict:
    from part.core.backbone import resolve_size

    dim, depth, heads = resolve_size(model["size"], model.get("dim"), model.get("depth"), model.get("heads"))
    classes = int(head["head.weight"].shape[0]) if head else 0
    kwargs = {"img_size": list(layout["img_size"]), "patch_size": list(layout["patch_size"]),
              "in_chans": layout["in_chans"], "num_classes": classes, "embed_dim": dim, "depth": depth,
              "num_heads": heads, "mlp_ratio": float(model.get("mlp_ratio", 4.0)), "qkv_bias": True,
              "class_token": True, "global_pool": "token"}
    call = f"{TIMM_CLASS}(" + ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v!r}"
                                          for k, v in kwargs.items()) + ")"
    C, (H, W) = layout["in_chans"], layout["img_size"]
    one_d = layout["patch_size"][0] == 1 and len(modality.grid_shape) == 1
    data = dict((card or {}).get("data") or {})
    info = dict((card or {}).get("input_info") or {})
    return {
        "sidecar_version": SIDECAR_VERSION,
        "modality": modality.name,
        "timm": {"class": TIMM_CLASS, "kwargs": kwargs, "call": call,
                 "load": "model.load_state_dict(torch.load(FILE), strict=False)",
                 "missing_keys": ["pos_embed"] if source == "pretrain" else []},
        "input": {"shape": [C, H, W],
                  "prepare": (f"x (B, {C}, T) -> x[:, :, :{W}].reshape(B, {C}, 1, {W})" if one_d
                              else f"x (B, {C}, {H}, {W}) as is")},
        "channels": data.get("channels", C),
        "sampling_rate": data.get("sampling_rate"),
        "image_size": info.get("image_size"),
        "band_pass": data.get("filter"),
        "normalisation": data.get("normalisation"),
        "class_names": list((card or {}).get("class_names") or []),
        "temperature": (card or {}).get("temperature") if source == "finetuned" else None,
        "source": {"run": str(run_dir), "from": source, "checkpoint": str(path), "sha256": file_sha256(path)},
        "card": card,
        "note": None if card else ("no finetuned model card in this run and its data could not be read: "
                                   "the data description (channels, filter, normalisation) is unknown"),
    }


def timm_weights(run_dir: Path, source: str = "pretrain") -> dict:
    """State dict with timm key names from `checkpoints/pretrain.pt` or `checkpoints/finetuned.pt`."""
    return export(run_dir, source)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from", dest="source", choices=["pretrain", "finetuned"], default="pretrain")
    ap.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/timm_<from>.pth; the sidecar "
                                                           "is written beside it as <out>.json")
    a = ap.parse_args(argv)
    out = a.out or a.run_dir / f"timm_{a.source}.pth"
    side = out.with_name(out.name + ".json")

    def work() -> None:
        import torch

        from part.atomic import atomic_write, atomic_write_text
        from part.training.rundir import check_writable

        if not (a.run_dir / "config.yaml").exists():
            raise DataError(f"'{a.run_dir}' is not a run directory (no config.yaml); pass <output_dir>/<name>")
        check_writable(out.parent, "--out")
        sd, sidecar = export(a.run_dir, a.source)
        atomic_write(out, lambda f: torch.save(sd, f))  # a failed write leaves the old file untouched
        atomic_write_text(side, json.dumps(sidecar, indent=2, default=str) + "\n")
        print(f"wrote {out} ({len(sd)} tensors, timm VisionTransformer key names) and {side} "
              f"(build with: {sidecar['timm']['call']})")
    return run_cli(work, os_error=f"cannot write '{out}'; nothing was changed there")


if __name__ == "__main__":
    sys.exit(main())
