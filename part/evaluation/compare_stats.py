"""The "Paired differences" of ``part-compare``: every pair of rows of one protocol (finetune,
linear probe, kNN), tested on the units both were evaluated on (``paired_stats``).

Units, in order of preference: test subjects (per-subject kappa, from ``per_subject`` of the
reports), else test items (0/1 correctness from ``report/predictions_r0.npz`` or the probe
report's folder, accuracy difference). Where two runs were evaluated on different subjects,
the test is restricted to the subjects in common with a note; with none in common, or items that
differ, the comparison is refused (DataError, one line). Across finetune repeats (both runs with
``repeats``), the same statistics over the draws, paired by repeat index (repeat k of every run
uses the seed ``run.seed + k``).
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from part.errors import DataError
from part.evaluation import paired_stats as ps
from part.evaluation.report import fmt_value, markdown_table


def _items(folder: Path) -> Optional[np.ndarray]:
    """(2, n): y_true and y_pred of predictions_r0.npz in ``folder``, or None."""
    path = folder / "predictions_r0.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            y = np.asarray(data["y_true"])
            return np.stack([y, np.asarray(data["y_pred"])])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read test predictions '{path}' ({exc}); rerun the run's evaluate stage") from exc


def units_of(report: Mapping, folder: Path) -> dict:
    """{"subjects": {id: kappa} | None, "items": (2, n) y_true/y_pred | None, "repeats": {k: kappa} | None}."""
    return {"subjects": ps.subject_kappas(report), "items": _items(folder),
            "repeats": ps.repeat_scores(report, "kappa")}


def _pair(a: dict, b: dict, seed: int) -> Optional[dict]:
    """The statistics of row a minus row b over their shared units (None: nothing to pair)."""
    names = (a["row"]["label"], b["row"]["label"])
    ua, ub = a["units"], b["units"]
    out: Optional[dict] = None
    if ua["subjects"] and ub["subjects"]:
        try:
            common, note = ps.match_units(ua["subjects"], ub["subjects"], "subjects", names)
        except ValueError as exc:
            raise DataError(f"cannot compare: {exc}") from exc
        stats = ps.paired_difference([ua["subjects"][s] for s in common], [ub["subjects"][s] for s in common],
                                     seed=seed)
        out = {"unit": "subject", "metric": "kappa", **stats, "note": "; ".join(x for x in (note, stats["note"]) if x)}
    elif ua["items"] is not None and ub["items"] is not None:
        ya, yb = ua["items"], ub["items"]
        if ya.shape != yb.shape or not np.array_equal(ya[0], yb[0]):
            raise DataError(f"cannot compare {names[0]} and {names[1]} item by item: their test predictions "
                            f"hold different items ({ya.shape[1]} and {yb.shape[1]}, or other labels); "
                            f"evaluate both on the same test split")
        stats = ps.paired_difference(ps.item_correct({"y_true": ya[0], "y_pred": ya[1]}),
                                     ps.item_correct({"y_true": yb[0], "y_pred": yb[1]}), seed=seed)
        out = {"unit": "test item", "metric": "accuracy", **stats}
    if out is None:
        return None
    if ua["repeats"] and ub["repeats"]:
        common, note = ps.match_units(ua["repeats"], ub["repeats"], "repeats", names)
        stats = ps.paired_difference([ua["repeats"][k] for k in common], [ub["repeats"][k] for k in common],
                                     seed=seed)
        out["over_repeats"] = {"unit": "finetune draw", "metric": "kappa", **stats,
                               "note": "; ".join(x for x in (note, stats["note"]) if x)}
    return {"a": names[0], "b": names[1], "protocol": a["row"]["protocol"], **out}


def paired_differences(entries: Sequence[dict], seed: int = 0) -> list[dict]:
    """For every pair of entries ({"row", "units"}) of the same protocol: ``_pair``'s dict."""
    out = []
    for a, b in combinations(entries, 2):
        if a["row"]["protocol"] == b["row"]["protocol"]:
            pair = _pair(a, b, seed)
            if pair is not None:
                out.append(pair)
    return out


def _ci(d: Mapping) -> str:
    return f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def render_paired(pairs: Sequence[Mapping]) -> list[str]:
    """Markdown lines of the paired differences (a - b), or [] without pairs."""
    if not pairs:
        return []
    lines = ["## Paired differences (a - b)", "",
             f"Mean difference of a minus b over the units both runs were evaluated on; 95 % CI: paired "
             f"bootstrap over those units ({ps.RESAMPLES:,} resamples, seeded); p: two-sided Wilcoxon "
             "signed-rank test. A difference whose CI holds 0 is marked **not significant**.", ""]
    rows = []
    for p in pairs:
        for d, unit in ((p, p["unit"]), (p.get("over_repeats"), "finetune draw")):
            if not d:
                continue
            rows.append((p["protocol"], p["a"], p["b"], f"{unit} ({d['n']})", d["metric"], f"{d['mean']:+.3f}",
                         _ci(d), fmt_value(d["p_wilcoxon"]),
                         "yes" if d["significant"] else "**not significant**", d.get("note") or ""))
    return lines + markdown_table(["protocol", "a", "b", "units (n)", "metric", "mean a - b", "95 % CI",
                                   "Wilcoxon p", "significant", "note"], rows)


def plot_paired(ax, pairs: Sequence[Mapping]) -> None:
    """Mean differences with their 95 % bootstrap CIs as error bars (one row per pair) on ``ax``."""
    labels, means, low, high = [], [], [], []
    for p in pairs:
        labels.append(f"{p['a']} - {p['b']}\n{p['protocol']}, {p['metric']} over {p['unit']}s")
        means.append(p["mean"])
        low.append(p["mean"] - p["ci_low"])
        high.append(p["ci_high"] - p["mean"])
    y = np.arange(len(labels))
    ax.errorbar(means, y, xerr=[low, high], fmt="o", capsize=4, color="black")
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("mean difference a - b, 95 % paired bootstrap CI")
    ax.set_title("Paired differences (CI holding 0: not significant)", fontsize=9)
