"""The image modality: off-grid boxes -> P x P patches -> tokens; targets (dx, dy[, dw, dh])."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from torch import nn

from part.modality import Modality, check_input
from modalities.image import sampling


@dataclass
class ImageOptions:
    """The recipe's `modality` section for images (sizes in pixels)."""

    name: str = "image"
    patch_size: int = field(default=4, metadata={"min": 1})
    num_patches: Optional[int] = field(default=None, metadata={"min": 2})  # None: (H/P) * (W/P)
    strategy: Literal["random", "grid", "stratified"] = "random"
    patch_extent: Optional[float] = field(default=None, metadata={"min": 1})  # D; None: P
    scale_range: Optional[tuple[float, float]] = None  # e.g. [0.5, 2.0]: w, h log-uniform in P*range
    scale_target: Literal["ratio", "log"] = "ratio"
    image_size: Optional[int] = field(default=None, metadata={"min": 1})  # None: from the data
    channels: Optional[int] = field(default=None, metadata={"min": 1})  # None: from the data


class ImageModality(Modality):
    """2-D images (B, C, H, W). Geometry (B, N, 4) = cx, cy, w, h in pixels."""

    name = "image"
    geometry_dim = 4

    def __init__(self, image_size: int, channels: int, patch_size: int = 4, num_patches=None,
                 strategy: str = "random", patch_extent=None, scale_range=None,
                 scale_target: str = "ratio"):
        self.height = self.width = int(image_size)
        self.channels, self.patch_size = int(channels), int(patch_size)
        P = self.patch_size
        if not 1 <= P <= image_size:
            raise ValueError(f"modality.patch_size={P} must be in [1, image size {image_size}]")
        rows, cols = sampling.grid_shape(self.height, self.width, P)
        self.grid_shape = (rows, cols)
        self.num_grid_patches = rows * cols
        self.num_patches = int(num_patches or self.num_grid_patches)
        if strategy != "random":
            self.num_patches = self.num_grid_patches
        if self.num_patches < 2:
            raise ValueError(f"modality.num_patches={self.num_patches} must be >= 2 (pairs need two "
                             f"patches); lower modality.patch_size or raise the image size")
        if strategy not in sampling.STRATEGIES:
            raise ValueError(f"modality.strategy={strategy!r}; valid: {', '.join(sampling.STRATEGIES)}")
        self.strategy, self.extent = strategy, patch_extent
        self.scale_range = tuple(scale_range) if scale_range is not None else None
        if self.scale_range is not None:
            lo, hi = self.scale_range
            if not 0 < lo <= hi or P * hi > image_size:
                raise ValueError(f"modality.scale_range={list(self.scale_range)} must satisfy "
                                 f"0 < lo <= hi and patch_size*hi <= image size {image_size}")
        if patch_extent is not None and not 0 < patch_extent <= image_size:
            raise ValueError(f"modality.patch_extent={patch_extent} must be in (0, {image_size}]")
        if scale_target not in ("ratio", "log"):
            raise ValueError(f"modality.scale_target={scale_target!r}; valid: ratio, log")
        self.scale_target = scale_target
        self.target_dim = 4 if self.scale_range else 2
        self.patch_dim = self.channels * P * P

    def _check(self, x):
        check_input(x, 4, self.channels, "image batch (B, C, H, W)")
        if tuple(x.shape[2:]) != (self.height, self.width):
            raise ValueError(f"image batch: expected {self.height}x{self.width} images, got "
                             f"{tuple(x.shape[2:])}; set modality.image_size or resize in the data")

    def sample(self, x, generator=None):
        self._check(x)
        boxes = sampling.sample_boxes(x.shape[0], self.height, self.width, self.patch_size,
                                      self.num_patches, self.strategy, self.extent,
                                      self.scale_range, x.device, generator)
        return sampling.extract_patches(x, boxes, self.patch_size), boxes

    def grid(self, x):
        self._check(x)
        boxes = sampling.grid_boxes(x.shape[0], self.height, self.width, self.patch_size, x.device)
        P, B, C = self.patch_size, x.shape[0], self.channels
        rows, cols = sampling.grid_shape(self.height, self.width, P)
        # Exact grid crops need no resampling: a reshape (same layout as extract_patches).
        crop = x[:, :, :rows * P, :cols * P].reshape(B, C, rows, P, cols, P)
        patches = crop.permute(0, 2, 4, 1, 3, 5).reshape(B, rows * cols, C * P * P)
        return patches, boxes

    def tokenizer(self, dim: int) -> nn.Module:
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref, geom_tgt):
        return sampling.relative_targets(geom_ref, geom_tgt, self.scale_range is not None,
                                         self.scale_target)

    def grid_index(self, geometry):
        return sampling.nearest_grid_index(geometry, self.height, self.width, self.patch_size)

    def timm_patch_embed(self, tokenizer: nn.Linear):
        """The tokenizer as timm's Conv2d patch embedding: weight (dim, C, P, P), bias (dim,)."""
        P = self.patch_size
        return tokenizer.weight.reshape(-1, self.channels, P, P), tokenizer.bias

