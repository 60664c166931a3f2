"""Compare finished runs side by side (the logic of ``python -m part.compare`` / ``part-compare``).

Reads each run's ``config.yaml`` (the resolved recipe) and ``report/report.json`` and writes
``comparison.md``, ``comparison.json`` and ``comparison.png`` (grouped bars) into ``--out``
(default: the runs' common parent folder). One row per run: method, pretraining and finetuning
epochs, whether pretraining used position embeddings, Cohen's kappa, accuracy, macro-F1 and
balanced accuracy (the mean recall over classes, the metric of Banville et al.'s EEG
self-supervised baselines) as mean ± std over finetune repeats where the run has them, per-class
F1, and the paper's number for that method, labelled as the paper's; a reference's
``other_methods`` note says where the numbers of methods outside the paper come from.

A comparison is only meaningful on the same test data with the same finetuning budget, so runs
that differ in ``data.name``, ``data.root``, ``data.limit_test`` (or report ``test_split_hash``),
``finetune.epochs``, ``finetune.batch_size`` or ``data.limit_train`` are refused (exit code 2)
with both runs and the differing value named.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from part.atomic import atomic_write_json, atomic_write_text
from part.errors import ConfigError, DataError
from part.registry import method_spec
from part.evaluation.chance import chance_text
from part.evaluation.compare_stats import paired_differences, plot_paired, render_paired, units_of
from part.evaluation.metrics import STD_NOTE
from part.evaluation.report import fmt_value, fmt_mean_std, save_png, markdown_table, to_jsonable

SPLIT_KEYS = ("data.name", "data.root", "data.limit_test")
BUDGET_KEYS = ("finetune.epochs", "finetune.batch_size", "data.limit_train")
METRICS = ("kappa", "accuracy", "macro_f1", "balanced_accuracy")
PROBES = ("linear_probe", "knn")  # report/<protocol>/report.json, written by the probe stages
SYNTHETIC_NOTE = ("synthetic data: these runs were trained and tested on synthetic recordings, not real "
                  "ones; their numbers test the code, not the methods")
METRIC_LABELS = {"kappa": "kappa", "accuracy": "accuracy", "macro_f1": "macro-F1",
                 "balanced_accuracy": "balanced acc."}
_MISSING = object()


# ----------------------------------------------------------------------------- reading runs

def _read(path: Path, run: Path, what: str, fix: str) -> Any:
    if not path.is_file():
        raise DataError(f"run '{run}' has no {what} ('{path}' does not exist); {fix}")
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read {what} '{path}' of run '{run}': {' '.join(str(exc).split())}; "
                        f"{fix}") from exc


def load_run(run_dir: str | Path) -> dict:
    """{"dir", "config", "report"} of one run directory (DataError naming what is missing)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError(f"run directory '{run}' does not exist; pass the folder that "
                        f"python -m part.train wrote (it holds config.yaml and report/)")
    config = _read(run / "config.yaml", run, "resolved recipe config.yaml",
                   "is this a run directory written by python -m part.train?")
    report = _read(run / "report" / "report.json", run, "evaluation report report/report.json",
                   f"run its evaluate stage first: python -m part.train {run / 'config.yaml'} "
                   f"run.stages=[evaluate]")
    for name, value in (("config.yaml", config), ("report/report.json", report)):
        if not isinstance(value, Mapping):
            raise DataError(f"'{run / name}' of run '{run}' is not a mapping; was it written by "
                            f"python -m part.train?")
    probes = {}
    for protocol in PROBES:
        path = run / "report" / protocol / "report.json"
        if path.is_file():
            probe = _read(path, run, f"{protocol} report", f"rerun its stage: python -m part.train "
                          f"{run / 'config.yaml'} run.stages=[{protocol}]")
            if isinstance(probe, Mapping):
                probes[protocol] = probe
    return {"dir": run, "config": config, "report": report, "probes": probes}


def is_synthetic(run: dict) -> bool:
    """Whether a run's data are synthetic: its report's context says so (``"synthetic": true``,
    or a data description naming SYNTHETIC records), or the prepared data's manifest.json under
    ``data.root`` has ``"synthetic": true`` or records of origin "synthetic"."""
    context = run["report"].get("context") or {}
    if context.get("synthetic") or "SYNTHETIC" in str(context.get("data", "")):
        return True
    root = lookup(run["config"], "data.root")
    path = Path(str(root)) / "manifest.json" if root else None
    if path is None or not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    records = manifest.get("records") if isinstance(manifest, Mapping) else None
    return bool(isinstance(manifest, Mapping) and (manifest.get("synthetic") or (
        isinstance(records, Mapping) and any(isinstance(r, Mapping) and r.get("origin") == "synthetic"
                                             for r in records.values()))))


