"""Patch geometry shared by every modality: k-dimensional boxes as (centre..., size...).

A box in k dimensions is a vector of 2k numbers, the k centre coordinates followed by the k
sizes, in the input's own units: images (k = 2) use (cx, cy, w, h) in pixels, 1-D signals (k = 1)
use (centre, length) in samples. Every function works on any leading shape (..., 2k) and is one
batched tensor operation on the input's device.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch

ScaleTarget = Literal["ratio", "log"]
SCALE_TARGETS = ("ratio", "log")


def relative_targets(ref: torch.Tensor, tgt: torch.Tensor, with_scale: bool = False,
                     scale_target: ScaleTarget = "ratio") -> torch.Tensor:
    """The relative transform from box ``ref`` to box ``tgt`` (paper eq. 1 and eq. 5).

    ref, tgt: (..., 2k) = (centre_1..k, size_1..k). Returns (..., k) translations
    ``(c_tgt - c_ref) / size_ref`` per axis, or with ``with_scale`` (..., 2k): the translations
    followed by ``size_tgt / size_ref`` per axis (``scale_target="ratio"``, the paper's) or its log
    (``"log"``, antisymmetric). Images: (dx, dy[, dw, dh]); 1-D: dt[, dlen].
    """
    if ref.shape[-1] % 2 or ref.shape[-1] != tgt.shape[-1]:
        raise ValueError(f"relative_targets: boxes must be (..., 2k) = (centres, sizes) of equal "
                         f"length, got {tuple(ref.shape)} and {tuple(tgt.shape)}")
    k = ref.shape[-1] // 2
    translation = (tgt[..., :k] - ref[..., :k]) / ref[..., k:]
    if not with_scale:
        return translation
    ratio = tgt[..., k:] / ref[..., k:]
    if scale_target == "log":
        ratio = ratio.log()
    elif scale_target != "ratio":
        raise ValueError(f"scale_target={scale_target!r}; valid: {', '.join(SCALE_TARGETS)}")
    return torch.cat([translation, ratio], -1)


def target_dim(k: int, with_scale: bool) -> int:
    """Size of the relative transform of k-dimensional boxes: k, or 2k with scale."""
    return 2 * k if with_scale else k


def grid_boxes(grid_shape: Sequence[int], cell: Sequence[float], batch: int = 1,
               device=None) -> torch.Tensor:
    """The fixed grid of cells in raster order (last axis fastest), as boxes (B, prod(grid), 2k).

    grid_shape: cells per axis in geometry order (images: (cols, rows) for (x, y); 1-D: (n,)).
    cell: the cell size per axis (same order). Cell i on an axis is centred at (i + 0.5) * cell.
    """
    k = len(grid_shape)
    axes = [(torch.arange(n, device=device, dtype=torch.float32) + 0.5) * c
            for n, c in zip(grid_shape, cell)]
    # raster order: the first geometry axis (x) varies fastest, so mesh over reversed axes
    mesh = torch.meshgrid(*reversed(axes), indexing="ij")
    centres = torch.stack([m.reshape(-1) for m in reversed(mesh)], -1)
    sizes = torch.tensor([float(c) for c in cell], device=device).expand(centres.shape[0], k)
    boxes = torch.cat([centres, sizes], -1).unsqueeze(0)
    return boxes.expand(batch, -1, -1).contiguous()


def nearest_grid_index(boxes: torch.Tensor, grid_shape: Sequence[int],
                       cell: Sequence[float]) -> torch.Tensor:
    """Raster index (...,) long of the grid cell holding each box centre, clamped to the grid.

    boxes (..., 2k); grid_shape and cell as in ``grid_boxes`` (geometry order). The first axis
    varies fastest, matching ``grid_boxes``.
    """
    index = torch.zeros(boxes.shape[:-1], dtype=torch.long, device=boxes.device)
    stride = 1
    for axis, (n, c) in enumerate(zip(grid_shape, cell)):
        i = (boxes[..., axis] / c).floor().long().clamp(0, n - 1)
        index = index + i * stride
        stride *= n
    return index


def apply_relative(ref: torch.Tensor, target: torch.Tensor, tgt_sizes: torch.Tensor | None = None,
                   scale_target: ScaleTarget = "ratio") -> torch.Tensor:
    """The inverse of ``relative_targets``: the box (..., 2k) that ``target`` places relative to ``ref``.

    ref (..., 2k) boxes; target (..., k) translations, or (..., 2k) translations then scales (as
    ``relative_targets`` returns them). Centres are ``c_ref + t * size_ref``; sizes are
    ``size_ref * ratio`` (or ``* exp(log ratio)``) with scale targets, else ``tgt_sizes``
    (..., k) (the target boxes' own sizes; None: the reference's).
    """
    k = ref.shape[-1] // 2
    if ref.shape[-1] % 2 or target.shape[-1] not in (k, 2 * k):
        raise ValueError(f"apply_relative: boxes must be (..., 2k) and targets (..., k) or (..., 2k), "
                         f"got {tuple(ref.shape)} and {tuple(target.shape)}")
    centres = ref[..., :k] + target[..., :k] * ref[..., k:]
    if target.shape[-1] == 2 * k:
        ratio = target[..., k:].exp() if scale_target == "log" else target[..., k:]
        sizes = ref[..., k:] * ratio
    else:
        sizes = (ref[..., k:] if tgt_sizes is None else tgt_sizes).expand_as(centres)
    return torch.cat([centres, sizes], -1)
