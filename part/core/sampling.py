"""Sampling and extraction of k-dimensional boxes: off-grid boxes, the fixed grid, linear crops.

Geometry is the boxes of ``part.core.geometry``: (B, N, 2k) = (centres, sizes) in the input's own
units (pixels, samples), axes in geometry order (x before y: the fastest input axis first). Input
axes are in raster order (slowest first): an image (B, C, H, W) has extent (H, W), geometry
(x, y). Element i of an axis covers [i, i + 1), so an axis of n elements spans [0, n]. Every
function is one batched tensor operation on the input's device (a loop over the k axes at most);
k = 1 (signals) and k = 2 (images) today, k = 3 (volumes) needs nothing new.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from part.core import geometry

STRATEGIES = ("random", "grid", "stratified")
ANCHORS = ("centre", "start")


def log_uniform(shape, lo: float, hi: float, device=None, generator=None) -> torch.Tensor:
    """Values log-uniform in [lo, hi] (lo, hi > 0): exp(U(log lo, log hi)), float32."""
    a, b = math.log(lo), math.log(hi)
    return (torch.rand(shape, device=device, generator=generator) * (b - a) + a).exp()


def sample_boxes(batch: int, extent: Sequence[float], cell: Sequence[float], num_patches: int,
                 strategy: str = "random", box_size: Optional[Sequence[float]] = None,
                 scale_range: Optional[Sequence[float]] = None, device=None,
                 generator: Optional[torch.Generator] = None, anchor: str = "centre"):
    """Boxes inside the input: (boxes (B, N, 2k) float32, starts (B, N, k) = their low corners).

    extent, cell, box_size: per geometry axis, in units: the input's size, the grid cell (the
    patch size) and a fixed box size (None: the cell). Sizes are fixed, or with ``scale_range``
    log-uniform in cell * scale_range per axis (one draw per axis). random: positions uniform
    over the valid range (N = num_patches). grid: the fixed grid. stratified: one box per grid
    cell (N = cells), jittered uniformly by +-cell/2 around the cell's centre (``anchor="centre"``)
    or start (``"start"``; the same distribution, rounded as 1-D windows always were), then
    clamped inside.
    """
    k = len(extent)
    grid_shape = [int(e // c) for e, c in zip(extent, cell)]
    if strategy in ("grid", "stratified"):
        cells = geometry.grid_boxes(grid_shape, cell, batch, device)
        if strategy == "grid":
            return cells, cells[..., :k] - cells[..., k:] / 2
        num_patches = cells.shape[1]
    elif strategy != "random":
        raise ValueError(f"unknown modality.strategy={strategy!r}; valid: {', '.join(STRATEGIES)}")
    shape = (batch, num_patches)
    if scale_range is None:
        size = torch.stack([torch.full(shape, float(s), device=device) for s in box_size or cell], -1)
    else:
        size = torch.stack([log_uniform(shape, c * scale_range[0], c * scale_range[1], device, generator)
                            .clamp(max=float(e)) for c, e in zip(cell, extent)], -1)
    room = torch.tensor([float(e) for e in extent], device=device) - size
    if strategy == "random":
        start = torch.stack([torch.rand(shape, device=device, generator=generator) for _ in range(k)], -1)
        start = start * room
        return torch.cat([start + size / 2, size], -1), start
    jitter = (torch.rand(*shape, k, device=device, generator=generator) - 0.5) * torch.tensor(
        [float(c) for c in cell], device=device)
    if anchor == "start":
        start = (cells[..., :k] - cells[..., k:] / 2 + jitter).clamp(min=0).minimum(room)
        return torch.cat([start + size / 2, size], -1), start
    centre = (cells[..., :k] + jitter).clamp(size / 2, room + size / 2)
    return torch.cat([centre, size], -1), centre - size / 2


def _taps(pos: torch.Tensor, n: int):
    """Linear-interpolation taps along one axis: coordinate pos (element i centre = i + 0.5) ->
    (lower index, upper index, upper weight), border-clamped; an exact centre gives weight 0."""
    t = pos - 0.5
    lo = t.floor()
    frac = t - lo
    lo = lo.long()
    return lo.clamp(0, n - 1), (lo + 1).clamp(0, n - 1), frac


@torch.no_grad()
def extract_boxes(x: torch.Tensor, boxes: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """Resample every box to a patch of ``patch`` values per axis (raster order) by k-linear
    interpolation, one batched gather of the 2^k corners.

    x (B, C, *extent) raster order; boxes (B, N, 2k) geometry order -> (B, N, C * prod(patch)),
    flattened (C, *patch) like a ConvNd patch embedding. Sample j of an axis lies at
    low + (j + 0.5) * size / P; an integer-aligned box of size P returns exactly those elements.
    Interpolation runs along the fastest axis first. Border samples clamp.
    """
    B, C, *extent = x.shape
    N, k = boxes.shape[1], len(extent)
    taps = []  # raster order: (lo index * stride, hi index * stride, frac), each (B, N, 1.., P, ..1)
    stride = 1
    for axis in reversed(range(k)):  # geometry axis g = k - 1 - axis
        g, P = k - 1 - axis, patch[axis]
        lin = (torch.arange(P, device=x.device, dtype=boxes.dtype) + 0.5) / P - 0.5
        lo, hi, frac = _taps(boxes[..., g, None] + lin * boxes[..., k + g, None], extent[axis])
        view = (B, N) + tuple(P if a == axis else 1 for a in range(k))
        taps.insert(0, (lo.mul(stride).view(view), hi.mul(stride).view(view),
                        frac.to(x.dtype).view(view).unsqueeze(1)))
        stride *= extent[axis]
    flat, size = x.reshape(B, C, -1), math.prod(patch)

    def corner(axis, index):
        if axis == k:
            idx = index.expand(B, N, *patch).reshape(B, 1, N * size).expand(B, C, N * size)
            return torch.gather(flat, 2, idx).view(B, C, N, *patch)
        lo, hi, frac = taps[axis]
        return torch.lerp(corner(axis + 1, index + lo), corner(axis + 1, index + hi), frac)

    out = corner(0, torch.zeros((), dtype=torch.long, device=x.device))         # (B, C, N, *patch)
    return out.transpose(1, 2).reshape(B, N, C * size)


def grid_patches(x: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """The fixed grid's exact crops, raster order, without resampling (a reshape):
    x (B, C, *extent) -> (B, prod(extent // patch), C * prod(patch)), each flattened (C, *patch)."""
    B, C, *extent = x.shape
    n = [e // p for e, p in zip(extent, patch)]
    crop = x[(slice(None), slice(None)) + tuple(slice(0, m * p) for m, p in zip(n, patch))]
    split = crop.reshape(B, C, *[d for m, p in zip(n, patch) for d in (m, p)])
    k = len(n)
    order = (0, *[2 + 2 * a for a in range(k)], 1, *[3 + 2 * a for a in range(k)])
    return split.permute(order).reshape(B, math.prod(n), C * math.prod(patch))
