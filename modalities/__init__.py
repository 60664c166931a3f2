"""Registry of modality plugins, looked up by name: `get_modality("image", **options)`.

Plugins are imported lazily on first use, so `part/` depends on this registry only, never on a
concrete modality, and modalities never import each other.
"""
from __future__ import annotations

import importlib

_PLUGINS = {"image": "modalities.image", "eeg": "modalities.eeg"}


def _module(name: str):
    if name not in _PLUGINS:
        raise KeyError(f"unknown modality {name!r}; valid: {', '.join(sorted(_PLUGINS))}")
    return importlib.import_module(_PLUGINS[name])


def modality_options(name: str):
    """The options dataclass of modality `name` (the recipe's `modality` section)."""
    return _module(name).OPTIONS


def get_modality(name: str, **options):
    """Instantiate modality `name` with keyword options (see its OPTIONS dataclass)."""
    return _module(name).build(**options)


def load_data(name: str, data_cfg, seed: int = 0, repeat: int = 0):
    """The plugin's datasets for the recipe's `data` section: a `part.modality.DataBundle`.
    `repeat` k > 0 asks for the k-th alternative draw of the finetuning subset (label efficiency)."""
    return _module(name).load_data(data_cfg, seed, repeat)


def available_modalities() -> list:
    return sorted(_PLUGINS)
