"""The plugin seam, end to end: a separate package adds a modality and a dataset with no edit
to this project; its own contract test passes, the toolkit's contract suite passes with it
installed, and ``python -m part.train`` runs a recipe that names them.

In a temporary folder the test writes a tiny package, ``part-test-accel-plugin``: the module
``part_test_accel`` is the 1-D modality ``accel`` of docs/architecture.md section 3.2, read from
that document's ``accel-plugin`` block (so the document shows the tested file whole; at most 60
lines), and ``part_test_accel_data`` the dataset ``synthetic_accel`` of SYNTHETIC signals (two
classes: still / walking). Its only links to PART are the entry points

    [project.entry-points."part.modalities"]
    accel = "part_test_accel"
    accel_data = "part_test_accel_data"

It is installed into this test's environment with ``python -m pip install --no-deps
--no-build-isolation --no-index -e DIR`` (real entry points, discovered by the registry as any
third-party plugin would be; no network needed) and uninstalled by a finalizer. Then the
plugin's own test (``part.testing.check_modality("accel")``) and the toolkit's contract tests
(tests/part/test_registry.py, unchanged) must pass with it installed, and ``python -m
part.train recipe.yaml`` (pretrain + finetune + evaluate, one epoch each, tiny sizes, run
directory in the temporary folder) must exit 0 and write ``report/report.json`` with a kappa,
``python -m part.export`` of that run must load into timm's VisionTransformer (from its sidecar)
with our logits, and no file of this checkout may change (``git status --porcelain``
before/after).
"""
import re
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
accel_data = "{MODULE}_data"

[tool.setuptools]
py-modules = ["{MODULE}", "{MODULE}_data"]
"""


def modality_file() -> str:
    """The plugin's modality module: docs/architecture.md's ``accel-plugin`` block, verbatim."""
    found = re.search(r"<!-- accel-plugin:start -->\s*```python\n(.*?)```\s*<!-- accel-plugin:end -->",
                      (ROOT / "docs" / "architecture.md").read_text(), re.S)
    assert found, "docs/architecture.md lost its 'accel-plugin' block"
    return found.group(1)


DATA = '''
"""The dataset ``synthetic_accel`` of the ``accel`` modality: SYNTHETIC signals."""
import math
from dataclasses import dataclass, field

import torch
from torch.utils.data import TensorDataset

from part.config.schema import DataConfig
from part.core.modality import DataBundle
from part.registry import register_dataset


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

PLUGIN_TEST = '''
from part.testing import check_modality


def test_accel_keeps_the_contract():
    result = check_modality("accel")
    assert "part" in result.trained, result
    print("CONTRACT", result.trained, result.skipped)
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


@pytest.fixture(scope="module")
def accel_plugin(tmp_path_factory, request):
    """The plugin package written to a temporary folder and pip-installed (editable) for this
    module's tests (uninstalled after them)."""
    src = tmp_path_factory.mktemp("plugin")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / f"{MODULE}.py").write_text(modality_file())
    (src / f"{MODULE}_data.py").write_text(textwrap.dedent(DATA))
    (src / "test_accel_contract.py").write_text(textwrap.dedent(PLUGIN_TEST))
    if _installed():  # left over by a killed earlier run
        _pip("uninstall", "-y", DIST, check=False)
    request.addfinalizer(lambda: _pip("uninstall", "-y", DIST, check=False))
    result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(src),
                  check=False)
    assert result.returncode == 0, f"pip install -e failed:\n{result.stdout}\n{result.stderr}"
    return src


def test_the_documented_modality_file_is_short():
    assert len(modality_file().splitlines()) <= 60


def _env():
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the plugin is found through its installed entry point only
    return env


def test_plugin_contract_and_the_core_suite_pass_with_the_plugin_installed(accel_plugin):
    """The plugin's own test (``part.testing``) passes; the toolkit's contract tests, unchanged,
    pass with the plugin installed and check it too (its example is declared at registration)."""
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          "test_accel_contract.py"], cwd=accel_plugin, env=_env(), capture_output=True,
                         text=True, timeout=300, check=False)
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-3000:]
    trained = re.search(r"CONTRACT (\[.*?\])", own.stdout)
    assert trained and "'part'" in trained.group(1) and "'mae'" in trained.group(1), own.stdout[-2000:]
    core = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "tests/part/test_registry.py", "tests/part/test_testing.py"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert core.returncode == 0, core.stdout[-4000:] + core.stderr[-2000:]
    assert "PASSED tests/part/test_registry.py::test_every_installed_modality_keeps_the_contract[accel]" \
        in core.stdout, core.stdout[-4000:]
    assert "PASSED tests/part/test_registry.py::test_every_installed_method_on_every_installed_modality[part-accel]" \
        in core.stdout, core.stdout[-4000:]
    assert "failed" not in core.stdout.splitlines()[-1], core.stdout[-2000:]


def test_external_plugin_trains_through_the_cli(accel_plugin, tmp_path):
    before = _checkout_state()
    recipe = tmp_path / "accel.yaml"
    out = tmp_path / "runs"
    recipe.write_text(RECIPE.format(out=out))
    env = _env()
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
    # part-export works for the plugin's modality too: a 1-D grid as timm images of one row
    export = subprocess.run([sys.executable, "-m", "part.export", str(run_dir), "--from", "finetuned"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert export.returncode == 0, export.stderr[-3000:]
    sidecar = json.loads((run_dir / "timm_finetuned.pth.json").read_text())
    assert sidecar["timm"]["kwargs"]["img_size"] == [1, 64] and sidecar["timm"]["kwargs"]["patch_size"] == [1, 8]
    assert sidecar["class_names"] == ["still", "walking"] and sidecar["modality"] == "accel"
    compare = subprocess.run([sys.executable, "-c", SAME_LOGITS, str(run_dir)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert compare.returncode == 0 and "same logits" in compare.stdout, compare.stderr[-3000:]
    assert _checkout_state() == before, "running the plugin changed files of the checkout"


SAME_LOGITS = """
import json, sys, torch
from pathlib import Path
from timm.models.vision_transformer import VisionTransformer
from part.inference import load_finetuned
run = Path(sys.argv[1])
side = json.loads((run / "timm_finetuned.pth.json").read_text())
model = VisionTransformer(**{k: tuple(v) if isinstance(v, list) else v for k, v in side["timm"]["kwargs"].items()})
model.load_state_dict(torch.load(run / "timm_finetuned.pth"), strict=True)
ours = load_finetuned(run, "finetuned.pt").model
x = torch.randn(3, 1, 64)
with torch.no_grad():
    torch.testing.assert_close(model.eval()(x.reshape(3, *side["input"]["shape"])), ours(x), atol=1e-5, rtol=1e-4)
print("same logits")
"""
