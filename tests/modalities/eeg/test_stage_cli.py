"""Where staging lives: ``Stager`` and the ``part-stage`` command line are the EEG plugin's,
imported from ``part.modalities.eeg``; ``part.Stager`` and ``python -m part.stage`` are aliases of
them in the namespace's front door, and ``import part`` still imports neither torch nor a plugin."""
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import part

ROOT = Path(__file__).resolve().parents[3]


def test_stager_lives_in_the_eeg_plugin_and_part_stager_is_an_alias():
    from part.modalities.eeg import Hypnogram, Stager
    from part.modalities.eeg.sleep.hypnogram import Hypnogram as hypnogram_class
    from part.modalities.eeg.sleep.staging import Stager as stager_class
    assert Stager is stager_class and Hypnogram is hypnogram_class and part.Stager is Stager
    assert "Stager" in part.__all__ and "Stager" in dir(part)
    namespace = {}
    exec("from part import Stager", namespace)
    assert namespace["Stager"] is Stager
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        part.modalities.eeg.Nothing  # noqa: B018


def test_part_stage_points_at_the_plugins_command_line():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["part-stage"] == "part.modalities.eeg.sleep.cli:main"
    import part.registry as registry
    assert not hasattr(registry, "register_tool") and not hasattr(registry, "get_tool")


def test_import_part_stays_cheap_and_core_imports_no_plugin():
    code = ("import sys, part, part.stage; assert 'torch' not in sys.modules; "
            "assert not any(m.startswith('part.modalities') for m in sys.modules), 'plugin imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_hypnogram_takes_several_files_or_the_repeated_flag(capsys):
    """``--hypnogram A B`` (as in the help: one per RECORDING) and ``--hypnogram A --hypnogram B``
    give the same list; a count that does not match the recordings stays a usage error (exit 2)."""
    from part.modalities.eeg.sleep.cli import _check_usage, build_parser
    p = build_parser("part-stage")
    both = p.parse_args(["RUN", "a.edf", "b.edf", "--out", "o", "--hypnogram", "ha.edf", "hb.edf"])
    repeated = p.parse_args(["RUN", "a.edf", "b.edf", "--hypnogram", "ha.edf", "--out", "o", "--hypnogram", "hb.edf"])
    assert both.hypnogram == repeated.hypnogram == [Path("ha.edf"), Path("hb.edf")]
    assert both.recordings == [Path("a.edf"), Path("b.edf")] and [n.name for n in _check_usage(p, both)] == ["a", "b"]
    swallowed = p.parse_args(["RUN", "a.edf", "--hypnogram", "ha.edf", "b.edf", "--out", "o"])
    with pytest.raises(SystemExit) as info:
        _check_usage(p, swallowed)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--hypnogram given 2 file(s) for 1 recording(s); give one per RECORDING" in err
    assert "put the recordings before it" in err
