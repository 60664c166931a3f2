"""`python -m part.compare`: the table from fake run directories, refusals, and the method
section's bad-input rules in the recipe validator."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from part.compare import main
from part.evaluation.compare import compare, paper_value
from part.config import recipe_from_dict
from part.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = {"metric": "kappa", "source": "PART paper, Table 3",
             "values": {"supervised": 0.531, "mp3": 0.553, "droppos": 0.582, "mae": 0.595,
                        "part": 0.616, "part_grid": 0.500}}
CLASSES = ["W", "N1", "N2", "N3", "REM"]


def _config(method, **changes):
    config = {"run": {"name": method, "stages": ["pretrain", "finetune", "evaluate"]},
              "data": {"name": "pc18", "root": "/data/prep", "limit_train": None, "limit_test": 200},
              "method": {"name": method}, "pretrain": {"epochs": 5, "batch_size": 64},
              "finetune": {"epochs": 3, "batch_size": 32}}
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    return config


def _report(kappa, f1s, repeats=None, **extra):
    report = {"kappa": kappa, "accuracy": kappa + 0.2, "macro_f1": kappa - 0.1,
              "balanced_accuracy": kappa, "per_class_f1": dict(zip(CLASSES, f1s)),
              "confusion": [[1] * 5] * 5, "paper_reference": REFERENCE, **extra}
    if repeats is not None:
        report["repeats"] = repeats
    return report


def _run(tmp_path, name, config, report):
    run = tmp_path / "runs" / name
    (run / "report").mkdir(parents=True)
    (run / "config.yaml").write_text("# Fully resolved recipe\n" + yaml.safe_dump(config))
    if report is not None:
        (run / "report" / "report.json").write_text(json.dumps(report))
    return run


@pytest.fixture
def two_runs(tmp_path):
    part_run = _run(tmp_path, "eeg_part", _config("part"), _report(
        0.61, [0.9, 0.3, 0.8, 0.7, 0.6],
        repeats={"n_repeats": 3, "kappa_mean": 0.6, "kappa_std": 0.02, "accuracy_mean": 0.8,
                 "accuracy_std": 0.01, "macro_f1_mean": 0.5, "macro_f1_std": 0.03,
                 "balanced_accuracy_mean": 0.55, "balanced_accuracy_std": 0.04}))
    sup_run = _run(tmp_path, "eeg_supervised", _config("supervised"),
                   _report(0.5, [0.8, 0.2, 0.7, 0.6, 0.5]))
    return part_run, sup_run


def test_table_rows_metrics_and_paper_numbers(tmp_path, two_runs):
    paths = compare(two_runs, tmp_path / "out")
    md = paths["markdown"].read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| eeg_")}
    # issue 26: a protocol column, the held-out pretext loss next to chance, the paper's column
    # labelled as the paper's data
    assert rows["eeg_part"] == ["finetune", "part", "5", "3", "no", "0.600 ± 0.020", "0.800 ± 0.010",
                                "0.500 ± 0.030", "0.550 ± 0.040", "n/a", "0.616"]
    assert rows["eeg_supervised"] == ["finetune", "supervised", "0", "3", "n/a (no pretraining)", "0.500",
                                      "0.700", "0.400", "0.500", "n/a", "0.531"]
    assert "| run | protocol | method | PT epochs | FT epochs | pos. embed in PT | kappa | accuracy | macro-F1 | " \
           "balanced acc. | held-out pretext loss (chance) | paper's kappa (the paper's data, not ours) |" in md
    assert "PART paper, Table 3" in md and "synthetic" not in md.lower()
    assert "| N1 | 0.300 | 0.200 |" in md  # per-class F1, one column per run
    data = json.loads(paths["json"].read_text())
    part_row = data["runs"][0]
    assert part_row["kappa"] == {"mean": 0.6, "std": 0.02, "n": 3}
    assert part_row["per_class_f1"]["REM"] == 0.6 and part_row["paper"] == 0.616
    assert data["runs"][1]["pretrain_position_embedding"] is None
    assert data["class_names"] == CLASSES
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_methods_outside_the_paper_get_no_number_and_the_reference_note(tmp_path):
    """The EEG field's baselines have no PART-paper number: 'n/a' in the paper column and the
    reference's other_methods note (where their published numbers are) under the table."""
    reference = dict(REFERENCE, other_methods="Banville et al. 2021 show theirs in figures")
    rp = _run(tmp_path, "eeg_rp", _config("relative_positioning"), _report(0.4, [0.5] * 5, paper_reference=reference))
    part_run = _run(tmp_path, "eeg_part", _config("part"), _report(0.6, [0.5] * 5, paper_reference=reference))
    md = compare([rp, part_run], tmp_path / "out")["markdown"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| eeg_rp"))
    # column 3: issue 26 added the protocol column
    assert row.split("|")[3].strip() == "relative_positioning" and row.split("|")[-2].strip() == "n/a"
    assert "Not in the paper (relative_positioning): Banville et al. 2021 show theirs in figures" in md
    md = compare([part_run], tmp_path / "out2")["markdown"].read_text()
    assert "Not in the paper" not in md


def test_position_embedding_column_repeats_layout_and_stages(tmp_path):
    mae = _run(tmp_path, "mae", _config("mae"), _report(
        0.59, [0.5] * 5, repeats={"n_repeats": 2, "kappa": {"mean": 0.58, "std": 0.01}}))
    no_pt = _run(tmp_path, "mp3", _config("mp3", **{"run.stages": ["finetune", "evaluate"]}),
                 _report(0.55, [0.5] * 5))
    data = json.loads(compare([mae, no_pt])["json"].read_text())  # default out: common parent
    assert (tmp_path / "runs" / "comparison.md").is_file()
    first, second = data["runs"]
    assert first["pretrain_position_embedding"] is True and first["kappa"]["mean"] == 0.58
    assert first["accuracy"] == {"mean": 0.79, "std": None, "n": 1}  # not in repeats: single value
    assert second["pretrain_epochs"] == 0 and second["paper"] == 0.553


@pytest.mark.parametrize("key,value", [
    ("data.root", "/elsewhere"), ("data.limit_test", 50), ("data.name", "cifar100"),
    ("finetune.epochs", 9), ("finetune.batch_size", 8), ("data.limit_train", 100),
])
def test_refuses_different_split_or_budget(tmp_path, capsys, key, value):
    a = _run(tmp_path, "a", _config("part"), _report(0.6, [0.5] * 5))
    b = _run(tmp_path, "b", _config("mae", **{key: value}), _report(0.6, [0.5] * 5))
    assert main([str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    what = "test splits" if key in ("data.root", "data.limit_test", "data.name") else "finetune budgets"
    assert f"different {what}" in err and key in err and repr(value) in err
    assert str(a) in err and str(b) in err
    assert not (tmp_path / "out").exists()


def test_refuses_different_test_split_hash(tmp_path, capsys):
    a = _run(tmp_path, "a", _config("part"), _report(0.6, [0.5] * 5, test_split_hash="abc"))
    b = _run(tmp_path, "b", _config("mae"), _report(0.6, [0.5] * 5, test_split_hash="def"))
    assert main([str(a), str(b)]) == 2
    assert "test_split_hash is 'abc'" in capsys.readouterr().err


def test_missing_report_and_unknown_method(tmp_path, capsys):
    a = _run(tmp_path, "a", _config("part"), None)
    assert main([str(a)]) == 2
    assert "run.stages=[evaluate]" in capsys.readouterr().err
    b = _run(tmp_path, "b", _config("nonsense"), _report(0.6, [0.5] * 5))
    assert main([str(b)]) == 2
    err = capsys.readouterr().err
    assert "'nonsense'" in err and ("registered: cpc, droppos, mae, mp3, part, part_grid, relative_positioning, "
                                    "supervised, temporal_shuffling") in err


def test_cli_module_entry_point(tmp_path, two_runs):
    changed = _run(tmp_path, "other", _config("mp3", **{"finetune.epochs": 1}), _report(0.5, [0.5] * 5))
    done = subprocess.run([sys.executable, "-m", "part.compare", str(two_runs[0]), str(changed)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "finetune.epochs is 3" in done.stderr
    assert "Traceback" not in done.stderr


def test_paper_value_matching():
    values = {"values": {"Supervised w/ Pos Embed": 0.531, "PART-grid": 0.5, "PART": 0.616}}
    assert paper_value("part_grid", values) == 0.5 and paper_value("part", values) == 0.616
    assert paper_value("supervised", values) == 0.531 and paper_value("mae", values) is None


# ----------------------------------------------------------------------------- recipe rules

def _recipe(method):
    return recipe_from_dict({"data": {"name": "digits"}, "modality": {"name": "image"}, "method": method})


def test_unknown_method_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown method 'maee' at 'method.name'; registered: cpc, droppos, mae, "
                                          "mp3, part, part_grid, relative_positioning, supervised, "
                                          "temporal_shuffling"):
        _recipe({"name": "maee"})


@pytest.mark.parametrize("method,key,value", [
    ("mae", "mask_ratio", 1.0), ("mae", "mask_ratio", -0.25), ("mp3", "mask_ratio", 1.5),
    ("droppos", "mask_ratio", 1.0), ("droppos", "position_mask_ratio", -0.1),
])
def test_mask_ratio_outside_unit_interval_is_rejected(method, key, value):
    with pytest.raises(ConfigError, match=rf"'method\.{key}' = {value} is out of range; "
                                          rf"allowed: in \[0\.0, 1\.0\)"):
        _recipe({"name": method, key: value})


def test_options_a_method_does_not_take_are_errors_and_defaults_hold():
    with pytest.raises(ConfigError, match="unknown key 'method.num_pairs'"):
        _recipe({"name": "mae", "num_pairs": 8})
    with pytest.raises(ConfigError, match="unknown key 'method.mask_ratio'"):
        _recipe({"name": "supervised", "mask_ratio": 0.5})
    with pytest.raises(ConfigError, match="'method.smoothing_sigma' = -1.0 is out of range"):
        _recipe({"name": "droppos", "smoothing_sigma": -1.0})
    droppos = _recipe({"name": "droppos", "position_mask_ratio": 0.2}).method
    assert (droppos.mask_ratio, droppos.position_mask_ratio, droppos.smoothing_sigma) == (0.75, 0.2, 1.0)
    assert _recipe({"name": "mae"}).method.norm_pix_loss is True
    assert _recipe({"name": "mp3", "mask_ratio": 0.0}).method.mask_ratio == 0.0
