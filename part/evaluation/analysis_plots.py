"""The files of ``python -m part.analyze``: numbers, arrays, the symmetry matrices (drawn here, they
are the same for every modality) and the modality's own pictures (``Modality.analysis_plots``).

``write_analysis(out_dir, analysis, modality, context)`` writes into ``out_dir``:

    analysis.json      the numbers of ``Analysis.metrics`` with ``context`` (run, checkpoint,
                       seed, items, patch geometry) and the definitions, so each can be recomputed
    theta.npy          (K, N, N, T) float32 predicted Theta, model target units
    theta_true.npy     (K, N, N, T) float32 true Theta
    geometry.npy       (K, N, G) float32 the patches' true geometry (input units)
    symmetry.png       Theta of the first item unordered, sorted by position, and the truth
    + the modality's   e.g. reconstruction.png, uncertainty.png, mixing.png
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from part.atomic import atomic_write, atomic_write_json
from part.evaluation import analysis as an
from part.evaluation.report import save_png, to_jsonable

DEFINITIONS = {
    "theta": "theta[k, i, j] = predicted transform from reference patch i to target patch j of item "
             "k, model target units (translations in units of the reference's size)",
    "symmetry_error": "mean over items of ||Theta + Theta^T||_F / ||Theta||_F over all pairs and "
                      "target dims (0 = antisymmetric); _true: the same of the true Theta",
    "mae_per_target": "mean |pred - true| per target dim over ordered pairs i != j",
    "l2_error": "mean Euclidean norm of the translation error (first k dims), pairs i != j",
    "r2": "1 - SS_res/SS_tot pooled over ordered pairs i != j and target dims, SS_tot around each "
          "dim's mean; offgrid: modality.sample patches (overlapping), grid: modality.grid patches "
          "(non-overlapping) of the same items; _per_target: each target dim alone; null: not "
          "computable (e.g. an mlp head built for another N)",
    "mean_spread": "mean over patches of sqrt(sum over axes of the variance over references "
                   "i != j of the patch's predicted centre), input units (pixels, samples)",
}


def plot_symmetry(path: Path, analysis: an.Analysis, item: int = 0) -> Path:
    """Theta of one item per target dim: unordered | sorted by position | true (sorted)."""
    theta, true = analysis.theta[item], analysis.theta_true[item]
    order = analysis.order[item]
    names, T = analysis.target_names, theta.shape[-1]
    fig = Figure(figsize=(10, 3.2 * T + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(T, 3))
    for d in range(T):
        limit = float(np.abs(np.r_[theta[..., d].ravel(), true[..., d].ravel()]).max()) or 1.0
        panels = (theta[..., d], theta[order][:, order][..., d], true[order][:, order][..., d])
        for ax, m, title in zip(axes[d], panels, ("predicted, unordered", "predicted, sorted by position",
                                                  "true, sorted by position")):
            image = ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"{names[d]}: {title}", fontsize=9)
            ax.set_xlabel("target patch j", fontsize=8)
            ax.set_ylabel("reference patch i", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=axes[d].tolist(), shrink=0.8)
    m = analysis.metrics
    fig.suptitle(f"Theta of item {int(analysis.items[item])} ({analysis.sampling} patches, N = "
                 f"{theta.shape[0]}); antisymmetry error {m['symmetry_error']:.3f} (mean of "
                 f"{len(analysis.items)} items; truth {m['symmetry_error_true']:.3f})", fontsize=10)
    return save_png(fig, path)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, np.asarray(array, dtype=np.float32)))


def write_analysis(out_dir: str | Path, analysis: an.Analysis, modality, context: Mapping) -> list[Path]:
    """Every file of the analysis (module doc); returns their paths, analysis.json last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_save_npy(out / "theta.npy", analysis.theta),
             _save_npy(out / "theta_true.npy", analysis.theta_true),
             _save_npy(out / "geometry.npy", analysis.geometry),
             plot_symmetry(out / "symmetry.png", analysis)]
    paths += [Path(p) for p in modality.analysis_plots(analysis, out)]
    K, N = analysis.theta.shape[:2]
    sizes = analysis.geometry[..., analysis.k:]
    summary = {**dict(context), "n_items": int(K), "items": analysis.items.tolist(),
               "patches": {"sampling": analysis.sampling, "n_patches": int(N),
                           "mean_size": [float(s) for s in sizes.reshape(-1, sizes.shape[-1]).mean(0)],
                           "geometry": "centres then sizes, input units"},
               "target_names": analysis.target_names, **analysis.metrics,
               "definitions": DEFINITIONS, "files": sorted(p.name for p in paths)}
    paths.append(atomic_write_json(out / "analysis.json", to_jsonable(summary)))
    return paths