def lookup(tree: Mapping, dotted: str, default: Any = None) -> Any:
    """tree["a"]["b"] for "a.b", or `default` where a level is absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


# ----------------------------------------------------------------------------- comparability

def _difference(a: dict, b: dict, keys: Sequence[str]) -> tuple[str, Any, Any] | None:
    for key in keys:
        va, vb = lookup(a["config"], key, _MISSING), lookup(b["config"], key, _MISSING)
        if va != vb:
            return key, va, vb
    return None


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else repr(value)


def check_comparable(runs: Sequence[dict]) -> None:
    """Raise DataError unless all runs share the test split and the finetune budget of the first."""
    first = runs[0]
    for other in runs[1:]:
        checks = [("test splits", _difference(first, other, SPLIT_KEYS)),
                  ("finetune budgets", _difference(first, other, BUDGET_KEYS))]
        ha, hb = first["report"].get("test_split_hash"), other["report"].get("test_split_hash")
        if ha is not None and hb is not None and ha != hb:
            checks.insert(1, ("test splits", ("report.json test_split_hash", ha, hb)))
        for what, diff in checks:
            if diff:
                key, va, vb = diff
                raise DataError(
                    f"cannot compare runs '{first['dir']}' and '{other['dir']}': they have different "
                    f"{what} ({key} is {_show(va)} in '{first['dir']}' but {_show(vb)} in "
                    f"'{other['dir']}'). A comparison needs the same test data and the same "
                    f"finetuning budget for every method; rerun one of them with {key} matching.")


# ----------------------------------------------------------------------------- rows

def _metric(report: Mapping, key: str) -> dict:
    """{"mean", "std", "n"}: over repeats where the report has them, else the single value."""
    repeats = report.get("repeats")
    if isinstance(repeats, Mapping):
        if isinstance(repeats.get(key), Mapping):  # {"kappa": {"mean", "std"}}
            stats = repeats[key]
            return {"mean": stats.get("mean"), "std": stats.get("std"), "n": repeats.get("n_repeats")}
        if f"{key}_mean" in repeats:  # part.evaluation.report.aggregate_repeats layout
            return {"mean": repeats[f"{key}_mean"], "std": repeats.get(f"{key}_std"),
                    "n": repeats.get("n_repeats")}
    return {"mean": report.get(key), "std": None, "n": 1}


def _norm(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(label).lower())


def paper_value(method: str, reference: Mapping | None) -> Any:
    """The paper's number for `method` from a paper_reference {"values": {label: value}}: the label
    equal to the method name ignoring case and punctuation ("PART-grid" = "part_grid"), else the
    label whose first word is the method name ("Supervised w/ Pos Embed" = "supervised")."""
    values = (reference or {}).get("values") or {}
    for label, value in values.items():
        if _norm(label) == _norm(method):
            return value
    for label, value in values.items():
        words = str(label).split()
        if words and _norm(words[0]) == _norm(method):
            return value
    return None


def _method_label(config: Mapping) -> str:
    name = lookup(config, "method.name", "part")
    head = lookup(config, "method.head")
    return f"{name} ({head} head)" if head not in (None, "cross_attention") else name


def _pretext(report: Mapping) -> dict | None:
    """{"loss", "chance", "near_chance"} of a report's held-out pretext record, or None."""
    heldout, chance = report.get("pretext_heldout"), report.get("pretext_chance")
    if not isinstance(heldout, Mapping) or not isinstance(chance, Mapping):
        return None
    return {"loss": heldout.get("loss"), "chance": dict(chance), "near_chance": report.get("pretext_near_chance")}


