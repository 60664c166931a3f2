"""`python -m part.analyze` and its core (`part.evaluation.analysis`): pretext.pt written by the
pretrain stage, every output file, the antisymmetry error and R^2 on models whose answers are
known by construction, the EEG pictures, and one-line errors for runs it cannot analyse."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from part.analyze import main
from part.config import load_recipe, save_resolved
from part.core.backbone import build_encoder
from part.core.geometry import apply_relative, relative_targets
from part.core.loss import PARTLoss
from part.core.pairs import gather_tokens
from part.evaluation.analysis import analyze, antisymmetry_errors
from part.registry import build_method, get_modality
from part.training.checkpoint import load_checkpoint, save_checkpoint
from part.training.pretext import build_pretext, pretext_recipe, pretext_state

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "digits_demo.yaml"
TINY = ["model.dim=16", "model.depth=1", "model.heads=2", "run.device=cpu",
        "run.stages=[pretrain]", "pretrain.epochs=1", "pretrain.batch_size=32", "data.limit_train=32",
        "data.limit_test=3", "run.log_every=1"]
FILES = ("analysis.json", "theta.npy", "theta_true.npy", "geometry.npy", "symmetry.png",
         "reconstruction.png", "uncertainty.png", "mixing.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits run pretrained for one step, in-process: its run directory."""
    from part.training.runner import run
    out = tmp_path_factory.mktemp("runs")
    run(load_recipe(RECIPE, [*TINY, "method.num_pairs=16", f"run.output_dir={out}"]))
    return out / "digits_demo"


def _fake_run(tmp_path, *overrides, method=True):
    """A run directory written by hand: config.yaml and, with ``method``, a fresh pretext.pt."""
    recipe = load_recipe(RECIPE, [*TINY, *overrides])
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    save_resolved(recipe, run_dir / "config.yaml")
    if method:
        modality = get_modality("image", recipe.modality, image_size=8, channels=1)
        encoder = build_encoder("custom", 16, 1, 2)
        model = build_method(recipe.method.name, modality, encoder, modality.tokenizer(16), recipe.method)
        save_checkpoint(run_dir / "checkpoints" / "pretext.pt",
                        pretext_state(model, recipe, {"image_size": 8, "channels": 1}))
    return run_dir


def test_pretrain_writes_the_whole_pretext_model(trained):
    state = load_checkpoint(trained / "checkpoints" / "pretext.pt", weights_only=True)
    assert state["method"] == "part" and state["modality"] == "image"
    assert state["method_options"]["num_pairs"] == 16 and state["model"]["dim"] == 16
    assert any(k.startswith("head.") for k in state["state_dict"])
    recipe = pretext_recipe(state, load_recipe(trained / "config.yaml"))
    method, _ = build_pretext(state, recipe)  # strict load: every key fits
    assert torch.equal(method.head.out.weight, state["state_dict"]["head.out.weight"])
    assert (trained / "checkpoints" / "pretrain.pt").is_file()  # the finetune stage's input stays


