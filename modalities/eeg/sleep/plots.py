"""Hypnogram plots, in the usual convention: W on top, REM next to it (thick red), then N1, N2,
N3; unscored epochs as gaps; clock time on the x axis when the recording's start is known;
optionally the reference scoring above and the class probabilities as a stacked band under the
trace(s). :func:`hypnogram_figure` draws, :func:`plot_hypnogram` saves it as a PNG;
``Hypnogram.plot`` and the evaluation report's hypnograms (``report.py``) use them.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from part.evaluation.report import save_png
from part.modalities.eeg.recordings.constants import EPOCH_S

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
                     proba: Any = None, epoch_seconds: float | None = EPOCH_S, onset_s: float = 0.0,
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
        # outside the traces (right of the top panel, as the probability band's legend): inside it
        # would hide the end of the night
        axes[0].legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                       frameon=False)
    axes[0].set_xlim(edges[0], edges[-1])
    _time_axis(axes[-1], start, epoch_seconds)
    axes[0].set_title(title)
    return fig


def plot_hypnogram(path: str | Path, y_true: Any, y_pred: Any, class_names: Sequence[str], title: str,
                   epoch_seconds: float | None = EPOCH_S, *, proba: Any = None, onset_s: float = 0.0,
                   start: datetime | None = None) -> Path:
    """Save :func:`hypnogram_figure` as a PNG at ``path`` (atomically); ``y_true`` may be None
    (predictions only). Used by the report (scored vs predicted) and by staging (predicted +
    probabilities)."""
    fig = hypnogram_figure(y_pred, class_names, title, y_true=y_true, proba=proba,
                           epoch_seconds=epoch_seconds, onset_s=onset_s, start=start)
    return save_png(fig, path)


