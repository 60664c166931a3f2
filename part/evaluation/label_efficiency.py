"""Label efficiency: kappa against the amount of labelled data, for finished pretraining runs
(the logic of ``part-label-efficiency``).

For each run directory (a finished ``pretrain``; for ``supervised`` none is needed) and each
point of the sweep, one sub-run ``<out>/runs/<run name>/<point>`` reuses the run's pretrained
encoder (``checkpoints/pretrain.pt``, hard-linked or copied, never retrained) and runs the stages
``finetune, evaluate, linear_probe, knn`` with ``evaluate.repeats = draws``: each repeat k is
another seeded draw of the labelled data (the dataset's ``label_budget`` key, e.g.
``data.finetune_subjects`` for sleep EEG, drawn from the labelled subjects outside the test
split; ``data.label_fraction`` for images). Finetuning and both probes of a draw use the same
pretrained encoder and the same labelled items (finetuning is uncalibrated,
``finetune.calibration_fraction=0``, so no drawn subject is held out of it; a temperature cannot
change kappa); the test items are those of the run. Every sub-recipe is built before anything
runs, and a sub-run made from another ``pretrain.pt`` than the run's current one is refused.

Resumable: a finished sub-run is skipped; an interrupted one resumes (``run.resume=auto``).
Outputs: ``label_efficiency.json``, ``label_efficiency.md`` (mean ± std over draws per method,
protocol and point) and ``label_efficiency.png`` (kappa against the labelled amount, one panel
per protocol, every method in each, with the chance line: kappa 0).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from part.atomic import atomic_write_json, atomic_write_text, file_sha256
from part.config import load_recipe
from part.errors import ConfigError, DataError
from part.evaluation.metrics import STD_NOTE, mean_std
from part.evaluation.report import fmt_mean_std, fmt_value, markdown_table, save_png, to_jsonable
from part.registry import dataset_spec, method_spec
from part.training.rundir import finished_stages, read_json_file

PROTOCOLS = ("finetune", "linear_probe", "knn")
SWEEP_STAGES = ("finetune", "evaluate", "linear_probe", "knn")
ENCODER_RECORD = "encoder_source.json"  # in each sub-run: the SHA-256 of the run's pretrain.pt it was made from
REPORTS = {"finetune": Path("report") / "report.json", "linear_probe": Path("report") / "linear_probe" / "report.json",
           "knn": Path("report") / "knn" / "report.json"}


def parse_point(text: str, budget: dict) -> tuple[str, float]:
    """A point of the sweep -> (its name for folders and tables, its value for ``budget["key"]``).

    ``all`` is the whole pool; ``N%`` a percentage (fractions); else a number. A point outside
    (0, pool] is a ConfigError naming it, the pool and what to do.
    """
    unit, pool = budget["unit"], budget["pool"]
    if text == "all":
        return "all", budget["all"]
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--points: {text!r} is not a number, a percentage or 'all'") from None
    if isinstance(pool, int) and value != int(value):
        raise ConfigError(f"--points: {text!r} must be a whole number of {unit}")
    if not 0 < value <= pool:
        raise ConfigError(f"--points: {text!r} is outside (0, {pool}]: the data hold {pool} {unit} available "
                          f"to finetuning (test subjects excluded); lower the point, or prepare more labelled "
                          f"data (e.g. a smaller --n-test)")
    value = int(value) if isinstance(pool, int) else value
    return (f"{value:g}" if isinstance(pool, int) else f"{100 * value:g}%"), value


def load_run(run_dir: Path):
    """The resolved recipe of a finished pretraining run; refuses one without its encoder."""
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise DataError(f"'{run_dir}' holds no config.yaml: it is not a run directory of part-train")
    recipe = load_recipe(config, ())
    if method_spec(recipe.method.name).pretrains and not (run_dir / "checkpoints" / "pretrain.pt").is_file():
        raise DataError(f"'{run_dir}' has no pretrained encoder (checkpoints/pretrain.pt); finish its pretraining "
                        f"first (python -m part.train {config} run.stages=[pretrain])")
    return recipe


def point_recipe(run_dir: Path, recipe, out: Path, budget: dict, name: str, value, draws: int, overrides=()):
    """The sub-run's recipe: the run's, with the point's label budget and the sweep's stages."""
    return load_recipe(run_dir / "config.yaml", [
        f"run.output_dir={out / 'runs' / recipe.run.name}", f"run.name={name.replace('%', 'pct')}",
        f"run.stages=[{','.join(SWEEP_STAGES)}]", f"evaluate.repeats={draws}", "evaluate.knn_monitor=false",
        f"{budget['key']}={value}", "finetune.calibration_fraction=0", *overrides])


def check_encoder(run_dir: Path, sub_dir: Path, source_sha: str | None) -> None:
    """Refuse a sub-run made from another ``pretrain.pt`` than the run's current one (its SHA-256,
    ``source_sha``, None for a method without pretraining), recorded in ``<sub-run>/encoder_source.json``
    when the encoder was linked: otherwise points would silently mix encoders."""
    record, linked = sub_dir / ENCODER_RECORD, sub_dir / "checkpoints" / "pretrain.pt"
    if source_sha is None:
        return
    if record.is_file():
        used = read_json_file(record, f"delete {sub_dir} to redo the point").get("pretrain_sha256")
    elif linked.is_file():  # a sub-run from before the record: its own copy of the encoder says
        used = file_sha256(linked)
    else:
        return
    if used != source_sha:
        raise DataError(f"'{sub_dir}' was made from another version of {run_dir / 'checkpoints' / 'pretrain.pt'} "
                        f"(SHA-256 {used[:12]}... then, {source_sha[:12]}... now): delete {sub_dir.parent} to redo "
                        f"the sweep's points with the current encoder, or pass another --out")


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (else a copy), atomically; nothing when it exists."""
    if dst.exists() or not src.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def link_encoder(run_dir: Path, sub_dir: Path) -> None:
    """Put the run's ``pretrain.pt`` into the sub-run, and the test features its sibling sub-runs
    already extracted from it (``features/pretrain_*/test.pt``: the same encoder and test items;
    the cache's checkpoint hash and labels still decide whether they are used)."""
    source, linked = run_dir / "checkpoints" / "pretrain.pt", sub_dir / "checkpoints" / "pretrain.pt"
    _link(source, linked)
    if linked.exists() and not (sub_dir / ENCODER_RECORD).is_file():  # the encoder this sub-run uses
        atomic_write_json(sub_dir / ENCODER_RECORD, {"pretrain": str(source.resolve()),
                                                     "pretrain_sha256": file_sha256(linked)})
    for cached in sorted(sub_dir.parent.glob("*/features/pretrain_*/test.pt")):
        _link(cached, sub_dir / "features" / cached.parent.name / "test.pt")


