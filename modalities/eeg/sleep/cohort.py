"""Cohort files of a ``part-stage`` call over several nights, built from the per-night files in
``--out`` only (so a rerun that skips finished nights writes the same full files):

- ``cohort.csv``: one row per night: ``record``, ``subject``, ``start``, ``duration_min``, every
  numeric statistic of ``<rec>.stats.json`` (nested ones as ``minutes.N2``), ``no_signal_epochs``
  and ``flat_epochs`` (summed over channels), ``flag.<name>`` for every entry of the ``flags``
  dicts of ``<rec>.stats.json`` and ``<rec>.agreement.json`` (read generically), and
  ``kappa``, ``accuracy``, ``macro_f1`` where the night was scored;
- with scored nights, ``cohort_agreement.json`` / ``.md``: per statistic the model-vs-scorer
  bias (mean of model - scorer across nights), SD of the differences (ddof=1) and the
  Bland-Altman 95 % limits of agreement ``bias +/- 1.96 SD`` (the parametric limits of YASA's
  ``SleepStatsAgreement``), computed on ``<rec>.paired_stats.json`` (both scorings' statistics on
  the epochs both scored); the pooled epoch-by-epoch agreement (the nights' confusion matrices
  summed: kappa, accuracy, macro-F1); per-night kappa mean +/- SD; and ``cohort_bland_altman.png``.

Subjects: a Sleep-EDF name ``SC4ssN..``/``ST7ssN..`` belongs to subject ``SC4ss``/``ST7ss``; any
other recording is its own subject. Every file is written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from part.atomic import atomic_write_json, atomic_write_text
from part.evaluation.metrics import kappa_from_confusion, mean_std

LOA_Z = 1.96  # 95 % limits of agreement (normal differences)
NOT_STATISTICS = {"definitions", "info", "flags", "source", "epoch_s", "n_epochs", "first_epoch_onset_s",
                  "record", "scorer", "start"}
PLOTTED = ("tst_min", "sleep_efficiency_pct", "sol_min", "rem_latency_min", "waso_min", "minutes.N1",
           "minutes.N2", "minutes.N3", "minutes.REM")
_SLEEP_EDF = re.compile(r"^(S[CT]\d{3})\d")
PAIRED_SUFFIX = ".paired_stats.json"


def subject_of(record: str) -> str:
    """Sleep-EDF ``SC4ssN...`` -> ``SC4ss`` (both nights of a subject); else the record itself."""
    match = _SLEEP_EDF.match(record)
    return match.group(1) if match else record


def numeric_leaves(stats: Mapping, skip: Iterable[str] = NOT_STATISTICS, prefix: str = "") -> dict[str, float | None]:
    """Every number of ``stats`` (nested dicts as ``outer.inner``; bools and ``skip`` keys left out;
    None kept where a statistic does not exist), in the file's order."""
    out: dict[str, float | None] = {}
    for key, value in stats.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_leaves(value, (), f"{name}."))
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[name] = value
    return out


def paired_statistics(staged, reference) -> dict:
    """The model's and the scorer's statistics on the epochs of ``staged`` (a staged Hypnogram)
    that both scored, the reference (a Hypnogram) put on the staged clock first."""
    from part.modalities.eeg.sleep.hypnogram import Hypnogram

    truth = reference.aligned_to(staged).labels_at(staged.onsets_s, staged.epoch_s)
    both = (truth >= 0) & (staged.stages >= 0)
    same = {"onsets_s": staged.onsets_s, "epoch_s": staged.epoch_s, "start": staged.start}
    model = Hypnogram(np.where(both, staged.stages, -1), **same).statistics()
    scorer = Hypnogram(np.where(both, truth, -1), **same).statistics()
    return {"record": staged.record, "epochs_compared": int(both.sum()),
            "model": numeric_leaves(model), "scorer": numeric_leaves(scorer),
            "note": "both statistics on the epochs staged by the model and scored by the reference"}


