"""AdamW parameter groups (no decay on biases/norms/tokens, optional layer-wise lr decay) and the
per-step cosine schedule with linear warmup."""
from __future__ import annotations

import math

import torch
from torch import nn


def _layer_id(name: str, depth: int) -> int:
    """0 for tokenizer, [CLS] and position embedding; i+1 for block i; depth+1 for the rest."""
    if name.startswith(("tokenizer", "encoder.cls_token", "encoder.pos_embed")):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay=None, depth: int = 0) -> list:
    """AdamW groups; each carries `lr_scale` (layer decay^(depth+1-layer), 1 without decay)."""
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "mask_token"))
        layer = _layer_id(name, depth) if layer_decay else 0
        scale = layer_decay ** (depth + 1 - layer) if layer_decay else 1.0
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": scale}
        groups[key]["params"].append(p)
    return list(groups.values())


def cosine_lr(step: int, total: int, warmup: int, base_lr: float, min_lr: float) -> float:
    """Linear warmup from 0 over `warmup` steps, then cosine from base_lr down to min_lr at `total`."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