def sweep(run_dirs: Sequence[str | Path], points: Sequence[str], draws: int, out: str | Path,
          overrides: Sequence[str] = (), say=print) -> dict:
    """Run the sweep (skipping finished points) and write the table and plot; returns the paths."""
    from part.training.runner import run  # late: `--help` imports no torch

    out = Path(out)
    if draws < 1:
        raise ConfigError(f"--draws {draws}: at least 1 draw per point")
    plan = []
    for run_dir in map(Path, run_dirs):  # check everything before the first training step
        recipe = load_run(run_dir)
        bundle = dataset_spec(recipe.modality.name, recipe.data.name).load(recipe.data, recipe.run.seed, 0)
        if bundle.label_budget is None:
            raise ConfigError(f"data.name={recipe.data.name!r} of '{run_dir}' declares no label budget "
                              f"(DataBundle.label_budget); it cannot be swept")
        budget = bundle.label_budget
        source = run_dir / "checkpoints" / "pretrain.pt"
        source_sha = file_sha256(source) if method_spec(recipe.method.name).pretrains else None
        for name, value in dict(parse_point(str(p), budget) for p in points).items():
            sub = point_recipe(run_dir, recipe, out, budget, name, value, draws, overrides)  # a bad --set fails here
            sub_dir = Path(sub.run.output_dir) / sub.run.name
            check_encoder(run_dir, sub_dir, source_sha)
            plan.append((run_dir, recipe, budget, name, value, bundle.description, sub, sub_dir))
    results = []
    for run_dir, recipe, budget, name, value, description, sub, sub_dir in plan:
        if all(s in finished_stages(sub_dir) for s in ("evaluate", "linear_probe", "knn")):
            say(f"[label-efficiency] {recipe.run.name} at {name} {budget['unit']}: finished; skipped")
        else:
            say(f"[label-efficiency] {recipe.run.name} ({recipe.method.name}) at {name} {budget['unit']} "
                f"({budget['key']}={value}), {draws} draws")
            link_encoder(run_dir, sub_dir)
            run(sub)
        results.append(collect(sub_dir, recipe, budget, name, value, description))
    return write_outputs(out, results, draws)


