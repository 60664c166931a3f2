"""Sleep-staging outputs of the EEG plugin: hypnogram plots, given to the core as a report hook
and used by staging (``modalities/eeg/staging.py``).

One plotting function, :func:`hypnogram_figure` (saved by :func:`plot_hypnogram`), in the usual
convention: W on top, REM next to it (thick red), then N1, N2, N3; unscored epochs as gaps; clock
time on the x axis when the recording's start is known; optionally the class probabilities as a
stacked band under the trace(s).

The core's evaluation calls ``DataBundle.report_hook(report_dir, predictions)`` when a dataset
provides one; PhysioNet-style sleep datasets return ``sleep_report_hook(...)``, which draws
``hypnogram_<subject>.png`` (scored vs predicted, with the probabilities) for the first
``data.hypnograms`` test subjects.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from part.evaluation.report import save_png

EPOCH_SECONDS = 30.0
# The usual hypnogram convention, top to bottom: wake, REM next to it, then NREM by depth.
STAGE_ORDER = ("W", "REM", "N1", "N2", "N3")
STAGE_COLOURS = {"W": "#e9b949", "REM": "#d62728", "N1": "#a6cee3", "N2": "#1f78b4", "N3": "#08306b"}
REM_NAMES = ("REM", "R")


def stage_rows(class_names: Sequence[str]) -> np.ndarray:
    """Row of each class index on the hypnogram's y axis (0 = top): ``W, REM, N1, N2, N3`` (``R``
    counts as REM), any other class below them in class order. (n_classes,) int."""
    canonical = ["REM" if n in REM_NAMES else n for n in class_names]
    key = [STAGE_ORDER.index(n) if n in STAGE_ORDER else len(STAGE_ORDER) + i for i, n in enumerate(canonical)]
    rows = np.empty(len(class_names), np.int64)
    rows[np.argsort(key, kind="stable")] = np.arange(len(class_names))
    return rows


def _time_axis(ax, start: datetime | None, epoch_seconds: float | None) -> None:
    """x in hours since the recording start: clock time HH:MM with ``start``, else hours."""
    if not epoch_seconds:
        ax.set_xlabel("window")
    elif start is not None:
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _pos: (start + timedelta(hours=float(x))).strftime("%H:%M")))
        ax.set_xlabel(f"clock time (recording start {start:%Y-%m-%d %H:%M:%S})")
    else:
        ax.set_xlabel("time since the recording start (hours)")


def _draw_stages(ax, labels: np.ndarray, rows: np.ndarray, rem: int | None, edges: np.ndarray) -> None:
    """One hypnogram trace: a level per epoch, vertical steps between scored neighbours, REM as
    thick red segments, unscored epochs (-1) as gaps over a light grey band."""
    scored = labels >= 0
    y = np.where(scored, rows[labels.clip(0)], -1).astype(float)
    ax.hlines(y[scored], edges[:-1][scored], edges[1:][scored], colors="black", linewidth=1.0)
    step = np.flatnonzero(scored[1:] & scored[:-1] & (y[1:] != y[:-1])) + 1
    ax.vlines(edges[step], y[step - 1], y[step], colors="black", linewidth=1.0)
    if rem is not None and (labels == rem).any():
        on = np.concatenate([[False], labels == rem, [False]]).astype(np.int8)
        first, after = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)  # REM runs
        ax.hlines(y[first], edges[first], edges[after], colors=STAGE_COLOURS["REM"], linewidth=4.0,
                  label="REM", zorder=3)
    if not scored.all():
        ax.fill_between(edges, 0, 1, where=np.append(~scored, ~scored[-1:]), step="post", color="0.9",
                        transform=ax.get_xaxis_transform(), label="unscored")


def _draw_proba(ax, proba: np.ndarray, class_names: Sequence[str], rows: np.ndarray, edges: np.ndarray) -> None:
    """The class probabilities (n, classes) as a stacked band, stacked in hypnogram order (W on top)."""
    bottom = np.zeros(proba.shape[0] + 1)
    for c in np.argsort(-rows):  # bottom of the stack = the lowest hypnogram row
        top = bottom + np.append(proba[:, c], proba[-1:, c])
        name = class_names[c]
        colour = STAGE_COLOURS.get("REM" if name in REM_NAMES else name)
        ax.fill_between(edges, bottom, top, step="post", color=colour, linewidth=0, label=name)
        bottom = top
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
              frameon=False)


def hypnogram_figure(y_pred: Any, class_names: Sequence[str], title: str = "", *, y_true: Any = None,
                     proba: Any = None, epoch_seconds: float | None = EPOCH_SECONDS, onset_s: float = 0.0,
                     start: datetime | None = None) -> Figure:
    """The hypnogram figure: panels (the scoring ``y_true`` when given, then ``y_pred``), the class
    probabilities ``proba`` (n, classes) as a stacked band under them when given.

    Convention: W on top, REM next to it (thick red segments), then N1, N2, N3 below (see
    :func:`stage_rows`); unscored epochs (-1) are gaps. ``y_*`` (n,) int class indices, one per
    epoch of ``epoch_seconds`` (None: the x axis counts windows); the first epoch starts
    ``onset_s`` seconds after the recording start; x is the clock time when ``start`` (the
    recording's start, a datetime) is given, else hours since the start. Returns the Figure;
    its axes are ``fig.axes`` (trace panels first, the probability band last).
    """
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    traces = [("predicted", y_pred)]
    if y_true is not None:
        y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"plot_hypnogram: {y_true.size} true labels but {y_pred.size} predictions.")
        traces.insert(0, ("scored", y_true))
    if proba is not None and np.shape(proba) != (y_pred.size, len(class_names)):
        raise ValueError(f"plot_hypnogram: probabilities of shape {np.shape(proba)}; expected "
                         f"({y_pred.size}, {len(class_names)}): one row per epoch, one column per class.")
    rows = stage_rows(class_names)
    rem = next((i for i, n in enumerate(class_names) if n in REM_NAMES), None)
    scale = epoch_seconds / 3600.0 if epoch_seconds else 1.0
    edges = (onset_s / 3600.0 if epoch_seconds else 0.0) + np.arange(y_pred.size + 1) * scale
    heights = [2.0] * len(traces) + ([1.0] if proba is not None else [])
    fig = Figure(figsize=(11, 1.0 + 1.6 * sum(heights)), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    ordered = [class_names[c] for c in np.argsort(rows)]
    for ax, (name, labels) in zip(axes, traces):
        _draw_stages(ax, labels, rows, rem, edges)
        ax.set_yticks(np.arange(len(class_names)), ordered)
        ax.set_ylim(len(class_names) - 0.5, -0.5)
        ax.set_ylabel(name)
    if proba is not None:
        _draw_proba(axes[-1], np.asarray(proba, float), class_names, rows, edges)
    handles = {h.get_label(): h for ax in axes[:len(traces)] for h in ax.get_legend_handles_labels()[0]}
    if handles:
        axes[0].legend(handles.values(), handles.keys(), loc="upper right", fontsize=8)
    axes[0].set_xlim(edges[0], edges[-1])
    _time_axis(axes[-1], start, epoch_seconds)
    axes[0].set_title(title)
    return fig


def plot_hypnogram(path: str | Path, y_true: Any, y_pred: Any, class_names: Sequence[str], title: str,
                   epoch_seconds: float | None = EPOCH_SECONDS, *, proba: Any = None, onset_s: float = 0.0,
                   start: datetime | None = None) -> Path:
    """Save :func:`hypnogram_figure` as a PNG at ``path`` (atomically); ``y_true`` may be None
    (predictions only). Used by the report (scored vs predicted) and by staging (predicted +
    probabilities)."""
    fig = hypnogram_figure(y_pred, class_names, title, y_true=y_true, proba=proba,
                           epoch_seconds=epoch_seconds, onset_s=onset_s, start=start)
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
        probs = predictions.get("probs")
        paths.append(plot_hypnogram(Path(report_dir) / f"hypnogram_{g}.png",
                                    predictions["y_true"][sel], predictions["y_pred"][sel],
                                    class_names, f"{g}: scored vs predicted (repeat 0)",
                                    proba=None if probs is None else probs[sel]))
    return paths


def sleep_report_hook(class_names: Sequence[str], count: int) -> Any:
    """The report hook of a sleep dataset: ``hook(report_dir, predictions)``."""
    return partial(_hook, class_names=list(class_names), count=count)


def _hook(report_dir: Path, predictions: Mapping[str, np.ndarray], class_names, count) -> None:
    if "groups" in predictions and count > 0:
        write_hypnograms(report_dir, predictions, class_names, count)
