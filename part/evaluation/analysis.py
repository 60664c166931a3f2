"""What a trained PART pretext model has learnt (paper section 5.1, Figs. 4-6), for any modality.

Everything here talks to the modality interface only (``sample``, ``grid``, ``targets``,
``place``, ``grid_index``) and to the method's ``encoder``, ``tokenizer`` and relative ``head``;
the pictures of the data are drawn by the modality plugin (``Modality.analysis_plots``).

Theta: for the N patches of an item, ``theta[i, j]`` is the head's prediction of the transform
from reference patch i to target patch j, (N, N, target_dim) in the model's target units (e.g.
(dx, dy) in units of the reference's size); ``theta_true`` is ``modality.targets`` of the same
pairs. Definitions of the numbers (``analyze`` returns them in ``Analysis.metrics``):

- ``symmetry_error``: per item ``||Theta + Theta^T||_F / ||Theta||_F`` over all pairs (diagonal
  included) and all target dims, averaged over the items; 0 = perfectly antisymmetric.
  ``symmetry_error_true`` is the same of the true matrix (0 for translations of equal-size
  patches; not 0 with scale targets or unequal sizes, where the truth is not antisymmetric).
- ``mae_per_target``: mean |Theta - Theta_true| per target dim; ``l2_error``: mean Euclidean norm
  of the error of the translation dims (the first k); both over the ordered pairs i != j.
- ``r2_offgrid`` / ``r2_grid``: ``1 - SS_res / SS_tot`` pooled over the ordered pairs i != j and
  all target dims, SS_res = sum (pred - true)^2, SS_tot = sum (true - mean_d)^2 with mean_d the
  mean of target dim d over those pairs; on the off-grid patches of ``modality.sample``
  (overlapping) and on the fixed grid of ``modality.grid`` (non-overlapping) of the same items;
  ``_per_target``: each target dim alone. None: not computable (an "mlp" head built for another
  N, or targets that do not vary).
- ``r2_by_pair_type``: {self, overlapping, adjacent, far: {"pairs", "r2"}}, the pooled R^2 of
  the analysed ordered pairs i != j of each type (``part.evaluation.pair_types``; SS_tot around
  each type's own mean), to see whether the model learns from overlaps only.
- ``spread`` (uncertainty, Fig. 5): per patch j, ``sqrt(sum_axes var_i(centre of place(ref i,
  Theta[i, j])))`` over the references i != j, in the input's units (pixels, samples).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from part.core.loss import PARTLoss
from part.errors import ConfigError
from part.evaluation.pair_types import pair_types, split_r2
from part.evaluation.pretext import supports_pretext_errors

ATTENTION_BUDGET = 2 ** 26  # items per head call: K_chunk * N^3 * heads stays under this


@dataclass
class MixedItems:
    """Mixing experiment: the first half (in position order) of item a's patches and the second
    half of item b's, predicted together. inputs (2, ...) = items a, b; patches (N, F); geometry,
    placed (N, G) true and predicted geometry (relative to ``reference``, which sits at its true
    place); source (N,) 0 = from a, 1 = from b."""

    inputs: np.ndarray
    patches: np.ndarray
    geometry: np.ndarray
    placed: np.ndarray
    source: np.ndarray
    reference: int


@dataclass
class Analysis:
    """The analysed patch sets of K items (numpy, float32 unless said otherwise).

    inputs (K, ...) the raw items; items (K,) int their indices in the test split; patches
    (K, N, F); geometry (K, N, G) true geometry (input units); theta, theta_true (K, N, N, T);
    positions (K, N, N, G): positions[k, i, j] the geometry where reference i puts patch j;
    reference (K,) int the reference of the reconstruction; placed (K, N, G) every patch placed
    relative to it (the reference at its true place); spread (K, N) input units; order (K, N)
    int patch indices sorted by position (raster cell, then the slowest axis first); k the number
    of position axes (centres are geometry[..., :k]); sampling "off-grid" or "grid" (how the
    patches were drawn: as in the method's pretraining); target_names (T,); mixing or None;
    metrics (see the module doc).
    """

    inputs: np.ndarray
    items: np.ndarray
    patches: np.ndarray
    geometry: np.ndarray
    theta: np.ndarray
    theta_true: np.ndarray
    positions: np.ndarray
    reference: np.ndarray
    placed: np.ndarray
    spread: np.ndarray
    order: np.ndarray
    k: int
    sampling: str
    target_names: list
    mixing: Optional[MixedItems] = None
    metrics: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the model

def check_relative(method, name: str) -> None:
    """A ConfigError naming what is missing unless ``method`` predicts relative transforms
    (``predict_pairs`` and a ``PARTLoss`` criterion, with the ``encoder`` and ``tokenizer``)."""
    missing = [a for a in ("encoder", "tokenizer") if not hasattr(method, a)]
    if not supports_pretext_errors(method) or not isinstance(getattr(method, "criterion", None), PARTLoss):
        missing.insert(0, "relative head (predict_pairs, a PARTLoss criterion)")
    if missing:
        raise ConfigError(f"method '{name}' has no {', '.join(missing)}: part.analyze studies the "
                          f"relative transforms a PART-type method (part, part_grid) predicts, "
                          f"which this run's pretext model does not")


def embed(method, patches: torch.Tensor) -> torch.Tensor:
    """Patch embeddings (B, N, d) of patches (B, N, F), as ``PART.encode`` (no [CLS])."""
    return method.encoder(method.tokenizer(patches))[:, 1:]


def head_fits(method, n: int) -> bool:
    """Whether the head takes n patches (the "mlp" head is built for one N)."""
    return getattr(method.head, "num_patches", n) == n


@torch.no_grad()
def pair_predictions(method, patches: torch.Tensor, geometry: torch.Tensor):
    """Theta and the true Theta for every ordered pair: patches (K, N, F), geometry (K, N, G) ->
    (theta, theta_true), each (K, N, N, T) float32, [k, i, j] from reference i to target j.

    The head and ``modality.targets`` through ``method.criterion.predict`` (``PARTLoss``) with
    all N^2 pairs of an item in one call; items in chunks that bound the attention's memory."""
    K, N = patches.shape[:2]
    ref = torch.arange(N, device=patches.device).repeat_interleave(N)[None]
    tgt = torch.arange(N, device=patches.device).repeat(N)[None]
    chunk = max(1, ATTENTION_BUDGET // (N ** 3 * getattr(method.head, "num_heads", 1)))
    preds, trues = [], []
    for s in range(0, K, chunk):
        z = embed(method, patches[s:s + chunk])
        b = z.shape[0]
        out = method.criterion.predict(z, geometry[s:s + chunk], pairs=(ref.expand(b, -1), tgt.expand(b, -1)))
        preds.append(out["pred"].view(b, N, N, -1))
        trues.append(out["target"].view(b, N, N, -1))
    return torch.cat(preds), torch.cat(trues)


def _pairs(geometry: torch.Tensor):
    K, N, G = geometry.shape
    return geometry[:, :, None].expand(K, N, N, G), geometry[:, None].expand(K, N, N, G)


def pair_positions(modality, geometry: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(K, N, N, G): where reference i puts patch j, ``modality.place(geom_i, theta_ij, geom_j)``."""
    g_ref, g_tgt = _pairs(geometry)
    return modality.place(g_ref, theta, g_tgt)


# ----------------------------------------------------------------------------- numbers

def antisymmetry_errors(theta: np.ndarray) -> np.ndarray:
    """Per item ||Theta + Theta^T||_F / ||Theta||_F over all pairs and dims: (K, N, N, T) -> (K,)
    (0 where Theta is all zeros)."""
    theta = np.asarray(theta, dtype=np.float64)
    num = np.sqrt(((theta + theta.swapaxes(1, 2)) ** 2).sum(axis=(1, 2, 3)))
    den = np.sqrt((theta ** 2).sum(axis=(1, 2, 3)))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def off_diagonal(theta: np.ndarray) -> np.ndarray:
    """The ordered pairs i != j: (K, N, N, T) -> (K * N * (N - 1), T)."""
    N = theta.shape[1]
    return np.asarray(theta)[:, ~np.eye(N, dtype=bool)].reshape(-1, theta.shape[-1])


def r_squared(pred: np.ndarray, true: np.ndarray) -> Optional[float]:
    """1 - SS_res / SS_tot pooled over rows and dims, (M, T) each; SS_tot around each dim's mean.
    None when the targets do not vary."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    tot = ((true - true.mean(axis=0)) ** 2).sum()
    return None if tot <= 0 else float(1.0 - ((pred - true) ** 2).sum() / tot)


def spreads(positions: np.ndarray, k: int) -> np.ndarray:
    """Uncertainty per patch: (K, N, N, G) placements -> (K, N), sqrt of the summed variance
    over references i != j of the predicted centre (the first k values) of patch j."""
    centres = np.array(positions[..., :k], dtype=np.float64)
    N = centres.shape[1]
    centres[:, np.arange(N), np.arange(N)] = np.nan
    return np.sqrt(np.nanvar(centres, axis=1).sum(-1))


def position_order(modality, geometry: torch.Tensor, k: int) -> np.ndarray:
    """(K, N) patch indices sorted top-left to bottom-right: by raster grid cell, then by the
    centre coordinates, slowest axis first (images: y then x; 1-D: time)."""
    centres = geometry[..., :k].cpu().numpy()
    keys = [centres[..., a] for a in range(k)]  # np.lexsort: the last key is the primary one
    try:
        keys.append(modality.grid_index(geometry).cpu().numpy())
    except NotImplementedError:
        pass
    return np.lexsort(np.stack(keys), axis=-1)


def theta_metrics(theta: np.ndarray, theta_true: np.ndarray, k: int, names: list) -> dict:
    """symmetry errors, per-target MAE and the l2 error of one set of Thetas (module doc)."""
    pred, true = off_diagonal(theta), off_diagonal(theta_true)
    return {"symmetry_error": float(antisymmetry_errors(theta).mean()),
            "symmetry_error_per_target": {n: float(antisymmetry_errors(theta[..., d:d + 1]).mean())
                                          for d, n in enumerate(names)},
            "symmetry_error_true": float(antisymmetry_errors(theta_true).mean()),
            "mae_per_target": {n: float(v) for n, v in zip(names, np.abs(pred - true).mean(0))},
            "l2_error": float(np.linalg.norm(pred[:, :k] - true[:, :k], axis=-1).mean())}


# ----------------------------------------------------------------------------- the analysis

def r2_metrics(theta: np.ndarray, true: np.ndarray, names: list) -> tuple:
    """(pooled R^2, {name: R^2 of that target dim alone}) over the ordered pairs i != j."""
    pred, true = off_diagonal(theta), off_diagonal(true)
    return r_squared(pred, true), {n: r_squared(pred[:, d], true[:, d]) for d, n in enumerate(names)}


def _r2(method, modality, patches, geometry) -> tuple:
    if not head_fits(method, patches.shape[1]):
        return None, None
    theta, true = pair_predictions(method, patches, geometry)
    return r2_metrics(theta.cpu().numpy(), true.cpu().numpy(), list(modality.target_names))


def _r2_both(method, modality, x, gen, on_grid: bool, own: tuple) -> dict:
    """r2_offgrid(_per_target) and r2_grid(_per_target); ``own``: those of the analysed patches."""
    other = _r2(method, modality, *(modality.sample(x, generator=gen) if on_grid else modality.grid(x)))
    out = {}
    for key, (pooled, per_target) in zip(("offgrid", "grid"), (other, own) if on_grid else (own, other)):
        out[f"r2_{key}"], out[f"r2_{key}_per_target"] = pooled, per_target
    return out


def _r2_by_type(geometry: torch.Tensor, theta: np.ndarray, true: np.ndarray, k: int) -> dict:
    """R^2 of the analysed ordered pairs i != j split by pair type (``pair_types``)."""
    g_ref, g_tgt = _pairs(geometry)
    types = off_diagonal(pair_types(g_ref, g_tgt, k).cpu().numpy()[..., None])[:, 0]
    return split_r2(off_diagonal(theta), off_diagonal(true), types)


def _mixing(method, modality, patches, geometry, order, inputs) -> MixedItems:
    """Items 0 and 1: a's first N // 2 patches in position order, b's last N - N // 2."""
    N = patches.shape[1]
    a, b = (torch.as_tensor(o, device=patches.device) for o in (order[0, :N // 2], order[1, N // 2:]))
    mixed_p = torch.cat([patches[0, a], patches[1, b]])[None]
    mixed_g = torch.cat([geometry[0, a], geometry[1, b]])[None]
    theta, _ = pair_predictions(method, mixed_p, mixed_g)
    placed = pair_positions(modality, mixed_g, theta)[0, 0].clone()
    placed[0] = mixed_g[0, 0]
    source = np.r_[np.zeros(len(a), np.int64), np.ones(len(b), np.int64)]
    return MixedItems(inputs, mixed_p[0].cpu().numpy(), mixed_g[0].cpu().numpy(),
                      placed.cpu().numpy(), source, 0)


@torch.no_grad()
def analyze(method, modality, x: torch.Tensor, seed: int = 0, items=None) -> Analysis:
    """The analysis of K items ``x`` (K, ...) (on the method's device).

    Patches are drawn as in the method's pretraining (``modality.sample``, or ``modality.grid``
    for a method trained on the grid) with a generator seeded by ``seed``, which also picks each
    item's reconstruction reference."""
    method.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    on_grid = bool(getattr(method, "on_grid", False))
    patches, geometry = modality.grid(x) if on_grid else modality.sample(x, generator=gen)
    K, N = patches.shape[:2]
    k = modality.translation_dim
    theta, true = pair_predictions(method, patches, geometry)
    positions = pair_positions(modality, geometry, theta)
    reference = torch.randint(N, (K,), generator=gen, device=x.device)
    rows = torch.arange(K, device=x.device)
    placed = positions[rows, reference].clone()
    placed[rows, reference] = geometry[rows, reference]
    names = list(modality.target_names)
    theta_np, true_np = theta.cpu().numpy(), true.cpu().numpy()
    positions_np = positions.cpu().numpy()
    order = position_order(modality, geometry, k)
    result = Analysis(x.cpu().numpy(), np.asarray(items if items is not None else np.arange(K)),
                      patches.cpu().numpy(), geometry.cpu().numpy(), theta_np, true_np,
                      positions_np, reference.cpu().numpy(), placed.cpu().numpy(),
                      spreads(positions_np, k).astype(np.float32), order, k,
                      "grid" if on_grid else "off-grid", names)
    result.metrics = {**theta_metrics(theta_np, true_np, k, names), "mean_spread": float(result.spread.mean()),
                      **_r2_both(method, modality, x, gen, on_grid, r2_metrics(theta_np, true_np, names)),
                      "r2_by_pair_type": _r2_by_type(geometry, theta_np, true_np, k)}
    if K >= 2:
        result.mixing = _mixing(method, modality, patches, geometry, order, result.inputs[:2])
    return result
