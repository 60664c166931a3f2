"""Self-describing finetuned checkpoints, and a finetuned model loaded from its run directory.

The finetune stage writes ``checkpoints/finetuned*.pt`` and ``best.pt`` as ``{"model": state
dict, "repeat", "seed", "card": model_card(recipe, bundle)}``. The card holds everything needed to
use the model without its recipe, as plain dicts, lists, strings and numbers (the checkpoint
stays loadable with ``torch.load(..., weights_only=True)``)::

    card_version  1
    class_names   label index -> name, e.g. ["W", "N1", "N2", "N3", "REM"]
    modality      {"name": "eeg", "options": {... the recipe's modality section ...}}
    input_info    the dataset's DataBundle.input_info (e.g. {"channels": 6, "window_samples": 3000})
    model         the recipe's model section (size, dim, depth, heads, ...)
    method        the pretext method's name ("part", "supervised", ...)
    dataset       the recipe's data.name ("pc18")
    data          the dataset plugin's DataBundle.describe (EEG: channel names, sampling_rate,
                  window_s, window_samples, filter, normalisation, dtype, label_names)
    run           the run's name

Checkpoints written before cards existed: :func:`load_finetuned` rebuilds the card from the
run's ``config.yaml`` and its dataset (which must still be where ``data.root`` says); when that
fails the error names the run and says to refinetune it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from part.config.loader import load_recipe, recipe_to_dict
from part.config.schema import ModelConfig
from part.core import assemble
from part.core.classifier import PatchClassifier
from part.errors import ConfigError, DataError, UserInputError
from part.registry import dataset_spec, modality_spec
from part.training.checkpoint import load_checkpoint

CARD_VERSION = 1
CARD_KEYS = ("class_names", "modality", "input_info", "model", "method", "data")


def json_ready(obj: Any) -> Any:
    """``obj`` as plain JSON types: tuples become lists, anything else JSON cannot hold becomes
    its ``str`` (never raises: the card is written at the end of a finetune stage)."""
    return json.loads(json.dumps(obj, default=str))


def model_card(recipe, bundle) -> dict:
    """The JSON-ready description of a finetuned model (keys in the module docstring)."""
    return json_ready({
        "card_version": CARD_VERSION,
        "class_names": [str(c) for c in bundle.class_names],
        "modality": {"name": recipe.modality.name, "options": recipe_to_dict(recipe.modality)},
        "input_info": dict(bundle.input_info),
        "model": recipe_to_dict(recipe.model),
        "method": recipe.method.name,
        "dataset": recipe.data.name,
        "data": dict(bundle.describe or {}),
        "run": recipe.run.name,
    })


@dataclass
class FinetunedModel:
    """A finetuned classifier in eval mode on ``device``, its ``card`` (see the module doc), the
    ``checkpoint`` it came from and its ``run_dir``. ``model(x)`` gives logits (B, classes)."""

    model: PatchClassifier
    card: dict
    checkpoint: Path
    run_dir: Path
    device: torch.device

    @property
    def class_names(self) -> list:
        return list(self.card["class_names"])


def resolve_device(name: str | torch.device, key: str = "device") -> torch.device:
    """``"cpu"``, ``"cuda"`` (ConfigError when none is visible), ``"auto"`` or a torch.device: the
    one device rule of every command and of ``run.device``; ``key`` names the option in errors."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key} {name!r} asked for, but no CUDA device is visible; use {key} 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key} {name!r} is not a device; expected cpu, cuda, cuda:N or auto") from None


def checkpoint_path(run_dir: str | Path, checkpoint: str | Path = "best.pt") -> Path:
    """``checkpoint`` as given when it is a path (``dir/file.pt``), else ``RUN_DIR/checkpoints/<name>``."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_absolute() or len(checkpoint.parts) > 1:
        return checkpoint
    return Path(run_dir) / "checkpoints" / checkpoint


def _card_from_config(run_dir: Path, path: Path) -> dict:
    """The card of a checkpoint written before cards existed, from the run's config.yaml + data."""
    config = run_dir / "config.yaml"
    hint = (f"checkpoint '{path}' of run '{run_dir}' was written before finetuned checkpoints "
            f"described themselves (no 'card' key)")
    if not config.is_file():
        raise DataError(f"{hint}, and '{config}' is missing, so its model and data cannot be known; "
                        f"refinetune the run with this toolkit version (rerun its recipe under a new run.name)")
    try:
        recipe = load_recipe(config)
        bundle = dataset_spec(recipe.modality.name, recipe.data.name).load(recipe.data, recipe.run.seed, 0)
    except (UserInputError, KeyError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{hint}, and rebuilding it from '{config}' failed ({reason}); refinetune the "
                        f"run with this toolkit version (rerun its recipe under a new run.name)") from None
    return model_card(recipe, bundle)


