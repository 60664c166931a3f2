"""Transformer building blocks with timm's module names and arithmetic, without importing timm.

``Block`` (pre-norm attention + MLP, optional stochastic depth), ``Attention`` (fused
``scaled_dot_product_attention``), ``Mlp`` and ``DropPath`` compute exactly what timm's
``vision_transformer.Block`` with ``qkv_bias=True`` and a LayerNorm computes (the same operations
in the same order; ``tests/part/test_backbone.py`` compares them with timm's bit for bit) and
carry the same parameter names (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``), so state dicts move between the two unchanged. Importing timm costs seconds
(it imports torchvision and every model); training, evaluation and staging do without it.
``trunc_normal_`` is timm's draw (inverse-CDF of a uniform, bounds in absolute units).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


@torch.no_grad()
def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> torch.Tensor:
    """Fill ``tensor`` in place from N(mean, std^2) truncated to [a, b] (absolute bounds), by the
    inverse CDF of a uniform draw: timm's ``trunc_normal_``, draw for draw (the initialisation of
    every recipe depends on it)."""
    cdf = lambda v: (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0  # noqa: E731
    low, high = cdf((a - mean) / std), cdf((b - mean) / std)
    tensor.uniform_(2 * low - 1, 2 * high - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.0))
    tensor.add_(mean)
    return tensor.clamp_(min=a, max=b)


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` in training,
    scaling the kept ones by 1 / (1 - p) (timm's ``DropPath``, ``scale_by_keep=True``)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, dim) tokens: one qkv Linear, fused attention, proj."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, N, dim); attn_mask broadcastable to (B, heads, N, N), bool True = may attend."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear, hidden width ``hidden``."""

    def __init__(self, dim: int, hidden: int, act: Callable[[], nn.Module] = nn.GELU):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attention(LN(x))), then x + DropPath(Mlp(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_layer: Optional[Callable[[int], nn.Module]] = None):
        super().__init__()
        norm = norm_layer or LayerNorm
        self.norm1, self.attn = norm(dim), Attention(dim, num_heads, qkv_bias)
        self.norm2, self.mlp = norm(dim), Mlp(dim, int(dim * mlp_ratio))
        self.drop_path1, self.drop_path2 = DropPath(drop_path), DropPath(drop_path)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))
