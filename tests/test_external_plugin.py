"""The plugin seam, end to end: a separate package adds a modality and a dataset with no edit
to this project, and ``python -m part.train`` runs a recipe that names them.

In a temporary folder the test writes a tiny package, ``part-test-accel-plugin`` (module
``part_test_accel``): a single-channel accelerometer-like 1-D modality ``accel`` (patches at
continuous random centres, geometry (centre, length) in samples, targets dt from
``part.core.geometry.relative_targets``, sampling batched) and a dataset ``synthetic_accel`` of
SYNTHETIC signals (two classes: still / walking). Its only link to PART is the entry point

    [project.entry-points."part.modalities"]
    accel = "part_test_accel"

It is installed into this test's environment with ``python -m pip install --no-deps
--no-build-isolation --no-index -e DIR`` (real entry points, discovered by the registry as any
third-party plugin would be; no network needed) and uninstalled by a finalizer. Then
``python -m part.train recipe.yaml`` (pretrain + finetune + evaluate, one epoch each, tiny
sizes, run directory in the temporary folder) must exit 0 and write ``report/report.json`` with
a kappa, and no file of this checkout may change (``git status --porcelain`` before/after).
"""
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST, MODULE = "part-test-accel-plugin", "part_test_accel"

PYPROJECT = f"""
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "0.0.1"
description = "A test plugin for the PART toolkit: SYNTHETIC accelerometer-like signals"
requires-python = ">=3.10"

[project.entry-points."part.modalities"]
accel = "{MODULE}"

[tool.setuptools]
py-modules = ["{MODULE}"]
"""

PLUGIN = '''
"""PART plugin for tests: the 1-D modality ``accel`` (one channel, x (B, 1, T)) and the dataset
``synthetic_accel`` of SYNTHETIC signals. Geometry (B, N, 2) = (centre, length) in samples (the
box convention of part.core.geometry); targets dt = (c_tgt - c_ref) / len_ref."""
from dataclasses import dataclass, field
from typing import Optional

import math
import torch
from torch import nn
from torch.utils.data import TensorDataset

from part.config.options import Options
from part.config.schema import DataConfig
from part.core.geometry import relative_targets
from part.core.modality import DataBundle, Modality
from part.registry import register_dataset, register_modality


@dataclass
class AccelOptions(Options):
    section = "modality"
    name: str = "accel"
    window_samples: Optional[int] = field(default=None, metadata={"min": 2})
    patch_samples: int = field(default=8, metadata={"min": 1})
    num_patches: int = field(default=12, metadata={"min": 2})


@register_modality("accel", options=AccelOptions)
class AccelModality(Modality):
    name, geometry_dim, target_dim = "accel", 2, 1

    def __init__(self, options=None, window_samples=None):
        o = self.options = options if options is not None else AccelOptions()
        T, P = o.window_samples or window_samples or 64, o.patch_samples
        if not 2 * P <= T:
            raise ValueError(f"accel: patch_samples={P} needs window_samples >= {2 * P}, got {T}")
        self.window_samples, self.patch_samples = T, P
        self.num_grid_patches = T // P
        self.grid_shape, self.grid_cell = (T // P,), (float(P),)
        self.num_patches, self.patch_dim = o.num_patches, P

    def _check(self, x):
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.window_samples:
            raise ValueError(f"accel: expected (B, 1, {self.window_samples}), got {tuple(x.shape)}")

    def _boxes(self, centres):
        return torch.stack([centres, torch.full_like(centres, float(self.patch_samples))], -1)

    def sample(self, x, generator=None):
        """N windows of P samples at continuous centres, linearly interpolated (batched)."""
        self._check(x)
        B, T, P = x.shape[0], self.window_samples, self.patch_samples
        u = torch.rand(B, self.num_patches, generator=generator).to(x.device)
        centres = P / 2 + u * (T - P)
        pos = centres[..., None] - P / 2 + torch.arange(P, device=x.device)  # sample coordinates
        lo = pos.floor()
        frac = (pos - lo).to(x.dtype)
        lo = lo.long().clamp(0, T - 1)
        hi = (lo + 1).clamp(max=T - 1)
        signal = x[:, 0]
        pick = lambda i: torch.gather(signal, 1, i.reshape(B, -1)).view_as(frac)
        return torch.lerp(pick(lo), pick(hi), frac), self._boxes(centres)

    def grid(self, x):
        self._check(x)
        B, n, P = x.shape[0], self.num_grid_patches, self.patch_samples
        centres = (torch.arange(n, device=x.device, dtype=torch.float32) + 0.5) * P
        return x[:, 0, :n * P].reshape(B, n, P), self._boxes(centres.expand(B, n))

    def tokenizer(self, dim):
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref, geom_tgt):
        return relative_targets(geom_ref, geom_tgt)

    def grid_index(self, geometry):
        return (geometry[..., 0] / self.patch_samples).floor().long().clamp(0, self.num_grid_patches - 1)


@dataclass
class SyntheticAccelOptions(DataConfig):
    name: str = "synthetic_accel"
    n_train: int = field(default=64, metadata={"min": 2})
    n_test: int = field(default=32, metadata={"min": 2})
    window_samples: int = field(default=64, metadata={"min": 16})


def synthetic_signals(n, T, seed):
    """SYNTHETIC accelerometer-like windows: class 0 'still' (noise), 1 'walking' (a periodic
    swing of random frequency and phase plus noise). Returns x (n, 1, T) float32, y (n,) int64."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.arange(T, dtype=torch.float32)
    freq = 2 + 3 * torch.rand(n, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g)
    swing = torch.sin(2 * math.pi * freq * t / T + phase) * y[:, None]
    x = swing + 0.3 * torch.randn(n, T, generator=g)
    return x[:, None, :], y


@register_dataset("accel", "synthetic_accel", options=SyntheticAccelOptions)
def load_synthetic_accel(options, seed=0, repeat=0):
    T = options.window_samples
    x, y = synthetic_signals(options.n_train, T, seed * 100 + repeat)
    xt, yt = synthetic_signals(options.n_test, T, 10_000 + seed)
    return DataBundle(pretrain=TensorDataset(x, torch.full_like(y, -1)), finetune=TensorDataset(x, y),
                      test=TensorDataset(xt, yt), class_names=["still", "walking"],
                      input_info={"window_samples": T},
                      description=f"SYNTHETIC accelerometer-like signals: {len(y)} train / "
                                  f"{len(yt)} test windows of {T} samples")
'''

