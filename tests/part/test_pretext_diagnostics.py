"""Held-out pretext errors (paper Table 5): per-target mean absolute / squared error and the
Euclidean translation error of the predicted relative targets on fixed test items, logged at
each pretraining epoch end without disturbing training (``part.evaluation.pretext``)."""
import json
from pathlib import Path

import pytest
import torch

from part.config import load_recipe
from part.core.backbone import ViTEncoder
from part.core.pairs import gather_tokens
from part.errors import RunStopped
from part.evaluation.pretext import (error_summary, heldout_batch, heldout_hook, heldout_items,
                                     items_digest, pretext_errors, supports_pretext_errors)
from part.registry import build_method, get_method, get_modality
from part.training.rundir import read_metrics
from part.training.runner import run

ROOT = Path(__file__).resolve().parents[2]
TINY_METHODS = {"part": {"num_pairs": 8}, "part_grid": {"num_pairs": 8},
                "mae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}, "mp3": {},
                "droppos": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}}


def _method(name="part", modality=None):
    modality = modality or get_modality("image", image_size=8, channels=1, patch_size=2)
    options = get_method(name).options(**TINY_METHODS[name])
    return build_method(name, modality, ViTEncoder(32, 1, 4), modality.tokenizer(32), options)


# ----------------------------------------------------------------------------- the numbers

def test_error_summary_matches_a_direct_computation():
    torch.manual_seed(0)
    pred, target = torch.randn(3, 7, 4), torch.randn(3, 7, 4)
    s = error_summary(pred, target, ("dx", "dy", "dw", "dh"), translation_dim=2)
    diff = pred - target
    for i, name in enumerate(("dx", "dy", "dw", "dh")):
        assert s["mae"][name] == pytest.approx(diff[..., i].abs().mean().item(), rel=1e-6)
        assert s["mse"][name] == pytest.approx(diff[..., i].pow(2).mean().item(), rel=1e-6)
    assert s["l2"] == pytest.approx(diff[..., :2].norm(dim=-1).mean().item(), rel=1e-6)
    assert s["pairs"] == 21


@pytest.mark.parametrize("name", ["part", "part_grid"])
def test_predict_pairs_shapes_and_given_pairs(name):
    method = _method(name)
    x = torch.randn(2, 1, 8, 8)
    pred, target = method.predict_pairs(x, generator=torch.Generator().manual_seed(0))
    assert pred.shape == target.shape == (2, 8, 2) and pred.dtype == torch.float32
    N = method.modality.num_patches if name == "part" else method.modality.num_grid_patches
    ref, tgt = torch.arange(N).repeat_interleave(N), torch.arange(N).repeat(N)  # all N x N pairs
    pairs = (ref.expand(2, -1), tgt.expand(2, -1))
    pred, target, details = method.predict_pairs(x, torch.Generator().manual_seed(0), pairs=pairs,
                                                 return_details=True)
    geom = details["geometry"]
    assert pred.shape == (2, N * N, 2) and geom.shape == (2, N, 4)
    expected = method.modality.targets(gather_tokens(geom, pairs[0]), gather_tokens(geom, pairs[1]))
    assert torch.equal(target, expected)
    assert torch.equal(target[:, ::N + 1], torch.zeros(2, N, 2))  # a patch relative to itself


def test_pretext_errors_are_fixed_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    method = _method()
    x = torch.randn(10, 1, 8, 8)
    state = torch.random.get_rng_state()
    first = pretext_errors(method, x, seed=3, chunk_items=4)
    second = pretext_errors(method, x, seed=3, chunk_items=4)
    assert first == second and first["items"] == 10 and first["pairs"] == 80
    assert torch.equal(torch.random.get_rng_state(), state) and method.training
    other = pretext_errors(method, x, seed=4, chunk_items=4)
    assert other["mae"] != first["mae"]  # the seed picks the patches and pairs
    method.eval()  # the same numbers straight from predict_pairs and error_summary
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        outs = [method.predict_pairs(chunk, generator=g) for chunk in x.split(4)]
    pred, target = torch.cat([p for p, _ in outs]), torch.cat([t for _, t in outs])
    direct = error_summary(pred, target, ("dx", "dy"), 2)
    assert direct["mae"] == pytest.approx(first["mae"]) and direct["l2"] == pytest.approx(first["l2"])


def test_eeg_names_and_l2_of_the_translation_only():
    eeg = get_modality("eeg", channels=2, window_samples=240, patch_samples=8, num_patches=10,
                       scale_range=[0.5, 2.0])
    assert eeg.target_names == ("dt", "dlen") and eeg.translation_dim == 1
    errors = pretext_errors(_method("part", eeg), torch.randn(4, 2, 240), seed=0)
    assert set(errors["mae"]) == {"dt", "dlen"}
    assert errors["l2"] == pytest.approx(errors["mae"]["dt"])  # a 1-D norm is the absolute value
    assert get_modality("image", image_size=8, channels=1, patch_size=2,
                        scale_range=[0.5, 2.0]).target_names == ("dx", "dy", "dw", "dh")


