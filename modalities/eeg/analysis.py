"""The EEG plugin's pictures for ``python -m part.analyze`` (``EEGModality.analysis_plots``).

``write_plots(analysis, out_dir, modality)`` draws, for the first few windows of a
``part.evaluation.analysis.Analysis`` (time in seconds at ``modality.sample_rate``; the first
channel; signals scaled by the window's standard deviation):

- ``reconstruction.png`` (paper Fig. 4 for 1-D): the 30-s window on top; below it one row per
  patch, sorted by true time: the patch at its true time (grey) and, over it, at the time the
  model predicts relative to the reference patch (colour; the reference in red, at its place);
- ``uncertainty.png`` (Fig. 5): the window, and per patch the mean predicted centre over all
  references +- its spread (error bars) against the true centre, with the spread as a band.

No mixing picture: two windows' patches assembled into one say little for a time series.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from part.evaluation.report import save_png

MAX_ROWS = 2


def _scale(item: np.ndarray) -> float:
    return float(item[0].std()) or 1.0


def patch_segments(patches: np.ndarray, geometry: np.ndarray, channels: int, rate: float,
                   offsets: np.ndarray, scale: float) -> np.ndarray:
    """Line segments (N, P, 2) of the first channel of patches (N, C * P) drawn over the boxes
    geometry (N, 2) = (centre, length) in samples, in seconds, each raised by offsets (N,)."""
    P = patches.shape[1] // channels
    first = patches[:, :P] / scale
    start = geometry[:, :1] - geometry[:, 1:] / 2
    t = (start + (np.arange(P) + 0.5) * geometry[:, 1:] / P - 0.5) / rate          # (N, P)
    return np.stack([t, first * 0.35 + offsets[:, None]], -1)


def _signal(ax, item: np.ndarray, rate: float, scale: float, offset: float = 0.0) -> None:
    t = np.arange(item.shape[-1]) / rate
    ax.plot(t, item[0] / scale * 0.35 + offset, color="k", linewidth=0.6)


def plot_reconstruction(path: Path, analysis, modality) -> Path:
    rows, rate = min(MAX_ROWS, len(analysis.items)), modality.sample_rate
    N = analysis.patches.shape[1]
    fig = Figure(figsize=(11, (0.12 * N + 1.2) * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, 1))
    for r, ax in enumerate(axes):
        item, scale, ref = analysis.inputs[r], _scale(analysis.inputs[r]), int(analysis.reference[r])
        order = np.argsort(analysis.geometry[r][:, 0], kind="stable")
        offsets = np.empty(N)
        offsets[order] = -1.5 - np.arange(N)
        _signal(ax, item, rate, scale)
        true = patch_segments(analysis.patches[r], analysis.geometry[r], modality.channels, rate, offsets, scale)
        pred = patch_segments(analysis.patches[r], analysis.placed[r], modality.channels, rate, offsets, scale)
        colours = np.where((np.arange(N) == ref)[:, None], [[0.85, 0.1, 0.1, 1]], [[0.12, 0.47, 0.71, 1]])
        ax.add_collection(LineCollection(true, colors="0.7", linewidths=1.6))
        ax.add_collection(LineCollection(pred, colors=colours, linewidths=0.8))
        ax.set_xlim(-0.1 * item.shape[-1] / rate, 1.1 * item.shape[-1] / rate)
        ax.set_ylim(-N - 1.5, 1.0)
        ax.set_yticks([0, -1.5 - (N - 1) / 2], ["window", "patches\n(by true time)"], fontsize=8)
        ax.set_title(f"window {int(analysis.items[r])}: patches at their true time (grey) and at "
                     f"the time predicted relative to the red reference", fontsize=9)
    axes[-1].set_xlabel("time (s)")
    return save_png(fig, path)


def plot_uncertainty(path: Path, analysis, modality) -> Path:
    rows, rate = min(MAX_ROWS, len(analysis.items)), modality.sample_rate
    N = analysis.patches.shape[1]
    fig = Figure(figsize=(11, 3.0 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows * 2, 1, sharex=True, height_ratios=[1, 2] * rows)).reshape(rows, 2)
    for r in range(rows):
        item = analysis.inputs[r]
        centres = np.array(analysis.positions[r, :, :, 0], dtype=float)
        centres[np.arange(N), np.arange(N)] = np.nan
        mean = np.nanmean(centres, axis=0) / rate
        true, spread = analysis.geometry[r][:, 0] / rate, analysis.spread[r] / rate
        order = np.argsort(true)
        _signal(axes[r, 0], item, rate, _scale(item))
        axes[r, 0].set_yticks([])
        axes[r, 0].set_title(f"window {int(analysis.items[r])}", fontsize=9)
        ax = axes[r, 1]
        ax.fill_between(true[order], -spread[order], spread[order], color="tab:orange", alpha=0.3,
                        label="+- spread around 0")
        ax.errorbar(true, mean - true, yerr=spread, fmt="o", markersize=3, color="tab:blue",
                    linewidth=0.8, label="mean predicted - true centre +- spread")
        ax.axhline(0, color="k", linewidth=0.5)
        ax.set_ylabel("offset (s)")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 1].set_xlabel("true patch centre (s)")
    fig.suptitle("each patch placed by every other patch as reference", fontsize=10)
    return save_png(fig, path)


def write_plots(analysis, out_dir, modality) -> list[Path]:
    out = Path(out_dir)
    return [plot_reconstruction(out / "reconstruction.png", analysis, modality),
            plot_uncertainty(out / "uncertainty.png", analysis, modality)]
