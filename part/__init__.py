"""PART toolkit: self-supervised pretraining by pairwise relative translations.

PART: M. Ayoughi, S. Abnar, C. Huang, C. Sandino, S. Lala, E. G. Dhekane, D. Busbridge,
S. Zhai, V. Thilak, J. Susskind, P. Mettes, P. Groth, H. Goh. "How PARTs assemble into wholes:
Learning the relative composition of images." arXiv:2506.03682, 2025 (formatted for Computer
Vision and Image Understanding; published at NLDL 2026, PMLR 307).

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
- names plugins add through the entry-point group ``part.api`` (``name = module:attr``), e.g. the
  EEG plugin's ``Stager`` (``part.Stager`` is ``part.modalities.eeg.Stager``): this module names
  no plugin, and the core (``part.core``, ``part.training``, ``part.config``,
  ``part.evaluation``) never imports one.

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
    "Modality": "part.core.modality",
    "DataBundle": "part.core.modality",
    "BoxModality": "part.core.box_modality",
    "BoxOptions": "part.core.box_options",
    "Options": "part.config.options",
    "ConfigError": "part.errors",
    "DataError": "part.errors",
}
API_GROUP = "part.api"  # entry points: public names a plugin adds to this namespace ("module:attr")


def _plugin_exports() -> dict[str, str]:
    """{name: "module:attr"} of the ``part.api`` entry points of the installed plugins."""
    from importlib.metadata import entry_points
    return {ep.name: ep.value for ep in entry_points(group=API_GROUP)}


def __getattr__(name: str):
    if name == "__all__":  # computed on use: reading entry points is not paid by `import part`
        return [*_EXPORTS, *_plugin_exports()]
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        target = _plugin_exports().get(name) if not name.startswith("__") else None
        if target is None:
            raise AttributeError(f"module 'part' has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = getattr(import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_plugin_exports()))
