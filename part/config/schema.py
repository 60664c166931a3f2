"""The recipe schema: typed options dataclasses for every section of a YAML recipe.

Section and key names are a contract (docs, recipes and checks use them). The defaults here are
code defaults only; the numbers of an experiment live in its recipe under ``recipes/``. Each
section checks its own values when built (``part.config.options``): the rules are the fields'
``metadata`` (``min``, ``max``, ``gt``, ``range``/``bounds``, ``choices``, ``unique``).

Three sections are *dispatched*: their options dataclass is the one registered for their
``name`` (``metadata={"dispatch": ...}``): ``data`` (a dataset, whose options extend
``DataConfig``), ``modality`` and ``method`` (``part.registry``). ``volatile=True`` in a field's
metadata marks a key that does not change what a run computes (left out of ``recipe_hash``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from part.config.options import Options

STAGES = ("pretrain", "finetune", "evaluate", "linear_probe", "knn")
DEFAULT_STAGES = ("pretrain", "finetune", "evaluate")
# Stages that only read a finished run's checkpoints: adding them to a finished run is the same run.
READ_ONLY_STAGES = ("evaluate", "linear_probe", "knn")
MODEL_SIZES = ("tiny", "small", "base", "eeg", "custom")
VOLATILE = {"volatile": True}


@dataclass
class RunConfig(Options):
    """Where a run lives and how it executes; the run directory is ``<output_dir>/<name>``."""

    section = "run"

    name: str = field(default="run", metadata=VOLATILE)
    output_dir: str = field(default="runs", metadata=VOLATILE)
    seed: int = field(default=0, metadata={"min": 0})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=VOLATILE)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    resume: Literal["auto", "never", "force"] = field(default="auto", metadata=VOLATILE)
    compile: bool = field(default=False, metadata=VOLATILE)
    stages: list[str] = field(
        default_factory=lambda: list(DEFAULT_STAGES), metadata={"choices": STAGES, "unique": True}
    )
    log_every: int = field(default=10, metadata={"min": 1, "volatile": True})
    checkpoint_every: int = field(default=0, metadata={"min": 0, "volatile": True})  # 0: epoch ends
    num_workers: int = field(default=0, metadata={"min": 0, "volatile": True})
    # steps between the DDP ranks' agreement on a stop signal (one all-reduce); None: log_every
    stop_check_every: Optional[int] = field(default=None, metadata={"min": 1, "volatile": True})
    # a checkpoint with a weight beyond this |w| is refused: no healthy run gets there
    max_abs_weight: float = field(default=1e4, metadata={"gt": 0, "volatile": True})

    def check(self):
        if not _plain_folder_name(self.name):
            yield "name", (f"= {self.name!r} is not a plain folder name: the run directory is "
                           f"run.output_dir/run.name, so run.name holds no '/' or '\\', is not '.', '..' or "
                           f"empty and is not absolute; put the folder part in run.output_dir")
        if self.stages != sorted(self.stages, key=STAGES.index):
            yield "stages", (f"= {self.stages} is out of order; stages run in the order "
                             f"{', '.join(STAGES)} (leave out the ones not wanted)")


def _plain_folder_name(name: str) -> bool:
    """Whether ``name`` names one folder inside another: no path separator (either OS's), not
    '.', '..', empty, absolute or a drive ('C:')."""
    return (bool(name.strip()) and name not in (".", "..") and not any(c in name for c in "/\\\0")
            and not (len(name) >= 2 and name[1] == ":"))


@dataclass
class DataConfig(Options):
    """The keys every dataset has; a dataset's options (``register_dataset``) extend these."""

    section = "data"

    name: str = ""
    root: Optional[str] = None
    class_balance: Literal["none", "weighted_loss", "balanced_sampler"] = "none"
    limit_train: Optional[int] = field(default=None, metadata={"min": 1})
    limit_test: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass
class ModelConfig(Options):
    """The transformer encoder; ``size`` picks a preset, ``custom`` takes dim/depth/heads."""

    section = "model"

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
class OptimConfig(Options):
    """One training stage (``pretrain`` or ``finetune``): epochs, batch, AdamW and schedule.

    With ``base_batch_size`` set, the learning rate is scaled linearly:
    ``lr_eff = lr * global_batch / base_batch_size``.
    """

    epochs: int = field(default=1, metadata={"min": 0})
    batch_size: int = field(default=64, metadata={"min": 1})
    lr: float = field(default=5e-4, metadata={"gt": 0, "max": 10})
    min_lr: float = field(default=1e-6, metadata={"min": 0, "max": 10})
    weight_decay: float = field(default=0.05, metadata={"min": 0, "max": 10})
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
class PretrainConfig(OptimConfig):
    """The ``pretrain`` stage: ``OptimConfig`` plus its diagnostics.

    ``heldout_items``: test-split items on which the pretext errors of relative-target methods
    (PART, PART-grid: per-target mean absolute/squared error and the Euclidean translation error,
    paper Table 5) are computed at each epoch end, the same items and patches every epoch
    (``part.evaluation.pretext``); 0 turns them off. It changes no training number (volatile).
    """

    heldout_items: int = field(default=256, metadata={"min": 0, "volatile": True})


@dataclass
class FinetuneConfig(OptimConfig):
    """The ``finetune`` stage: ``OptimConfig`` plus its calibration.

    ``calibration_fraction``: the share of the finetune pool's groups (subjects; items where the
    dataset gives no groups) held out of training, drawn by ``run.seed + repeat``, on which one
    temperature is fitted at the end of the stage (``part.evaluation.calibration``) and stored
    in the checkpoint's card (``card["temperature"]``); 0 trains on the whole pool and leaves
    the model uncalibrated. Test items are never used.
    """

    calibration_fraction: float = field(default=0.0, metadata={"range": (0.0, 1.0), "half_open": True})


@dataclass
class EvaluateConfig(Options):
    """Held-out evaluation: batch size, finetune repeats (mean +/- std) and the frozen-feature
    protocols (stages ``linear_probe`` and ``knn``, ``part.training.probe_stages``).

    ``probe_pooling``: the feature of an item, the mean of the grid patch tokens or [CLS];
    ``probe_weight_decay`` / ``probe_max_iter``: the linear probe's L2 penalty (on standardised
    features) and L-BFGS iterations; ``knn_k`` / ``knn_temperature``: DINO's weighted kNN.
    ``knn_monitor``: a kNN accuracy / kappa at each pretraining epoch end (``knn_monitor_bank``
    finetune items as the bank, ``knn_monitor_queries`` test items), logged to metrics.jsonl as
    ``{"event": "knn_monitor"}``; it changes no training number (volatile).
    """

    section = "evaluate"

    batch_size: int = field(default=256, metadata={"min": 1, "volatile": True})
    repeats: int = field(default=1, metadata={"min": 1})
    probe_pooling: Literal["mean", "cls"] = "mean"
    probe_weight_decay: float = field(default=1e-4, metadata={"min": 0})
    probe_max_iter: int = field(default=500, metadata={"min": 1})
    knn_k: int = field(default=20, metadata={"min": 1})
    knn_temperature: float = field(default=0.07, metadata={"gt": 0})
    knn_monitor: bool = field(default=False, metadata=VOLATILE)
    knn_monitor_bank: int = field(default=1000, metadata={"min": 1, "volatile": True})
    knn_monitor_queries: int = field(default=500, metadata={"min": 1, "volatile": True})


@dataclass
class Recipe(Options):
    """A whole experiment. ``data``, ``modality`` and ``method`` hold the options dataclass
    registered for their ``name`` (each has a ``name`` field)."""

    run: RunConfig = field(default_factory=RunConfig)
    data: Any = field(default=None, metadata={"dispatch": "dataset"})
    modality: Any = field(default=None, metadata={"dispatch": "modality"})
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = field(default=None, metadata={"dispatch": "method", "default_name": "part"})
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def check(self):
        from part.registry import dataset_modalities, method_spec  # late: the registry is needed only here
        if self.modality is not None and self.method is not None:
            try:
                refusal = method_spec(self.method.name).check_modality(self.modality.name)
            except KeyError:
                refusal = None  # reported by the method section itself
            if refusal:
                yield "method.name", f"= {self.method.name!r}: {refusal}; pick a method for {self.modality.name!r}"
        if self.data is None or self.modality is None:
            return
        owners = dataset_modalities(self.data.name)
        if not owners or self.modality.name in owners:
            return  # fits, or reported by the data section itself
        yield "modality.name", (f"= {self.modality.name!r} does not fit data.name={self.data.name!r}, "
                                f"a dataset of modality {' or '.join(map(repr, owners))}; set "
                                f"modality.name={owners[0]} or pick a dataset of {self.modality.name!r}")
