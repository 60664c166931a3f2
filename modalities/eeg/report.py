"""Sleep-staging outputs of the EEG plugin: hypnogram plots, given to the core as a report hook.

The core's evaluation calls ``DataBundle.report_hook(report_dir, predictions)`` when a dataset
provides one; PhysioNet-style sleep datasets return ``sleep_report_hook(...)``, which draws
``hypnogram_<subject>.png`` (true vs predicted) for the first ``data.hypnograms`` test subjects.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from part.evaluation.report import save_png

EPOCH_SECONDS = 30.0


def plot_hypnogram(path: str | Path, y_true: Any, y_pred: Any, class_names: Sequence[str],
                   title: str, epoch_seconds: float | None = EPOCH_SECONDS) -> Path:
    """True (top) and predicted (bottom) stage sequences of one recording.

    Classes are drawn top to bottom in ``class_names`` order (label ``i`` is ``class_names[i]``);
    unlabelled windows (``y_true == -1``) are shaded grey in both panels and the true trace is
    broken there. The x axis is in hours with ``epoch_seconds`` set, else in windows.
    """
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"plot_hypnogram: {y_true.size} true labels but {y_pred.size} predictions.")
    scale = epoch_seconds / 3600.0 if epoch_seconds else 1.0
    edges = np.arange(y_true.size + 1) * scale
    unlabelled = np.append(y_true == -1, y_true[-1:] == -1)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, labels, name in zip(axes, (y_true, y_pred), ("true", "predicted")):
        trace = np.where(labels < 0, np.nan, labels.astype(float))
        ax.step(edges, np.append(trace, trace[-1:]), where="post", linewidth=1.0)
        ax.fill_between(edges, 0, 1, where=unlabelled, step="post", color="0.85",
                        transform=ax.get_xaxis_transform(), label="unlabelled")
        ax.set_yticks(np.arange(len(class_names)), class_names)
        ax.set_ylim(len(class_names) - 0.5, -0.5)
        ax.set_ylabel(name)
    if unlabelled.any():
        axes[0].legend(loc="upper right", fontsize=8)
    axes[1].set_xlabel("time (hours)" if epoch_seconds else "window")
    axes[0].set_title(title)
    return save_png(fig, path)


def write_hypnograms(report_dir: Path, predictions: Mapping[str, np.ndarray],
                     class_names: Sequence[str], count: int) -> list[Path]:
    """hypnogram_<subject>.png (true vs predicted, repeat 0) for the first ``count`` subjects.

    predictions: ``y_true``, ``y_pred`` (n,) int and ``groups`` (n,) str, the subject of each
    window, each subject's windows contiguous and in chronological order."""
    groups = np.asarray(predictions["groups"])
    paths = []
    for g in list(dict.fromkeys(groups.tolist()))[:count]:
        sel = groups == g
        paths.append(plot_hypnogram(Path(report_dir) / f"hypnogram_{g}.png",
                                    predictions["y_true"][sel], predictions["y_pred"][sel],
                                    class_names, f"{g}: true vs predicted (repeat 0)"))
    return paths


def sleep_report_hook(class_names: Sequence[str], count: int) -> Any:
    """The report hook of a sleep dataset: ``hook(report_dir, predictions)``."""
    return partial(_hook, class_names=list(class_names), count=count)


def _hook(report_dir: Path, predictions: Mapping[str, np.ndarray], class_names, count) -> None:
    if "groups" in predictions and count > 0:
        write_hypnograms(report_dir, predictions, class_names, count)
