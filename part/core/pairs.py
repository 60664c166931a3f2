"""Pair sampling and gathering helpers (functional, no parameters)."""
from __future__ import annotations

from typing import Optional

import torch


def sample_pairs(batch: int, num_patches: int, num_pairs: int, exclude_self: bool = False,
                 device=None, generator: Optional[torch.Generator] = None):
    """Draw `num_pairs` ordered (ref, tgt) index pairs per item, each item its own.

    Returns (ref, tgt), each (batch, num_pairs) long in [0, num_patches). With exclude_self,
    tgt != ref for every pair (tgt drawn from the other num_patches - 1 indices, uniformly).
    """
    if num_patches < 2:
        raise ValueError(f"num_patches must be >= 2 to form pairs, got {num_patches}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    ref = torch.randint(0, num_patches, (batch, num_pairs), device=device, generator=generator)
    if exclude_self:
        offset = torch.randint(1, num_patches, (batch, num_pairs), device=device, generator=generator)
        tgt = (ref + offset) % num_patches
    else:
        tgt = torch.randint(0, num_patches, (batch, num_pairs), device=device, generator=generator)
    return ref, tgt


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick rows per item: x (B, N, D), index (B, M) long -> (B, M, D)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def sample_near_pairs(geometry: torch.Tensor, num_pairs: int, max_offset: float, exclude_self: bool = False,
                      generator: Optional[torch.Generator] = None):
    """Draw `num_pairs` ordered (ref, tgt) pairs per item with the target near the reference.

    geometry (B, N, 2k) boxes (k centres, then k sizes). The reference is uniform over the N
    patches; the target uniform over the patches whose centre lies within ``max_offset``
    reference sizes of the reference's centre on every axis (|c_t - c_r| / s_r <= max_offset),
    the reference itself included unless ``exclude_self`` (then a reference with no neighbour
    pairs with itself). One batched draw (``torch.multinomial`` over (B * M, N) weights).
    Returns (ref, tgt), each (B, num_pairs) long.
    """
    B, N, G = geometry.shape
    k = G // 2
    ref = torch.randint(0, N, (B, num_pairs), device=geometry.device, generator=generator)
    centre, size = geometry[..., :k].float(), geometry[..., k:2 * k].float()
    offset = (centre[:, None, :, :] - centre[:, :, None, :]).abs() / size[:, :, None, :]  # (B, ref, tgt, k)
    near = (offset <= max_offset).all(-1)
    if exclude_self:
        alone = near.sum(-1, keepdim=True) <= 1
        near = near & ~torch.eye(N, dtype=torch.bool, device=near.device) | (alone & torch.eye(
            N, dtype=torch.bool, device=near.device))
    weights = gather_tokens(near.float(), ref)  # (B, M, N): allowed targets of each pair's reference
    tgt = torch.multinomial(weights.reshape(-1, N), 1, generator=generator).view(B, num_pairs)
    return ref, tgt
