"""A base for box-sampled modalities: everything but the data's own shape comes from (k, grid,
patch size, channels).

A subclass says what its input is (``rank``, ``input_name``, the names of its targets) and calls
``setup(options, channels, extent, patch)`` from its constructor; sampling, the grid, tokens,
targets, ``place`` and the input checks are then this class's. Geometry is the k-D boxes of
``part.core.geometry`` (B, N, 2k) = (centres, sizes), geometry order (x before y); extents and
patches are given in raster order (rows before columns), like the input's axes.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from part.core import sampling
from part.core.box_options import BoxOptions, show_size
from part.core.geometry import relative_targets, target_dim
from part.core.modality import Modality, check_input
from part.config.options import OptionsError


class BoxModality(Modality):
    """Inputs (B, C, *extent) with k = len(extent) axes, cut into boxes of ``patch`` elements.

    Attributes set by ``setup``: options, channels (C), input_size and patch (raster order),
    grid_shape (extent // patch, raster order), grid_cell (the patch, geometry order),
    num_grid_patches, num_patches (N of ``sample``), strategy, scale_range, scale_target,
    patch_dim (C * prod(patch)), geometry_dim (2k), target_dim (k, or 2k with scale_range),
    target_names (``translation_names`` then ``scale_names``).
    """

    input_name = "batch (B, C, ...)"     # for messages
    size_option = "size"                 # the option that sets the extent, for messages
    unit = "elements"                    # the extent's unit, for messages
    translation_names: tuple = ()        # e.g. ("dx", "dy"); default d0, d1, ...
    scale_names: tuple = ()              # e.g. ("dw", "dh")
    anchor = "centre"                    # where stratified jitter applies: sampling.ANCHORS

    def setup(self, options: BoxOptions, channels: int, extent: Sequence[int], patch: Sequence[int],
              box_size: Optional[Sequence[float]] = None) -> None:
        """Check the options against the extent and derive every attribute (see the class doc).
        box_size: a fixed box size per geometry axis for unscaled sampling (None: the patch)."""
        if len(extent) != len(patch) or type(self).anchor not in sampling.ANCHORS:
            raise ValueError(f"{type(self).__name__}.setup: extent {tuple(extent)} and patch {tuple(patch)} need "
                             f"one value per axis, anchor one of {sampling.ANCHORS} (got {self.anchor!r})")
        problems = [(f"modality.{k}", m) for k, m in options.check_extent(extent, patch)]
        if problems:
            raise OptionsError(f"modality options for inputs of {show_size(extent)}", problems)
        self.options, self.channels = options, int(channels)
        self.input_size, self.patch = tuple(int(e) for e in extent), tuple(int(p) for p in patch)
        k = len(self.input_size)
        self.grid_shape = tuple(e // p for e, p in zip(self.input_size, self.patch))
        self.grid_cell = tuple(reversed(self.patch))
        self.num_grid_patches = math.prod(self.grid_shape)
        random = options.strategy == "random" and options.num_patches is not None
        self.num_patches = options.num_patches if random else self.num_grid_patches
        self.strategy, self.scale_target = options.strategy, options.scale_target
        self.scale_range = tuple(options.scale_range) if options.scale_range is not None else None
        self.box_size = box_size
        self.geometry_dim = 2 * k
        self.target_dim = target_dim(k, self.scale_range is not None)
        names = tuple(self.translation_names) + tuple(self.scale_names)
        if len(names) == 2 * k:
            self.target_names = names[:self.target_dim]
        self.patch_dim = self.channels * math.prod(self.patch)

    def check(self, x: torch.Tensor) -> None:
        """A finite float (B, C, *extent) tensor, else a ValueError naming what differs."""
        check_input(x, 2 + len(self.input_size), self.channels, self.input_name)
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"{self.input_name}: expected {'x'.join(map(str, self.input_size))} {self.unit} after "
                             f"the channels, got shape {tuple(x.shape)}; set "
                             f"modality.{self.size_option} to match the data")

    def sample(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """x (B, C, *extent) -> (patches (B, N, F), boxes (B, N, 2k)); strategy "grid": ``grid``."""
        if self.strategy == "grid":
            return self.grid(x)
        self.check(x)
        boxes, starts = sampling.sample_boxes(
            x.shape[0], self.input_size[::-1], self.grid_cell, self.num_patches, self.strategy,
            self.box_size, self.scale_range, x.device, generator, self.anchor)
        return self.extract(x, boxes, starts), boxes

    def extract(self, x: torch.Tensor, boxes: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Patches (B, N, F) of ``boxes`` (B, N, 2k) (``starts`` (B, N, k): their low corners):
        k-linear resampling to the patch size (``part.core.sampling.extract_boxes``)."""
        return sampling.extract_boxes(x, boxes, self.patch)

    def grid_geometry(self, batch: int, device=None) -> torch.Tensor:
        """The fixed grid's boxes (B, num_grid_patches, 2k), raster order."""
        return sampling.geometry.grid_boxes(self.grid_shape[::-1], self.grid_cell, batch, device)

    def grid(self, x: torch.Tensor):
        """The fixed grid in raster order, exact crops: (patches (B, n, F), boxes (B, n, 2k))."""
        self.check(x)
        return sampling.grid_patches(x, self.patch), self.grid_geometry(x.shape[0], x.device)

    def tokenizer(self, dim: int) -> nn.Module:
        """nn.Linear(F, dim) over patches flattened (C, *patch)."""
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """(..., 2k) x 2 -> translations (..., k), or translations and size ratios (..., 2k) with
        scale_range (``part.core.geometry.relative_targets``)."""
        return relative_targets(geom_ref, geom_tgt, self.scale_range is not None, self.scale_target)