RECIPE = """
run: {{name: accel_smoke, output_dir: {out}, seed: 0, device: cpu, log_every: 1, num_workers: 0}}
data: {{name: synthetic_accel, n_train: 64, n_test: 32, window_samples: 64}}
modality: {{name: accel, patch_samples: 8, num_patches: 12}}
model: {{size: custom, dim: 16, depth: 1, heads: 2}}
method: {{name: part, num_pairs: 16}}
pretrain: {{epochs: 1, batch_size: 32, lr: 1.0e-3}}
finetune: {{epochs: 1, batch_size: 32, lr: 1.0e-3}}
evaluate: {{batch_size: 64}}
"""


def _pip(*args, check=True):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           "--no-input", *args], capture_output=True, text=True, check=check,
                          timeout=180)


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _checkout_state():
    """What a run could change in this checkout: ``git status`` of tracked and untracked
    (not ignored) files, and the run folders the recipes use by default."""
    status = None
    if (ROOT / ".git").exists():
        status = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain",
                                 "--untracked-files=all"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    runs = sorted(str(p.relative_to(ROOT)) for d in ("runs", "demo_runs") if (ROOT / d).exists()
                  for p in (ROOT / d).rglob("*"))
    return status, runs


@pytest.fixture
def accel_plugin(tmp_path, request):
    """The plugin package written to tmp_path/plugin and pip-installed (editable) for the test."""
    src = tmp_path / "plugin"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / f"{MODULE}.py").write_text(textwrap.dedent(PLUGIN))
    if _installed():  # left over by a killed earlier run
        _pip("uninstall", "-y", DIST, check=False)
    request.addfinalizer(lambda: _pip("uninstall", "-y", DIST, check=False))
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(src),
                  check=False)
    assert result.returncode == 0, f"pip install -e failed:\n{result.stdout}\n{result.stderr}"
    return src


def test_external_plugin_trains_through_the_cli(accel_plugin, tmp_path):
    before = _checkout_state()
    recipe = tmp_path / "accel.yaml"
    out = tmp_path / "runs"
    recipe.write_text(RECIPE.format(out=out))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # the plugin is found through its installed entry point only
    code = ("from part.registry import available_modalities, available_datasets; "
            "print(available_modalities(), available_datasets('accel'))")
    listed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert "'accel'" in listed.stdout and "['synthetic_accel']" in listed.stdout, listed
    proc = subprocess.run([sys.executable, "-m", "part.train", str(recipe)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    run_dir = out / "accel_smoke"
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert isinstance(report["kappa"], float) and -1.0 <= report["kappa"] <= 1.0, report["kappa"]
    assert report["class_names"] == ["still", "walking"]
    assert "SYNTHETIC" in report["context"]["data"]
    assert (run_dir / "checkpoints" / "pretrain.pt").exists()
    assert (run_dir / "config.yaml").exists() and (run_dir / "metrics.jsonl").exists()
    assert _checkout_state() == before, "running the plugin changed files of the checkout"
