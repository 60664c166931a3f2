"""Temperature scaling and calibration scores (`part.evaluation.calibration`): ECE, NLL and Brier
against direct computations, the temperature fit (recovers a known temperature, deterministic,
never changes the argmax), the held-out split (whole groups, by seed), the report's section and
reliability diagram, and a tiny digits run (the image path) whose card and report carry them."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from part.evaluation.calibration import (brier_score, calibration_scores, calibration_section,
                                         expected_calibration_error, fit_temperature, holdout_split,
                                         negative_log_likelihood, reliability_bins, softmax)
from part.evaluation.metrics import classification_metrics
from part.evaluation.report import write_report

ROOT = Path(__file__).resolve().parents[2]


def _logits(n=2000, k=5, seed=0, t_true=2.5):
    """Logits and labels drawn from softmax(logits / t_true): the calibrating temperature is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3.0, (n, k))
    p = softmax(z, t_true)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return z, y


def test_ece_nll_brier_match_direct_computations():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4) * 0.7, 300)
    y = rng.integers(0, 4, 300)
    y[:7] = -1  # unlabelled: left out
    keep = y >= 0
    pk, yk = p[keep], y[keep]
    ece = 0.0
    for b in range(10):  # the textbook loop: bins (b/10, (b+1)/10], 0 in the first
        conf = pk.max(1)
        in_bin = (conf > b / 10) & (conf <= (b + 1) / 10) | ((b == 0) & (conf == 0))
        if in_bin.any():
            ece += in_bin.sum() / keep.sum() * abs((pk[in_bin].argmax(1) == yk[in_bin]).mean() - conf[in_bin].mean())
    assert expected_calibration_error(p, y) == pytest.approx(ece, abs=1e-12)
    assert negative_log_likelihood(p, y) == pytest.approx(np.mean([-math.log(pk[i, yk[i]]) for i in range(yk.size)]))
    brier = np.mean([sum((pk[i, c] - (yk[i] == c)) ** 2 for c in range(4)) for i in range(yk.size)])
    assert brier_score(p, y) == pytest.approx(brier, abs=1e-12)
    bins = reliability_bins(p, y)
    assert sum(bins["count"]) == keep.sum() and len(bins["edges"]) == 11
    scores = calibration_scores(p, y)
    assert scores["n"] == keep.sum() and scores["accuracy"] == pytest.approx((pk.argmax(1) == yk).mean())


def test_perfect_and_worst_cases():
    y = np.array([0, 1, 2, 1])
    onehot = np.eye(3)[y]
    assert expected_calibration_error(onehot, y) == 0.0 and brier_score(onehot, y) == 0.0
    assert negative_log_likelihood(onehot, y) == pytest.approx(0.0, abs=1e-9)
    wrong = np.eye(3)[(y + 1) % 3]
    assert brier_score(wrong, y) == 2.0 and expected_calibration_error(wrong, y) == 1.0
    uniform = np.full((4, 3), 1 / 3)
    assert negative_log_likelihood(uniform, y) == pytest.approx(math.log(3))
    assert brier_score(uniform, y) == pytest.approx(1 - 1 / 3)


def test_fit_recovers_a_known_temperature_deterministically():
    z, y = _logits()
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(z, y) == t  # deterministic
    nll = lambda temp: negative_log_likelihood(softmax(z, temp), y)  # noqa: E731
    assert nll(t) <= min(nll(t * 0.97), nll(t * 1.03), nll(1.0))
    assert expected_calibration_error(softmax(z, t), y) < expected_calibration_error(softmax(z), y)


def test_temperature_never_changes_the_predicted_class():
    z, _ = _logits(n=500, seed=3)
    for t in (0.05, 0.5, 1.0, 3.0, 20.0):
        assert np.array_equal(softmax(z, t).argmax(1), z.argmax(1))


def test_fit_refuses_no_labelled_item():
    with pytest.raises(ValueError, match="no labelled item"):
        fit_temperature(np.zeros((3, 2)), [-1, -1, -1])


def test_holdout_split_holds_out_whole_groups_by_seed():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 4 + ["d"] * 2
    train, cal, held = holdout_split(len(groups), groups, 0.25, seed=0)
    assert len(held) == 1 and set(np.asarray(groups)[cal]) == set(held)
    assert not set(np.asarray(groups)[train]) & set(held)
    assert sorted(np.concatenate([train, cal]).tolist()) == list(range(len(groups)))
    assert holdout_split(len(groups), groups, 0.25, seed=0)[2] == held  # deterministic
    assert {tuple(holdout_split(len(groups), groups, 0.5, s)[2]) for s in range(20)} != {tuple(held)}
    assert holdout_split(3, ["a", "a", "a"], 0.5, 0) is None  # one group: nothing left to train on
    train, cal, held = holdout_split(10, None, 0.2, 1)  # no groups: items
    assert cal.size == 2 and train.size == 8 and held == []


