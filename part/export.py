"""`python -m part.export RUN_DIR [--out FILE] [--from pretrain|finetuned]`: a run's encoder as a
timm `VisionTransformer` state dict (images), ready for `timm.create_model(...)` +
`load_state_dict(..., strict=False)` or a ViTDet backbone.

Keys follow timm: `cls_token`, `pos_embed` (finetuned weights only: PART pretrains without one),
`patch_embed.proj.weight` (the linear tokenizer reshaped to (dim, C, P, P)), `blocks.*`, `norm.*`,
and `head.*` for a finetuned classifier. 1-D (EEG) runs export the same keys with the tokenizer
kept as `patch_embed.proj.weight` of shape (dim, C * L).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from part.errors import DataError, run_cli


def timm_weights(run_dir: Path, source: str = "pretrain") -> dict:
    """State dict with timm key names from `checkpoints/pretrain.pt` or `checkpoints/finetuned.pt`."""
    from part.config import load_recipe
    from part.core.backbone import timm_state_dict
    from part.registry import modality_spec
    from part.training.checkpoint import load_checkpoint

    recipe = load_recipe(run_dir / "config.yaml", ())
    name = {"pretrain": "pretrain.pt", "finetuned": "finetuned.pt"}[source]
    if not (run_dir / "checkpoints" / name).is_file():
        stage = "pretrain" if source == "pretrain" else "finetune"
        raise DataError(f"run directory '{run_dir}' has no checkpoints/{name}: its {stage} stage has not "
                        f"finished; finish it first (`part-train {run_dir / 'config.yaml'}` resumes the run; "
                        f"add 'run.stages=[{stage}]' to run only that stage), or export --from "
                        f"{'finetuned' if source == 'pretrain' else 'pretrain'}")
    state = load_checkpoint(run_dir / "checkpoints" / name)
    if source == "pretrain":
        tokenizer = {k: v for k, v in state["tokenizer"].items()}
        sd = dict(state["encoder"])
    else:
        model = state["model"]
        tokenizer = {k[len("tokenizer."):]: v for k, v in model.items() if k.startswith("tokenizer.")}
        sd = {k[len("encoder."):]: v for k, v in model.items() if k.startswith("encoder.")}
        sd.update({k: v for k, v in model.items() if k.startswith("head.")})
    weight = modality_spec(recipe.modality.name).cls.timm_patch_embed(recipe.modality, tokenizer["weight"])
    return timm_state_dict(sd, weight, tokenizer["bias"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m part.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from", dest="source", choices=["pretrain", "finetuned"], default="pretrain")
    ap.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/timm_<from>.pth")
    a = ap.parse_args(argv)
    out = a.out or a.run_dir / f"timm_{a.source}.pth"

    def work() -> None:
        import torch

        from part.atomic import atomic_write
        from part.training.rundir import check_writable

        if not (a.run_dir / "config.yaml").exists():
            raise DataError(f"'{a.run_dir}' is not a run directory (no config.yaml); pass <output_dir>/<name>")
        check_writable(out.parent, "--out")
        sd = timm_weights(a.run_dir, a.source)
        atomic_write(out, lambda f: torch.save(sd, f))  # a failed write leaves the old file untouched
        print(f"wrote {out} ({len(sd)} tensors, timm VisionTransformer key names)")
    return run_cli(work, os_error=f"cannot write '{out}'; nothing was changed there")

if __name__ == "__main__":
    sys.exit(main())
