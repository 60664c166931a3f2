"""Image patch sampling, kept for its public names: thin calls of ``part.core.sampling`` (k = 2).

Geometry (B, N, 4) = cx, cy, w, h in pixels, pixel i covering [i, i + 1). Square patches of P
pixels; the modality itself (``ImageModality``) also takes rectangular ones.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from part.core import geometry
from part.core.sampling import STRATEGIES, extract_boxes
from part.core import sampling

__all__ = ["STRATEGIES", "extract_patches", "grid_boxes", "grid_shape", "sample_boxes"]


def grid_shape(height: int, width: int, patch_size: int):
    """Rows and columns of the fixed P x P grid."""
    return height // patch_size, width // patch_size


def grid_boxes(batch: int, height: int, width: int, patch_size: int, device=None) -> torch.Tensor:
    """The fixed grid in raster order (rows-major, x fastest): (B, rows*cols, 4) float32 boxes."""
    rows, cols = grid_shape(height, width, patch_size)
    return geometry.grid_boxes((cols, rows), (patch_size, patch_size), batch, device)


def sample_boxes(batch: int, height: int, width: int, patch_size: int, num_patches: int,
                 strategy: str = "random", extent: Optional[float] = None,
                 scale_range: Optional[Sequence[float]] = None, device=None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Boxes (B, N, 4) cx, cy, w, h in pixels inside the image (``part.core.sampling.sample_boxes``:
    random, grid, stratified with the jitter about the cell centre)."""
    box = None if extent is None else (extent, extent)
    return sampling.sample_boxes(batch, (width, height), (patch_size, patch_size), num_patches,
                                 strategy, box, scale_range, device, generator)[0]


def extract_patches(images: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Bilinear P x P crops: images (B, C, H, W), boxes (B, N, 4) -> (B, N, C*P*P)."""
    return extract_boxes(images, boxes, (patch_size, patch_size))
