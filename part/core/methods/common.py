"""Helpers shared by the grid baselines (MAE, MP3, DropPos): masking, sin-cos embeddings, decoder.

Functional helpers (no parameters) plus one small module, `LightDecoder`. Everything works on the
modality's fixed grid through its `grid_shape` ((rows, cols) for images, (n,) for 1-D signals,
raster order), so the methods never know which modality they train on.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from torch import nn
from part.core.blocks import Block

from part.core.backbone import init_weights


# ----------------------------------------------------------------------------- counts

def num_kept(num: int, ratio: float) -> int:
    """Items kept when a fraction `ratio` of `num` is masked: floor(num * (1 - ratio)) as in MAE."""
    return int(num * (1.0 - ratio) + 1e-6)


def require_no_position_embedding(encoder: nn.Module, method: str) -> None:
    """The grid baselines add their own pretraining embedding (or none): the encoder must have none,
    so the finetune stage never mistakes a pretraining embedding for its own."""
    if getattr(encoder, "pos_embed", None) is not None:
        raise ValueError(f"method {method!r} needs an encoder without a position embedding (it "
                         f"handles positions itself during pretraining); build the encoder "
                         f"without `num_positions`")


# ----------------------------------------------------------------------------- masking

def random_masking(batch: int, num: int, ratio: float, device=None):
    """Per-item random masking by argsort of uniform noise (no loop over items).

    Returns keep (B, K) long, the indices of the K = floor(num * (1 - ratio)) kept items in random
    order, and masked (B, num) bool, True where an item is masked (exactly num - K per row).
    """
    keep = torch.rand(batch, num, device=device).argsort(dim=1)[:, :num_kept(num, ratio)]
    masked = torch.ones(batch, num, dtype=torch.bool, device=device)
    masked.scatter_(1, keep, False)
    return keep, masked


# ----------------------------------------------------------------------------- grid geometry

def grid_coordinates(grid_shape: Sequence[int]) -> torch.Tensor:
    """(N, k) float coordinates of the cells of a k-D grid in raster order (last axis fastest)."""
    axes = [torch.arange(n, dtype=torch.float64) for n in grid_shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def grid_squared_distances(grid_shape: Sequence[int]) -> torch.Tensor:
    """(N, N) float32 squared Euclidean distances between grid cells, in cell units."""
    c = grid_coordinates(grid_shape)
    return (c[:, None, :] - c[None, :, :]).pow(2).sum(-1).float()


def _sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """pos (M,) -> (M, dim): [sin(pos * w), cos(pos * w)], w_i = 1 / 10000^(i / (dim / 2))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = pos[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_position_embedding(grid_shape: Sequence[int], dim: int, key: str = "model.dim") -> torch.Tensor:
    """Fixed sin-cos position embedding of a grid, (N, dim) float32, raster order (MAE).

    1-D: the usual 1-D embedding of the index. 2-D (rows, cols): the first half of the channels
    embeds the column, the second half the row (MAE's `get_2d_sincos_pos_embed` layout). `dim`
    must be divisible by 2 * len(grid_shape); `key` names the option in the error.
    """
    k = len(grid_shape)
    if dim % (2 * k):
        raise ValueError(f"{key}={dim} must be divisible by {2 * k} for a fixed sin-cos position "
                         f"embedding of a {k}-D grid {tuple(grid_shape)}")
    coords = grid_coordinates(grid_shape).flip(1)  # (col, row) for 2-D, as MAE
    parts = [_sincos_1d(coords[:, axis], dim // k) for axis in range(k)]
    return torch.cat(parts, dim=1).float()


# ----------------------------------------------------------------------------- decoder

class LightDecoder(nn.Module):
    """A small transformer decoder: Linear(in_dim -> dim), `depth` ViT blocks, LayerNorm,
    Linear(dim -> out_dim). `embed` and `head` are split so a method can insert mask tokens or
    position embeddings between them (MAE)."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, out_dim: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.dim = dim
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(dim)
        self.pred = nn.Linear(dim, out_dim)
        self.apply(init_weights)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim) -> (B, L, out_dim) through the blocks, the norm and the prediction."""
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L, in_dim) -> (B, L, out_dim) (no tokens inserted)."""
        return self.head(self.embed(z))
