"""Window sampling and extraction for 1-D signals: off-grid windows, the fixed grid, resampling.
The draws are ``part.core.sampling.sample_boxes``'s (k = 1); what is the EEG window's own is the
extraction by starts (the fixed-length fast path, the CUDA gather), used by ``EEGModality.extract``.

Units: time is measured in *samples* (at 100 Hz, one sample = 10 ms). Sample ``i`` of a signal
covers the interval [i, i + 1), so a signal of T samples spans [0, T] and a window starting at
``s`` of length ``len`` covers [s, s + len). Windows are drawn and extracted by their starts;
their geometry is the 1-D boxes of ``part.core.geometry``: (B, N, 2) = (centre, length) with
centre = s + len / 2 (relative targets and grid indices come from ``part.core.geometry``).
Every function is one batched tensor operation on the input's device: no loop over items or
windows.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from part.core import geometry
from part.core import sampling as core_sampling
from part.core.sampling import STRATEGIES

__all__ = ["STRATEGIES", "extract_fixed_windows", "extract_windows", "grid_geometry", "sample_windows",
           "window_geometry"]


def grid_geometry(batch: int, length: int, patch_samples: int, device=None) -> torch.Tensor:
    """The fixed grid of T // P windows [kP, (k + 1)P): (B, T // P, 2) float32 = (centre
    (k + 0.5) * P, length P) in samples."""
    return geometry.grid_boxes((length // patch_samples,), (patch_samples,), batch, device)


def window_geometry(start: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Windows by start and length, each (B, N) in samples -> geometry (B, N, 2) = (centre
    start + length / 2, length)."""
    return torch.stack([start + size / 2, size], -1)


def sample_windows(batch: int, length: int, patch_samples: int, num_patches: int,
                   strategy: str = "random", scale_range: Optional[Sequence[float]] = None,
                   device=None, generator: Optional[torch.Generator] = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows inside [0, T] as (start (B, N), length (B, N)) float32, in samples
    (``part.core.sampling.sample_boxes``, k = 1, jitter about the cell's start).

    random: lengths P (or log-uniform in P * scale_range), starts uniform in [0, T - len]
    (continuous). grid: the fixed grid, starts k * P (N = T // P). stratified: one window per
    grid cell, its start jittered uniformly by +-P/2 around the cell's start k * P, clamped to
    [0, T - len] (N = T // P). ``window_geometry`` turns the result into geometry.
    """
    boxes, start = core_sampling.sample_boxes(batch, (length,), (patch_samples,), num_patches, strategy,
                                              None, scale_range, device, generator, anchor="start")
    return start[..., 0], boxes[..., 1]


@torch.no_grad()
def extract_windows(x: torch.Tensor, start: torch.Tensor, size: torch.Tensor,
                    patch_samples: int, broadcast: Optional[bool] = None) -> torch.Tensor:
    """Resample every window to P values by linear interpolation: one gather + one lerp.

    x (B, C, T); start, size (B, N) in samples -> patches (B, N, C * P), flattened channel-major
    (C, P). Value k of a window sits at the centre of its k-th sub-interval, time
    s + (k + 0.5) * len / P, i.e. at sample coordinate s + (k + 0.5) * len / P - 0.5 (sample i
    sits at coordinate i). With len = P and an integer s this is exactly s + k, so the window
    returns x[..., s : s + P] unchanged. Coordinates beyond the ends clamp to the first/last
    sample. Downsampling (len > P) interpolates without an anti-aliasing filter. Any lengths; for
    windows that all have length P, :func:`extract_fixed_windows` gives the same values faster.

    Two ways to gather the taps, bit-identical (gathers are exact, the lerp is the same):
    ``broadcast`` (the CUDA default, None = by device) indexes x with broadcast item, channel and
    tap indices, so no index tensor of the output's size is built and the result is already in
    (B, N, C, P) order: one gather kernel and one lerp kernel at the output's size, nothing leaves
    the device (no host sync, no Python loop). Otherwise one torch.gather along time with the taps
    shared by all channels, then a transpose copy (the CPU default: on a loaded 2-core CPU,
    synthetic 256 x 40 windows took 143 ms this way against 203 ms broadcast, both on the CPU;
    the CUDA side is not measured yet).
    """
    B, C, T = x.shape
    N, P = start.shape[1], patch_samples
    k = torch.arange(P, device=x.device, dtype=torch.float32) + 0.5
    pos = start[..., None].float() + k * (size[..., None].float() / P) - 0.5   # (B, N, P)
    lo = pos.floor()
    frac = (pos - lo).to(x.dtype)
    lo = lo.long()
    taps = torch.stack([lo.clamp(0, T - 1), (lo + 1).clamp(0, T - 1)], -1)     # (B, N, P, 2)
    if x.is_cuda if broadcast is None else broadcast:
        item = torch.arange(B, device=x.device).view(B, 1, 1, 1, 1)
        channel = torch.arange(C, device=x.device).view(1, 1, C, 1, 1)
        both = x[item, channel, taps[:, :, None]]                              # (B, N, C, P, 2)
        return torch.lerp(both[..., 0], both[..., 1], frac[:, :, None]).reshape(B, N, C * P)
    idx = taps.permute(0, 3, 1, 2).reshape(B, 1, 2 * N * P).expand(B, C, -1)
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
