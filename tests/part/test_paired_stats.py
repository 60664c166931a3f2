"""Paired statistics of part-compare (issue 26 item 3): the bootstrap CI against a direct numpy
computation, the Wilcoxon p against scipy, and the comparison's paired section (subjects, test
items, repeats, probe reports, refusals, "synthetic data" in every artifact)."""
import json

import numpy as np
import pytest
import yaml
from scipy.stats import wilcoxon

from part.compare import main
from part.evaluation import paired_stats as ps
from part.evaluation.compare import compare

CLASSES = ["W", "N1", "N2", "N3", "REM"]


def test_bootstrap_ci_matches_a_direct_numpy_computation():
    d = np.random.default_rng(3).normal(0.05, 0.1, size=17)
    low, high = ps.bootstrap_ci(d, resamples=2000, seed=11)
    rng = np.random.default_rng(11)
    index = rng.integers(0, 17, size=(2000, 17))
    means = np.array([d[row].mean() for row in index])  # one resample at a time
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert ps.bootstrap_ci(d, 2000, 11) == (low, high)  # seeded
    assert ps.bootstrap_ci([0.2] * 5) == (pytest.approx(0.2), pytest.approx(0.2))
    # large n: close to the normal-theory interval mean +- 1.96 sd / sqrt(n)
    big = np.random.default_rng(0).normal(0.0, 1.0, size=400)
    lo, hi = ps.bootstrap_ci(big)
    half = 1.96 * big.std() / np.sqrt(400)
    assert lo == pytest.approx(big.mean() - half, abs=0.02) and hi == pytest.approx(big.mean() + half, abs=0.02)
    with pytest.raises(ValueError, match="n = 0"):
        ps.bootstrap_ci([])


def test_wilcoxon_matches_scipy_and_states_its_limits():
    d = np.array([0.12, -0.03, 0.08, 0.2, 0.05, -0.01, 0.07, 0.11])
    p, note = ps.wilcoxon_p(d)
    assert p == pytest.approx(wilcoxon(d).pvalue) and note == ""
    assert ps.wilcoxon_p(np.zeros(7)) == (None, "all differences are 0: no Wilcoxon test")
    p, note = ps.wilcoxon_p([0.1, 0.2, 0.0, 0.3])  # 3 non-zero: the exact test cannot reach 0.05
    assert p == pytest.approx(wilcoxon([0.1, 0.2, 0.3]).pvalue) and p >= 0.25
    assert note == ("only 3 non-zero differences: the exact Wilcoxon test cannot reach p < 0.05 "
                    "(smallest p = 2/2^3 = 0.25)")


