"""The image plugin's pictures for ``python -m part.analyze`` (``ImageModality.analysis_plots``).

``write_plots(analysis, out_dir, modality)`` draws, for the first few items of a
``part.evaluation.analysis.Analysis``:

- ``reconstruction.png`` (paper Fig. 4): original | patches at their true boxes | patches at the
  boxes the model predicts relative to one reference patch (red outline, at its true place);
- ``uncertainty.png`` (Fig. 5): original | per-pixel mean spread of the patches covering it |
  the most and least certain patch: its true box and the centre every reference predicts;
- ``mixing.png``: two images | half of each one's patches at their true boxes | predicted.

Patches are pasted into a canvas 25% larger than the image on each side (predictions may fall
outside the image) at ``px`` canvas pixels per image pixel; where boxes overlap, the patch whose
centre is nearest (in units of its size) wins. Values are shown min-max scaled per item (the test
transform may have normalised them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from part.evaluation.report import save_png

MAX_ROWS = 4
MARGIN = 0.25


def to_rgba(values: np.ndarray, lo: float, hi: float, covered: np.ndarray | None = None) -> np.ndarray:
    """(H, W, C) values, C = 1 or 3 -> (H, W, 4) in [0, 1] scaled from [lo, hi]; alpha 0 where
    not ``covered``."""
    v = np.clip((values - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    rgb = np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v[..., :3]
    alpha = np.ones(v.shape[:2]) if covered is None else covered.astype(float)
    return np.concatenate([np.nan_to_num(rgb), alpha[..., None]], -1)


def paste(patches: np.ndarray, boxes: np.ndarray, channels: int, bounds, px: int, top=None, patch=None):
    """Patches (N, C*ph*pw) (``patch`` = (ph, pw); None: square) at boxes (N, 4) (cx, cy, w, h)
    in a canvas covering bounds (x0, y0, x1, y1) in image pixels at ``px`` canvas pixels each:
    (values (Hc, Wc, C), covered (Hc, Wc)). Patches are painted in index order (a later one
    covers an earlier one), patch ``top`` last; each canvas pixel takes the nearest sample of its patch."""
    x0, y0, x1, y1 = bounds
    ph, pw = patch if patch is not None else (int(round(np.sqrt(patches.shape[1] // channels))),) * 2
    img = patches.reshape(-1, channels, ph, pw)
    u = x0 + (np.arange(int(round((x1 - x0) * px))) + 0.5) / px                 # (Wc,)
    v = y0 + (np.arange(int(round((y1 - y0) * px))) + 0.5) / px                 # (Hc,)
    cx, cy, w, h = (boxes[:, a, None, None] for a in range(4))                  # (N, 1, 1)
    fx, fy = (u[None, None, :] - cx) / w, (v[None, :, None] - cy) / h           # in box sizes
    inside = (np.abs(fx) < 0.5) & (np.abs(fy) < 0.5)                            # (N, Hc, Wc)
    priority = np.arange(len(boxes), dtype=float)
    if top is not None:
        priority[top] = len(boxes)
    best, covered = np.where(inside, priority[:, None, None], -1).argmax(0), inside.any(0)
    col = np.clip(np.floor((np.take_along_axis(fx, best[None], 0)[0] + 0.5) * pw), 0, pw - 1).astype(int)
    row = np.clip(np.floor((np.take_along_axis(fy, best[None], 0)[0] + 0.5) * ph), 0, ph - 1).astype(int)
    values = img[best, :, row, col]                                              # (Hc, Wc, C)
    return values, covered


def outlines(boxes: np.ndarray) -> np.ndarray:
    """Closed rectangles of boxes (N, 4) as line segments (N, 5, 2)."""
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2] / 2, boxes[:, 3] / 2
    xs = np.stack([cx - w, cx + w, cx + w, cx - w, cx - w], 1)
    ys = np.stack([cy - h, cy - h, cy + h, cy + h, cy - h], 1)
    return np.stack([xs, ys], -1)


class _Canvas:
    """Pastes and draws in one item's frame (image side S, margin, resolution)."""

    def __init__(self, modality, lo: float, hi: float):
        S = float(max(modality.height, modality.width))
        m = MARGIN * S
        self.bounds = (-m, -m, modality.width + m, modality.height + m)
        self.px = max(1, int(round(192 / (S + 2 * m))))
        self.channels, self.modality, self.lo, self.hi = modality.channels, modality, lo, hi

    def draw(self, ax, patches, boxes, reference=None, colours=None):
        values, covered = paste(patches, boxes, self.channels, self.bounds, self.px, reference,
                                getattr(self.modality, "patch", None))
        x0, y0, x1, y1 = self.bounds
        ax.set_facecolor("0.88")
        ax.imshow(to_rgba(values, self.lo, self.hi, covered), extent=(x0, x1, y1, y0),
                  interpolation="nearest")
        frame = np.array([[0, 0, self.modality.width, self.modality.height]], float)
        frame[:, :2] += frame[:, 2:] / 2
        ax.add_collection(LineCollection(outlines(frame), colors="k", linewidths=0.8, linestyles=":"))
        if colours is not None:
            ax.add_collection(LineCollection(outlines(boxes), colors=colours, linewidths=0.6))
        if reference is not None:
            ax.add_collection(LineCollection(outlines(boxes[reference:reference + 1]), colors="red",
                                             linewidths=1.5))
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        _bare(ax)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _original(ax, item: np.ndarray, lo: float, hi: float) -> None:
    """The item (C, H, W) in image-pixel coordinates (pixel i covers [i, i + 1))."""
    H, W = item.shape[1:]
    ax.imshow(to_rgba(np.moveaxis(item, 0, -1), lo, hi), extent=(0, W, H, 0), interpolation="nearest")
    _bare(ax)


