"""The built-in pretext methods, one module each: ``part``, ``part_grid`` (paper Table 4),
``mae``, ``mp3``, ``droppos`` (grid baselines, helpers in ``common``) and ``supervised`` (no
pretraining). Each registers itself with ``part.registry.register_method``; the core finds them
through the ``part.methods`` entry points in setup.cfg.

A method is built as ``build(modality, encoder, tokenizer, options) -> nn.Module`` whose
forward(x) returns a dict with a scalar ``loss`` (plus optional extra scalars).
"""
