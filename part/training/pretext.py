"""The whole pretext model of a run: ``checkpoints/pretext.pt``, written at the end of pretraining.

``checkpoints/pretrain.pt`` keeps only the tokenizer and the encoder (what finetuning needs);
``pretext.pt`` keeps the method's full ``state_dict`` (its head, decoder, ... included) and what is
needed to rebuild it without the run's recipe: the method, modality and model sections as plain
dicts and the data's ``input_info``. Analyses (``python -m part.analyze``) and continued
pretraining read it. Keys:

    format            PRETEXT_FORMAT (1)
    state_dict        the method's state_dict (PART: encoder.*, tokenizer.*, head.*)
    method            the method's name; method_options its options as a plain dict
    modality          the modality's name; modality_options its options as a plain dict
    model             the recipe's model section as a plain dict
    input_info        the data's DataBundle.input_info (image_size, channels, window_samples, ...)

Only tensors, strings, numbers, lists and dicts: loads with ``weights_only=True``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from torch import nn

from part.config.loader import recipe_from_dict, recipe_to_dict
from part.errors import DataError
from part.training.checkpoint import load_checkpoint

PRETEXT_FILE = "pretext.pt"
PRETEXT_FORMAT = 1
PRETEXT_SINCE = "the toolkit version that added part.analyze (pretext format 1)"
_SECTIONS = ("method", "modality", "model")


def pretext_state(method: nn.Module, recipe: Any, input_info: Mapping) -> dict:
    """The content of ``pretext.pt`` for a trained pretext ``method`` of ``recipe``."""
    return {"format": PRETEXT_FORMAT, "state_dict": method.state_dict(),
            "method": recipe.method.name, "method_options": recipe_to_dict(recipe.method),
            "modality": recipe.modality.name, "modality_options": recipe_to_dict(recipe.modality),
            "model": recipe_to_dict(recipe.model), "input_info": recipe_to_dict(dict(input_info))}


def pretext_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints" / PRETEXT_FILE


def load_pretext(run_dir: str | Path) -> dict:
    """``pretext.pt`` of a run directory; a one-line DataError when the run has none."""
    path = pretext_path(run_dir)
    if not path.is_file():
        raise DataError(f"this run has no saved pretext model ({path}, written since "
                        f"{PRETEXT_SINCE}); rerun its pretrain stage, e.g. python -m part.train "
                        f"{Path(run_dir) / 'config.yaml'} run.name=<new name> run.stages=[pretrain]")
    state = load_checkpoint(path)
    missing = [k for k in ("state_dict", *_SECTIONS, "modality_options", "method_options")
               if k not in state]
    if missing:
        raise DataError(f"'{path}' is not a pretext checkpoint (no {', '.join(missing)}); rerun "
                        f"the run's pretrain stage")
    return state


def pretext_recipe(state: Mapping, recipe: Any) -> Any:
    """``recipe`` (the run's, for data and run sections) with the method, modality and model
    sections the pretext model was trained with (from ``state``), validated again."""
    tree = recipe_to_dict(recipe)
    tree.update(method=dict(state["method_options"]), modality=dict(state["modality_options"]),
                model=dict(state["model"]))
    return recipe_from_dict(tree, source="checkpoints/pretext.pt")


def build_pretext(state: Mapping, recipe: Any, input_info: Optional[Mapping] = None):
    """(method, modality) rebuilt from ``pretext.pt``'s ``state`` with its weights loaded.

    ``recipe``: the pretext recipe (``pretext_recipe``); ``input_info``: the data's (default:
    the one saved at pretraining)."""
    from part.core.assemble import build_pretext_method

    info = dict(state.get("input_info") or {}) if input_info is None else dict(input_info)
    method, modality, _ = build_pretext_method(recipe, info)
    method.load_state_dict(state["state_dict"])
    return method.eval(), modality
