"""The transformer encoder: a ViT over a *set* of tokens, built from `Block`s that compute what
timm's do under timm's module names (``part/core/blocks.py``; timm itself is not imported).

PART pretrains with NO position embedding (the tokens are an unordered set of patches); the
learnable position embedding of the fixed grid is added for finetuning (paper section 3.4, random
init). Module names mirror timm's VisionTransformer (`cls_token`, `pos_embed`, `blocks.i.*`,
`norm.*`), so a PART backbone loads into timm (`timm_state_dict`).
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from part.core.blocks import Block, LayerNorm, trunc_normal_

# name -> (dim, depth, heads). "eeg" is the paper's 1-D encoder: 16 blocks of width 256 with
# 8 heads = 12.6M parameters in the blocks, ~12.9M with tokenizer, position embedding and head.
SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "eeg": (256, 16, 8),
}


def resolve_size(size: str, dim: Optional[int] = None, depth: Optional[int] = None,
                 heads: Optional[int] = None):
    """(dim, depth, heads) for a named size; explicit values override it ("custom" needs all three)."""
    if size == "custom":
        if None in (dim, depth, heads):
            raise ValueError("model.size=custom needs model.dim, model.depth and model.heads")
        return dim, depth, heads
    if size not in SIZES:
        raise ValueError(f"unknown model.size {size!r}; valid: {', '.join(SIZES)}, custom")
    d0, l0, h0 = SIZES[size]
    return dim or d0, depth or l0, heads or h0


class ViTEncoder(nn.Module):
    """Transformer encoder over tokens (B, N, dim) -> (B, 1 + N, dim) with [CLS] first, normed."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, num_positions: Optional[int] = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"model.dim={dim} must be divisible by model.heads={num_heads}")
        self.dim, self.depth, self.num_heads = dim, depth, num_heads
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed: Optional[nn.Parameter] = None
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, drop_path=r, norm_layer=LayerNorm) for r in rates)
        self.norm = LayerNorm(dim)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(init_weights)
        if num_positions:
            self.add_position_embedding(num_positions)

    def add_position_embedding(self, num_positions: int) -> None:
        """Add a learnable (1, 1 + num_positions, dim) position embedding, random init (sec. 3.4)."""
        pe = torch.zeros(1, 1 + num_positions, self.dim, device=self.cls_token.device)
        self.pos_embed = nn.Parameter(trunc_normal_(pe, std=0.02))

    def forward(self, tokens: torch.Tensor, positions: Optional[torch.Tensor] = None,
                pos_drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """tokens (B, N, dim); positions (B, N) long grid indices (None = 0..N-1) used only if this
        encoder has a position embedding; pos_drop (B, N) bool: tokens whose position embedding is
        left out. Returns (B, 1 + N, dim) after the final norm."""
        B = tokens.shape[0]
        cls = self.cls_token.expand(B, -1, -1)
        if self.pos_embed is not None:
            pe = self.pos_embed[:, 1:].expand(B, -1, -1)
            if positions is not None:
                pe = torch.gather(pe, 1, positions.unsqueeze(-1).expand(-1, -1, self.dim))
            elif pe.shape[1] != tokens.shape[1]:
                raise ValueError(f"{tokens.shape[1]} tokens but a position embedding for {pe.shape[1]}")
            if pos_drop is not None:
                pe = pe * (~pos_drop).unsqueeze(-1).to(pe.dtype)
            tokens = tokens + pe
            cls = cls + self.pos_embed[:, :1]
        x = torch.cat([cls, tokens], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_encoder(size: str = "tiny", dim=None, depth=None, heads=None, mlp_ratio: float = 4.0,
                  drop_path: float = 0.0) -> ViTEncoder:
    """Encoder from the recipe's `model` section (no position embedding: pretraining form)."""
    d, n_layers, h = resolve_size(size, dim, depth, heads)
    return ViTEncoder(d, n_layers, h, mlp_ratio=mlp_ratio, drop_path=drop_path)


def random_position_drop(batch: int, num: int, ratio: float, device=None) -> Optional[torch.Tensor]:
    """(B, N) bool with exactly round(ratio * N) True per row at random places (None if ratio 0)."""
    k = int(round(ratio * num))
    if k == 0:
        return None
    order = torch.rand(batch, num, device=device).argsort(1)
    return order < k


def timm_state_dict(encoder: ViTEncoder | Mapping[str, torch.Tensor],
                    patch_embed_weight: Optional[torch.Tensor] = None,
                    patch_embed_bias: Optional[torch.Tensor] = None) -> dict:
    """Encoder weights under timm VisionTransformer's key names: the one key map of the toolkit
    (``part.export`` calls it). ``encoder``: a ViTEncoder or its state dict; `patch_embed.proj.*`
    when given, e.g. an image tokenizer's Linear weight reshaped to (dim, C, P, P)."""
    sd = dict(encoder.state_dict() if isinstance(encoder, nn.Module) else encoder)
    if patch_embed_weight is not None:
        sd["patch_embed.proj.weight"] = patch_embed_weight
        sd["patch_embed.proj.bias"] = patch_embed_bias
    return sd
