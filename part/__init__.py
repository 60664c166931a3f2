"""PART toolkit: self-supervised pretraining by pairwise relative translations (Ayoughi et al.).

The public API (``__all__``)::

    import part
    modality = part.get_modality("image", image_size=32, channels=3, patch_size=4)
    patches, geometry = modality.sample(x)               # off-grid patches and their boxes
    criterion = part.PARTLoss(dim=384, target_dim=2, num_pairs=256)
    loss = criterion(my_encoder(patches), geometry)      # PART on any encoder

- objective: ``PARTLoss`` (paper eq. 4 on any encoder's patch embeddings), ``PART`` (the full
  pretext model of the training pipeline), the relative heads ``CrossAttentionHead``,
  ``PairwiseMLPHead``, ``MLPHead``, ``sample_pairs``, ``relative_targets``, ``ViTEncoder``;
- plugins: ``get_modality``, ``get_method``, ``register_modality``, ``register_method``,
  ``register_dataset``, ``available_modalities``, ``available_methods``, ``available_datasets``,
  and the plugin interface ``Modality``, ``DataBundle``, ``Options``;
- tools of plugins (``register_tool``, ``get_tool``, ``available_tools``): ``Stager`` (sleep
  staging of recordings with a finetuned EEG run; the EEG plugin's tool ``stager``).

Names are imported on first use, so ``import part`` (and ``import part.registry``) stays cheap
and does not import torch. The training CLI is ``python -m part.train``; see
docs/architecture.md for the layers and contracts.
"""
from __future__ import annotations

from importlib import import_module

from importlib.metadata import PackageNotFoundError, version as _version

try:  # the installed distribution's version; setup.cfg's when running from a bare checkout
    __version__ = _version("part-toolkit")
except PackageNotFoundError:
    __version__ = "0.1.0"
del PackageNotFoundError, _version

# public name -> module that defines it (imported lazily by __getattr__)
_EXPORTS = {
    "PART": "part.core.methods.part",
    "PARTLoss": "part.core.loss",
    "CrossAttentionHead": "part.core.heads",
    "PairwiseMLPHead": "part.core.heads",
    "MLPHead": "part.core.heads",
    "build_head": "part.core.heads",
    "sample_pairs": "part.core.pairs",
    "relative_targets": "part.core.geometry",
    "ViTEncoder": "part.core.backbone",
    "get_modality": "part.registry",
    "get_method": "part.registry",
    "build_method": "part.registry",
    "register_modality": "part.registry",
    "register_method": "part.registry",
    "register_dataset": "part.registry",
    "available_modalities": "part.registry",
    "available_methods": "part.registry",
    "available_datasets": "part.registry",
    "register_tool": "part.registry",
    "get_tool": "part.registry",
    "available_tools": "part.registry",
    "Modality": "part.core.modality",
    "DataBundle": "part.core.modality",
    "Options": "part.config.options",
    "ConfigError": "part.errors",
    "DataError": "part.errors",
}

# public name -> the plugin tool it is (resolved through the registry: the core never imports
# a plugin)
_TOOL_EXPORTS = {"Stager": "stager"}

__all__ = list(_EXPORTS) + list(_TOOL_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if name in _TOOL_EXPORTS:
        value = _tool(name)
    elif module is None:
        raise AttributeError(f"module 'part' has no attribute {name!r}")
    else:
        value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def _tool(name: str):
    from part.registry import get_tool
    try:
        return get_tool(_TOOL_EXPORTS[name])
    except KeyError:
        raise AttributeError(f"part.{name} is the plugin tool '{_TOOL_EXPORTS[name]}', which no installed "
                             f"plugin registers (the EEG plugin, modalities.eeg.plugin, does: reinstall the "
                             f"toolkit with `pip install -e .`)") from None


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_TOOL_EXPORTS))