def write_paired(out_dir: Path, name: str, staged, reference) -> Path:
    """``<name>.paired_stats.json`` (:func:`paired_statistics`)."""
    return atomic_write_json(Path(out_dir) / f"{name}{PAIRED_SUFFIX}", paired_statistics(staged, reference))


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def night_row(out_dir: Path, name: str) -> dict | None:
    """The cohort.csv row of a finished night (None when ``<name>.stats.json`` is absent)."""
    stats = _read(Path(out_dir) / f"{name}.stats.json")
    if stats is None:
        return None
    agreement = _read(Path(out_dir) / f"{name}.agreement.json") or {}
    info = stats.get("info") or {}
    row: dict[str, Any] = {"record": name, "subject": subject_of(name), "start": stats.get("start"),
                           "duration_min": round(stats.get("n_epochs", 0) * stats.get("epoch_s", 30.0) / 60.0, 3)}
    row.update(numeric_leaves(stats))
    row["no_signal_epochs"] = int(info.get("no_signal_epochs", 0))
    row["flat_epochs"] = int(sum((info.get("flat_epochs") or {}).values()))
    for flags in (stats.get("flags") or {}, agreement.get("flags") or {}):
        row.update({f"flag.{k}": v for k, v in flags.items()})
    for key in ("kappa", "accuracy", "macro_f1"):
        row[key] = agreement.get(key)
    return row


def _csv_text(rows: Sequence[Mapping]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def bland_altman(model: Sequence[float], scorer: Sequence[float]) -> dict:
    """Bias (mean of model - scorer), SD of the differences (ddof=1) and the 95 % limits of
    agreement bias +/- 1.96 SD over the nights where both are defined (None without 2 nights)."""
    m, s = np.asarray(model, np.float64), np.asarray(scorer, np.float64)
    keep = np.isfinite(m) & np.isfinite(s)
    diff = m[keep] - s[keep]
    bias = float(diff.mean()) if diff.size else None
    sd = float(diff.std(ddof=1)) if diff.size > 1 else None
    return {"n": int(diff.size), "model_mean": float(m[keep].mean()) if diff.size else None,
            "scorer_mean": float(s[keep].mean()) if diff.size else None, "bias": bias, "sd": sd,
            "loa_lower": None if sd is None else bias - LOA_Z * sd,
            "loa_upper": None if sd is None else bias + LOA_Z * sd}


def confusion_scores(confusion: Any) -> dict:
    """Kappa (Cohen's, from the matrix), accuracy and macro-F1 (classes with neither a true nor a
    predicted epoch count 0, as scikit-learn's zero_division=0) of a summed confusion matrix."""
    c = np.asarray(confusion, np.float64)
    n = c.sum()
    tp, rows, cols = np.diag(c), c.sum(1), c.sum(0)
    kappa = kappa_from_confusion(c)
    denom = rows + cols
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"n_epochs": int(n), "kappa": float(kappa) if np.isfinite(kappa) else None,
            "accuracy": float(tp.sum() / n), "macro_f1": float(f1.mean()), "confusion": c.astype(int).tolist()}


def cohort_agreement(out_dir: Path, names: Sequence[str]) -> dict | None:
    """The cohort_agreement.json dict of the scored nights among ``names`` (None: none scored)."""
    agreements = {n: a for n in names if (a := _read(Path(out_dir) / f"{n}.agreement.json")) is not None}
    if not agreements:
        return None
    paired = {n: p for n in agreements if (p := _read(Path(out_dir) / f"{n}{PAIRED_SUFFIX}")) is not None}
    keys = list(dict.fromkeys(k for p in paired.values() for k in p["model"]))
    per_stat = {k: bland_altman([_num(p["model"].get(k)) for p in paired.values()],
                                [_num(p["scorer"].get(k)) for p in paired.values()]) for k in keys}
    kappas = {n: a.get("kappa") for n, a in agreements.items()}
    kappa_mean, kappa_sd = mean_std(kappas.values())
    return {"n_scored_nights": len(agreements), "nights": list(agreements),
            "statistics": per_stat,
            "statistics_note": ("model - scorer per night, on the epochs both scored; bias = mean difference, sd = "
                                f"sample SD (ddof=1), limits of agreement = bias +/- {LOA_Z} sd (Bland-Altman, as "
                                "YASA's SleepStatsAgreement's parametric limits); nights with a statistic undefined "
                                "in either scoring are left out of it (n)"),
            "pooled": confusion_scores(sum(np.asarray(a["confusion"]) for a in agreements.values())),
            "pooled_note": "every scored night's epochs together (confusion matrices summed); kappa 0 = chance",
            "per_night_kappa": {"mean": kappa_mean, "sd": kappa_sd, "values": kappas}}


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _markdown(agreement: Mapping, data_note: str) -> str:
    from part.evaluation.report import fmt_mean_std, markdown_table

    pooled, kappa = agreement["pooled"], agreement["per_night_kappa"]
    rows = [(k, s["n"], s["model_mean"], s["scorer_mean"], s["bias"], s["sd"], s["loa_lower"], s["loa_upper"])
            for k, s in agreement["statistics"].items()]
    lines = ["# Cohort agreement: model vs scorer", "", *([data_note, ""] if data_note else []),
             f"{agreement['n_scored_nights']} scored nights. Per-night kappa mean ± SD: "
             f"{fmt_mean_std(kappa['mean'], kappa['sd'])} (chance: 0).", "",
             "## Pooled epoch-by-epoch agreement", "", agreement["pooled_note"], ""]
    lines += markdown_table(["epochs", "kappa", "accuracy", "macro F1"],
                            [(pooled["n_epochs"], pooled["kappa"], pooled["accuracy"], pooled["macro_f1"])])
    lines += ["## Sleep statistics (Bland-Altman)", "", agreement["statistics_note"], ""]
    lines += markdown_table(["statistic", "nights", "model mean", "scorer mean", "bias", "SD", "LoA lower",
                             "LoA upper"], rows)
    return "\n".join(lines + ["Plot: `cohort_bland_altman.png`.", ""])


