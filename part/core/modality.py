"""The modality plugin interface: the one seam between PART's core and a kind of data.

A modality says (1) how to cut patches (`sample` off-grid, `grid` on the fixed grid), (2) how a
patch becomes a token (`tokenizer`) and (3) what the relative transform between two patches is
(`targets`). Core code (backbone, heads, methods, engine) only ever talks to this interface and
never imports a concrete modality; concrete ones live in `modalities/` and are found by name
through the registry (`part.registry`), which plugins fill. A modality cut into k-D boxes
derives from `part.core.box_modality.BoxModality`, which implements all of it from the input's
size and the patch size.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from part.core.geometry import apply_relative, nearest_grid_index


@dataclass
class DataBundle:
    """What a modality plugin's `load_data(data_cfg, seed, repeat)` gives the engine.

    pretrain / finetune / test: torch Datasets of `(x, label)` items (label -1 = unlabelled;
    pretraining ignores labels, finetuning and evaluation skip -1 items).
    input_info: keyword arguments the plugin's `build` needs from the data (e.g. image_size,
    channels). class_names: label index -> name. test_groups: per test item its group (subject)
    id, items of one group in chronological order, or None. reference: the paper's numbers for
    this task, shown in reports labelled as the paper's (e.g. {"metric": "kappa", "values": {...}}).
    report_hook: optional ``hook(report_dir, predictions)`` the evaluation calls after writing the
    report, with ``predictions`` = {y_true, y_pred, probs[, groups]} of repeat 0: a plugin's
    task-specific outputs (e.g. hypnograms for sleep staging).
    finetune_batch_transform: optional ``(x, y) -> (x, y_soft)`` the finetune stage applies to
    every training batch (on the training device) before the forward pass, e.g. Mixup/CutMix:
    ``x`` the batch of inputs, ``y`` (B,) long labels (all >= 0), ``y_soft`` (B, classes) float
    targets whose rows sum to 1, without label smoothing (the stage smooths them with
    ``finetune.label_smoothing`` and uses a soft-target cross-entropy; class weights are refused).
    It must accept any batch size (odd ones included) and draw randomness from the global
    generators (NumPy, torch, ``random``), which checkpoints restore. None: hard labels.
    finetune_groups: optional per finetune item its group (subject) id: the finetune stage holds
    whole groups out of training to fit the calibration temperature on (None: single items).
    describe: a JSON-ready dict (plain dicts, lists, str, numbers, bool, None) describing the
    inputs the model is trained on, recorded in the finetuned checkpoints so that the model can be
    used on new data without its recipe (the EEG plugin: channel names, sampling_rate, window_s,
    window_samples, filter, normalisation, dtype, label names; image datasets may leave it empty).
    finetune_eval: the finetune items in the same order without training augmentation (the
    evaluation transform), for the frozen-feature probes; None when ``finetune`` has none.
    label_budget: how the labelled data can be shrunk for a label-efficiency sweep
    (``part-label-efficiency``): ``{"key": the recipe key (e.g. "data.finetune_subjects"),
    "unit": words for the axis, "pool": the largest value the data allow, "all": the value that
    means all of the pool}``; None: the dataset offers no sweep.
    synthetic: the data are synthetic (e.g. the prepared manifest says ``"synthetic": true``);
    reports and comparisons then say "synthetic data".
    """

    pretrain: Any
    finetune: Any
    test: Any
    class_names: list
    input_info: dict = field(default_factory=dict)
    test_groups: Optional[list] = None
    reference: Optional[dict] = None
    description: str = ""
    report_hook: Optional[Callable] = None
    finetune_batch_transform: Optional[Callable] = None
    describe: dict = field(default_factory=dict)
    finetune_groups: Optional[list] = None
    finetune_eval: Any = None
    label_budget: Optional[dict] = None
    synthetic: bool = False


def subset_indices(n: int, limit: Optional[int], seed: int):
    """A seeded random subset of `limit` of `n` item indices, sorted (so per-subject order is
    kept), as an int64 array; None when `limit` is None or >= n (keep everything)."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