def test_analyze_writes_every_file_and_clips_n_items(trained, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert main([str(trained), "--n-items", "50", "--out", str(out), "--seed", "3"]) == 0
    assert "--n-items 50 is more than the 3 items of the test split; using 3" in capsys.readouterr().out
    for name in FILES:
        assert (out / name).is_file(), name
    theta = np.load(out / "theta.npy")
    assert theta.dtype == np.float32 and theta.shape == (3, 16, 16, 2)
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["n_items"] == 3 and summary["seed"] == 3 and summary["target_names"] == ["dx", "dy"]
    assert summary["patches"]["n_patches"] == 16 and summary["modality_options"]["patch_size"] == 2
    assert summary["checkpoint"].endswith("pretext.pt")
    # the symmetry error is recomputed from theta.npy with plain numpy
    t = theta.astype(np.float64)
    direct = np.mean([np.linalg.norm(a + a.transpose(1, 0, 2)) / np.linalg.norm(a) for a in t])
    assert summary["symmetry_error"] == pytest.approx(direct, rel=1e-9)
    for key in ("r2_offgrid", "r2_grid", "l2_error"):
        assert isinstance(summary[key], float), key
    assert set(summary["mae_per_target"]) == {"dx", "dy"}


class AntisymmetricHead(nn.Module):
    """prediction(ref, tgt) = f(z_tgt) - f(z_ref): Theta^T = -Theta by construction."""

    def __init__(self, dim, target_dim):
        super().__init__()
        self.f = nn.Linear(dim, target_dim)

    def forward(self, z, ref, tgt):
        f = self.f(z)
        return gather_tokens(f, tgt) - gather_tokens(f, ref)


def _tiny_part(modality, head=None):
    encoder = build_encoder("custom", 16, 1, 2)
    method = build_method("part", modality, encoder, modality.tokenizer(16))
    if head is not None:
        method.head = method.criterion.head = head
    return method


def test_symmetry_error_is_zero_for_an_antisymmetric_head():
    torch.manual_seed(0)
    modality = get_modality("image", image_size=8, channels=1, patch_size=2, num_patches=10)
    method = _tiny_part(modality, AntisymmetricHead(16, 2))
    result = analyze(method, modality, torch.rand(3, 1, 8, 8), seed=1)
    assert result.metrics["symmetry_error"] == 0.0
    assert antisymmetry_errors(result.theta).tolist() == [0.0, 0.0, 0.0]
    assert np.abs(result.theta).max() > 0


def test_part_grid_is_analysed_on_the_grid_and_an_mlp_head_only_on_its_own_n():
    from part.core.methods.part import PARTOptions
    modality = get_modality("image", image_size=8, channels=1, patch_size=2, num_patches=10)
    x = torch.rand(2, 1, 8, 8)
    grid = build_method("part_grid", modality, build_encoder("custom", 16, 1, 2), modality.tokenizer(16))
    result = analyze(grid, modality, x)
    assert result.sampling == "grid" and result.theta.shape == (2, 16, 16, 2)
    assert isinstance(result.metrics["r2_offgrid"], float) and isinstance(result.metrics["r2_grid"], float)
    mlp = build_method("part", modality, build_encoder("custom", 16, 1, 2), modality.tokenizer(16),
                       PARTOptions(head="mlp"))
    result = analyze(mlp, modality, x)
    assert result.theta.shape == (2, 10, 10, 2)
    assert isinstance(result.metrics["r2_offgrid"], float) and result.metrics["r2_grid"] is None


class GeometryAsPatches(type(get_modality("image", image_size=8, channels=1))):
    """Image patches replaced by their own boxes, so that an oracle head can read them."""

    def sample(self, x, generator=None):
        return (lambda boxes: (boxes, boxes))(super().sample(x, generator)[1])

    def grid(self, x):
        return (lambda boxes: (boxes, boxes))(super().grid(x)[1])


class OracleHead(nn.Module):
    """Returns the true targets, read from tokens that are the patches' boxes."""

    def __init__(self, modality):
        super().__init__()
        self.modality = modality

    def forward(self, z, ref, tgt):
        return self.modality.targets(gather_tokens(z, ref), gather_tokens(z, tgt))


class Oracle(nn.Module):
    """A pretext model whose tokens are the boxes and whose head returns the true targets."""

    def __init__(self, modality):
        super().__init__()
        self.modality, self.head = modality, OracleHead(modality)
        self.tokenizer, self.encoder = nn.Identity(), _PrependToken()
        self.criterion = PARTLoss(4, 2, 1, head=self.head, target_fn=modality.targets)


class _PrependToken(nn.Module):
    def forward(self, t):
        return torch.cat([torch.zeros_like(t[:, :1]), t], 1)


def test_perfect_predictor_has_r2_one_and_no_error():
    from part.core.methods.part import PART
    modality = GeometryAsPatches(get_modality("image", image_size=8, channels=1, patch_size=2).options,
                                 image_size=8, channels=1)
    oracle = Oracle(modality)
    oracle.predict_pairs = PART.predict_pairs  # what check_relative looks for; unused by analyze
    result = analyze(oracle, modality, torch.rand(2, 1, 8, 8), seed=0)
    m = result.metrics
    assert m["r2_offgrid"] == pytest.approx(1.0) and m["r2_grid"] == pytest.approx(1.0)
    by_type = m["r2_by_pair_type"]  # every ordered pair i != j in exactly one type
    assert sum(v["pairs"] for v in by_type.values()) == 2 * 16 * 15 and by_type["self"]["pairs"] == 0
    assert all(v["r2"] == pytest.approx(1.0) for v in by_type.values() if v["pairs"] >= 2 and v["r2"] is not None)
    assert max(m["mae_per_target"].values()) < 1e-6 and m["l2_error"] < 1e-6
    assert m["symmetry_error"] < 1e-6  # translations of equal-size patches are antisymmetric
    np.testing.assert_allclose(result.placed, result.geometry, atol=1e-5)  # placed where they are
    assert m["mean_spread"] < 1e-5


@pytest.mark.parametrize("scale_target", ["ratio", "log"])
def test_apply_relative_inverts_relative_targets(scale_target):
    g = torch.Generator().manual_seed(0)
    ref, tgt = torch.rand(5, 4, generator=g) + 0.5, torch.rand(5, 4, generator=g) + 0.5
    assert torch.allclose(apply_relative(ref, relative_targets(ref, tgt), tgt[:, 2:]), tgt)
    t = relative_targets(ref, tgt, with_scale=True, scale_target=scale_target)
    assert torch.allclose(apply_relative(ref, t, scale_target=scale_target), tgt, atol=1e-6)


def test_eeg_draws_windows_and_no_mixing(tmp_path):
    torch.manual_seed(0)
    modality = get_modality("eeg", channels=2, window_samples=300, patch_samples=10, num_patches=8)
    result = analyze(_tiny_part(modality), modality, torch.randn(2, 2, 300), seed=0)
    assert result.theta.shape == (2, 8, 8, 1) and result.target_names == ["dt"]
    names = {p.name for p in modality.analysis_plots(result, tmp_path)}
    assert names == {"reconstruction.png", "uncertainty.png"}  # no mixing picture for EEG


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err, err


def test_run_without_pretext_model(trained, tmp_path, capsys):
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    shutil.copy(trained / "config.yaml", old / "config.yaml")
    _one_line_error(capsys, [str(old)], "this run has no saved pretext model (")


def test_supervised_run(tmp_path, capsys):
    run_dir = _fake_run(tmp_path, "method.name=supervised", method=False)
    _one_line_error(capsys, [str(run_dir)], "trains method 'supervised', which has no pretraining stage")


def test_method_without_relative_head(tmp_path, capsys):
    run_dir = _fake_run(tmp_path, "method.name=mae")
    _one_line_error(capsys, [str(run_dir)], "method 'mae' has no relative head")


def test_not_a_run_directory(tmp_path, capsys):
    _one_line_error(capsys, [str(tmp_path)], "is not a run directory (no config.yaml)")


def test_device_is_resolved_as_for_inference(tmp_path, capsys, monkeypatch):
    """--device goes through part.inference.resolve_device (one device rule for every command)."""
    import part.inference
    from part.errors import ConfigError

    def spy(name):
        raise ConfigError(f"resolve_device({name!r}) asked")
    run_dir = str(_fake_run(tmp_path))
    with monkeypatch.context() as m:
        m.setattr(part.inference, "resolve_device", spy)
        _one_line_error(capsys, [run_dir, "--out", str(tmp_path / "a")], "resolve_device('auto') asked")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _one_line_error(capsys, [run_dir, "--device", "cuda", "--out", str(tmp_path / "b")], "no CUDA device is visible")
