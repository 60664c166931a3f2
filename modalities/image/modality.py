"""The image modality, k = 2 boxes of ``part.core.box_modality`` (sampling, bilinear crops, grid,
tokens, targets (dx, dy[, dw, dh]) are the base's). Rectangular images and patches are allowed:
``image_size: [H, W]``, ``patch_size: [ph, pw]`` (an int means a square)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from part.core.box_modality import BoxModality
from part.core.box_options import BoxOptions, per_axis
from part.errors import ConfigError
from part.registry import register_modality

Size = Union[int, tuple[int, int]]


@dataclass
class ImageOptions(BoxOptions):
    """The recipe's ``modality`` section for images, in pixels (shared fields: ``BoxOptions``).
    patch_size: P or [ph, pw]. patch_extent: D, the side of a sampled box (None: the patch).
    image_size (S or [H, W]) / channels: None = from the data."""

    extent_name = "image size"

    name: str = "image"
    patch_size: Size = field(default=4, metadata={"min": 1})
    patch_extent: Optional[float] = field(default=None, metadata={"gt": 0})
    image_size: Optional[Size] = field(default=None, metadata={"min": 1})
    channels: Optional[int] = field(default=None, metadata={"min": 1})

    def check(self):
        if self.image_size is not None:
            yield from self.check_size(self.image_size)

    def check_size(self, size):  # S or (H, W), here or from the data: the shared rules, then D
        size = per_axis(size, 2, "image_size")
        yield from self.check_extent(size, per_axis(self.patch_size, 2, "patch_size"))
        if self.patch_extent is not None and self.patch_extent > min(size):
            yield "patch_extent", f"= {self.patch_extent} must be <= the image size {min(size)}"


@register_modality("image", options=ImageOptions, example=dict(
    options=dict(image_size=8, channels=1, patch_size=2), input_shape=(2, 1, 8, 8)))
class ImageModality(BoxModality):
    """Images (B, C, H, W); geometry (B, N, 4) = cx, cy, w, h in pixels. Attributes: BoxModality's,
    height, width, patch_size (P or (ph, pw)), extent (D). ``ImageModality(options, image_size=S or
    (H, W), channels=C)``: the data's, unless the options set them (the options win)."""

    name, input_name, size_option, unit = "image", "image batch (B, C, H, W)", "image_size", "pixels"
    translation_names, scale_names = ("dx", "dy"), ("dw", "dh")

    def __init__(self, options: Optional[ImageOptions] = None, image_size: Optional[Size] = None,
                 channels: Optional[int] = None):
        o = options if options is not None else ImageOptions()
        size, channels = per_axis(o.image_size or image_size, 2, "image_size"), o.channels or channels
        if size is None or channels is None:
            raise ConfigError("the image modality needs the image size and channels: from the "
                              "data, or set modality.image_size and modality.channels")
        patch, self.extent = per_axis(o.patch_size, 2, "patch_size"), o.patch_extent
        self.setup(o, channels, size, patch, None if self.extent is None else (self.extent,) * 2)
        self.height, self.width = size
        self.patch_size = patch[0] if patch[0] == patch[1] else patch

    def analysis_plots(self, analysis, out_dir):  # reconstruction, uncertainty, mixing PNGs
        from part.modalities.image.analysis import write_plots
        return write_plots(analysis, out_dir, self)

    @classmethod
    def timm_patch_embed(cls, options: ImageOptions, weight):
        """The Linear tokenizer weight (dim, C*ph*pw) as timm's Conv2d patch embedding
        (dim, C, ph, pw), for ``python -m part.export`` (no data needed)."""
        return weight.reshape(weight.shape[0], -1, *per_axis(options.patch_size, 2))
