"""The image modality: off-grid boxes -> P x P patches -> tokens; targets (dx, dy[, dw, dh]).

Sampling and extraction are in ``sampling.py``; the box geometry (targets, grid index) is
``part.core.geometry``'s, k = 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from torch import nn

from part.config.options import Options, OptionsError
from part.core.geometry import relative_targets, target_dim
from part.core.modality import Modality, check_input
from part.errors import ConfigError
from part.registry import register_modality
from part.modalities.image import sampling


@dataclass
class ImageOptions(Options):
    """The recipe's `modality` section for images (sizes in pixels).

    patch_size: P, the side of a token's patch. num_patches: N boxes per image for
    ``strategy="random"`` (None: (H/P) * (W/P); grid and stratified use the grid). patch_extent:
    D, the side of a sampled box (None: P). scale_range: e.g. [0.5, 2.0] for w, h log-uniform in
    P * range (targets then (dx, dy, dw, dh)). image_size / channels: None = from the data.
    """

    section = "modality"

    name: str = "image"
    patch_size: int = field(default=4, metadata={"min": 1})
    num_patches: Optional[int] = field(default=None, metadata={"min": 2})
    strategy: Literal["random", "grid", "stratified"] = "random"
    patch_extent: Optional[float] = field(default=None, metadata={"gt": 0})
    scale_range: Optional[tuple[float, float]] = field(default=None, metadata={"gt": 0, "ordered": True})
    scale_target: Literal["ratio", "log"] = "ratio"
    image_size: Optional[int] = field(default=None, metadata={"min": 1})
    channels: Optional[int] = field(default=None, metadata={"min": 1})

    def check(self):
        if self.image_size is not None:
            yield from self.check_size(self.image_size)

    def check_size(self, image_size: int):
        """Rules that need the image side S (from here or from the data): P <= S, D <= S,
        P * scale_range[1] <= S, and a grid of at least 2 patches."""
        P = self.patch_size
        if P > image_size:
            yield "patch_size", f"= {P} must be <= the image size {image_size}"
        elif (image_size // P) ** 2 < 2 and (self.strategy != "random" or self.num_patches is None):
            yield "patch_size", (f"= {P} leaves fewer than 2 grid patches in a {image_size}x"
                                 f"{image_size} image (pairs need two); lower it")
        if self.patch_extent is not None and self.patch_extent > image_size:
            yield "patch_extent", f"= {self.patch_extent} must be <= the image size {image_size}"
        if self.scale_range is not None and P * self.scale_range[1] > image_size:
            yield "scale_range", (f"= {list(self.scale_range)}: patch_size * {self.scale_range[1]}"
                                  f" must be <= the image size {image_size}")


@register_modality("image", options=ImageOptions, example=dict(
    options=dict(image_size=8, channels=1, patch_size=2), input_shape=(2, 1, 8, 8)))
class ImageModality(Modality):
    """2-D images (B, C, H, W). Geometry (B, N, 4) = cx, cy, w, h in pixels.

    Attributes: height / width (S), channels (C), patch_size (P), grid_shape ((rows, cols),
    raster order), grid_cell ((P, P): cell size along x, y), num_grid_patches (rows * cols),
    num_patches (N of ``sample``), patch_dim (C * P * P), target_dim (2, or 4 with scale_range).

    ``ImageModality(options, image_size=..., channels=...)``: the data's size and channels,
    unless the options set them (the options win).
    """

    name = "image"
    geometry_dim = 4

    def __init__(self, options: Optional[ImageOptions] = None, image_size: Optional[int] = None,
                 channels: Optional[int] = None):
        o = self.options = options if options is not None else ImageOptions()
        size, channels = o.image_size or image_size, o.channels or channels
        if size is None or channels is None:
            raise ConfigError("the image modality needs the image size and channels: from the "
                              "data, or set modality.image_size and modality.channels")
        problems = [(f"modality.{k}", m) for k, m in o.check_size(size)]
        if problems:
            raise OptionsError(f"modality options for {size}x{size} images", problems)
        self.height = self.width = int(size)
        self.channels, self.patch_size = int(channels), o.patch_size
        rows, cols = sampling.grid_shape(self.height, self.width, self.patch_size)
        self.grid_shape = (rows, cols)
        self.grid_cell = (self.patch_size, self.patch_size)
        self.num_grid_patches = rows * cols
        random = o.strategy == "random" and o.num_patches is not None
        self.num_patches = o.num_patches if random else self.num_grid_patches
        self.strategy, self.extent = o.strategy, o.patch_extent
        self.scale_range = tuple(o.scale_range) if o.scale_range is not None else None
        self.scale_target = o.scale_target
        self.target_dim = target_dim(2, self.scale_range is not None)
        self.target_names = ("dx", "dy", "dw", "dh")[:self.target_dim]
        self.patch_dim = self.channels * self.patch_size ** 2

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
        """(..., 4) x 2 -> (dx, dy) (..., 2), or (dx, dy, dw, dh) (..., 4) with scale_range."""
        return relative_targets(geom_ref, geom_tgt, self.scale_range is not None, self.scale_target)

    def analysis_plots(self, analysis, out_dir):
        """reconstruction.png, uncertainty.png, mixing.png of ``python -m part.analyze``
        (``modalities/image/analysis.py``)."""
        from part.modalities.image.analysis import write_plots
        return write_plots(analysis, out_dir, self)

    @classmethod
    def timm_patch_embed(cls, options: ImageOptions, weight):
        """The Linear tokenizer weight (dim, C*P*P) as timm's Conv2d patch embedding
        (dim, C, P, P), for `python -m part.export` (no data needed)."""
        P = options.patch_size
        return weight.reshape(weight.shape[0], -1, P, P)