@pytest.mark.parametrize("name", ["mae", "mp3", "droppos"])
def test_methods_without_relative_targets_log_their_own_heldout_loss(name):
    # issue 26 changed this: such methods were skipped; now their own loss on the held-out items is
    # logged next to their chance level (relative errors still refused)
    method, said = _method(name), []
    assert not supports_pretext_errors(method)
    data = [(torch.rand(1, 8, 8), 0) for _ in range(3)]
    hook = heldout_hook(method, data, 4, 0, "cpu", said.append)
    record = hook(method, 0)
    x = torch.stack([d[0] for d in data])
    torch.manual_seed(0)
    method.eval()
    with torch.no_grad():
        assert record["heldout"]["loss"] == pytest.approx(float(method(x)["loss"]), rel=1e-5)
    assert record["heldout"]["items"] == 3 and record["chance"]["metric"] in ("mse", "cross_entropy")
    assert "chance" in said[0] and f"held-out {record['chance']['metric']}" in said[-1]
    with pytest.raises(ValueError, match="no predict_pairs"):
        pretext_errors(method, torch.randn(2, 1, 8, 8), 0)


def test_heldout_batch_is_a_fixed_sorted_choice():
    data = [(torch.full((1, 2, 2), float(i)), i % 3) for i in range(20)]
    x, index = heldout_batch(data, 5, seed=7)
    again, index2 = heldout_batch(data, 5, seed=7)
    assert torch.equal(index, index2) and torch.equal(x, again) and x.shape == (5, 1, 2, 2)
    assert index.tolist() == sorted(index.tolist()) and torch.equal(x[:, 0, 0, 0], index.float())
    assert len(heldout_batch(data, 100, seed=7)[1]) == 20
    assert not torch.equal(heldout_items(20, 5, 8), index)


# ----------------------------------------------------------------------------- in a run

TINY_RUN = ["model.dim=32", "model.depth=2", "model.heads=4", "run.log_every=1", "run.device=cpu",
            "data.limit_train=96", "data.limit_test=60", "method.num_pairs=16", "pretrain.epochs=2",
            "pretrain.batch_size=32", "pretrain.heldout_items=40", "finetune.epochs=1",
            "finetune.batch_size=32", "run.num_workers=0"]


def _run(out: Path, name: str, *overrides) -> list:
    recipe = load_recipe(ROOT / "recipes" / "digits_demo.yaml",
                         [f"run.output_dir={out}", f"run.name={name}", *TINY_RUN, *overrides])
    torch.set_num_threads(1)
    run(recipe)
    return read_metrics(out / name / "metrics.jsonl")


def _heldout(records):
    return [(r["epoch"], r["step"], r["heldout"]) for r in records
            if r["stage"] == "pretrain" and r.get("event") == "heldout"]


def _losses(records):
    return [(r["step"], r["loss"]) for r in records if r["stage"] == "pretrain" and "event" not in r]


def test_digits_run_logs_heldout_errors_each_epoch_and_resumes_identically(tmp_path, monkeypatch):
    full = _run(tmp_path, "full")  # pretrain, finetune, evaluate
    records = _heldout(full)
    assert [(e, s) for e, s, _ in records] == [(0, 3), (1, 6)]  # one per epoch, 3 steps each
    digest = items_digest(heldout_items(60, 40, 0))
    for _, _, h in records:
        # issue 26 added "loss" (comparable with chance) and "by_pair_type"
        assert set(h) == {"mae", "mse", "l2", "pairs", "items", "digest", "loss", "by_pair_type",
                          "loss_mean_predictor"}
        assert set(h["mae"]) == set(h["mse"]) == {"dx", "dy"}
        assert h["items"] == 40 and h["pairs"] == 40 * 16 and h["digest"] == digest
        assert h["loss"] == pytest.approx((h["mse"]["dx"] + h["mse"]["dy"]) / 2)
        assert sum(v["pairs"] for v in h["by_pair_type"].values()) == h["pairs"]
        assert h["loss_mean_predictor"] == pytest.approx(sum(
            v["mse_chance"] * v["pairs"] for v in h["by_pair_type"].values() if v["pairs"]) / h["pairs"])
    assert records[0][2]["mae"] != records[1][2]["mae"]  # the model changed, the items did not
    report = json.loads((tmp_path / "full" / "report" / "report.json").read_text())
    assert report["pretext_heldout"]["epoch"] == 1
    assert report["pretext_heldout"]["l2"] == pytest.approx(records[1][2]["l2"])
    markdown = (tmp_path / "full" / "report" / "report.md").read_text()
    assert "## Pretext on held-out items (last epoch)" in markdown  # heading renamed by issue 26
    assert "After pretraining epoch 2, on 40 fixed test items: held-out mse" in markdown
    assert "640 pairs; errors of the predicted" in markdown
    assert report["pretext_chance"]["metric"] == "mse" and report["pretext_chance"]["value"] > 0
    if report["pretext_near_chance"]:  # 2 tiny epochs: at chance, so the warning is in the report
        assert "stayed within 2% of chance" in report["pretext_warning"] in markdown

    import part.training.engine as engine  # stop after step 4 (in epoch 2), then resume
    calls = {"n": 0}

    def stop_once(ctx, step, epoch_end):
        calls["n"] += 1
        return calls["n"] == 4
    monkeypatch.setattr(engine, "stop_requested", stop_once)
    with pytest.raises(RunStopped):
        _run(tmp_path, "resumed", "run.stages=[pretrain]")
    assert len(_heldout(read_metrics(tmp_path / "resumed" / "metrics.jsonl"))) == 1
    resumed = _run(tmp_path, "resumed", "run.stages=[pretrain]")
    assert _heldout(resumed) == records and _losses(resumed) == _losses(full)

    off = _run(tmp_path, "off", "run.stages=[pretrain]", "pretrain.heldout_items=0")
    assert _heldout(off) == [] and _losses(off) == _losses(full)  # training is untouched
