"""Plugin tools (``register_tool`` / ``get_tool``), ``part.Stager`` resolved through them without
the core importing a plugin, and ``python -m part.stage`` when no plugin provides staging."""
import subprocess
import sys
from pathlib import Path

import pytest

import part
import part.registry as registry
from part.errors import ConfigError
from part.registry import available_tools, get_tool, register_tool

ROOT = Path(__file__).resolve().parents[2]


def test_stager_is_the_eeg_plugins_tool():
    assert {"stager", "stage_cli"} <= set(available_tools())
    from modalities.eeg.staging import Stager
    from modalities.eeg.staging_cli import main
    assert part.Stager is Stager and get_tool("stager") is Stager and get_tool("stage_cli") is main
    assert "Stager" in part.__all__ and "Stager" in dir(part)
    namespace = {}
    exec("from part import Stager", namespace)
    assert namespace["Stager"] is Stager


def test_tools_register_by_reference_or_as_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_TOOLS", dict(registry._TOOLS))
    register_tool("dumps_tool", "json:dumps")
    assert registry._TOOLS["dumps_tool"].target == "json:dumps"  # not imported until asked for
    import json
    assert get_tool("dumps_tool") is json.dumps

    @register_tool("double_tool")
    def double(x):
        return 2 * x
    assert get_tool("double_tool")(4) == 8
    with pytest.raises(ConfigError, match="two plugins register the tool 'double_tool'"):
        register_tool("double_tool", "other_plugin.tools:double")
    with pytest.raises(ValueError, match="'module:attr'"):
        register_tool("bad_tool", "no_colon")
    with pytest.raises(KeyError, match="unknown tool 'no_such_tool'; registered: .*stager"):
        get_tool("no_such_tool")


def test_without_a_staging_plugin(monkeypatch, capsys):
    monkeypatch.setattr(registry, "_TOOLS", {})
    monkeypatch.setattr(registry, "_loaded", True)  # discovery already ran and found none
    from part.stage import main
    assert main(["RUN", "night.edf", "--out", "OUT"]) == 2
    assert "no installed plugin provides staging" in capsys.readouterr().err
    monkeypatch.delitem(part.__dict__, "Stager", raising=False)
    with pytest.raises(AttributeError, match="plugin tool 'stager', which no installed plugin registers"):
        part.Stager  # noqa: B018


def test_import_part_stays_cheap_and_core_imports_no_plugin():
    code = ("import sys, part, part.stage; assert 'torch' not in sys.modules; "
            "assert not any(m.startswith('modalities') for m in sys.modules), 'plugin imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_hypnogram_takes_several_files_or_the_repeated_flag(capsys):
    """``--hypnogram A B`` (as in the help: one per RECORDING) and ``--hypnogram A --hypnogram B``
    give the same list; a count that does not match the recordings stays a usage error (exit 2)."""
    from modalities.eeg.staging_cli import _check_usage, build_parser
    p = build_parser("part-stage")
    both = p.parse_args(["RUN", "a.edf", "b.edf", "--out", "o", "--hypnogram", "ha.edf", "hb.edf"])
    repeated = p.parse_args(["RUN", "a.edf", "b.edf", "--hypnogram", "ha.edf", "--out", "o", "--hypnogram", "hb.edf"])
    assert both.hypnogram == repeated.hypnogram == [Path("ha.edf"), Path("hb.edf")]
    assert both.recordings == [Path("a.edf"), Path("b.edf")] and _check_usage(p, both) == ["a", "b"]
    swallowed = p.parse_args(["RUN", "a.edf", "--hypnogram", "ha.edf", "b.edf", "--out", "o"])
    with pytest.raises(SystemExit) as info:
        _check_usage(p, swallowed)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--hypnogram given 2 file(s) for 1 recording(s); give one per RECORDING" in err
    assert "put the recordings before it" in err
