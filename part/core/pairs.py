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