def plot_bland_altman(path: Path, out_dir: Path, names: Sequence[str], agreement: Mapping, data_note: str) -> Path:
    """One Bland-Altman panel per main statistic: per night (model + scorer) / 2 against
    model - scorer, with the bias and the 95 % limits of agreement."""
    from matplotlib.figure import Figure

    from part.evaluation.report import save_png

    paired = [p for n in names if (p := _read(Path(out_dir) / f"{n}{PAIRED_SUFFIX}")) is not None]
    stats = [k for k in PLOTTED if k in agreement["statistics"]] or list(agreement["statistics"])[:9]
    fig = Figure(figsize=(4.0 * min(3, len(stats)), 3.4 * math.ceil(len(stats) / 3)), layout="constrained")
    for i, key in enumerate(stats):
        ax = fig.add_subplot(math.ceil(len(stats) / 3), min(3, len(stats)), i + 1)
        m = np.array([_num(p["model"].get(key)) for p in paired])
        s = np.array([_num(p["scorer"].get(key)) for p in paired])
        ax.scatter((m + s) / 2, m - s, s=18)
        ba = agreement["statistics"][key]
        for value, style in ((ba["bias"], "-"), (ba["loa_lower"], "--"), (ba["loa_upper"], "--")):
            if value is not None:
                ax.axhline(value, ls=style, color="tab:red", lw=1)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("(model + scorer) / 2", fontsize=8)
        ax.set_ylabel("model - scorer", fontsize=8)
    fig.suptitle(f"Bland-Altman, {len(paired)} nights: bias (solid), 95 % limits of agreement (dashed)"
                 + (f"\n{data_note}" if data_note else ""), fontsize=9)
    return save_png(fig, path)


def write_cohort(out_dir: str | Path, names: Sequence[str], data_note: str = "") -> dict[str, Path]:
    """Write the cohort files (module docstring) for the finished nights among ``names`` into
    ``out_dir``; returns {kind: path} (empty without a finished night)."""
    out_dir = Path(out_dir)
    rows = [r for n in names if (r := night_row(out_dir, n)) is not None]
    if not rows:
        return {}
    paths = {"csv": atomic_write_text(out_dir / "cohort.csv", _csv_text(rows))}
    finished = [r["record"] for r in rows]
    agreement = cohort_agreement(out_dir, finished)
    if agreement is not None:
        paths["agreement_json"] = atomic_write_json(out_dir / "cohort_agreement.json", agreement)
        paths["agreement_md"] = atomic_write_text(out_dir / "cohort_agreement.md", _markdown(agreement, data_note))
        if agreement["statistics"]:
            paths["bland_altman"] = plot_bland_altman(out_dir / "cohort_bland_altman.png", out_dir, finished,
                                                      agreement, data_note)
    return paths
