"""Evaluation reports: ``report.json``, ``report.md`` and ``confusion.png``.

``write_report`` takes the dict of ``part.evaluation.metrics.classification_metrics`` (optionally with
``per_subject`` from ``per_group_metrics`` and ``repeats`` from ``aggregate_repeats``) and writes
all files atomically. Undefined numbers (NaN) are written as JSON ``null`` and shown as "n/a".
Plots use matplotlib's object-oriented API with the Agg canvas (no global backend change, no
display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from part.atomic import atomic_write, atomic_write_json, atomic_write_text
from part.evaluation.metrics import STD_NOTE, mean_std

REQUIRED_KEYS = ("kappa", "accuracy", "macro_f1", "balanced_accuracy", "per_class_f1", "confusion")
REFERENCE_HEADING = "Paper's reference numbers (from the PART paper, not ours)"
_REPEATED_METRICS = ("kappa", "accuracy", "macro_f1", "balanced_accuracy")


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf -> None, keys as strings."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def aggregate_repeats(list_of_metrics: Sequence[Mapping], seeds: Sequence[int]) -> dict:
    """Mean and std of kappa, accuracy, macro F1 and balanced accuracy over repeated finetunes,
    with each repeat.

    ``list_of_metrics[i]`` is the ``classification_metrics`` dict of the run with ``seeds[i]``.
    """
    if len(list_of_metrics) != len(seeds):
        raise ValueError(f"{len(list_of_metrics)} metric sets for {len(seeds)} seeds; "
                         f"give one seed per repeat.")
    repeats = []
    for index, (metrics, seed) in enumerate(zip(list_of_metrics, seeds)):
        row = {"repeat": index, "seed": int(seed)}
        row.update({key: metrics.get(key) for key in _REPEATED_METRICS})
        if isinstance(metrics.get("per_subject"), Mapping):
            row["per_subject_kappa_mean"] = metrics["per_subject"].get("kappa_mean")
        repeats.append(row)
    summary = {"n_repeats": len(repeats), "seeds": [int(s) for s in seeds]}
    for key in _REPEATED_METRICS:
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(r[key] for r in repeats)
    summary.update({"repeats": repeats, "std": STD_NOTE})
    return summary


# ----------------------------------------------------------------------------- markdown

def fmt_value(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def fmt_mean_std(mean: Any, std: Any) -> str:
    return fmt_value(mean) if std is None else f"{fmt_value(mean)} ± {fmt_value(std)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(map(fmt_value, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(fmt_value, row)) + " |" for row in rows]
    return lines + [""]


def _summary_section(report: Mapping) -> list[str]:
    rows = [("Cohen's kappa", report["kappa"]), ("accuracy", report["accuracy"]),
            ("macro F1", report["macro_f1"]), ("balanced accuracy", report["balanced_accuracy"])]
    if "top5" in report:
        rows.append(("top-5 accuracy", report["top5"]))
    if "n" in report:
        excluded = report.get("n_unlabelled_excluded", 0)
        rows.append(("evaluated items", f"{report['n']}"
                     + (f" ({excluded} unlabelled excluded)" if excluded else "")))
    return ["## Summary", ""] + markdown_table(["metric", "value"], rows)


def _class_section(report: Mapping, class_names: Sequence[str]) -> list[str]:
    """Per-class rows by position (the dicts are in ``labels`` order, whatever their keys)."""
    def column(key: str) -> list:
        values = list((report.get(key) or {}).values())
        return values + [None] * (len(class_names) - len(values))
    rows = zip(class_names, column("per_class_f1"), column("per_class_recall"), column("support"))
    lines = ["## Per-class F1", ""] + markdown_table(["class", "F1", "recall (accuracy)", "support"],
                                             list(rows))
    confusion = report["confusion"]
    lines += ["## Confusion matrix", "", "Counts; rows = true class, columns = predicted class.", ""]
    return lines + markdown_table(["true \\ predicted", *class_names],
                          [(name, *row) for name, row in zip(class_names, confusion)])


def _subject_section(per_subject: Mapping) -> list[str]:
    lines = ["## Per subject", "",
             f"{per_subject.get('n_groups', len(per_subject['groups']))} subjects. "
             f"Kappa mean ± std: {fmt_mean_std(per_subject.get('kappa_mean'), per_subject.get('kappa_std'))}; "
             f"accuracy mean ± std: "
             f"{fmt_mean_std(per_subject.get('accuracy_mean'), per_subject.get('accuracy_std'))} "
             f"({per_subject.get('std', STD_NOTE)}).", ""]
    if per_subject.get("note"):
        lines += [per_subject["note"], ""]
    rows = [(gid, m.get("n"), m.get("kappa"), m.get("accuracy"))
            for gid, m in per_subject["groups"].items()]
    return lines + markdown_table(["subject", "n", "kappa", "accuracy"], rows)


def _repeats_section(repeats: Mapping) -> list[str]:
    rows = [(r["repeat"], r["seed"], *(r.get(k) for k in _REPEATED_METRICS))
            for r in repeats["repeats"]]
    rows.append(("mean ± std", "", *(fmt_mean_std(repeats.get(f"{k}_mean"), repeats.get(f"{k}_std"))
                                     for k in _REPEATED_METRICS)))
    intro = (f"{repeats['n_repeats']} finetunes, each on another draw of the labelled data "
             f"(seed per row); {repeats.get('std', STD_NOTE)}.")
    return ["## Repeats", "", intro, ""] + markdown_table(
        ["repeat", "seed", "kappa", "accuracy", "macro F1"], rows)


def _pretext_section(pretext: Mapping, chance: Mapping | None, warning: str | None) -> list[str]:
    """Held-out pretext loss next to its chance level, then (relative-target methods) one row per
    target value, l2 and the split by pair type."""
    epoch = pretext.get("epoch")
    epoch = epoch + 1 if isinstance(epoch, int) else epoch  # metrics.jsonl counts epochs from 0
    lines = ["## Pretext on held-out items (last epoch)", ""]
    if chance:
        lines += [f"After pretraining epoch {fmt_value(epoch)}, on {fmt_value(pretext.get('items'))} fixed "
                  f"test items: held-out {chance.get('metric')} {fmt_value(pretext.get('loss'))}; chance "
                  f"{fmt_value(chance.get('value'))} ({chance.get('how')})"
                  + (f"; predicting the mean target of these very pairs: {fmt_value(pretext['loss_mean_predictor'])}"
                     if pretext.get("loss_mean_predictor") is not None else "") + ".", ""]
    if warning:
        lines += [f"**{warning}**", ""]
    names = list(pretext.get("mae") or {})
    if not names:
        return lines
    rows = [(name, pretext["mae"][name], (pretext.get("mse") or {}).get(name)) for name in names]
    rows.append(("l2 (translation)", pretext.get("l2"), ""))
    intro = (f"{fmt_value(pretext.get('pairs'))} pairs; errors of the predicted "
             f"relative targets in their own units (translations in sizes of the reference patch), "
             f"l2 = mean Euclidean norm of the translation error (paper Table 5).")
    lines += [intro, ""] + markdown_table(["target", "mean abs. error", "mean sq. error"], rows)
    by_type = pretext.get("by_pair_type")
    if isinstance(by_type, Mapping):
        lines += ["By pair type (overlapping: the patches share samples/pixels; adjacent: gap under one "
                  "patch; far: the rest): the model's mean squared error against the chance predictor's "
                  "(the mean relative transform) on the same pairs.", ""]
        lines += markdown_table(["pair type", "pairs", "mse", "mse of chance"],
                                [(k, v.get("pairs"), v.get("mse"), v.get("mse_chance")) for k, v in by_type.items()])
    return lines


def _reference_section(reference: Mapping) -> list[str]:
    lines = [f"## {REFERENCE_HEADING}", ""]
    lines += [f"- {key}: {fmt_value(text)}" for key, text in reference.items() if key != "values"]
    lines += ["", "These numbers are quoted from the paper for context; they were not produced by "
              "this run and used the paper's own data, budget and hardware.", ""]
    return lines + markdown_table(["", "value"], list(reference["values"].items()))


def render_markdown(report: Mapping, class_names: Sequence[str]) -> str:
    """The Markdown report for the JSON-ready ``report`` dict."""
    lines = [f"# {report.get('title', 'Evaluation report')}", ""]
    for key, value in (report.get("context") or {}).items():
        lines.append(f"- **{key}**: {fmt_value(value)}")
    if report.get("context"):
        lines.append("")
    lines += _summary_section(report) + _class_section(report, class_names)
    if isinstance(report.get("per_subject"), Mapping):
        lines += _subject_section(report["per_subject"])
    if isinstance(report.get("repeats"), Mapping):
        lines += _repeats_section(report["repeats"])
    if isinstance(report.get("pretext_heldout"), Mapping):
        lines += _pretext_section(report["pretext_heldout"], report.get("pretext_chance"),
                                  report.get("pretext_warning"))
    if isinstance(report.get("calibration"), Mapping):
        from part.evaluation.calibration import markdown_section
        lines += markdown_section(report["calibration"])
    if report.get("paper_reference"):
        lines += _reference_section(report["paper_reference"])
    lines += ["Plots: `confusion.png` (row-normalised confusion matrix).", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots

def save_png(fig: Figure, path: str | Path, description: str | None = None) -> Path:
    """Write ``fig`` as PNG atomically; ``description`` goes into the PNG's "Description" text chunk."""
    metadata = {"Description": description} if description else None
    return atomic_write(path, lambda fileobj: fig.savefig(fileobj, format="png", dpi=120, metadata=metadata))


