"""The plugin registry (``part.registry``): lookups, discovery through entry points and its
errors, the core/plugin boundary, and every registered method on every registered modality."""
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import part.registry as registry
from part.core.backbone import ViTEncoder
from part.core.classifier import PatchClassifier
from part.errors import ConfigError
from part.registry import (available_datasets, available_methods, available_modalities,
                           build_method, dataset_spec, get_method, get_modality, method_spec,
                           modality_spec, register_dataset, register_method, register_modality)

PART_DIR = Path(__file__).resolve().parents[2] / "part"


# ----------------------------------------------------------------------------- unknown names

@pytest.mark.parametrize("lookup,kind,listed", [
    (modality_spec, "modality", available_modalities),
    (method_spec, "method", available_methods),
    (dataset_spec, "dataset", available_datasets)])
def test_unknown_names_list_the_registered_ones(lookup, kind, listed):
    with pytest.raises(KeyError) as info:
        lookup("no_such_plugin")
    message = str(info.value)
    assert f"unknown {kind} 'no_such_plugin'" in message
    assert listed() and f"registered: {', '.join(listed())}" in message
    assert "entry points" in message


def test_get_modality_and_get_method_by_name():
    assert {"image", "eeg"} <= set(available_modalities())
    assert {"part", "part_grid", "mae", "mp3", "droppos", "supervised"} <= set(available_methods())
    assert set(available_datasets("eeg")) == {"pc18", "sleep_edf"} and "digits" in available_datasets("image")
    with pytest.raises(KeyError, match="registered: .*image"):
        get_modality("imag")
    with pytest.raises(KeyError, match="registered: .*part_grid"):
        get_method("prat")


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
    with pytest.raises(ConfigError) as info:
        register_modality("image", options=options)(_class_in("other_images.modality"))
    assert f"package 'part-toolkit' (module {modality_spec('image').source})" in str(info.value)
    assert "module other_images.modality" in str(info.value)
    builder = _class_in("plugin_three.method")
    with pytest.raises(ConfigError) as info:
        register_method("part", options=options)(builder)
    assert ("method 'part': package 'part-toolkit' (module part.core.methods.part) and module "
            "plugin_three.method") in str(info.value)

    def load(options, seed, repeat):
        return None
    load.__module__ = "plugin_four.data"
    with pytest.raises(ConfigError) as info:
        register_dataset("eeg", "pc18", options=options)(load)
    assert (f"dataset 'pc18': package 'part-toolkit' (module {dataset_spec('pc18').source}) and "
            f"module plugin_four.data") in str(info.value)
    # the same module registering again (a re-import) is not a clash
    again = _class_in("plugin_one.modality")
    register_modality("dup_modality", options=options)(again)
    assert modality_spec("dup_modality").cls is again


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


# ----------------------------------------------------------------------------- the full matrix

# Tiny settings per registered plugin; a new plugin must add its own here (checked below).
TINY_MODALITIES = {
    "image": (dict(image_size=8, channels=1, patch_size=2), (2, 1, 8, 8)),
    "eeg": (dict(channels=2, window_samples=240, patch_samples=8, num_patches=12), (2, 2, 240)),
}
TINY_METHODS = {
    "part": dict(num_pairs=16),
    "part_grid": dict(num_pairs=16),
    "mae": dict(decoder_dim=16, decoder_depth=1, decoder_heads=2),
    "mp3": dict(),
    "droppos": dict(decoder_dim=16, decoder_depth=1, decoder_heads=2),
    "supervised": dict(),
    "relative_positioning": dict(tau_pos_s=60.0, tau_neg_s=600.0),
    "temporal_shuffling": dict(tau_pos_s=60.0, tau_neg_s=600.0),
    "cpc": dict(context_windows=2, predicted_windows=1, context_dim=8),
}
MODALITIES = available_modalities()  # the parametrisation, from the registry at collection
METHODS = available_methods()


def _tiny(modality_name, method_name):
    if modality_name not in TINY_MODALITIES:
        pytest.fail(f"registered modality {modality_name!r} has no tiny settings in TINY_MODALITIES")
    if method_name not in TINY_METHODS:
        pytest.fail(f"registered method {method_name!r} has no tiny options in TINY_METHODS")
    options, shape = TINY_MODALITIES[modality_name]
    return get_modality(modality_name, **options), torch.randn(*shape), \
        get_method(method_name).options(**TINY_METHODS[method_name])


@pytest.mark.parametrize("modality_name", MODALITIES)
@pytest.mark.parametrize("method_name", METHODS)
def test_every_method_on_every_modality(method_name, modality_name):
    """Build the method on the modality with a tiny encoder; one forward/backward of its
    pretext loss (methods without pretraining: ``build_method`` refuses), then one of the
    finetuning classifier on the pretrained encoder."""
    torch.manual_seed(0)
    modality, x, options = _tiny(modality_name, method_name)
    encoder = ViTEncoder(32, 1, 4)
    tokenizer = modality.tokenizer(32)
    spec = get_method(method_name)
    refusal = spec.check_modality(modality_name)
    if refusal:  # e.g. the EEG field's temporal-context methods on images: one clear line
        assert "\n" not in refusal and f"not on {modality_name!r}" in refusal
        with pytest.raises(ConfigError, match=f"method '{method_name}' works on the modalit"):
            build_method(method_name, modality, encoder, tokenizer, options)
    elif spec.pretrains:
        model = build_method(method_name, modality, encoder, tokenizer, options)
        if spec.pretrain_data is None:
            out = model(x)
        else:  # samples of k windows (B, k, C, L) and a target per sample
            k = model.windows
            out = model(x.unsqueeze(1).expand(-1, k, *x.shape[1:]) + 0.1 * torch.randn(x.shape[0], k, *x.shape[1:]),
                        torch.tensor([1.0, 0.0]))
        assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item()), out
        out["loss"].backward()
        assert tokenizer.weight.grad is not None and tokenizer.weight.grad.abs().sum() > 0
        assert encoder.blocks[0].attn.qkv.weight.grad is not None
    else:
        with pytest.raises(ConfigError, match="no pretraining stage"):
            build_method(method_name, modality, encoder, tokenizer, options)
    classifier = PatchClassifier(modality, tokenizer, encoder, num_classes=3)
    logits = classifier(x)
    assert logits.shape == (x.shape[0], 3)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    assert classifier.head.weight.grad is not None


def test_matrix_covers_every_registered_plugin():
    """The parametrisation above equals the registry now, and every registered plugin has tiny
    settings: a new modality or method cannot slip past the matrix."""
    assert MODALITIES == available_modalities()
    assert METHODS == available_methods()
    assert sorted(TINY_MODALITIES) == available_modalities(), \
        "add tiny settings for every registered modality to TINY_MODALITIES"
    assert sorted(TINY_METHODS) == available_methods(), \
        "add tiny options for every registered method to TINY_METHODS"