def build_row(run: dict, reference: Mapping | None, protocol: str = "finetune") -> dict:
    """One table row (JSON-ready) for a loaded run: its finetune report, or a probe's
    (``protocol`` in PROBES; the paper's number belongs to finetune rows only)."""
    config = run["config"]
    report = run["report"] if protocol == "finetune" else run["probes"][protocol]
    name = lookup(config, "method.name", "part")
    try:
        spec = method_spec(name)
        pretrains, uses_pe = spec.pretrains, spec.position_embedding
    except KeyError as exc:
        raise ConfigError(f"run '{run['dir']}': config.yaml has method.name {name!r}, which this "
                          f"toolkit does not know ({exc.args[0]})") from exc
    stages = lookup(config, "run.stages") or []
    pt_epochs = lookup(config, "pretrain.epochs", 0) if pretrains and "pretrain" in stages else 0
    return {
        "run": str(run["dir"]), "run_name": lookup(config, "run.name"), "method": name,
        "protocol": protocol, "label": Path(run["dir"]).name + ("" if protocol == "finetune" else f" [{protocol}]"),
        "pretext": _pretext(run["report"]), "synthetic": is_synthetic(run),
        "method_label": _method_label(config), "pretrain_epochs": pt_epochs,
        "finetune_epochs": lookup(config, "finetune.epochs"),
        "pretrain_position_embedding": uses_pe if pt_epochs else None,
        **{key: _metric(report, key) for key in METRICS},
        "per_class_f1": dict(report.get("per_class_f1") or {}),
        "paper": paper_value(name, reference) if protocol == "finetune" else None,
    }


def _merged_reference(runs: Sequence[dict]) -> dict | None:
    """The runs' paper references merged (the first run that has a key or names a label wins)."""
    refs = [r["report"].get("paper_reference") for r in runs]
    refs = [r for r in refs if isinstance(r, Mapping) and isinstance(r.get("values"), Mapping)]
    if not refs:
        return None
    merged: dict = {"values": {}}
    for ref in reversed(refs):  # the first run's reference wins, key by key and label by label
        merged.update({k: v for k, v in ref.items() if k != "values"})
        merged["values"].update(ref["values"])
    return merged


# ----------------------------------------------------------------------------- outputs

def _class_names(rows: Sequence[dict]) -> list:
    names: list = []
    for row in rows:
        names += [c for c in row["per_class_f1"] if c not in names]
    return names


def _pretext_cell(pretext: Mapping | None) -> str:
    if not pretext:
        return "n/a"
    text = chance_text(pretext.get("loss"), pretext.get("chance")) or "n/a"
    return text + (" **AT CHANCE**" if pretext.get("near_chance") else "")


def render_markdown(rows: Sequence[dict], reference: Mapping | None, pairs: Sequence[dict] = (),
                    synthetic: bool = False) -> str:
    metric = (reference or {}).get("metric", "value")
    paper = [f"paper's {metric} (the paper's data, not ours)"] if reference else []
    header = ["run", "protocol", "method", "PT epochs", "FT epochs", "pos. embed in PT",
              *(METRIC_LABELS[k] for k in METRICS), "held-out pretext loss (chance)", *paper]
    body = [(r["label"], r["protocol"], r["method_label"], r["pretrain_epochs"], r["finetune_epochs"],
             {True: "yes", False: "no", None: "n/a (no pretraining)"}[r["pretrain_position_embedding"]],
             *(fmt_mean_std(r[k]["mean"], r[k]["std"]) for k in METRICS), _pretext_cell(r["pretext"]),
             *([fmt_value(r["paper"])] if paper else []))
            for r in rows]
    n_rep = sorted({r["kappa"]["n"] for r in rows if r["kappa"]["n"]})
    lines = ["# Method comparison" + (" (synthetic data)" if synthetic else ""), ""]
    if synthetic:
        lines += [f"**{SYNTHETIC_NOTE[0].upper() + SYNTHETIC_NOTE[1:]}.**", ""]
    lines += ["Same test split and finetuning budget for every run (checked). kappa, accuracy, "
              f"macro-F1 and balanced accuracy are mean ± std over finetune repeats where a run has repeats "
              f"(repeats per run: {', '.join(map(str, n_rep)) or 'n/a'}; {STD_NOTE}). Protocols: finetune (end "
              "to end), linear_probe and knn (frozen features) where the run has those reports. Held-out "
              "pretext loss: the last pretraining epoch's, next to its chance level (what a model that "
              "learnt nothing scores); **AT CHANCE**: it stayed within 2 % of chance.", ""]
    lines += markdown_table(header, body)
    if reference:
        source = fmt_value(reference.get("source", "the PART paper"))
        lines += [f"The last column is the paper's ({source}), on the paper's own data (not these "
                  "runs' data), budget and hardware; it was not produced by these runs.", ""]
        outside = sorted({r["method"] for r in rows if r["paper"] is None and r["protocol"] == "finetune"})
        if outside and reference.get("other_methods"):
            lines += [f"Not in the paper ({', '.join(outside)}): {fmt_value(reference['other_methods'])}", ""]
    lines += render_paired(pairs)
    classes = _class_names(rows)
    if classes:
        lines += ["## Per-class F1", ""]
        lines += markdown_table(["class", *(r["label"] for r in rows)],
                                [(c, *(r["per_class_f1"].get(c) for r in rows)) for c in classes])
    return "\n".join(lines)


