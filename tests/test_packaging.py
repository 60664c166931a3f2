"""One installed namespace: the repository folders ``part/``, ``modalities/`` and ``data_prep/``
install as ``part``, ``part.modalities`` and ``part.data_prep`` (setup.cfg ``package_dir``), the
explicit package list names every package, a built wheel holds nothing outside ``part/``, and
outside the checkout ``import modalities`` fails while ``import part.modalities.eeg`` works."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"part": "part", "part.modalities": "modalities", "part.data_prep": "data_prep"}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _listed(cfg, key: str) -> list[str]:
    return [line.strip() for line in cfg["options"][key].strip().splitlines() if line.strip()]


def test_package_dir_maps_the_three_folders_into_one_namespace():
    mapping = dict(line.split(" = ") for line in _listed(_setup_cfg(), "package_dir"))
    assert mapping == FOLDERS


def test_the_explicit_package_list_is_complete():
    """Every folder with an __init__.py under the three roots is listed, and nothing else."""
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    listed = set(_listed(_setup_cfg(), "packages"))
    assert found == listed, f"missing from setup.cfg: {sorted(found - listed)}; not packages: {sorted(listed - found)}"
    assert len(listed) == len(_listed(_setup_cfg(), "packages")), "a package is listed twice"


def test_installed_entry_points_name_the_namespace():
    plugins = {e.name: e.value for e in entry_points(group="part.modalities")}
    assert plugins["eeg"] == "part.modalities.eeg.plugin" and plugins["image"] == "part.modalities.image.plugin"
    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name.startswith("part-")}
    assert all(v.startswith("part.") for v in scripts.values()), scripts
    assert scripts["part-prepare-pc18"] == "part.data_prep.physionet2018:main"


def _outside(code: str, **env) -> subprocess.CompletedProcess:
    """``python -c code`` run from a folder outside the checkout (no repository on sys.path)."""
    return subprocess.run([sys.executable, "-c", code], cwd=Path("/"), capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_outside_the_checkout_only_the_namespace_imports():
    """With the editable install of this environment."""
    ok = _outside("import part.modalities.eeg, part.data_prep.prepare, part.modalities.image; print('ok')")
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr
    for top in ("modalities", "data_prep"):
        bad = _outside(f"import {top}")
        assert bad.returncode != 0 and f"No module named '{top}'" in bad.stderr


@pytest.mark.timeout(300)
def test_a_built_wheel_holds_one_namespace(tmp_path):
    """``pip wheel .`` (what ``pip install .`` installs): every file under part/ (plugins,
    data_prep, the shipped recipes), none at the top level; installed into a folder of its own it
    imports from anywhere as part.modalities / part.data_prep, and never as modalities."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "demo_data", "demo_runs", "runs", ".pytest_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=240)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("part_toolkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"part"}, tops
    for needed in ("part/modalities/eeg/recordings/signal.py", "part/modalities/eeg/sleep/hypnogram.py",
                   "part/data_prep/prepare.py", "part/data_prep/physionet2018.py", "part/recipes/eeg_sleep.yaml"):
        assert needed in names, needed
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    code = ("import part, part.modalities.eeg.recordings.signal as s, part.data_prep.prepare as p; "
            f"assert s.__file__.startswith({str(target)!r}) and p.__file__.startswith({str(target)!r}), s.__file__; "
            "print(part.__file__)")
    ok = _outside(code, PYTHONPATH=str(target))
    assert ok.returncode == 0 and ok.stdout.strip().startswith(str(target)), ok.stderr
    bad = _outside("import modalities", PYTHONPATH=str(target))
    assert bad.returncode != 0 and "No module named 'modalities'" in bad.stderr


@pytest.mark.parametrize("script", ["physionet2018.py", "psg.py", "sleep_edf.py", "cifar.py"])
def test_a_script_without_the_installed_toolkit_says_how_to_install(script):
    """``python data_prep/<script>`` needs the installed namespace (``-S``: no site-packages, as
    in an environment where the toolkit is not installed): one line saying what to do, exit 1."""
    result = subprocess.run([sys.executable, "-S", str(ROOT / "data_prep" / script), "--help"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1 and result.stdout == ""
    assert "No module named 'part" in result.stderr and "install the toolkit first" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_built_in_plugins_are_registered():
    """The built-in plugins (named here, outside the core's tests) are found and listed; unknown
    names list the registered ones."""
    from part.registry import available_datasets, available_methods, available_modalities, get_method, get_modality
    assert {"image", "eeg"} <= set(available_modalities())
    assert {"part", "part_grid", "mae", "mp3", "droppos", "supervised"} <= set(available_methods())
    assert set(available_datasets("eeg")) == {"pc18", "sleep_edf"} and "digits" in available_datasets("image")
    with pytest.raises(KeyError, match="registered: .*image"):
        get_modality("imag")
    with pytest.raises(KeyError, match="registered: .*part_grid"):
        get_method("prat")
    # every built-in plugin declares its example, so the core's contract tests never skip one
    from part.registry import method_spec, modality_spec
    shipped = [modality_spec(n) for n in available_modalities() if modality_spec(n).source.startswith("part.")]
    assert {s.name for s in shipped} >= {"image", "eeg"} and all(s.example for s in shipped)
    methods = [method_spec(n) for n in available_methods() if method_spec(n).source.startswith("part.")]
    assert len(methods) >= 9 and not [s.name for s in methods if s.example is None]