def collect(sub_dir: Path, recipe, budget: dict, name: str, value, description: str) -> dict:
    """One row: per protocol kappa / accuracy per draw, their mean ± std, and the chance levels."""
    row = {"run": recipe.run.name, "method": recipe.method.name, "point": name, "value": value,
           "unit": budget["unit"], "key": budget["key"], "data": description,
           "synthetic": "synthetic" in description.lower(), "sub_run": str(sub_dir), "protocols": {}}
    for protocol, rel in REPORTS.items():
        report = read_json_file(sub_dir / rel, f"rerun part-label-efficiency to redo the point {name}")
        draws = (report.get("repeats") or {}).get("repeats") or [report]
        kappas = [d.get("kappa") for d in draws]
        accs = [d.get("accuracy") for d in draws]
        row["protocols"][protocol] = {"kappas": kappas, "accuracies": accs,
                                      "kappa_mean_std": mean_std(kappas), "accuracy_mean_std": mean_std(accs)}
        if report.get("chance"):
            row["chance"] = report["chance"]
    return row


def write_outputs(out: Path, rows: list, draws: int) -> dict:
    """``label_efficiency.{json,md,png}`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    synthetic = any(r["synthetic"] for r in rows)
    note = ("SYNTHETIC data (generated recordings/images): these numbers show the pipeline works, not how the "
            "methods do on real data. " if synthetic else "")
    summary = {"synthetic": synthetic, "draws": draws, "std": STD_NOTE, "protocols": list(PROTOCOLS),
               "chance": "kappa 0 (chance agreement) for every protocol; accuracy chance per row (majority class)",
               "rows": rows}
    paths = {"json": atomic_write_json(out / "label_efficiency.json", to_jsonable(summary))}
    table = [(r["method"], r["run"], r["point"],
              *(fmt_mean_std(*r["protocols"][p]["kappa_mean_std"]) for p in PROTOCOLS),
              fmt_value((r.get("chance") or {}).get("accuracy"))) for r in rows]
    units = sorted({r["unit"] for r in rows})
    lines = ["# Label efficiency", "", note + f"Cohen's kappa on the test items, mean ± std over {draws} seeded "
             f"draws of the labelled data ({STD_NOTE}); x = {', '.join(units)}. Chance: kappa 0 for every "
             f"protocol; the last column is the accuracy of always predicting the majority class.", "",
             "Protocols: finetune = end to end from the pretrained encoder, on every labelled subject drawn "
             "(uncalibrated: no subject held out for a temperature, which cannot change kappa); linear probe "
             "and kNN = frozen pretrained encoder (supervised: its own finetuned encoder, a reference).", ""]
    lines += markdown_table(["method", "run", "labelled", "finetune kappa", "linear-probe kappa", "kNN kappa",
                             "chance accuracy"], table)
    lines += [f"Data (the first run's own splits; each point redraws the labelled items): {rows[0]['data']}"
              if rows else "", "", "Plot: `label_efficiency.png`.", ""]
    paths["markdown"] = atomic_write_text(out / "label_efficiency.md", "\n".join(lines))
    paths["png"] = plot(out / "label_efficiency.png", rows, draws, synthetic)
    return paths


def plot(path: Path, rows: list, draws: int, synthetic: bool) -> Path:
    """Kappa (mean ± std over draws) against the labelled amount; a panel per protocol."""
    fig = Figure(figsize=(4.2 * len(PROTOCOLS), 3.8), layout="constrained")
    runs = list(dict.fromkeys(r["run"] for r in rows))
    unit = rows[0]["unit"] if rows else ""
    for i, protocol in enumerate(PROTOCOLS):
        ax = fig.add_subplot(1, len(PROTOCOLS), i + 1)
        for run_name in runs:
            mine = sorted((r for r in rows if r["run"] == run_name), key=lambda r: r["value"])
            x = np.array([r["value"] for r in mine], dtype=float)
            stats = [r["protocols"][protocol]["kappa_mean_std"] for r in mine]
            y = np.array([np.nan if m is None else m for m, _ in stats])
            err = np.array([0.0 if s is None else s for _, s in stats])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{mine[0]['method']} ({run_name})")
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1, label="chance (kappa 0)")
        if unit != "label fraction":
            ax.set_xscale("log")
        ticks = {r["value"]: (f"all ({r['value']:g})" if r["point"] == "all" else r["point"]) for r in rows}
        ax.set_xticks(list(ticks), list(ticks.values()))
        ax.minorticks_off()
        ax.set_xlabel(unit)
        ax.set_ylabel("Cohen's kappa (test)")
        ax.set_title(protocol.replace("_", " "))
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(("SYNTHETIC data: " if synthetic else "") + f"label efficiency, mean ± std over {draws} draws")
    return save_png(fig, path)