class Modality(abc.ABC):
    """A kind of data PART can pretrain on.

    Subclasses set `target_dim` (size of the relative transform), `patch_dim` (F, values per
    patch), `num_patches` (N of `sample`), `num_grid_patches` (tokens of the fixed grid, for
    position embeddings), `grid_shape` ((rows, cols) for 2-D, (n,) for 1-D; raster order, the
    slowest axis first), `grid_cell` (the grid's cell size per geometry axis, in the geometry's
    order and units: (P, P) pixels for (x, y), (P,) samples for time) and `geometry_dim` (G).
    The built-in modalities' geometry is the boxes of `part.core.geometry`, (..., 2k) =
    (centres, sizes) with G = 2k, which is what the default `grid_index` reads.
    """

    name: str = "modality"
    target_dim: int
    patch_dim: int
    num_grid_patches: int
    geometry_dim: int
    grid_cell: Optional[tuple] = None

    @abc.abstractmethod
    def sample(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """Off-grid patches: returns (patches (B, N, F), geometry (B, N, G)), on x's device."""

    @abc.abstractmethod
    def grid(self, x: torch.Tensor):
        """Fixed-grid patches in raster order: (patches (B, N_grid, F), geometry (B, N_grid, G))."""

    @abc.abstractmethod
    def tokenizer(self, dim: int) -> nn.Module:
        """A module mapping patches (..., F) to tokens (..., dim)."""

    @abc.abstractmethod
    def targets(self, geom_ref: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """Relative transform from ref to tgt: (..., G) x 2 -> (..., target_dim)."""

    def grid_index(self, geometry: torch.Tensor) -> torch.Tensor:
        """Raster index (...,) long of the grid cell holding each patch centre, clamped to the grid.

        geometry (..., G) boxes. `grid_shape` is in raster order (slowest axis first, e.g. (rows,
        cols)) while geometry axes run fastest first (x, y), hence the reversal; the index counts
        cells in the order of `grid`'s patches.
        """
        if self.grid_cell is None:
            raise NotImplementedError(f"modality {self.name!r} has no grid index (no grid_cell)")
        return nearest_grid_index(geometry, tuple(reversed(self.grid_shape)), self.grid_cell)

    def place(self, geom_ref: torch.Tensor, target: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """The inverse of ``targets``: the geometry (..., G) at which a (predicted) transform
        ``target`` (..., target_dim) puts a patch relative to ``geom_ref`` (..., G); ``geom_tgt``
        (..., G) is the patch's true geometry, whose sizes are kept when the targets have no
        scale. Default: the boxes of ``part.core.geometry`` (``apply_relative``, with the
        modality's ``scale_target`` attribute if it has one); override for other targets."""
        k = geom_ref.shape[-1] // 2
        return apply_relative(geom_ref, target, geom_tgt[..., k:],
                              getattr(self, "scale_target", "ratio"))

    def analysis_plots(self, analysis, out_dir) -> list:
        """Draw the pictures of ``python -m part.analyze`` that show this kind of data (e.g.
        reconstruction.png, uncertainty.png) into ``out_dir``; ``analysis`` is a
        ``part.evaluation.analysis.Analysis`` (numpy arrays, shapes in its docstring). Returns
        the paths written. Default: none (the numbers and the symmetry matrices are still
        written)."""
        return []

    @property
    def target_names(self) -> tuple:
        """One short name per value of `targets` (length `target_dim`), for logs and reports,
        e.g. ("dx", "dy") for images, ("dt",) for EEG. Default ("d0", "d1", ...); a subclass
        sets its own (`self.target_names = (...)` or a class attribute)."""
        names = self.__dict__.get("_target_names")
        return tuple(names) if names is not None else tuple(f"d{i}" for i in range(self.target_dim))

    @target_names.setter
    def target_names(self, names) -> None:
        self._target_names = tuple(names)

    @property
    def translation_dim(self) -> int:
        """How many leading values of `targets` are translations (the rest: scales), k for the
        box convention (G = 2k): the part whose Euclidean norm is the "l2" pretext error."""
        return min(self.target_dim, self.geometry_dim // 2) or self.target_dim

    @classmethod
    def timm_patch_embed(cls, options, weight: torch.Tensor) -> torch.Tensor:
        """The tokenizer's Linear weight (dim, F) in the shape of timm's patch embedding, for
        ``python -m part.export`` (from the options alone, no data). Default: unchanged."""
        return weight


def check_input(x: torch.Tensor, rank: int, channels: int, what: str) -> None:
    """Raise a ValueError naming the problem if x is not a finite (B, channels, ...) tensor of rank."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise ValueError(f"{what}: expected a tensor of rank {rank}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what}: expected a float tensor, got {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{what}: expected {channels} channels in dim 1, got shape {tuple(x.shape)}; "
                         f"set the modality's `channels` option to match the data")
    # On CUDA the check would stall the host every step; there the engine's loss check catches
    # non-finite inputs instead (a NaN input gives a NaN loss, reported with the step).
    if not x.is_cuda and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError(f"{what}: input holds NaN or Inf values; clean the data first")
