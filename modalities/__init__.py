"""The built-in modality plugins (``image``, ``eeg``). They register themselves in ``part.registry``
when imported; the core finds them through the ``part.modalities`` entry points in setup.cfg.

``get_modality`` and ``available_modalities`` are thin aliases of the registry's.
"""
from part.registry import available_modalities, get_modality

__all__ = ["get_modality", "available_modalities"]
