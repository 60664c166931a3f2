"""Patch sampling and extraction for images: off-grid boxes, the fixed grid, bilinear crops.

Geometry is the 2-D boxes of ``part.core.geometry``: (B, N, 4) = cx, cy, w, h in pixels, with
pixel i covering [i, i + 1) so the image spans [0, W] x [0, H] (relative targets and grid indices
come from ``part.core.geometry``). Every function is one batched tensor operation on the input's
device.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from part.core import geometry

STRATEGIES = ("random", "grid", "stratified")


def _uniform(shape, lo, hi, device, generator):
    return torch.rand(shape, device=device, generator=generator) * (hi - lo) + lo


def _sizes(B, N, patch_size, extent, scale_range, device, generator):
    """(w, h), each (B, N): fixed extent, or log-uniform in patch_size * scale_range."""
    if scale_range is None:
        full = torch.full((B, N), float(extent or patch_size), device=device)
        return full, full.clone()
    lo, hi = math.log(patch_size * scale_range[0]), math.log(patch_size * scale_range[1])
    w = _uniform((B, N), lo, hi, device, generator).exp()
    h = _uniform((B, N), lo, hi, device, generator).exp()
    return w, h


def grid_shape(height: int, width: int, patch_size: int):
    """Rows and columns of the fixed P x P grid."""
    return height // patch_size, width // patch_size


def grid_boxes(batch: int, height: int, width: int, patch_size: int, device=None) -> torch.Tensor:
    """The fixed grid in raster order (rows-major, x fastest): (B, rows*cols, 4) float32 boxes
    of P x P pixels, cell (r, c) centred at ((c + 0.5) P, (r + 0.5) P)."""
    rows, cols = grid_shape(height, width, patch_size)
    return geometry.grid_boxes((cols, rows), (patch_size, patch_size), batch, device)


def sample_boxes(batch: int, height: int, width: int, patch_size: int, num_patches: int,
                 strategy: str = "random", extent: Optional[float] = None,
                 scale_range: Optional[Sequence[float]] = None, device=None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Boxes (B, N, 4) cx, cy, w, h in pixels, every box fully inside the image.

    random: continuous centres uniform over the valid range (the paper's sampling).
    grid: the fixed grid (N = rows * cols; num_patches is ignored).
    stratified: one box per grid cell, its centre jittered uniformly within the cell, then
    clamped so the box stays inside the image (N = rows * cols).
    """
    if strategy == "grid":
        return grid_boxes(batch, height, width, patch_size, device)
    if strategy == "stratified":
        rows, cols = grid_shape(height, width, patch_size)
        num_patches = rows * cols
    elif strategy != "random":
        raise ValueError(f"unknown modality.strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    w, h = _sizes(batch, num_patches, patch_size, extent, scale_range, device, generator)
    if strategy == "random":
        cx = w / 2 + torch.rand(w.shape, device=device, generator=generator) * (width - w)
        cy = h / 2 + torch.rand(h.shape, device=device, generator=generator) * (height - h)
    else:
        cells = grid_boxes(batch, height, width, patch_size, device)
        jitter = torch.rand(batch, num_patches, 2, device=device, generator=generator) - 0.5
        cx = (cells[..., 0] + jitter[..., 0] * patch_size).clamp(w / 2, width - w / 2)
        cy = (cells[..., 1] + jitter[..., 1] * patch_size).clamp(h / 2, height - h / 2)
    return torch.stack([cx, cy, w, h], -1)


def _corner_weights(pos: torch.Tensor, size: int):
    """Bilinear taps along one axis: pixel-centre coordinate pos (pixel i centre = i + 0.5) ->
    (lower index, upper index, upper weight), border-clamped. An exact pixel centre gives weight 0."""
    t = pos - 0.5
    lo = t.floor()
    frac = t - lo
    lo = lo.long()
    return lo.clamp(0, size - 1), (lo + 1).clamp(0, size - 1), frac


@torch.no_grad()
def extract_patches(images: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Bilinearly resample every box to P x P with one batched gather over all boxes.

    images (B, C, H, W); boxes (B, N, 4) pixels -> patches (B, N, C*P*P), flattened (C, P, P)
    like a Conv2d patch embedding. Sample k of a box lies at x0 + (k + 0.5) * w / P; the
    interpolation weights are computed in pixel units (not via normalised coordinates), so an
    integer-aligned P x P box returns exactly the pixels of that crop. Border samples clamp.
    """
    B, C, H, W = images.shape
    N, P = boxes.shape[1], patch_size
    lin = (torch.arange(P, device=images.device, dtype=boxes.dtype) + 0.5) / P - 0.5
    cx, cy, w, h = boxes.unbind(-1)
    x0, x1, fx = _corner_weights(cx[..., None] + lin * w[..., None], W)        # (B, N, P)
    y0, y1, fy = _corner_weights(cy[..., None] + lin * h[..., None], H)
    row0, row1 = (y0 * W)[..., :, None], (y1 * W)[..., :, None]                # (B, N, P, 1)
    col0, col1 = x0[..., None, :], x1[..., None, :]                            # (B, N, 1, P)
    flat = images.reshape(B, C, H * W)

    def tap(rows, cols):
        idx = (rows + cols).reshape(B, 1, N * P * P).expand(B, C, N * P * P)
        return torch.gather(flat, 2, idx).view(B, C, N, P, P)

    fx, fy = fx[:, None, :, None, :].to(images.dtype), fy[:, None, :, :, None].to(images.dtype)
    top = torch.lerp(tap(row0, col0), tap(row0, col1), fx)
    bottom = torch.lerp(tap(row1, col0), tap(row1, col1), fx)
    out = torch.lerp(top, bottom, fy)                                          # (B, C, N, P, P)
    return out.transpose(1, 2).reshape(B, N, C * P * P)
