"""PART: pairwise relative translations (Ayoughi et al., paper section 3).

Patches sampled off-grid by the modality -> tokenizer -> encoder with NO position embedding ->
relative head on #pairs random ordered pairs -> MSE against the modality's relative transform
(paper eq. 4). Modality-agnostic: it only calls the plugin interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from part.config.options import Options
from part.core.heads import build_head
from part.core.pairs import gather_tokens, sample_pairs
from part.registry import register_method


@dataclass
class PARTOptions(Options):
    """The recipe's `method` section for PART."""

    section = "method"

    name: str = "part"
    num_pairs: int = field(default=2048, metadata={"min": 1})
    head: Literal["cross_attention", "pairwise_mlp", "mlp"] = "cross_attention"
    head_heads: Optional[int] = field(default=None, metadata={"min": 1})  # None: encoder's heads
    head_hidden: Optional[int] = field(default=None, metadata={"min": 1})  # pairwise_mlp only
    exclude_self_pairs: bool = False

    def check(self):
        if self.head_hidden is not None and self.head != "pairwise_mlp":
            yield "head_hidden", f"applies to head 'pairwise_mlp' only, not {self.head!r}"


@register_method("part", options=PARTOptions)
class PART(nn.Module):
    """Pretext model: forward(x) -> {"loss", "l2_error"}; `on_grid` gives the PART-grid ablation."""

    def __init__(self, modality, encoder, tokenizer, options: PARTOptions, on_grid: bool = False):
        super().__init__()
        self.modality, self.encoder, self.tokenizer = modality, encoder, tokenizer
        self.options, self.on_grid = options, on_grid
        n = modality.num_grid_patches if on_grid else modality.num_patches
        self.head = build_head(options.head, encoder.dim, modality.target_dim, n,
                               options.head_heads or encoder.num_heads, options.head_hidden)

    def forward(self, x: torch.Tensor) -> dict:
        patches, geom = self.modality.grid(x) if self.on_grid else self.modality.sample(x)
        z = self.encoder(self.tokenizer(patches))[:, 1:]
        B, N, _ = z.shape
        ref, tgt = sample_pairs(B, N, self.options.num_pairs, self.options.exclude_self_pairs, z.device)
        pred = self.head(z, ref, tgt).float()
        target = self.modality.targets(gather_tokens(geom, ref), gather_tokens(geom, tgt)).float()
        loss = F.mse_loss(pred, target)
        with torch.no_grad():
            l2 = (pred[..., :2] - target[..., :2]).norm(dim=-1).mean()
        return {"loss": loss, "l2_error": l2}
