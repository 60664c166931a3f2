"""The plugin registry (``part.registry``): lookups, discovery through entry points and its
errors, the core/plugin boundary, and every registered method on every registered modality."""
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import part.registry as registry
from part.core.backbone import ViTEncoder
from part.errors import ConfigError
from part.registry import (available_datasets, available_methods, available_modalities,
                           build_method, dataset_spec, get_method, get_modality, method_spec,
                           modality_spec, register_dataset, register_method, register_modality)
from part.testing import check_method, check_modality, contract_cases

PART_DIR = Path(__file__).resolve().parents[2] / "part"


# ----------------------------------------------------------------------------- unknown names

@pytest.mark.parametrize("lookup,kind,listed", [
    (modality_spec, "modality", available_modalities),
    (method_spec, "method", available_methods)])
def test_unknown_names_list_the_registered_ones(lookup, kind, listed):
    with pytest.raises(KeyError) as info:
        lookup("no_such_plugin")
    message = str(info.value)
    assert f"unknown {kind} 'no_such_plugin'" in message
    assert listed() and f"registered: {', '.join(listed())}" in message
    assert "entry points" in message


def test_unknown_dataset_lists_the_datasets_of_its_modality():
    modality = available_modalities()[0]
    with pytest.raises(KeyError) as info:
        dataset_spec(modality, "no_such_plugin")
    message = str(info.value)
    assert f"unknown dataset 'no_such_plugin' of modality {modality!r}" in message
    assert f"registered: {', '.join(available_datasets(modality)) or 'none registered'}" in message


# ----------------------------------------------------------------------------- discovery errors

class FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields, with the distribution that declared it."""

    def __init__(self, name, value, group, dist=None):
        self.name, self.value, self.group = name, value, group
        self.dist = SimpleNamespace(name=dist) if dist else None

    def load(self):
        import importlib
        return importlib.import_module(self.value)


def _discover_only(monkeypatch, *eps):
    """Make plugin discovery see only ``eps`` (the real registry is restored afterwards)."""
    registry.load_plugins()  # the real plugins are in; monkeypatch restores _loaded = True
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [ep for ep in eps if ep.group == group])


def test_plugin_that_fails_to_import_names_its_package_and_error(monkeypatch):
    _discover_only(monkeypatch, FakeEntryPoint("accel", "part_missing_plugin_xyz.plugin",
                                               "part.modalities", dist="part-accel-broken"))
    with pytest.raises(ConfigError) as info:
        available_modalities()
    message = str(info.value)
    assert "'accel'" in message and "'part.modalities'" in message
    assert "package 'part-accel-broken'" in message
    assert "ModuleNotFoundError: No module named 'part_missing_plugin_xyz'" in message
    assert "Fix or uninstall that package" in message
    assert registry._loaded is False  # the next lookup tries again


def test_plugin_raising_on_import_without_distribution(monkeypatch, tmp_path):
    (tmp_path / "part_raising_plugin.py").write_text("raise RuntimeError('boom: bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from importlib.metadata import EntryPoint
    _discover_only(monkeypatch, EntryPoint("raising", "part_raising_plugin", "part.methods"))
    with pytest.raises(ConfigError, match=r"'raising' \(entry point group 'part.methods', "
                                          r"part_raising_plugin\) from module part_raising_plugin "
                                          r"failed to import: RuntimeError: boom: bad config"):
        available_methods()


def test_a_plugin_found_through_an_entry_point_registers(monkeypatch, tmp_path):
    (tmp_path / "part_good_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "from part.config.options import Options\n"
        "from part.registry import register_method\n"
        "@dataclass\n"
        "class GoodOptions(Options):\n"
        "    name: str = 'good'\n"
        "register_method('good', options=GoodOptions, build=None, pretrains=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    _discover_only(monkeypatch, FakeEntryPoint("good", "part_good_plugin", "part.methods"))
    assert "good" in available_methods()
    assert get_method("good").source == "part_good_plugin"
    monkeypatch.delitem(__import__("sys").modules, "part_good_plugin")


# ----------------------------------------------------------------------------- duplicates

def _class_in(module: str, name: str = "Plugin"):
    return type(name, (), {"__module__": module})


def test_two_plugins_registering_one_name_is_an_error_naming_both(monkeypatch):
    monkeypatch.setattr(registry, "_MODALITIES", dict(registry._MODALITIES))
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    options = type("Opts", (), {})
    register_modality("dup_modality", options=options)(_class_in("plugin_one.modality"))
    with pytest.raises(ConfigError) as info:
        register_modality("dup_modality", options=options)(_class_in("plugin_two.modality"))
    message = str(info.value)
    assert "two plugins register the modality 'dup_modality'" in message
    assert "module plugin_one.modality" in message and "module plugin_two.modality" in message
    # clashing with a built-in names the distribution that ships it
    builtin = next(n for n in available_modalities() if modality_spec(n).source.startswith("part.modalities."))
    with pytest.raises(ConfigError) as info:
        register_modality(builtin, options=options)(_class_in("other_images.modality"))
    assert f"package 'part-toolkit' (module {modality_spec(builtin).source})" in str(info.value)
    assert "module other_images.modality" in str(info.value)
    builder = _class_in("plugin_three.method")
    with pytest.raises(ConfigError) as info:
        register_method("part", options=options)(builder)
    assert ("method 'part': package 'part-toolkit' (module part.core.methods.part) and module "
            "plugin_three.method") in str(info.value)

    def load(options, seed, repeat):
        return None
    load.__module__ = "plugin_four.data"
    register_dataset("dup_modality", "dup_data", options=options)(load)
    other = _class_in("plugin_five.data")
    with pytest.raises(ConfigError) as info:
        register_dataset("dup_modality", "dup_data", options=options)(other)
    assert ("two plugins register the dataset 'dup_data' of modality 'dup_modality': module "
            "plugin_four.data and module plugin_five.data") in str(info.value)
    # the same module registering again (a re-import) is not a clash
    again = _class_in("plugin_one.modality")
    register_modality("dup_modality", options=options)(again)
    assert modality_spec("dup_modality").cls is again


def _data(module):
    def load(options, seed=0, repeat=0):
        return module
    load.__module__ = module
    return load


def test_datasets_are_registered_per_modality(monkeypatch):
    """Two modalities may each have a dataset of one name; lookups take (modality, name); the
    old one-argument lookup warns (FutureWarning) and refuses an ambiguous name; recipes pick
    the dataset of their modality."""
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    opts_a = type("OptsA", (), {})
    opts_b = type("OptsB", (), {})
    register_dataset("mod_a", "shared", options=opts_a)(_data("plugin_a.data"))
    register_dataset("mod_b", "shared", options=opts_b)(_data("plugin_b.data"))
    register_dataset("mod_b", "only_b", options=opts_b)(_data("plugin_b.data"))
    assert dataset_spec("mod_a", "shared").load({}) == "plugin_a.data"
    assert dataset_spec("mod_b", "shared").options is opts_b
    assert {"shared", "only_b"} == set(available_datasets("mod_b")) and available_datasets("mod_a") == ["shared"]
    assert registry.dataset_modalities("shared") == ["mod_a", "mod_b"]
    with pytest.warns(FutureWarning, match=r"dataset_spec\(name\) is deprecated and will be removed in part "
                                           r"0.3: .*call dataset_spec\(modality, name\)"):
        assert dataset_spec("only_b").modality == "mod_b"
    with pytest.warns(FutureWarning), pytest.raises(KeyError, match="'shared' is registered by several "
                                                                    "modalities \\('mod_a', 'mod_b'\\)"):
        dataset_spec("shared")
    with pytest.raises(KeyError, match="unknown dataset 'only_b' of modality 'mod_a'; registered: shared; "
                                       "'only_b' is a dataset of 'mod_b'"):
        dataset_spec("mod_a", "only_b")
    resolve = registry.resolvers()["dataset"]
    assert resolve("shared", "mod_a") is opts_a and resolve("shared", "mod_b") is opts_b
    assert resolve("only_b") is opts_b and resolve("only_b", "mod_a") is opts_b  # mismatch: Recipe.check
    with pytest.raises(ValueError, match="the modality must be a non-empty string"):
        register_dataset("", "x", options=opts_a)


def test_register_rejects_bad_examples():
    with pytest.raises(ValueError, match=r"register_modality\('m', example=...\): expected a dict with the "
                                         r"keys \['input_shape', 'options'\], got \{'options': \{\}\}"):
        register_modality("m", options=object, example={"options": {}})
    with pytest.raises(ValueError, match="expected a dict of options keywords, got 3"):
        register_method("m", options=object, example=3)


def test_register_rejects_empty_names():
    with pytest.raises(ValueError, match="non-empty string"):
        register_modality("", options=object)(_class_in("x"))


# ----------------------------------------------------------------------------- boundary

IMPORT_OF_PLUGIN = re.compile(r"^\s*(from|import)\s+((part\.)?(modalities|data_prep))\b", re.M)
IMPORTED_NAME = re.compile(r"^\s*from\s+part\s+import\s+[^\n]*\b(modalities|data_prep)\b", re.M)


def test_core_never_imports_plugins_or_data_prep():
    """Nothing under part/ imports ``modalities`` / ``data_prep``, installed as ``part.modalities``
    and ``part.data_prep`` (not even lazily inside a function): the core (part/core, training,
    config, evaluation, the registry, the CLIs and the namespace's __init__) finds plugins through
    entry points only."""
    files = sorted(p for p in PART_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 20 and {"core", "training", "config", "evaluation"} <= {p.parent.name for p in files}
    offenders = [f"{p.relative_to(PART_DIR.parent)}:{text.count(chr(10), 0, m.start()) + 1}: "
                 f"{m.group(0).strip()}"
                 for p in files for text in [p.read_text()]
                 for pattern in (IMPORT_OF_PLUGIN, IMPORTED_NAME) for m in pattern.finditer(text)]
    assert not offenders, offenders


def test_the_boundary_check_catches_namespaced_imports():
    for line in ("from part.modalities.eeg import Stager", "    import part.data_prep.prepare",
                 "from modalities.eeg.modality import EEGModality", "from part import modalities"):
        assert IMPORT_OF_PLUGIN.search(line) or IMPORTED_NAME.search(line), line
    assert not IMPORT_OF_PLUGIN.search("from part.registry import available_modalities")


# ----------------------------------------------------------------------------- the contract, per plugin

# The parametrisation comes from the registry at collection: every installed plugin, with the
# tiny settings it declared when it registered (``example=``). This file names no plugin.
MODALITY_CASES = contract_cases()
METHODS = available_methods()
PAIRS = [(method, modality) for method in METHODS for modality, _ in MODALITY_CASES]


def _checked(call, *sources):
    """``call()``. When it raises and a plugin involved (``sources``: the registering modules) is
    not shipped with the toolkit, the test is skipped naming it and the error: an installed
    third-party plugin never fails this suite (its own contract test reports it)."""
    try:
        return call()
    except Exception as exc:
        others = [s for s in sources if not s.startswith("part.")]
        if not others:
            raise
        pytest.skip(f"third-party plugin ({', '.join(others)}) fails the contract: {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())}; run its own tests")


@pytest.mark.parametrize("modality_name,example", MODALITY_CASES, ids=[n for n, _ in MODALITY_CASES])
def test_every_installed_modality_keeps_the_contract(modality_name, example):
    """Shapes, geometry inside the input, targets against place, the grid and determinism
    (``part.testing.check_modality``; the methods are trained per pair below)."""
    if example is None:
        pytest.skip(f"modality {modality_name!r} declares no example settings (register_modality(..., example=...))")
    result = _checked(lambda: check_modality(modality_name, methods=[]), modality_spec(modality_name).source)
    assert result.name == modality_name and result.trained == []


@pytest.mark.parametrize("method_name,modality_name", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_every_installed_method_on_every_installed_modality(method_name, modality_name):
    """``part.testing.check_method`` on one modality: a few steps (finite losses, gradients at the
    tokenizer, the classifier on top). A method refused on the modality, or without pretraining,
    is refused by ``build_method`` in one clear line."""
    spec, example = get_method(method_name), dict(MODALITY_CASES)[modality_name]
    if example is None:
        pytest.skip(f"modality {modality_name!r} declares no example settings")
    m = get_modality(modality_name, **example["options"])
    refusal = spec.check_modality(modality_name)
    if not spec.pretrains or refusal:  # e.g. a method of one field on another's data
        assert refusal is None or ("\n" not in refusal and f"not on {modality_name!r}" in refusal), refusal
        match = "no pretraining stage" if not spec.pretrains else f"method '{method_name}' works on the modalit"
        with pytest.raises(ConfigError, match=match):
            build_method(method_name, m, ViTEncoder(32, 1, 4), m.tokenizer(32), spec.options(**(spec.example or {})))
        return
    if spec.example is None:
        pytest.skip(f"method {method_name!r} declares no example options (register_method(..., example=...))")
    result = _checked(lambda: check_method(method_name, modalities=[modality_name]), spec.source,
                      modality_spec(modality_name).source)
    assert result.trained == [modality_name] and result.skipped == {}


def test_a_failing_third_party_plugin_is_skipped_and_a_built_in_fails():
    def broken():
        raise AssertionError("modality 'x': determinism: differs")
    with pytest.raises(pytest.skip.Exception, match=r"third-party plugin \(their_plugin.modality\) fails the "
                                                    r"contract: AssertionError: modality 'x': determinism"):
        _checked(broken, "part.core.methods.part", "their_plugin.modality")
    with pytest.raises(AssertionError, match="determinism"):
        _checked(broken, "part.core.methods.part", "part.modalities.something")


def test_the_contract_covers_every_registered_plugin():
    """The parametrisation above equals the registry now: a new plugin cannot slip past it."""
    assert [n for n, _ in MODALITY_CASES] == available_modalities()
    assert METHODS == available_methods() and len(PAIRS) == len(METHODS) * len(MODALITY_CASES)


def test_a_recipe_reads_the_dataset_of_its_modality(monkeypatch):
    """With one dataset name in two modalities, a recipe gets the options of its modality's
    dataset; a dataset of another modality is refused naming both."""
    from dataclasses import dataclass, field

    from part.config.options import Options
    from part.config.schema import DataConfig
    from part.config.validation import recipe_from_dict

    monkeypatch.setattr(registry, "_MODALITIES", dict(registry._MODALITIES))
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    for mod in ("mod_a", "mod_b"):
        opts = dataclass(type(f"{mod}_options", (Options,), {"__annotations__": {"name": str},
                                                              "name": mod, "section": "modality"}))
        register_modality(mod, options=opts)(_class_in(f"plugin_{mod}.modality"))
        data = dataclass(type(f"{mod}_data", (DataConfig,), {"__annotations__": {"name": str, mod: int},
                                                              "name": "shared", mod: field(default=1)}))
        register_dataset(mod, "shared", options=data)(_data(f"plugin_{mod}.data"))
    register_dataset("mod_b", "only_b", options=data)(_data("plugin_mod_b.data"))
    recipe = recipe_from_dict({"data": {"name": "shared", "mod_b": 3}, "modality": {"name": "mod_b"}})
    assert type(recipe.data).__name__ == "mod_b_data" and recipe.data.mod_b == 3
    with pytest.raises(ConfigError, match="unknown key 'data.mod_b'"):
        recipe_from_dict({"data": {"name": "shared", "mod_b": 3}, "modality": {"name": "mod_a"}})
    with pytest.raises(ConfigError, match="'modality.name' = 'mod_a' does not fit data.name='only_b', a dataset "
                                          "of modality 'mod_b'; set modality.name=mod_b or pick a dataset of 'mod_a'"):
        recipe_from_dict({"data": {"name": "only_b"}, "modality": {"name": "mod_a"}})