def plot_comparison(path: Path, rows: Sequence[dict], reference: Mapping | None, pairs: Sequence[dict] = (),
                    synthetic: bool = False) -> Path:
    """Grouped bars (kappa, accuracy, macro-F1, balanced accuracy per row, std as error bars) with the
    paper's number for each method drawn as a marker over its metric's bar; with ``pairs``, a second
    panel of the paired differences and their 95 % CIs. The title says "synthetic data" when so."""
    from matplotlib.figure import Figure

    lower = 0.5 * len(pairs) + 1.5 if pairs else 0.0
    fig = Figure(figsize=(max(8.0, 1.6 * len(rows) + 2), 4.5 + lower), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.5, lower]) if pairs else (fig, None)
    ax = top.add_subplot()  # subfigures: the pairs' long labels do not squeeze the bars
    x, width = np.arange(len(rows)), 0.8 / len(METRICS)
    for i, key in enumerate(METRICS):
        means = [np.nan if r[key]["mean"] is None else r[key]["mean"] for r in rows]
        stds = [np.nan if r[key]["std"] is None else r[key]["std"] for r in rows]
        ax.bar(x + (i - (len(METRICS) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=METRIC_LABELS[key])
    metric = (reference or {}).get("metric")
    if metric in METRICS:
        offset = (METRICS.index(metric) - (len(METRICS) - 1) / 2) * width
        paper = [np.nan if r["paper"] is None else r["paper"] for r in rows]
        ax.scatter(x + offset, paper, marker="D", color="black", zorder=3,
                   label=f"paper's {metric} (the paper's data, not ours)")
    ax.set_xticks(x, [f"{r['label']}\n{r['method_label']}" for r in rows], fontsize=8)
    ax.set_ylabel("score")
    ax.set_title("Method comparison (same test split and finetune budget)"
                 + ("\nSYNTHETIC DATA: tests the code, not the methods" if synthetic else ""))
    ax.legend(fontsize=8)
    if pairs:
        plot_paired(bottom.add_subplot(), pairs)
    return save_png(fig, path, SYNTHETIC_NOTE if synthetic else "method comparison on real data")


def compare(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Load, check and write the comparison; returns {"markdown", "json", "png"} paths.

    ``seed``: the bootstrap's (paired differences)."""
    if not run_dirs:
        raise ConfigError("give at least one run directory to compare")
    runs = [load_run(d) for d in run_dirs]
    check_comparable(runs)
    reference = _merged_reference(runs)
    entries = []
    for run in runs:
        for protocol in ("finetune", *[p for p in PROBES if p in run["probes"]]):
            row = build_row(run, reference, protocol)
            report = run["report"] if protocol == "finetune" else run["probes"][protocol]
            folder = run["dir"] / "report" / ("" if protocol == "finetune" else protocol)
            entries.append({"row": row, "units": units_of(report, folder)})
    rows = [e["row"] for e in entries]
    pairs = paired_differences(entries, seed)
    synthetic = any(r["synthetic"] for r in rows)
    if out_dir is None:
        out_dir = Path(os.path.commonpath([str(r["dir"].resolve().parent) for r in runs]))
    out = Path(out_dir)
    payload = to_jsonable({"synthetic": synthetic, "data_note": SYNTHETIC_NOTE if synthetic else "real data",
                           "runs": rows, "class_names": _class_names(rows),
                           "paired_differences": pairs,
                           "paper_reference": ({**reference, "note": "the paper's numbers, on the paper's own data, "
                                                "not produced by these runs"} if reference else None),
                           "std": STD_NOTE, "checked_equal": list(SPLIT_KEYS + BUDGET_KEYS)})
    return {"json": atomic_write_json(out / "comparison.json", payload),
            "markdown": atomic_write_text(out / "comparison.md", render_markdown(rows, reference, pairs, synthetic)),
            "png": plot_comparison(out / "comparison.png", rows, reference, pairs, synthetic)}
