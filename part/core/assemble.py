"""A model built from its recipe sections, in one place: the modality (its options + the data's
input info), the encoder (the ``model`` section), the tokenizer, then the pretext method or the
finetuning classifier on top. The training stages, the pretext reload (``pretext.pt``) and
inference (model cards) all call these, so the construction order (modality, encoder, tokenizer,
head), and with it the weights a seed gives, is the same everywhere.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from part.core.backbone import build_encoder
from part.core.classifier import PatchClassifier
from part.registry import build_method, modality_spec


def build_modality(options: Any, input_info: Optional[Mapping] = None):
    """The registered modality ``options.name`` for this data (the options win over the info)."""
    return modality_spec(options.name).cls(options, **dict(input_info or {}))


def build_model_encoder(model: Any):
    """The encoder of a ``model`` section (``ModelConfig``: size, dim, depth, heads, ...)."""
    return build_encoder(model.size, model.dim, model.depth, model.heads, model.mlp_ratio, model.drop_path)


def build_pretext_method(recipe: Any, input_info: Optional[Mapping] = None, modality=None):
    """(method, modality, encoder): the recipe's pretext method on a new encoder and tokenizer
    (modality: built from ``recipe.modality`` and ``input_info`` unless given)."""
    modality = modality if modality is not None else build_modality(recipe.modality, input_info)
    encoder = build_model_encoder(recipe.model)
    method = build_method(recipe.method.name, modality, encoder, modality.tokenizer(encoder.dim), recipe.method)
    return method, modality, encoder


def build_classifier(modality_options: Any, model: Any, input_info: Optional[Mapping],
                     num_classes: int) -> PatchClassifier:
    """An untrained PatchClassifier: modality, encoder, tokenizer, position embedding and head."""
    modality = build_modality(modality_options, input_info)
    encoder = build_model_encoder(model)
    return PatchClassifier(modality, modality.tokenizer(encoder.dim), encoder, num_classes,
                           model.pos_embed_mask_ratio)
