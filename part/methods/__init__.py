"""Registry of pretext methods, looked up by the recipe's `method.name`.

Each method is one module exposing `OPTIONS` (its recipe-options dataclass, with a `name` field)
and `build(modality, encoder, tokenizer, options) -> nn.Module` whose forward(x) returns a dict
with a scalar `loss` (plus optional extra scalars). A method that does not pretrain (the
supervised baseline) exposes `PRETRAINS = False`.
"""
from __future__ import annotations

import importlib

_METHODS = {
    "part": "part.methods.part",
    "part_grid": "part.methods.part_grid",
    "mae": "part.methods.mae",
    "mp3": "part.methods.mp3",
    "droppos": "part.methods.droppos",
    "supervised": "part.methods.supervised",
}


def _module(name: str):
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; valid: {', '.join(_METHODS)}")
    try:
        return importlib.import_module(_METHODS[name])
    except ModuleNotFoundError as e:
        if e.name == _METHODS[name]:
            raise KeyError(f"method {name!r} is not available in this version") from e
        raise


def method_options(name: str):
    """The options dataclass of method `name` (the recipe's `method` section)."""
    return _module(name).OPTIONS


def build_method(name: str, modality, encoder, tokenizer, options):
    return _module(name).build(modality, encoder, tokenizer, options)


def method_pretrains(name: str) -> bool:
    return getattr(_module(name), "PRETRAINS", True)


def method_uses_position_embedding(name: str) -> bool:
    """Whether the method's pretraining uses position embeddings (for comparison tables)."""
    return getattr(_module(name), "POSITION_EMBEDDING", False)


def available_methods() -> list:
    return list(_METHODS)
