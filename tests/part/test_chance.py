"""Chance levels of the pretext objectives (issue 26 item 4): PART's from its own sampler against
a Monte Carlo estimate and the closed form, the grid's exact enumeration, the fixed ln K levels,
MAE's mean patch, and the one warning line of a run that learns nothing."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from part.config import load_recipe
from part.core.backbone import ViTEncoder
from part.evaluation.chance import chance_warning, method_chance, near_chance
from part.registry import build_method, get_method, get_modality
from part.training.runner import run

ROOT = Path(__file__).resolve().parents[2]


def _method(name, modality, **options):
    spec = get_method(name)
    return build_method(name, modality, ViTEncoder(32, 1, 4), modality.tokenizer(32), spec.options(**options))


def test_part_eeg_chance_matches_a_monte_carlo_estimate_and_the_closed_form():
    T, P, N = 600, 50, 12
    eeg = get_modality("eeg", channels=2, window_samples=T, patch_samples=P, num_patches=N)
    level = method_chance(_method("part", eeg, num_pairs=64), torch.randn(32, 2, T), None, seed=0)
    # independent Monte Carlo: starts uniform in [0, T - P], pairs uniform over N x N (self-pairs in)
    rng = np.random.default_rng(1)
    starts = rng.uniform(0, T - P, size=(4000, N))
    ref, tgt = rng.integers(0, N, size=(2, 4000, 64))
    rows = np.arange(4000)[:, None]
    dt = (starts[rows, tgt] - starts[rows, ref]) / P
    monte_carlo = ((dt - dt.mean()) ** 2).mean()
    closed_form = (1 - 1 / N) * (T - P) ** 2 / (6 * P ** 2)  # Var(s_t - s_r) / P^2 over pairs
    assert level["metric"] == "mse" and level["pairs"] == 16 * 32 * 64
    assert level["value"] == pytest.approx(monte_carlo, rel=0.03)
    assert level["value"] == pytest.approx(closed_form, rel=0.03)
    assert "self-pairs included" in level["how"] and "Monte Carlo" in level["how"]
    assert method_chance(_method("part", eeg, num_pairs=64), torch.randn(32, 2, T), None, 0) == level  # seeded
    excluded = method_chance(_method("part", eeg, num_pairs=64, exclude_self_pairs=True),
                             torch.randn(32, 2, T), None, seed=0)
    assert excluded["value"] == pytest.approx((T - P) ** 2 / (6 * P ** 2), rel=0.03)


def test_part_grid_chance_is_exact_over_all_grid_pairs():
    image = get_modality("image", image_size=8, channels=1, patch_size=2)  # 4 x 4 grid of 2-px cells
    level = method_chance(_method("part_grid", image, num_pairs=8), torch.rand(3, 1, 8, 8), None, 0)
    cells = np.array([(c, r) for r in range(4) for c in range(4)], dtype=float)  # in cell units
    d = (cells[None, :, :] - cells[:, None, :]).reshape(-1, 2)  # all 256 ordered pairs
    assert level["value"] == pytest.approx(((d - d.mean(0)) ** 2).mean(0).mean())
    assert level["per_target"]["dx"] == pytest.approx(((d[:, 0] - d[:, 0].mean()) ** 2).mean())
    assert level["pairs"] == 256 and level["how"].startswith("predicting the mean relative transform; exact")


def test_fixed_chance_levels_and_mae_mean_patch():
    image = get_modality("image", image_size=8, channels=1, patch_size=2)
    x = torch.rand(5, 1, 8, 8)
    assert method_chance(_method("mp3", image), x, None, 0)["value"] == pytest.approx(math.log(16))
    droppos = _method("droppos", image, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    assert method_chance(droppos, x, None, 0)["value"] == pytest.approx(math.log(16))
    mae = _method("mae", image, decoder_dim=16, decoder_depth=1, decoder_heads=2, norm_pix_loss=False)
    patches = x.reshape(5, 1, 4, 2, 4, 2).permute(0, 2, 4, 3, 5, 1).reshape(-1, 4).double()
    level = method_chance(mae, x, None, 0)
    assert level["value"] == pytest.approx(((patches - patches.mean(0)) ** 2).mean().item())
    eeg = get_modality("eeg", channels=2, window_samples=300, patch_samples=30)
    for name in ("relative_positioning", "temporal_shuffling"):
        assert method_chance(_method(name, eeg), None, 64, 0)["value"] == pytest.approx(math.log(2))
    cpc = _method("cpc", eeg, context_windows=2, predicted_windows=1, context_dim=8)
    assert method_chance(cpc, None, 48, 0)["value"] == pytest.approx(math.log(48))


def test_near_chance_rule_and_warning_text():
    chance = {"metric": "mse", "value": 100.0, "how": "predicting the mean"}
    assert near_chance(98.0, chance) and near_chance(120.0, chance) and not near_chance(97.9, chance)
    records = [{"heldout": {"loss": v}, "chance": chance} for v in (101.0, 99.0, 98.5)]
    line = chance_warning(records)
    assert line == ("[pretrain] WARNING: the held-out pretext loss stayed within 2% of chance over 3 epochs "
                    "(best mse 98.5 (chance 100): predicting the mean); the pretext learnt nothing "
                    "measurable on this data")
    assert chance_warning(records + [{"heldout": {"loss": 90.0}, "chance": chance}]) is None


def test_a_run_that_learns_nothing_says_so_in_one_warning_line(tmp_path, capsys):
    # lr 1e-12: the pretext model stays at its initialisation, i.e. learns nothing
    recipe = load_recipe(ROOT / "recipes" / "digits_demo.yaml", [
        f"run.output_dir={tmp_path}", "run.name=flat", "model.dim=32", "model.depth=1", "model.heads=4",
        "run.device=cpu", "data.limit_train=64", "data.limit_test=40", "method.num_pairs=16",
        "pretrain.epochs=2", "pretrain.batch_size=32", "pretrain.lr=1e-12", "pretrain.min_lr=0",
        "pretrain.heldout_items=32", "run.stages=[pretrain]", "run.num_workers=0"])
    torch.set_num_threads(1)
    run(recipe)
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "stayed within 2% of chance over 2 epochs" in warnings[0]
    assert "[pretrain] epoch 2 held-out mse" in out and "(chance " in out
