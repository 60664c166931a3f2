"""The EEG (1-D time series) modality: k = 1 boxes of ``part.core.box_modality`` (windows).

Units: time in *samples* (100 Hz: one sample = 10 ms); sample ``i`` covers [i, i + 1), so a window
of T samples spans [0, T]. Input x (B, C, T), e.g. (B, 6, 3000): 6 channels, 30 s. Geometry
(B, N, 2) = (centre, length) in samples. ``sample``: N windows (default 40 x 1 s) at continuous
random starts in [0, T - len], resampled to P = ``patch_samples`` values by linear interpolation
(``sampling.py``; an integer start with len = P returns x[s : s + P] exactly). ``grid``: the
T // P contiguous windows. Tokens: (C, P) channel-major -> ``nn.Linear(C * P, dim)``. Targets
(paper, section 3): dt = (c_tgt - c_ref) / len_ref; with ``scale_range`` lengths are log-uniform
in P * scale_range and the target gains dlen = len_tgt / len_ref (or its log).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from part.core.box_modality import BoxModality
from part.core.box_options import BoxOptions
from part.registry import register_modality
from part.modalities.eeg import sampling
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE, TARGET_FS


@dataclass
class EEGOptions(BoxOptions):
    """The recipe's ``modality`` section for 1-D signals, in samples (shared fields:
    ``BoxOptions``). channels / window_samples: None = from the data (PhysioNet 2018: 6 x 3000 =
    30 s); a recipe value wins. patch_samples: P, samples per token (100 = 1 s). num_patches: N
    windows for ``strategy="random"``. sample_rate: Hz, to state durations in reports."""

    patch_field, extent_name = "patch_samples", "window length"

    name: str = "eeg"
    num_patches: int = field(default=40, metadata={"min": 2})
    channels: Optional[int] = field(default=None, metadata={"min": 1})
    window_samples: Optional[int] = field(default=None, metadata={"min": 1})
    patch_samples: int = field(default=100, metadata={"min": 1})
    sample_rate: float = field(default=TARGET_FS, metadata={"gt": 0})

    def check(self):
        if self.window_samples is not None:
            yield from self.check_window(self.window_samples)

    def check_window(self, window_samples: int):
        """The shared size rules (``check_extent``) for windows of T samples."""
        yield from self.check_extent((window_samples,), (self.patch_samples,))


@register_modality("eeg", options=EEGOptions, example=dict(
    options=dict(channels=2, window_samples=240, patch_samples=8, num_patches=12), input_shape=(2, 2, 240)))
class EEGModality(BoxModality):
    """1-D signals x (B, C, T) float. Geometry (B, N, 2) = (centre, length) in samples.
    Attributes: those of ``BoxModality`` plus window_samples (T), patch_samples (P), sample_rate
    (Hz). Channels and length come from the options, else the data, else PhysioNet 2018's
    prepared windows (6 x 3000)."""

    name, input_name, size_option, unit = "eeg", "EEG batch (B, C, T)", "window_samples", "samples"
    translation_names, scale_names, anchor = ("dt",), ("dlen",), "start"

    def __init__(self, options: Optional[EEGOptions] = None, channels: Optional[int] = None,
                 window_samples: Optional[int] = None):
        o = options if options is not None else EEGOptions()
        T = o.window_samples or window_samples or PC18_WINDOW_SHAPE[1]
        self.setup(o, o.channels or channels or PC18_WINDOW_SHAPE[0], (T,), (o.patch_samples,))
        self.window_samples, self.patch_samples = int(T), o.patch_samples
        self.sample_rate = float(o.sample_rate)

    def __repr__(self) -> str:
        return (f"EEGModality(channels={self.channels}, window_samples={self.window_samples}, "
                f"patch_samples={self.patch_samples}, num_patches={self.num_patches}, "
                f"strategy={self.strategy!r}, scale_range={self.scale_range}, "
                f"sample_rate={self.sample_rate:g} Hz)")

    def extract(self, x: torch.Tensor, boxes: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Windows by their starts: the fixed-length fast path when every length is P."""
        if self.scale_range is None and self.window_samples > self.patch_samples:
            return sampling.extract_fixed_windows(x, starts[..., 0], self.patch_samples)
        return sampling.extract_windows(x, starts[..., 0], boxes[..., 1], self.patch_samples)

    def analysis_plots(self, analysis, out_dir):  # reconstruction, uncertainty PNGs (30-s windows)
        from part.modalities.eeg.analysis import write_plots
        return write_plots(analysis, out_dir, self)
