"""The options every box-sampled modality shares, with their checks against the input's size.

A plugin's options dataclass derives from ``BoxOptions``, adds its own fields (its patch size
under its own name, e.g. ``patch_size`` for images or ``patch_samples`` for signals) and names
them in ``patch_field`` / ``extent_name``; ``check_extent`` then states every size rule once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

from part.config.options import Options, OptionsError


def per_axis(value, k: int, name: str = "size") -> Optional[tuple]:
    """An int (the same on every axis) or a list of k values -> a tuple of k ints; None stays.
    Another length raises an OptionsError naming ``modality.<name>``."""
    if value is None:
        return None
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * k
    if len(values) != k:
        raise OptionsError("modality options", [(name, f"= {list(values)} must be one integer or a list of {k} "
                                                       f"(one per axis, rows first)")], "modality")
    return tuple(int(v) for v in values)


def show_size(size: Sequence[int]) -> str:
    """(24, 40) -> "24x40"; (8,) or (8, 8) -> "8"."""
    return str(size[0]) if len(set(size)) == 1 else "x".join(str(s) for s in size)


@dataclass
class BoxOptions(Options):
    """num_patches: N boxes per item for ``strategy="random"`` (None: one per grid cell; grid and
    stratified always use the grid). strategy: random (the paper's), grid (the fixed grid),
    stratified (one box per cell, jittered). scale_range: e.g. [0.5, 2.0] for box sizes
    log-uniform in patch * range per axis (targets then gain the size ratios). scale_target:
    "ratio" (the paper's) or "log"."""

    section = "modality"
    patch_field = "patch_size"     # the name of the subclass's patch-size field
    extent_name = "input size"     # how messages name the input's extent

    name: str = "modality"
    num_patches: Optional[int] = field(default=None, metadata={"min": 2})
    strategy: Literal["random", "grid", "stratified"] = "random"
    scale_range: Optional[tuple[float, float]] = field(default=None, metadata={"gt": 0, "ordered": True})
    scale_target: Literal["ratio", "log"] = "ratio"

    def check_extent(self, extent: Sequence[int], patch: Sequence[int]):
        """Rules that need the input's extent (raster order, from the options or the data):
        patch <= extent, a grid of >= 2 cells where the grid is sampled, patch * scale_range[1]
        <= extent. Yields (field, message)."""
        shown, size, where = show_size(patch), show_size(extent), f"the {self.extent_name}"
        if any(p > e for p, e in zip(patch, extent)):
            yield self.patch_field, (f"= {shown} must be <= {where} {size}: a patch cannot be larger "
                                     f"than the input; lower modality.{self.patch_field}")
        elif math.prod(e // p for e, p in zip(extent, patch)) < 2 and (
                self.strategy != "random" or self.num_patches is None):
            yield self.patch_field, (f"= {shown} leaves fewer than 2 grid patches in {where} {size} "
                                     f"(pairs need two); lower modality.{self.patch_field}")
        if self.scale_range is not None and any(p * self.scale_range[1] > e for p, e in zip(patch, extent)):
            yield "scale_range", (f"= {list(self.scale_range)}: {self.patch_field} * "
                                  f"{self.scale_range[1]} must be <= {where} {size}")

