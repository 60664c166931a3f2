"""The built-in modality plugins (``image``, ``eeg``), installed as ``part.modalities`` (the folder
is ``modalities/`` at the repository's top). Each registers itself in ``part.registry`` when its
``plugin`` module is imported; the core finds them through the ``part.modalities`` entry points
(setup.cfg) and never imports them.
"""
