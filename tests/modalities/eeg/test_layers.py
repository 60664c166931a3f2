"""The EEG plugin's layers: ``recordings/`` (what preparation and staging share) imports neither
torch nor the ``sleep/`` layer, neither in its source nor at run time; ``sleep/hypnogram.py`` (the
Hypnogram) needs no torch either; the data preparation imports no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

EEG = Path(__file__).resolve().parents[3] / "modalities" / "eeg"
RECORDINGS = sorted((EEG / "recordings").glob("*.py"))


def _imports(path: Path, package: str = "part.modalities.eeg.recordings") -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too); relative
    imports resolved against ``package``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names.add(module)
            if node.module is None:  # from . import x
                names.update(f"{module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_recordings_source_imports_no_torch_and_no_sleep(path):
    bad = {m for m in _imports(path) if m.split(".")[0] == "torch" or m.startswith("part.modalities.eeg.sleep")
           or m in ("part.modalities.eeg.modality", "part.modalities.eeg.datasets", "part.modalities.eeg.plugin")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_layer_check_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import torch\n    from part.modalities.eeg.sleep.hypnogram import Hypnogram\n"
                     "from ..sleep import staging\nfrom . import signal\n")
    assert {"torch", "part.modalities.eeg.sleep.hypnogram", "part.modalities.eeg.sleep",
            "part.modalities.eeg.recordings.signal"} <= _imports(probe)


def test_importing_recordings_and_the_hypnogram_loads_no_torch_nor_sklearn():
    modules = [f"part.modalities.eeg.recordings.{p.stem}" for p in RECORDINGS if p.stem != "__init__"]
    code = ("import sys; import " + ", ".join(modules) + "; "
            "import part.modalities.eeg.sleep.hypnogram, part.data_prep.prepare, part.data_prep.psg_sources; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn')); "
            "assert not bad, bad; "
            "sleep = [m for m in sys.modules if m.startswith('part.modalities.eeg.sleep.staging')]; "
            "assert not sleep, sleep")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) >= 9


def test_recordings_alone_loads_no_sleep_module():
    modules = [f"part.modalities.eeg.recordings.{p.stem}" for p in RECORDINGS if p.stem != "__init__"]
    code = ("import sys; import " + ", ".join(modules) + "; "
            "bad = sorted(m for m in sys.modules if m.startswith('part.modalities.eeg.sleep')); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
