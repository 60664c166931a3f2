"""Metrics agree with scikit-learn; unlabelled items are excluded; report files are complete."""

import json

import numpy as np
import pytest
from sklearn.metrics import (balanced_accuracy_score, cohen_kappa_score, confusion_matrix,
                             f1_score, top_k_accuracy_score)

from part.errors import DataError
from part.evaluation.metrics import classification_metrics, mean_std, per_group_metrics
from part.evaluation.report import REFERENCE_HEADING, aggregate_repeats, write_report

STAGES = ["W", "N1", "N2", "N3", "REM"]
LABELS = list(range(5))


def _predictions(n: int = 2000, seed: int = 0, unlabelled: float = 0.1):
    """Noisy predictions of random stages, with some unlabelled (-1) items and subject ids."""
    rng = np.random.default_rng(seed)
    y_true = rng.choice(LABELS, size=n, p=[0.3, 0.05, 0.4, 0.1, 0.15])
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 5, n))
    y_true[rng.random(n) < unlabelled] = -1
    subjects = rng.choice(["s01", "s02", "s03", "s04"], size=n)
    return y_true, y_pred, subjects


def test_pooled_metrics_agree_with_sklearn_and_exclude_unlabelled():
    y_true, y_pred, _ = _predictions()
    keep = y_true != -1
    t, p = y_true[keep], y_pred[keep]
    metrics = classification_metrics(y_true, y_pred, LABELS, class_names=STAGES)
    assert metrics["n"] == keep.sum() and metrics["n_unlabelled_excluded"] == (~keep).sum() > 0
    assert metrics["accuracy"] == pytest.approx(np.mean(t == p))
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score(t, p, labels=LABELS))
    assert metrics["macro_f1"] == pytest.approx(f1_score(t, p, labels=LABELS, average="macro"))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, p))
    per_class = f1_score(t, p, labels=LABELS, average=None)
    assert list(metrics["per_class_f1"]) == STAGES
    assert np.allclose(list(metrics["per_class_f1"].values()), per_class)
    assert metrics["confusion"] == confusion_matrix(t, p, labels=LABELS).tolist()
    assert sum(metrics["support"].values()) == keep.sum()
    # the unlabelled items really are left out: scoring them as class 0 changes the numbers
    as_class0 = classification_metrics(np.where(keep, y_true, 0), y_pred, LABELS)
    assert as_class0["kappa"] != pytest.approx(metrics["kappa"])


def test_fixed_labels_keep_rows_for_classes_absent_from_the_data():
    metrics = classification_metrics([0, 0, 2, 2, -1], [0, 2, 2, 2, 4], LABELS)
    assert np.array(metrics["confusion"]).shape == (5, 5)
    assert metrics["per_class_f1"]["1"] == 0.0 and metrics["support"]["1"] == 0
    assert metrics["per_class_recall"]["1"] is None  # no true item of class 1
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # over present classes
    assert metrics["kappa"] == pytest.approx(cohen_kappa_score([0, 0, 2, 2], [0, 2, 2, 2],
                                                               labels=LABELS))


def test_top5_with_probabilities_for_many_classes():
    rng = np.random.default_rng(1)
    labels = list(range(10))
    probs = rng.dirichlet(np.ones(10), size=500)
    y_true = rng.integers(0, 10, 500)
    metrics = classification_metrics(y_true, probs.argmax(1), labels, probs=probs)
    expected = top_k_accuracy_score(y_true, probs, k=5, labels=labels)
    assert metrics["top5"] == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y_true))
    assert "top5" not in classification_metrics(y_true % 5, y_true % 5, LABELS,
                                                probs=probs[:, :5])


def test_bad_inputs_are_reported():
    with pytest.raises(DataError, match="no labelled item"):
        classification_metrics([-1, -1], [0, 1], LABELS)
    with pytest.raises(DataError, match=r"\[7\]"):
        classification_metrics([0, 7], [0, 1], LABELS)
    with pytest.raises(ValueError, match="3 items but y_pred has 2"):
        classification_metrics([0, 1, 2], [0, 1], LABELS)


def test_per_group_metrics_match_sklearn_and_handle_single_class_groups():
    y_true, y_pred, subjects = _predictions(seed=2)
    only_n2 = subjects == "s04"
    y_true[only_n2], y_pred[only_n2] = 2, 2  # one class in truth and prediction: kappa undefined
    y_true[subjects == "s03"] = -1  # a subject with no labelled window
    result = per_group_metrics(y_true, y_pred, subjects, LABELS)
    assert set(result["groups"]) == {"s01", "s02", "s04"}
    assert result["groups_without_labels"] == ["s03"]
    kappas = []
    for subject in ("s01", "s02"):
        keep = (subjects == subject) & (y_true != -1)
        kappa = cohen_kappa_score(y_true[keep], y_pred[keep], labels=LABELS)
        kappas.append(kappa)
        assert result["groups"][subject]["kappa"] == pytest.approx(kappa)
        assert result["groups"][subject]["n"] == keep.sum()
    assert result["groups"]["s04"]["kappa"] is None and result["groups"]["s04"]["accuracy"] == 1.0
    assert result["kappa_undefined"] == ["s04"] and "s04" in result["note"]
    assert result["kappa_mean"] == pytest.approx(np.mean(kappas))
    assert result["kappa_std"] == pytest.approx(np.std(kappas, ddof=1))


