"""The recipe schema: typed dataclasses for every section of a YAML recipe.

Section and key names are a contract (docs, recipes and checks use them). The defaults here are
code defaults only; the numbers of an experiment live in its recipe under ``recipes/``.

Validation rules are stated in each field's ``metadata`` and enforced by ``part.config``:

- ``min`` / ``max``: inclusive bounds; ``gt``: strictly greater than.
- ``range`` = (lo, hi) with ``bounds`` one of ``"[]"`` (default), ``"[)"``, ``"(]"``, ``"()"``;
  ``half_open=True`` is shorthand for ``"[)"``.
- ``choices``: allowed values (for lists and tuples: allowed values of each element).
- ``unique``: a list must not repeat an element.
- ``dispatch``: the section's options dataclass depends on its ``name`` and is looked up by the
  resolver of that name (``"modality"``, ``"method"``); ``default_name`` is used when the recipe
  gives no name.

Bounds and choices apply element-wise to lists and tuples, and are skipped for ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

STAGES = ("pretrain", "finetune", "evaluate")
MODEL_SIZES = ("tiny", "small", "base", "eeg", "custom")


@dataclass
class RunConfig:
    """Where a run lives and how it executes; the run directory is ``<output_dir>/<name>``."""

    name: str = "run"
    output_dir: str = "runs"
    seed: int = field(default=0, metadata={"min": 0})
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    resume: Literal["auto", "never"] = "auto"
    compile: bool = False
    stages: list[str] = field(
        default_factory=lambda: list(STAGES), metadata={"choices": STAGES, "unique": True}
    )
    log_every: int = field(default=10, metadata={"min": 1})
    checkpoint_every: int = field(default=0, metadata={"min": 0})  # 0: only at epoch ends
    num_workers: int = field(default=0, metadata={"min": 0})


@dataclass
class DataConfig:
    """Which dataset, where it is, and how it is augmented and balanced."""

    name: str = "digits"
    root: Optional[str] = None
    image_size: Optional[int] = field(default=None, metadata={"min": 1})  # images: resize/crop to; None native
    pretrain_augment: str = "none"
    finetune_augment: str = "none"
    class_balance: Literal["none", "weighted_loss", "balanced_sampler"] = "none"
    limit_train: Optional[int] = field(default=None, metadata={"min": 1})
    limit_test: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass
class ModelConfig:
    """The transformer encoder; ``size`` picks a preset, ``custom`` takes dim/depth/heads."""

    size: str = field(default="tiny", metadata={"choices": MODEL_SIZES})
    dim: Optional[int] = field(default=None, metadata={"min": 1})
    depth: Optional[int] = field(default=None, metadata={"min": 1})
    heads: Optional[int] = field(default=None, metadata={"min": 1})
    mlp_ratio: float = field(default=4.0, metadata={"gt": 0})
    drop_path: float = field(default=0.0, metadata={"range": (0.0, 1.0), "half_open": True})
    pos_embed_mask_ratio: float = field(
        default=0.0, metadata={"range": (0.0, 1.0), "half_open": True}
    )


@dataclass
class OptimConfig:
    """One training stage (``pretrain`` or ``finetune``): epochs, batch, AdamW and schedule.

    With ``base_batch_size`` set, the learning rate is scaled linearly:
    ``lr_eff = lr * global_batch / base_batch_size``.
    """

    epochs: int = field(default=1, metadata={"min": 0})
    batch_size: int = field(default=64, metadata={"min": 1})
    lr: float = field(default=5e-4, metadata={"gt": 0})
    min_lr: float = field(default=1e-6, metadata={"min": 0})
    weight_decay: float = field(default=0.05, metadata={"min": 0})
    warmup_epochs: float = field(default=0.0, metadata={"min": 0})
    grad_clip: Optional[float] = field(default=1.0, metadata={"gt": 0})  # None: no clipping
    layer_decay: Optional[float] = field(
        default=None, metadata={"range": (0.0, 1.0), "bounds": "(]"}
    )
    label_smoothing: float = field(default=0.0, metadata={"range": (0.0, 1.0), "half_open": True})
    betas: tuple[float, float] = field(
        default=(0.9, 0.999), metadata={"range": (0.0, 1.0), "half_open": True}
    )
    base_batch_size: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass
class EvaluateConfig:
    """Held-out evaluation: batch size, finetune repeats (mean +/- std) and hypnogram plots."""

    batch_size: int = field(default=256, metadata={"min": 1})
    repeats: int = field(default=1, metadata={"min": 1})
    hypnograms: int = field(default=3, metadata={"min": 0})


@dataclass
class Recipe:
    """A whole experiment. ``modality`` and ``method`` hold the options dataclass that their
    resolver returns for their ``name`` (each options dataclass has a ``name`` field)."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    modality: Any = field(default=None, metadata={"dispatch": "modality", "default_name": "image"})
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = field(default=None, metadata={"dispatch": "method", "default_name": "part"})
    pretrain: OptimConfig = field(default_factory=OptimConfig)
    finetune: OptimConfig = field(default_factory=OptimConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
