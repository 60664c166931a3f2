"""The EEG (1-D time series) modality: windows at continuous start times -> tokens; targets dt.

Units: time is measured in *samples* (at ``sample_rate`` = 100 Hz, one sample = 10 ms). Sample
``i`` of a signal covers the interval [i, i + 1), so a signal of T samples spans [0, T] and a
window starting at s of length len covers [s, s + len). An input is a batch ``x`` of shape
(B, C, T), e.g. (B, 6, 3000): 6 EEG channels, 30 s. Geometry is (B, N, 2) = (centre, length) in
samples, centre = s + len / 2 (the 1-D boxes of ``part.core.geometry``); the sampling and
extraction helpers are in ``sampling.py``.

- ``sample``: N windows per item (default 40 x 1 s) at continuous random starts in [0, T - len],
  each resampled to P = ``patch_samples`` values by linear interpolation (one batched gather of the
  floor/ceil sample indices + one lerp, on x's device). An integer start with len = P returns the
  P samples x[s : s + P] exactly.
- ``grid``: the T // P contiguous windows [kP, (k + 1)P) (default 30 x 1 s), centres
  (k + 0.5) * P: a reshape.
- tokens: each patch flattened channel-major (C, P) -> C * P values -> ``nn.Linear(C * P, dim)``.
- targets (paper, section 3, 1-D): dt = (c_tgt - c_ref) / len_ref with c the window centre.
  With equal lengths (the default) this equals the difference of the starts over P.
  Scale variant (``scale_range``): lengths log-uniform in P * scale_range, target (dt, dlen) with
  dlen = len_tgt / len_ref (``scale_target="ratio"``) or log(len_tgt / len_ref) (``"log"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import nn

from part.config.options import Options, OptionsError
from part.core.geometry import relative_targets, target_dim
from part.core.modality import Modality, check_input
from part.registry import register_modality
from part.modalities.eeg import sampling
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE


@dataclass
class EEGOptions(Options):
    """The recipe's ``modality`` section for 1-D signals (lengths in samples, 100 Hz by default).

    channels / window_samples: None = from the data (PhysioNet 2018: 6 channels, 3000 samples =
    30 s); a value set in the recipe overrides the data's. patch_samples: P, samples per token
    (100 = 1 s). num_patches: N windows per item for ``strategy="random"`` (grid and stratified
    use T // P). scale_range: e.g. [0.5, 2.0] for windows of P/2 .. 2P samples (log-uniform),
    resampled to P. sample_rate: Hz, used to state durations in reports (the sampling itself
    works in samples).
    """

    section = "modality"

    name: str = "eeg"
    channels: Optional[int] = field(default=None, metadata={"min": 1})
    window_samples: Optional[int] = field(default=None, metadata={"min": 1})
    patch_samples: int = field(default=100, metadata={"min": 1})
    num_patches: int = field(default=40, metadata={"min": 2})
    strategy: Literal["random", "grid", "stratified"] = "random"
    scale_range: Optional[tuple[float, float]] = field(default=None, metadata={"gt": 0, "ordered": True})
    scale_target: Literal["ratio", "log"] = "ratio"
    sample_rate: float = field(default=100.0, metadata={"gt": 0})

    def check(self):
        if self.window_samples is not None:
            yield from self.check_window(self.window_samples)

    def check_window(self, window_samples: int):
        """Rules that need the window length T (from here or from the data): P <= T,
        P * scale_range[1] <= T, and T // P >= 2 grid windows for grid / stratified."""
        T, P = window_samples, self.patch_samples
        if P > T:
            yield "patch_samples", (f"= {P} must be in [1, window_samples={T}]: a patch cannot be "
                                    f"longer than the window; lower modality.patch_samples")
        elif self.strategy != "random" and T // P < 2:
            yield "patch_samples", (f"= {P}: window_samples // patch_samples ({T} // {P}) must be "
                                    f">= 2 with strategy {self.strategy!r} (pairs need two "
                                    f"windows); lower modality.patch_samples")
        if self.scale_range is not None and P * self.scale_range[1] > T:
            yield "scale_range", (f"= {list(self.scale_range)} must satisfy patch_samples * "
                                  f"{self.scale_range[1]} <= window_samples ({P} * "
                                  f"{self.scale_range[1]} > {T})")


@register_modality("eeg", options=EEGOptions, example=dict(
    options=dict(channels=2, window_samples=240, patch_samples=8, num_patches=12), input_shape=(2, 2, 240)))
class EEGModality(Modality):
    """1-D signals x (B, C, T) float. Geometry (B, N, 2) = (centre, length) in samples.

    Attributes: channels (C), window_samples (T), patch_samples (P), num_patches (N of
    ``sample``), grid_shape ((T // P,)), grid_cell ((P,): cell length in samples),
    num_grid_patches (T // P), patch_dim (C * P), target_dim (1, or 2 with scale_range),
    geometry_dim (2), sample_rate (Hz). Channels and window length come from the options, else
    the data, else PhysioNet 2018's prepared windows (6 x 3000).
    """

    name = "eeg"
    geometry_dim = 2

    def __init__(self, options: Optional[EEGOptions] = None, channels: Optional[int] = None,
                 window_samples: Optional[int] = None):
        o = self.options = options if options is not None else EEGOptions()
        C = o.channels or channels or PC18_WINDOW_SHAPE[0]
        T = o.window_samples or window_samples or PC18_WINDOW_SHAPE[1]
        problems = [(f"modality.{k}", m) for k, m in o.check_window(T)]
        if problems:
            raise OptionsError(f"modality options for windows of {T} samples", problems)
        P = o.patch_samples
        self.channels, self.window_samples, self.patch_samples = int(C), int(T), P
        self.grid_shape = (T // P,)
        self.grid_cell = (P,)
        self.num_grid_patches = T // P
        self.num_patches = o.num_patches if o.strategy == "random" else self.num_grid_patches
        self.scale_range = tuple(o.scale_range) if o.scale_range is not None else None
        self.strategy, self.scale_target = o.strategy, o.scale_target
        self.sample_rate = float(o.sample_rate)
        self.target_dim = target_dim(1, self.scale_range is not None)
        self.target_names = ("dt", "dlen")[:self.target_dim]
        self.patch_dim = self.channels * P

    def __repr__(self) -> str:
        return (f"EEGModality(channels={self.channels}, window_samples={self.window_samples}, "
                f"patch_samples={self.patch_samples}, num_patches={self.num_patches}, "
                f"strategy={self.strategy!r}, scale_range={self.scale_range}, "
                f"sample_rate={self.sample_rate:g} Hz)")

    def _check(self, x: torch.Tensor) -> None:
        """Rank, channels, length, dtype, finiteness (one cheap reduction: a sum is finite
        unless some value is NaN/Inf, or in the rare case of overflow, then checked in full)."""
        check_input(x, 3, self.channels, "EEG batch (B, C, T)")
        if x.shape[2] != self.window_samples:
            raise ValueError(f"EEG batch: expected windows of {self.window_samples} samples (dim 2), "
                             f"got shape {tuple(x.shape)}; set modality.window_samples to match the data")

    def sample(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """x (B, C, T) -> (patches (B, N, C * P), geometry (B, N, 2) = (centre, length) in
        samples). Windows are drawn and extracted by their starts, then described by centres."""
        self._check(x)
        if self.strategy == "grid":
            return self._grid(x)
        start, size = sampling.sample_windows(x.shape[0], self.window_samples, self.patch_samples,
                                              self.num_patches, self.strategy, self.scale_range,
                                              x.device, generator)
        if self.scale_range is None and self.window_samples > self.patch_samples:
            patches = sampling.extract_fixed_windows(x, start, self.patch_samples)
        else:
            patches = sampling.extract_windows(x, start, size, self.patch_samples)
        return patches, sampling.window_geometry(start, size)

    def grid(self, x: torch.Tensor):
        """x (B, C, T) -> the T // P contiguous windows (B, T // P, C * P) and their geometry."""
        self._check(x)
        return self._grid(x)

    def _grid(self, x: torch.Tensor):
        B, C, P, n = x.shape[0], self.channels, self.patch_samples, self.num_grid_patches
        patches = x[:, :, :n * P].reshape(B, C, n, P).transpose(1, 2).reshape(B, n, C * P)
        return patches, sampling.grid_geometry(B, self.window_samples, P, x.device)

    def tokenizer(self, dim: int) -> nn.Module:
        """nn.Linear(C * P, dim) over channel-major flattened patches."""
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """(..., 2) x 2 -> dt (..., 1), or (dt, dlen) (..., 2) with scale_range; see module doc."""
        return relative_targets(geom_ref, geom_tgt, self.scale_range is not None, self.scale_target)

    def analysis_plots(self, analysis, out_dir):
        """reconstruction.png and uncertainty.png of ``python -m part.analyze`` (30-s windows;
        ``modalities/eeg/analysis.py``)."""
        from part.modalities.eeg.analysis import write_plots
        return write_plots(analysis, out_dir, self)