def test_mean_std_skips_undefined_values():
    assert mean_std([1.0, None, float("nan"), 3.0]) == pytest.approx((2.0, np.sqrt(2.0)))
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([None]) == (None, None)


def test_aggregate_repeats_reports_each_seed_and_mean_std():
    runs = [classification_metrics(*_predictions(seed=s)[:2], LABELS) for s in (3, 4, 5)]
    summary = aggregate_repeats(runs, seeds=[10, 11, 12])
    kappas = [r["kappa"] for r in runs]
    assert summary["n_repeats"] == 3 and summary["seeds"] == [10, 11, 12]
    assert [r["seed"] for r in summary["repeats"]] == [10, 11, 12]
    assert summary["kappa_mean"] == pytest.approx(np.mean(kappas))
    assert summary["kappa_std"] == pytest.approx(np.std(kappas, ddof=1))
    assert summary["macro_f1_mean"] == pytest.approx(np.mean([r["macro_f1"] for r in runs]))
    with pytest.raises(ValueError, match="one seed per repeat"):
        aggregate_repeats(runs, seeds=[1])


def _full_metrics():
    y_true, y_pred, subjects = _predictions(seed=6)
    y_true[subjects == "s04"], y_pred[subjects == "s04"] = 0, 0
    metrics = classification_metrics(y_true, y_pred, LABELS, class_names=STAGES)
    metrics["per_subject"] = per_group_metrics(y_true, y_pred, subjects, LABELS)
    metrics["repeats"] = aggregate_repeats([metrics, metrics], seeds=[0, 1])
    return metrics


def test_write_report_files_and_contents(tmp_path):
    metrics = _full_metrics()
    reference = {"metric": "Cohen's kappa", "values": {"supervised": 0.531, "PART": 0.616}}
    paths = write_report(tmp_path / "report", metrics, STAGES, "Sleep staging",
                         context={"data": "synthetic"}, reference=reference)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion.png", "report.json", "report.md"]  # and no temp files left
    png = paths["confusion"].read_bytes()
    assert len(png) > 1000 and png.startswith(b"\x89PNG")

    saved = json.loads(paths["json"].read_text())  # strict JSON: NaN would fail elsewhere too
    for key in ("kappa", "accuracy", "macro_f1", "balanced_accuracy", "per_class_f1",
                "confusion", "per_subject"):
        assert key in saved
    assert saved["kappa"] == pytest.approx(metrics["kappa"])
    assert saved["per_subject"]["groups"]["s04"]["kappa"] is None
    assert saved["paper_reference"]["values"]["PART"] == 0.616

    text = paths["markdown"].read_text()
    assert REFERENCE_HEADING in text and "0.616" in text
    assert f"{metrics['kappa']:.3f}" in text and "| N1 |" in text
    assert "## Per subject" in text and "| s04 |" in text and "n/a" in text
    assert "## Repeats" in text and "synthetic" in text


def test_report_mentions_the_paper_only_when_given(tmp_path):
    metrics = classification_metrics(*_predictions(seed=7)[:2], LABELS, class_names=STAGES)
    paths = write_report(tmp_path, metrics, STAGES, "No reference")
    text = paths["markdown"].read_text()
    assert "paper" not in text.lower() and "paper_reference" not in json.loads(
        paths["json"].read_text())
    assert "## Per subject" not in text and "## Repeats" not in text
    with pytest.raises(ValueError, match="kappa"):
        write_report(tmp_path, {"accuracy": 1.0}, STAGES, "Incomplete")


def test_kappa_from_confusion_matches_sklearn_on_a_batch_of_matrices():
    from part.evaluation.metrics import kappa_from_confusion

    rng = np.random.default_rng(3)
    pairs = [(rng.integers(0, 5, 200), rng.integers(0, 5, 200)) for _ in range(6)]
    pairs[1] = (pairs[1][0], np.where(rng.random(200) < 0.7, pairs[1][0], pairs[1][1]))  # agreeing raters
    confusions = np.stack([confusion_matrix(t, p, labels=range(5)) for t, p in pairs]).reshape(2, 3, 5, 5)
    kappa = kappa_from_confusion(confusions)
    assert kappa.shape == (2, 3)
    np.testing.assert_allclose(kappa.ravel(), [cohen_kappa_score(t, p) for t, p in pairs], rtol=1e-12)
    one_class, empty = np.diag([7, 0, 0]), np.zeros((3, 3))  # p_e = 1, and no item: undefined
    assert np.isnan(kappa_from_confusion(np.stack([one_class, empty]))).all()
    assert kappa_from_confusion([[4, 0], [0, 6]]) == 1.0 and kappa_from_confusion([[0, 5], [5, 0]]) == -1.0