def plot_confusion(path: str | Path, confusion: Any, class_names: Sequence[str], title: str) -> Path:
    """Row-normalised confusion matrix (rows = true), annotated when there are <= 20 classes."""
    counts = np.asarray(confusion, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.6 * len(class_names) + 2.0)
    fig = Figure(figsize=(min(size, 30), min(size, 30)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if len(class_names) <= 20:
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right")
        ax.set_yticks(ticks, class_names)
        for (i, j), value in np.ndenumerate(normalised):
            ax.text(j, i, f"{value:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if value > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\n(row-normalised; counts in brackets)")
    return save_png(fig, path)


# ----------------------------------------------------------------------------- the report

def write_report(out_dir: str | Path, metrics: Mapping, class_names: Sequence[str], title: str,
                 context: Mapping | None = None, reference: Mapping | None = None,
                 pretext: Mapping | None = None, pretext_warning: str | None = None) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``confusion.png`` into ``out_dir``.

    ``metrics``: ``classification_metrics`` output, optionally with ``per_subject``
    (``per_group_metrics``), ``repeats`` (``aggregate_repeats``) and ``calibration``
    (``part.evaluation.calibration.calibration_section``: a Calibration section and the
    reliability diagram ``calibration.png``). ``context``: facts about the
    run shown at the top (recipe, checkpoint, "data: synthetic", ...). ``reference``: the paper's
    numbers, either ``{label: value}`` or ``{"values": {label: value}, "metric": ..., ...}``;
    written under a heading that says they are the paper's, not this run's. ``pretext``: a
    held-out record of ``metrics.jsonl`` (``part.evaluation.pretext.last_heldout``: {"epoch",
    "heldout": {"mae", "mse", "l2", "items", "pairs", "loss", ...}[, "chance"]}), reported as
    ``pretext_heldout``, its chance level as ``pretext_chance`` and ``pretext_near_chance``
    (whether ``pretext_warning``, ``part.evaluation.chance.chance_warning``'s line, was given).
    Returns the paths written, by kind.
    """
    missing = [key for key in REQUIRED_KEYS if key not in metrics]
    if missing:
        raise ValueError(f"write_report: metrics lack {missing}; pass the dict returned by "
                         f"part.evaluation.metrics.classification_metrics.")
    out_dir = Path(out_dir)
    report = {"title": title, **metrics, "class_names": list(class_names),
              "context": dict(context or {})}
    if pretext and isinstance(pretext.get("heldout"), Mapping):
        report["pretext_heldout"] = {"epoch": pretext.get("epoch"), **pretext["heldout"]}
        if isinstance(pretext.get("chance"), Mapping):
            report["pretext_chance"] = dict(pretext["chance"])
            report["pretext_near_chance"] = bool(pretext_warning)
            if pretext_warning:
                report["pretext_warning"] = pretext_warning
    if reference:
        structured = isinstance(reference.get("values"), Mapping)
        report["paper_reference"] = {"source": "the PART paper (not produced by this run)",
                                     **(reference if structured else {"values": reference})}
    report = to_jsonable(report)
    paths = {"confusion": plot_confusion(out_dir / "confusion.png", report["confusion"],
                                         class_names, title)}
    if isinstance(report.get("calibration"), Mapping):
        from part.evaluation.calibration import plot_reliability
        paths["calibration"] = plot_reliability(out_dir / "calibration.png", report["calibration"], title)
    paths["json"] = atomic_write_json(out_dir / "report.json", report)
    paths["markdown"] = atomic_write_text(out_dir / "report.md", render_markdown(report, class_names))
    return paths
