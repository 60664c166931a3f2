"""Hypnogram plots (sleep/plots.py) and the evaluation report's hypnograms (sleep/report.py):
the stage order convention, the probability band, clock time, gaps, one figure per record, and
the legend outside the traces."""
from datetime import datetime

import numpy as np
import pytest

import part.modalities.eeg.sleep.plots as plots
from part.modalities.eeg.sleep.plots import hypnogram_figure, plot_hypnogram
from part.modalities.eeg.sleep.report import sleep_report_hook, write_hypnograms

STAGES = ["W", "N1", "N2", "N3", "REM"]
START = datetime(2021, 3, 4, 22, 45, 0)


def _predictions(n: int, seed: int):
    """Noisy predictions of random stages, and a third value (unused) as the metrics tests have."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice(5, size=n, p=[0.3, 0.05, 0.4, 0.1, 0.15])
    return y_true, np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 5, n)), None


def test_hypnogram_png(tmp_path):
    y_true, y_pred, _ = _predictions(600, seed=8)
    y_true[:40] = -1  # unscored start of the night
    path = plot_hypnogram(tmp_path / "hypnogram_s01.png", y_true, y_pred, STAGES, "s01")
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="600 true labels but 3 predictions"):
        plot_hypnogram(tmp_path / "bad.png", y_true, y_pred[:3], STAGES, "bad")


def test_hypnogram_plot_convention(tmp_path):
    """W on top, REM next to it, then N1, N2, N3 (in the report's true-vs-predicted figure too)."""
    names = ["W", "N1", "N2", "N3", "REM"]
    y = np.array([0, 1, 2, 3, 4, -1, 2])
    fig = hypnogram_figure(y, names, "t", y_true=y, proba=np.full((7, 5), 0.2), start=START)
    for ax in fig.axes[:2]:
        ticks = {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}
        top_to_bottom = [ticks[k] for k in sorted(ticks)] if ax.get_ylim()[0] > ax.get_ylim()[1] else None
        assert top_to_bottom == ["W", "REM", "N1", "N2", "N3"]
    assert len(fig.axes) == 3 and fig.axes[-1].get_ylabel() == "probability"
    assert fig.axes[-1].xaxis.get_major_formatter()(1.0, 0) == "23:45"  # clock time
    predictions = {"y_true": y, "y_pred": y, "probs": np.full((7, 5), 0.2), "groups": np.array(["s1"] * 7)}
    paths = write_hypnograms(tmp_path, predictions, names, 3, ["r1"] * 7, 30.0 * np.arange(7))
    assert [p.name for p in paths] == ["hypnogram_r1.png"]


def test_report_draws_each_record_on_its_own_time_axis(tmp_path, monkeypatch):
    """A subject with two nights gives one figure per record; a window missing from the test set
    (unscored, trimmed) is a gap at its time, not collapsed: -1 labels and NaN probabilities."""
    names = ["W", "N1", "N2", "N3", "REM"]
    records = np.array(["s1-n1", "s1-n1", "s1-n1", "s1-n2", "s1-n2"])
    onsets = np.array([15.0, 45.0, 105.0, 0.0, 30.0])  # night 1: windows 0, 1 and 3 from 15 s; 75-105 s missing
    y = np.array([0, 2, 4, 1, 3])
    predictions = {"y_true": y, "y_pred": y, "probs": np.eye(5)[y], "groups": np.array(["s1"] * 5)}
    drawn, real = {}, plots.hypnogram_figure

    def spy(y_pred, class_names, title, **kw):
        drawn[title.split(" ")[0]] = (np.asarray(y_pred), kw, real(y_pred, class_names, title, **kw))
        return drawn[title.split(" ")[0]][2]
    monkeypatch.setattr(plots, "hypnogram_figure", spy)
    sleep_report_hook(names, 5, records, onsets, 30.0)(tmp_path, predictions)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["hypnogram_s1-n1.png", "hypnogram_s1-n2.png"]
    y_pred, kw, fig = drawn["s1-n1"]
    assert y_pred.tolist() == [0, 2, -1, 4] and kw["y_true"].tolist() == [0, 2, -1, 4] and kw["onset_s"] == 15.0
    assert np.isnan(kw["proba"][2]).all() and not np.isnan(kw["proba"][[0, 1, 3]]).any()
    hours = np.array(fig.axes[0].get_xlim()) * 3600
    np.testing.assert_allclose(hours, [15.0, 135.0])  # the record's time, hours since its start
    segments = np.concatenate([c.get_segments() for c in fig.axes[1].collections if hasattr(c, "get_segments")])
    xs = np.array([seg[:, 0] for seg in segments]) * 3600
    assert not ((xs.min(1) < 105 - 1e-6) & (xs.max(1) > 75 + 1e-6)).any()  # nothing drawn in the gap
    assert drawn["s1-n2"][0].tolist() == [1, 3] and drawn["s1-n2"][1]["onset_s"] == 0.0
    assert [p.name for p in write_hypnograms(tmp_path / "one", predictions, names, 1, records, onsets)] == [
        "hypnogram_s1-n1.png"]  # data.hypnograms counts records


def test_the_legend_does_not_cover_the_traces():
    """The REM / unscored legend lies outside the hypnogram panels (right of them), not over the
    end of the night."""
    y = np.array([0, 0, 4, 4, -1, 2, 0, 0])
    fig = hypnogram_figure(y, ["W", "N1", "N2", "N3", "REM"], "t", y_true=y, proba=np.full((8, 5), 0.2))
    fig.draw_without_rendering()
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["REM", "unscored"]
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert box.x0 >= ax.get_window_extent().x1 - 1  # right of every panel