def _range(item: np.ndarray):
    return float(item.min()), float(item.max())


def plot_reconstruction(path: Path, analysis, modality) -> Path:
    rows = min(MAX_ROWS, len(analysis.items))
    fig = Figure(figsize=(7.5, 2.5 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, 3))
    for r in range(rows):
        lo, hi = _range(analysis.inputs[r])
        canvas = _Canvas(modality, lo, hi)
        ref = int(analysis.reference[r])
        _original(axes[r, 0], analysis.inputs[r], lo, hi)
        canvas.draw(axes[r, 1], analysis.patches[r], analysis.geometry[r], ref)
        canvas.draw(axes[r, 2], analysis.patches[r], analysis.placed[r], ref)
        axes[r, 0].set_ylabel(f"test item {int(analysis.items[r])}", fontsize=9)
    for ax, title in zip(axes[0], ("original", "true placement", "predicted placement")):
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"{analysis.sampling} patches placed relative to the red reference "
                 f"(N = {analysis.patches.shape[1]})", fontsize=10)
    return save_png(fig, path)


def plot_uncertainty(path: Path, analysis, modality) -> Path:
    rows = min(MAX_ROWS, len(analysis.items))
    fig = Figure(figsize=(8.5, 2.6 * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, 3))
    S = (modality.width, modality.height)
    for r in range(rows):
        lo, hi = _range(analysis.inputs[r])
        _original(axes[r, 0], analysis.inputs[r], lo, hi)
        px = max(1, int(round(96 / max(S))))
        u, v = (np.arange(S[0] * px) + 0.5) / px, (np.arange(S[1] * px) + 0.5) / px
        cx, cy, w, h = (analysis.geometry[r][:, a, None, None] for a in range(4))
        inside = ((np.abs(u[None, None] - cx) < w / 2) & (np.abs(v[None, :, None] - cy) < h / 2)).astype(float)
        spread = analysis.spread[r]
        heat = (inside * spread[:, None, None]).sum(0) / np.maximum(inside.sum(0), 1)
        heat[inside.sum(0) == 0] = np.nan
        im = axes[r, 1].imshow(heat, extent=(0, S[0], S[1], 0), cmap="magma", interpolation="nearest")
        fig.colorbar(im, ax=axes[r, 1], shrink=0.8, label="spread (px)")
        _bare(axes[r, 1])
        _original(axes[r, 2], analysis.inputs[r], lo, hi)
        for j, colour in ((int(spread.argmin()), "tab:green"), (int(spread.argmax()), "tab:red")):
            centres = np.delete(analysis.positions[r, :, j, :2], j, axis=0)
            axes[r, 2].scatter(centres[:, 0], centres[:, 1], s=8, c=colour)
            axes[r, 2].add_collection(LineCollection(outlines(analysis.geometry[r][j:j + 1]),
                                                     colors=colour, linewidths=1.5))
        axes[r, 2].set_xlim(-MARGIN * S[0], (1 + MARGIN) * S[0])
        axes[r, 2].set_ylim((1 + MARGIN) * S[1], -MARGIN * S[1])
        axes[r, 0].set_ylabel(f"test item {int(analysis.items[r])}", fontsize=9)
    for ax, title in zip(axes[0], ("original", "spread of predicted position",
                                   "most (green) / least (red) certain")):
        ax.set_title(title, fontsize=10)
    fig.suptitle("each patch placed by every other patch as reference; dots: predicted centres",
                 fontsize=10)
    return save_png(fig, path)


def plot_mixing(path: Path, analysis, modality) -> Path:
    mix = analysis.mixing
    lo, hi = _range(mix.inputs)
    canvas = _Canvas(modality, lo, hi)
    fig = Figure(figsize=(10, 2.9), layout="constrained")
    axes = fig.subplots(1, 4)
    _original(axes[0], mix.inputs[0], lo, hi)
    _original(axes[1], mix.inputs[1], lo, hi)
    colours = np.where(mix.source[:, None] == 0, [[0.1, 0.4, 0.9, 1]], [[1.0, 0.6, 0.0, 1]])
    canvas.draw(axes[2], mix.patches, mix.geometry, mix.reference, colours)
    canvas.draw(axes[3], mix.patches, mix.placed, mix.reference, colours)
    a, b = (int(i) for i in analysis.items[:2])
    for ax, title in zip(axes, (f"a: test item {a}", f"b: test item {b}", "input: first half of a (blue), "
                                "second half of b (orange)", "predicted assembly")):
        ax.set_title(title, fontsize=8)
    return save_png(fig, path)


def write_plots(analysis, out_dir, modality) -> list[Path]:
    out = Path(out_dir)
    paths = [plot_reconstruction(out / "reconstruction.png", analysis, modality),
             plot_uncertainty(out / "uncertainty.png", analysis, modality)]
    if analysis.mixing is not None:
        paths.append(plot_mixing(out / "mixing.png", analysis, modality))
    return paths
