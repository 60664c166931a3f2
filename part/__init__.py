"""PART toolkit: self-supervised pretraining by pairwise relative translations.

PART is the method of M. Ayoughi, S. Abnar, C. Huang, C. Sandino, S. Lala, E. G. Dhekane,
D. Busbridge, S. Zhai, V. Thilak, J. Susskind, P. Mettes, P. Groth and H. Goh, "How PARTs assemble
into wholes: Learning the relative composition of images", arXiv:2506.03682 (2025; prepared for
Computer Vision and Image Understanding; NLDL 2026).

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
- ``Stager``: the EEG plugin's sleep stager (``part.modalities.eeg.Stager``), an alias kept in the
  namespace's front door; the core subpackages (``part.core``, ``part.training``, ``part.config``,
  ``part.evaluation``) never import a plugin.

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
    "Options": "part.config.options",
    "ConfigError": "part.errors",
    "DataError": "part.errors",
    "Stager": "part.modalities.eeg.sleep.staging",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'part' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