def test_report_has_the_calibration_section_and_the_reliability_diagram(tmp_path):
    z, y = _logits(n=400)
    t = fit_temperature(z, y)
    metrics = classification_metrics(y, z.argmax(1), list(range(5)), softmax(z, t))
    metrics["calibration"] = calibration_section(z, y, t)
    paths = write_report(tmp_path, metrics, list("ABCDE"), "t")
    report = json.loads((tmp_path / "report.json").read_text())
    cal = report["calibration"]
    assert cal["temperature"] == pytest.approx(t)
    assert cal["after"]["ece"] == pytest.approx(expected_calibration_error(softmax(z, t), y))
    assert cal["before"]["accuracy"] == cal["after"]["accuracy"] == report["accuracy"]
    assert cal["uniform_reference"]["nll"] == pytest.approx(math.log(5))
    md = (tmp_path / "report.md").read_text()
    assert "## Calibration" in md and "ECE (10 bins, top class)" in md and "calibration.png" in md
    assert paths["calibration"].stat().st_size > 1000
    uncalibrated = calibration_section(z, y, None)
    assert "after" not in uncalibrated


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from conftest import run_main
    from part.train import main
    out = tmp_path_factory.mktemp("runs")
    res = run_main(main, [ROOT / "recipes/digits_demo.yaml", f"run.output_dir={out}", "run.device=cpu",
                          "method.name=supervised", "run.stages=[finetune,evaluate]", "model.dim=16",
                          "model.depth=1", "model.heads=2", "finetune.epochs=1", "finetune.batch_size=32",
                          "data.limit_train=160", "data.limit_test=64", "finetune.calibration_fraction=0.2"])
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "digits_demo", res


def test_digits_run_fits_a_temperature_on_held_out_finetune_images(digits_run):
    from part.training.checkpoint import load_checkpoint
    run_dir, res = digits_run
    card = load_checkpoint(run_dir / "checkpoints" / "best.pt")["card"]
    assert isinstance(card["temperature"], float) and 0.05 <= card["temperature"] <= 20
    assert card["calibration"]["items"] == 32 and "never test items" in card["calibration"]["fitted_on"]
    assert "32 of 160 finetune items held out" in res.stdout
    report = json.loads((run_dir / "report" / "report.json").read_text())
    cal = report["calibration"]
    assert cal["temperature"] == card["temperature"]
    assert cal["before"]["accuracy"] == cal["after"]["accuracy"] == report["accuracy"]
    saved = np.load(run_dir / "report" / "predictions_r0.npz")
    assert np.array_equal(saved["probs"].argmax(1), saved["y_pred"])
    assert cal["after"]["ece"] == pytest.approx(expected_calibration_error(saved["probs"], saved["y_true"]), abs=1e-5)
    assert (run_dir / "report" / "calibration.png").is_file()


def test_calibration_fraction_is_checked_by_the_recipe():
    from part.config import load_recipe
    from part.errors import ConfigError
    assert load_recipe(ROOT / "recipes/eeg_sleep_demo.yaml", ()).finetune.calibration_fraction == 0.2
    assert load_recipe(ROOT / "recipes/eeg_sleep.yaml", ()).finetune.calibration_fraction == 0.0
    with pytest.raises(ConfigError, match="finetune.calibration_fraction"):
        load_recipe(ROOT / "recipes/eeg_sleep_demo.yaml", ["finetune.calibration_fraction=1.0"])


def test_uncalibrated_run_says_so_once_and_reports_before_only(tmp_path):
    from conftest import run_main
    from part.train import main
    from part.training.checkpoint import load_checkpoint
    res = run_main(main, [ROOT / "recipes/digits_demo.yaml", f"run.output_dir={tmp_path}", "run.device=cpu",
                          "method.name=supervised", "run.stages=[finetune,evaluate]", "model.dim=16",
                          "model.depth=1", "model.heads=2", "finetune.epochs=1", "finetune.batch_size=32",
                          "data.limit_train=64", "data.limit_test=32", "finetune.calibration_fraction=0",
                          "evaluate.repeats=2"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("has no temperature") == 1 and "probabilities are uncalibrated" in res.stdout
    assert "temperature" not in load_checkpoint(tmp_path / "digits_demo" / "checkpoints" / "best.pt")["card"]
    cal = json.loads((tmp_path / "digits_demo" / "report" / "report.json").read_text())["calibration"]
    assert cal["temperature"] is None and "after" not in cal and cal["before"]["n"] == 32
    assert "uncalibrated" in (tmp_path / "digits_demo" / "report" / "report.md").read_text()


class _Items:
    """Item i is (tensor([i + shift]), i % 2): ``shift`` marks the transform (1000: augmented)."""

    def __init__(self, n, shift):
        self.n, self.shift = n, shift

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch
        return torch.tensor([float(i + self.shift)]), i % 2


def test_temperature_is_fitted_on_the_held_out_items_without_training_augmentation():
    from types import SimpleNamespace

    from part.training.stages import _calibration_split, _trained_on

    groups = [f"s{i // 5}" for i in range(20)]  # 4 subjects of 5 items
    bundle = SimpleNamespace(finetune=_Items(20, 1000), finetune_eval=_Items(20, 0), finetune_groups=groups)
    ctx = SimpleNamespace(say=lambda *_: None)
    train, cal, held = _calibration_split(bundle, 0.25, 0, ctx)
    cal_items = [int(cal[i][0].item()) for i in range(len(cal))]
    assert len(held) == 1 and cal_items == [i for i in range(20) if groups[i] == held[0]]  # eval transform
    assert all(train[i][0].item() >= 1000 for i in range(len(train)))  # training keeps its augmentation
    assert _trained_on(bundle, train) == {"items": 15, "groups": sorted({f"s{k}" for k in range(4)} - set(held))}
    assert _trained_on(bundle, bundle.finetune) == {"items": 20, "groups": ["s0", "s1", "s2", "s3"]}  # uncalibrated
    no_eval = SimpleNamespace(finetune=_Items(20, 1000), finetune_eval=None, finetune_groups=groups)
    _, cal, _ = _calibration_split(no_eval, 0.25, 0, ctx)
    assert cal[0][0].item() >= 1000  # without finetune_eval, the finetune items themselves