def test_paired_difference_marks_a_ci_holding_zero():
    a = np.array([0.6, 0.7, 0.5, 0.65, 0.55, 0.62, 0.58])
    strong = ps.paired_difference(a, a - 0.1)
    assert strong["mean"] == pytest.approx(0.1) and strong["significant"] is True
    noisy = ps.paired_difference(a, a + np.array([0.1, -0.1, 0.05, -0.05, 0.02, -0.02, 0.0]))
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and noisy["significant"] is False
    with pytest.raises(ValueError, match="3 scores against 2"):
        ps.paired_difference([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------- part-compare

def _run(tmp_path, name, method, kappas=None, predictions=None, repeats=None, root="/data/prep", probes=None):
    run = tmp_path / "runs" / name
    (run / "report").mkdir(parents=True)
    config = {"run": {"name": name, "stages": ["pretrain", "finetune", "evaluate"]},
              "data": {"name": "pc18", "root": str(root), "limit_train": None, "limit_test": None},
              "method": {"name": method}, "pretrain": {"epochs": 2}, "finetune": {"epochs": 1, "batch_size": 8}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))

    def report(ks):
        r = {"kappa": float(np.mean(list(ks.values()))) if ks else 0.5, "accuracy": 0.7, "macro_f1": 0.5,
             "balanced_accuracy": 0.5, "per_class_f1": dict.fromkeys(CLASSES, 0.5), "confusion": [[1] * 5] * 5}
        if ks:
            r["per_subject"] = {"groups": {s: {"kappa": k, "accuracy": 0.7, "n": 10} for s, k in ks.items()}}
        return r
    main_report = report(kappas)
    if repeats:
        main_report["repeats"] = {"n_repeats": len(repeats), "repeats": [
            {"repeat": i, "seed": i, "kappa": k} for i, k in enumerate(repeats)]}
    (run / "report" / "report.json").write_text(json.dumps(main_report))
    if predictions is not None:
        np.savez(run / "report" / "predictions_r0.npz", y_true=predictions[0], y_pred=predictions[1])
    for protocol, ks in (probes or {}).items():
        (run / "report" / protocol).mkdir()
        (run / "report" / protocol / "report.json").write_text(json.dumps({**report(ks), "protocol": protocol}))
    return run


SUBJECTS = [f"s{i}" for i in range(8)]


def test_compare_pairs_subjects_repeats_and_probe_reports(tmp_path):
    ka = dict(zip(SUBJECTS, [0.62, 0.70, 0.55, 0.66, 0.60, 0.58, 0.64, 0.61]))
    kb = {s: k - 0.05 for s, k in ka.items()}
    a = _run(tmp_path, "part", "part", ka, repeats=[0.62, 0.60, 0.61], probes={"linear_probe": ka})
    b = _run(tmp_path, "sup", "mae", kb, repeats=[0.60, 0.61, 0.57], probes={"linear_probe": kb})
    paths = compare([a, b], tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [r["label"] for r in data["runs"]] == ["part", "part [linear_probe]", "sup", "sup [linear_probe]"]
    ft, probe = data["paired_differences"]
    assert ft["protocol"] == "finetune" and probe["protocol"] == "linear_probe"
    assert ft["unit"] == "subject" and ft["n"] == 8 and ft["mean"] == pytest.approx(0.05)
    assert ft["significant"] is True and ft["p_wilcoxon"] == pytest.approx(wilcoxon([0.05] * 8).pvalue)
    draws = ft["over_repeats"]
    assert draws["n"] == 3 and draws["mean"] == pytest.approx(0.05 / 3)
    assert "smallest p = 2/2^3" in draws["note"]
    assert (draws["ci_low"], draws["ci_high"]) == pytest.approx(ps.bootstrap_ci([0.02, -0.01, 0.04]))
    md = paths["markdown"].read_text()
    assert "## Paired differences (a - b)" in md and "| finetune | part | sup | subject (8) | kappa | +0.050 |" in md
    assert "| finetune draw (3) |" in md and "**not significant**" in md  # the draws' CI holds 0


def test_compare_restricts_to_common_subjects_and_refuses_disjoint_ones(tmp_path, capsys):
    ka = dict(zip(SUBJECTS, np.linspace(0.5, 0.7, 8)))
    kb = {s: k - 0.02 for s, k in ka.items() if s != "s0"}
    kb["s9"] = 0.4
    a, b = _run(tmp_path, "a", "part", ka), _run(tmp_path, "b", "mae", kb)
    pair = json.loads(compare([a, b], tmp_path / "out")["json"].read_text())["paired_differences"][0]
    assert pair["n"] == 7 and pair["mean"] == pytest.approx(0.02)
    assert pair["note"].startswith("different test subjects: restricted to the 7 in common "
                                   "(1 of a's and 1 of b's left out)")
    c = _run(tmp_path, "c", "mae", {"x1": 0.5, "x2": 0.6})
    assert main([str(a), str(c), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "share no test subjects" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_compare_pairs_test_items_without_subjects(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    pa = np.where(rng.random(300) < 0.6, y, (y + 1) % 5)
    pb = np.where(rng.random(300) < 0.5, y, (y + 1) % 5)
    a = _run(tmp_path, "a", "part", predictions=(y, pa))
    b = _run(tmp_path, "b", "supervised", predictions=(y, pb))
    pair = json.loads(compare([a, b], tmp_path / "out")["json"].read_text())["paired_differences"][0]
    da, db = (pa == y).astype(float), (pb == y).astype(float)
    assert pair["unit"] == "test item" and pair["metric"] == "accuracy" and pair["n"] == 300
    assert pair["mean"] == pytest.approx((da - db).mean())
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx(ps.bootstrap_ci(da - db))
    assert pair["p_wilcoxon"] == pytest.approx(wilcoxon(da - db).pvalue)


def test_synthetic_data_is_said_in_every_comparison_artifact(tmp_path):
    root = tmp_path / "prep"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"synthetic": True, "records": {}}))
    ka = dict(zip(SUBJECTS, np.linspace(0.5, 0.7, 8)))
    runs = [_run(tmp_path, "a", "part", ka, root=root), _run(tmp_path, "b", "mae", ka, root=root)]
    paths = compare(runs, tmp_path / "out")
    assert "synthetic data" in paths["markdown"].read_text()
    data = json.loads(paths["json"].read_text())
    assert data["synthetic"] is True and "synthetic data" in data["data_note"]
    from PIL import Image
    assert "synthetic data" in Image.open(paths["png"]).info["Description"]
    real = compare([_run(tmp_path, "c", "part", ka), _run(tmp_path, "d", "mae", ka)], tmp_path / "out2")
    assert "synthetic" not in real["markdown"].read_text().lower()
    assert json.loads(real["json"].read_text())["synthetic"] is False