def build_classifier(card: dict) -> PatchClassifier:
    """An untrained PatchClassifier of the card's modality, model and classes."""
    spec = modality_spec(card["modality"]["name"])
    options = {k: v for k, v in card["modality"]["options"].items() if k in spec.options.__dataclass_fields__}
    return assemble.build_classifier(spec.options(**options), ModelConfig(**card["model"]),
                                     card["input_info"], len(card["class_names"]))


def _missing_checkpoint(run_dir: Path, path: Path, in_run: bool) -> str:
    """Why ``path`` (a checkpoint of ``run_dir``; ``in_run``: named inside its checkpoints/) is no
    file, and what to pass instead: a checkpoint file given as the run directory, the checkpoints
    the run holds, or that it is no run directory."""
    if run_dir.is_file() and run_dir.suffix == ".pt":
        head = f"'{run_dir}' is a checkpoint file, not a run directory: pass the run directory"
        if run_dir.parent.name != "checkpoints":
            return f"{head} (.../<run.name>), or --checkpoint {run_dir} after a run directory to use this file"
        pick = "" if run_dir.name == "best.pt" else f" with --checkpoint {run_dir.name}"
        return f"{head} '{run_dir.parent.parent}' (<run.output_dir>/<run.name>){pick}, or --checkpoint <file>"
    if not run_dir.is_dir():
        return (f"run directory '{run_dir}' is not a directory; pass <run.output_dir>/<run.name> of a finetuned "
                f"run (its checkpoints/best.pt is written by the finetune stage)")
    held = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
    if not held:
        return (f"run directory '{run_dir}' has no checkpoints/*.pt; pass <run.output_dir>/<run.name> of a finetuned "
                f"run (its checkpoints/best.pt is written by the finetune stage)")
    what = f"has no checkpoint '{path.name}'" if in_run else f"checkpoint '{path}' does not exist (run '{run_dir}')"
    return (f"{f'run directory {str(run_dir)!r} ' if in_run else ''}{what}; its checkpoints/ holds {held}: pass one "
            f"with --checkpoint NAME (finetuned: best.pt, finetuned.pt, finetuned_r<k>.pt)")


def load_finetuned(run_dir: str | Path, checkpoint: str | Path = "best.pt",
                   device: str | torch.device = "cpu", advice: Optional[str] = None) -> FinetunedModel:
    """The finetuned classifier of ``RUN_DIR/checkpoints/<checkpoint>`` (default ``best.pt``, the
    evaluated one) with its card, in eval mode on ``device``. DataError naming the file when the
    run or checkpoint is missing or unreadable (ending with ``advice`` where given: what to do in
    the caller's context), or the weights do not fit the card."""
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    if not path.is_file():
        raise DataError(_missing_checkpoint(run_dir, path, path == Path(run_dir) / "checkpoints" / path.name))
    state = load_checkpoint(path) if advice is None else load_checkpoint(path, advice=advice)
    if "model" not in state:
        raise DataError(f"checkpoint '{path}' holds no finetuned model (keys {sorted(state)}); pass a "
                        f"finetuned checkpoint: best.pt, finetuned.pt or finetuned_r<k>.pt")
    card = state.get("card") or _card_from_config(run_dir, path)
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise DataError(f"checkpoint '{path}': its card lacks {missing}; refinetune the run with this toolkit version")
    clf = build_classifier(card)
    try:
        clf.load_state_dict(state["model"])
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise DataError(f"checkpoint '{path}': the weights do not fit the model its card describes "
                        f"({reason}); the file was changed: refinetune the run") from None
    device = resolve_device(device)
    return FinetunedModel(clf.to(device).eval(), card, path, run_dir, device)
