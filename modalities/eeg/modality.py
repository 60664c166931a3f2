"""The EEG (1-D time series) modality: windows at continuous start times -> tokens; targets dt.

Units: time is measured in *samples* (at ``sample_rate`` = 100 Hz, one sample = 10 ms). Sample
``i`` of a signal covers the interval [i, i + 1), so a signal of T samples spans [0, T] and a
window (start s, length len) covers [s, s + len). An input is a batch ``x`` of shape (B, C, T),
e.g. (B, 6, 3000): 6 EEG channels, 30 s.

- ``sample``: N windows per item (default 40 x 1 s) at continuous random starts in [0, T - len],
  each resampled to P = ``patch_samples`` values by linear interpolation (one batched gather of the
  floor/ceil sample indices + one lerp, on x's device). An integer start with len = P returns the
  P samples x[s : s + P] exactly. Geometry (B, N, 2) = (start, length) in samples.
- ``grid``: the T // P contiguous windows [kP, (k + 1)P) (default 30 x 1 s): a reshape.
- tokens: each patch flattened channel-major (C, P) -> C * P values -> ``nn.Linear(C * P, dim)``.
- targets (paper, section 3, 1-D): dt = (t_tgt - t_ref) / len_ref with t the window *centre*
  (s + len / 2). With equal lengths (the default) this equals the difference of the starts.
  Scale variant (``scale_range``): lengths log-uniform in P * scale_range, target (dt, dlen) with
  dlen = len_tgt / len_ref (``scale_target="ratio"``) or log(len_tgt / len_ref) (``"log"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import nn

from part.config.options import Options, OptionsError
from part.core.modality import Modality, check_input
from part.registry import register_modality

STRATEGIES = ("random", "grid", "stratified")
PC18_CHANNELS, PC18_WINDOW_SAMPLES = 6, 3000  # used when neither the data nor the recipe says


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
    scale_range: Optional[tuple[float, float]] = field(default=None, metadata={"gt": 0})
    scale_target: Literal["ratio", "log"] = "ratio"
    sample_rate: float = field(default=100.0, metadata={"gt": 0})

    def check(self):
        if self.scale_range is not None and self.scale_range[0] > self.scale_range[1]:
            yield "scale_range", f"= {list(self.scale_range)} must satisfy lo <= hi"
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


# ---------------------------------------------------------------------------------------------
# Functional helpers: one batched tensor operation each, no loop over items or windows.
# ---------------------------------------------------------------------------------------------

def grid_geometry(batch: int, length: int, patch_samples: int, device=None) -> torch.Tensor:
    """The fixed grid: (B, T // P, 2) = (start k * P, length P) in samples, float32."""
    n = length // patch_samples
    start = torch.arange(n, device=device, dtype=torch.float32) * patch_samples
    geom = torch.stack([start, torch.full_like(start, float(patch_samples))], -1)
    return geom.unsqueeze(0).expand(batch, -1, -1).contiguous()


def sample_geometry(batch: int, length: int, patch_samples: int, num_patches: int,
                    strategy: str = "random", scale_range=None, device=None,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Windows (B, N, 2) = (start, length) in samples, every window inside [0, T].

    random: lengths P (or log-uniform in P * scale_range), starts uniform in [0, T - len]
    (continuous). grid: the fixed grid (N = T // P). stratified: one window per grid cell, its
    start jittered uniformly by +-P/2 around the cell's, clamped to [0, T - len] (N = T // P).
    """
    P = patch_samples
    if strategy == "grid":
        return grid_geometry(batch, length, P, device)
    if strategy == "stratified":
        num_patches = length // P
    elif strategy != "random":
        raise ValueError(f"modality.strategy={strategy!r}; valid: {', '.join(STRATEGIES)}")
    shape = (batch, num_patches)
    if scale_range is None:
        size = torch.full(shape, float(P), device=device)
    else:
        lo, hi = math.log(P * scale_range[0]), math.log(P * scale_range[1])
        size = (torch.rand(shape, device=device, generator=generator) * (hi - lo) + lo).exp()
        size = size.clamp(max=float(length))  # exp/log round-off must not leave the signal
    u = torch.rand(shape, device=device, generator=generator)
    if strategy == "random":
        start = u * (length - size)
    else:
        cell = grid_geometry(batch, length, P, device)[..., 0]
        start = (cell + (u - 0.5) * P).clamp(min=0).minimum(length - size)
    return torch.stack([start, size], -1)


def _positions(geometry: torch.Tensor, patch_samples: int) -> torch.Tensor:
    """Sample coordinates (B, N, P) of the P values of each window (see extract_windows)."""
    start, size = geometry[..., :1].float(), geometry[..., 1:2].float()
    k = torch.arange(patch_samples, device=geometry.device, dtype=torch.float32) + 0.5
    return start + k * (size / patch_samples) - 0.5


@torch.no_grad()
def extract_windows(x: torch.Tensor, geometry: torch.Tensor, patch_samples: int) -> torch.Tensor:
    """Resample every window to P values by linear interpolation: one gather + one lerp.

    x (B, C, T); geometry (B, N, 2) = (start, length) in samples -> patches (B, N, C * P),
    flattened channel-major (C, P). Value k of a window sits at the centre of its k-th sub-interval,
    time s + (k + 0.5) * len / P, i.e. at sample coordinate s + (k + 0.5) * len / P - 0.5 (sample i
    sits at coordinate i). With len = P and an integer s this is exactly s + k, so the window
    returns x[..., s : s + P] unchanged. Coordinates beyond the ends clamp to the first/last sample.
    Downsampling (len > P) interpolates without an anti-aliasing filter. Any lengths; for windows
    that all have length P, :func:`extract_fixed_windows` gives the same values faster.
    """
    B, C, T = x.shape
    N, P = geometry.shape[1], patch_samples
    pos = _positions(geometry, P)                                              # (B, N, P)
    lo = pos.floor()
    frac = (pos - lo).to(x.dtype)
    lo = lo.long()
    taps = torch.stack([lo.clamp(0, T - 1), (lo + 1).clamp(0, T - 1)], 0)      # (2, B, N, P)
    idx = taps.permute(1, 0, 2, 3).reshape(B, 1, 2 * N * P).expand(B, C, -1)
    both = torch.gather(x, 2, idx).view(B, C, 2, N, P)
    out = torch.lerp(both[:, :, 0], both[:, :, 1], frac.unsqueeze(1))          # (B, C, N, P)
    return out.transpose(1, 2).reshape(B, N, C * P)


@torch.no_grad()
def extract_fixed_windows(x: torch.Tensor, start: torch.Tensor, patch_samples: int) -> torch.Tensor:
    """Windows of exactly P samples at continuous starts: the same values as
    :func:`extract_windows` with length P (up to float32 rounding of the positions), faster.

    x (B, C, T) with T > P; start (B, N) in samples, in [0, T - P] -> patches (B, N, C * P). All P
    values of a window share one interpolation weight frac = s - floor(s), so one gather of the
    P + 1 samples x[floor(s) : floor(s) + P + 1] (a strided view, no copy before the gather) and
    one lerp of its two shifted halves give the patch, already in (C, P) order. An integer start
    returns x[..., s : s + P] exactly (weight 0, or weight 1 at the last start T - P).
    """
    B, C, T = x.shape
    P = patch_samples
    lo = start.float().floor().clamp(0, T - P - 1)
    frac = (start.float() - lo).clamp(0, 1).to(x.dtype)[..., None, None]      # (B, N, 1, 1)
    rows = torch.arange(B, device=x.device).unsqueeze(1)
    win = x.unfold(2, P + 1, 1)[rows, :, lo.long()]                            # (B, N, C, P + 1)
    return torch.lerp(win[..., :P], win[..., 1:], frac).reshape(B, start.shape[1], C * P)


def relative_targets(ref: torch.Tensor, tgt: torch.Tensor, with_scale: bool = False,
                     scale_target: str = "ratio") -> torch.Tensor:
    """dt (..., 1) or (dt, dlen) (..., 2) from geometries (..., 2) = (start, length) in samples.

    dt = (c_tgt - c_ref) / len_ref with centres c = start + len / 2 (computed as
    (s_t - s_r + (len_t - len_r) / 2) / len_ref, so equal lengths give (s_t - s_r) / len_ref
    exactly). dlen = len_tgt / len_ref ("ratio", the paper's) or its log ("log": antisymmetric).
    """
    s_r, l_r = ref[..., :1], ref[..., 1:2]
    s_t, l_t = tgt[..., :1], tgt[..., 1:2]
    dt = (s_t - s_r + (l_t - l_r) / 2) / l_r
    if not with_scale:
        return dt
    ratio = l_t / l_r
    if scale_target == "log":
        ratio = ratio.log()
    elif scale_target != "ratio":
        raise ValueError(f"modality.scale_target={scale_target!r}; valid: ratio, log")
    return torch.cat([dt, ratio], -1)


def nearest_grid_index(geometry: torch.Tensor, length: int, patch_samples: int) -> torch.Tensor:
    """(B, N) long: the grid cell [kP, (k + 1)P) holding each window's centre, clamped to 0..n-1."""
    centre = geometry[..., 0] + geometry[..., 1] / 2
    n = length // patch_samples
    return (centre / patch_samples).floor().long().clamp(0, n - 1)


# ---------------------------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------------------------

@register_modality("eeg", options=EEGOptions)
class EEGModality(Modality):
    """1-D signals x (B, C, T) float. Geometry (B, N, 2) = (start, length) in samples.

    Attributes: channels (C), window_samples (T), patch_samples (P), num_patches (N of
    ``sample``), grid_shape ((T // P,)), num_grid_patches (T // P), patch_dim (C * P),
    target_dim (1, or 2 with scale_range), geometry_dim (2), sample_rate (Hz).
    """

    name = "eeg"
    geometry_dim = 2

    def __init__(self, options: Optional[EEGOptions] = None, channels: Optional[int] = None,
                 window_samples: Optional[int] = None):
        o = self.options = options if options is not None else EEGOptions()
        C = o.channels or channels or PC18_CHANNELS
        T = o.window_samples or window_samples or PC18_WINDOW_SAMPLES
        problems = [(f"modality.{k}", m) for k, m in o.check_window(T)]
        if problems:
            raise OptionsError(f"modality options for windows of {T} samples", problems)
        P = o.patch_samples
        self.channels, self.window_samples, self.patch_samples = int(C), int(T), P
        self.grid_shape = (T // P,)
        self.num_grid_patches = T // P
        self.num_patches = o.num_patches if o.strategy == "random" else self.num_grid_patches
        self.scale_range = tuple(o.scale_range) if o.scale_range is not None else None
        self.strategy, self.scale_target = o.strategy, o.scale_target
        self.sample_rate = float(o.sample_rate)
        self.target_dim = 2 if self.scale_range else 1
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
        """x (B, C, T) -> (patches (B, N, C * P), geometry (B, N, 2) start, length in samples)."""
        self._check(x)
        if self.strategy == "grid":
            return self._grid(x)
        geom = sample_geometry(x.shape[0], self.window_samples, self.patch_samples,
                               self.num_patches, self.strategy, self.scale_range, x.device,
                               generator)
        if self.scale_range is None and self.window_samples > self.patch_samples:
            return extract_fixed_windows(x, geom[..., 0], self.patch_samples), geom
        return extract_windows(x, geom, self.patch_samples), geom

    def grid(self, x: torch.Tensor):
        """x (B, C, T) -> the T // P contiguous windows (B, T // P, C * P) and their geometry."""
        self._check(x)
        return self._grid(x)

    def _grid(self, x: torch.Tensor):
        B, C, P, n = x.shape[0], self.channels, self.patch_samples, self.num_grid_patches
        patches = x[:, :, :n * P].reshape(B, C, n, P).transpose(1, 2).reshape(B, n, C * P)
        return patches, grid_geometry(B, self.window_samples, P, x.device)

    def tokenizer(self, dim: int) -> nn.Module:
        """nn.Linear(C * P, dim) over channel-major flattened patches."""
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """(..., 2) x 2 -> dt (..., 1), or (dt, dlen) (..., 2) with scale_range; see module doc."""
        return relative_targets(geom_ref, geom_tgt, self.scale_range is not None, self.scale_target)

    def grid_index(self, geometry: torch.Tensor) -> torch.Tensor:
        """(B, N) long: the grid cell holding each window's centre."""
        return nearest_grid_index(geometry, self.window_samples, self.patch_samples)
