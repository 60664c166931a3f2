"""Sleep staging end to end on a few short SYNTHETIC PC18 records: prepare -> pretrain ->
finetune (2 repeats) -> evaluate; the report's numbers agree with scikit-learn on the saved
predictions, the splits stay disjoint, and the paper recipe without data names the prep command."""
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from conftest import prepare_synthetic_pc18, run_main
from part.errors import DataError
from part.train import main as train_main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):  # `part-prepare-pc18 --synthetic 6`, in this process
    return prepare_synthetic_pc18(tmp_path_factory.mktemp("pc18"), records=6, n_test=2, n_finetune=2)


def test_splits_disjoint(prepared):
    splits = json.loads((prepared / "splits.json").read_text())
    test, fine, pre = set(splits["test"]), set(splits["finetune"]), set(splits["pretrain"])
    assert test and fine and pre
    assert not test & fine and not test & pre


def test_pipeline_report_agrees_with_sklearn(prepared, tmp_path):
    args = [ROOT / "recipes/eeg_sleep_demo.yaml", f"data.root={prepared}",
            f"run.output_dir={tmp_path}", "run.device=cpu", "model.dim=32", "model.depth=2", "model.heads=4",
            "method.num_pairs=64", "pretrain.epochs=1", "finetune.epochs=2", "pretrain.batch_size=64",
            "finetune.batch_size=64", "evaluate.repeats=2", "data.class_balance=weighted_loss"]
    res = run_main(train_main, args)  # `python -m part.train ...`, in this process
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SYNTHETIC" in res.stdout
    report_dir = tmp_path / "eeg_sleep_demo_part" / "report"
    report = json.loads((report_dir / "report.json").read_text())
    pred = np.load(report_dir / "predictions_r0.npz")
    y, p = pred["y_true"], pred["y_pred"]
    assert (y >= 0).all()  # unlabelled windows never reach evaluation
    assert report["kappa"] == pytest.approx(cohen_kappa_score(y, p, labels=list(range(5))), abs=1e-9)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-9)
    assert report["macro_f1"] == pytest.approx(
        f1_score(y, p, labels=list(range(5)), average="macro", zero_division=0), abs=1e-9)
    assert report["confusion"] == confusion_matrix(y, p, labels=list(range(5))).tolist()
    subjects = report["per_subject"]["groups"]
    assert len(subjects) == 2 and sum(s["n"] for s in subjects.values()) == len(y)
    for g, s in subjects.items():
        sel = pred["groups"] == g
        assert s["accuracy"] == pytest.approx(accuracy_score(y[sel], p[sel]))
    assert report["repeats"]["n_repeats"] == 2 and report["repeats"]["seeds"] == [0, 1]
    assert (report_dir / "confusion.png").stat().st_size > 1000
    assert len(list(report_dir.glob("hypnogram_*.png"))) == 2
    assert "Paper's reference" in (report_dir / "report.md").read_text()


def test_paper_recipe_without_data_names_the_prep_command(tmp_path):
    res = run_main(train_main, [ROOT / "recipes/eeg_sleep.yaml", f"data.root={tmp_path / 'missing'}",
                                f"run.output_dir={tmp_path}"])
    assert res.returncode == 2
    assert "Prepare it with `part-prepare-pc18 --src RAW" in res.stderr and "Traceback" not in res.stderr


def test_sleep_edf_recipe_without_data_leads_with_the_sleep_edf_command(tmp_path):
    from part.modalities.eeg.datasets import PreparedRecordingsOptions, load_prepared_recordings
    with pytest.raises(DataError, match=r"Prepare it with `part-prepare-sleep-edf --src RAW --out "):
        load_prepared_recordings(PreparedRecordingsOptions(root=str(tmp_path / "missing")))


def test_a_run_imports_scikit_learn_only_when_it_evaluates(prepared, tmp_path):
    """A fresh process pretraining and finetuning (no evaluate stage) never imports scikit-learn;
    the evaluation does (the metrics import it on first use)."""
    import subprocess
    import sys
    common = [str(ROOT / "recipes/eeg_sleep_demo.yaml"), f"data.root={prepared}", f"run.output_dir={tmp_path}",
              "run.device=cpu", "model.dim=16", "model.depth=1", "model.heads=2", "method.num_pairs=16",
              "pretrain.epochs=1", "finetune.epochs=1", "pretrain.batch_size=64", "finetune.batch_size=64",
              "evaluate.repeats=1"]
    code = ("import sys; from part.train import main; code = main(sys.argv[2:]); "
            "print('sklearn' in sys.modules, code)")
    for stages, expected in (("run.stages=[pretrain,finetune]", "False 0"),
                             ("run.stages=[evaluate] run.resume=force", "True 0")):
        out = subprocess.run([sys.executable, "-c", code, "x", *common, *stages.split()], capture_output=True,
                             text=True, timeout=600, cwd=tmp_path)
        assert out.stdout.strip().splitlines()[-1] == expected, out.stderr[-2000:]


def test_a_nan_in_a_prepared_record_is_one_line_before_training(prepared, tmp_path):
    """`part-train` on a prepared directory with a NaN in one record: exit 2, one line naming the
    record file and the fix, before anything is created (it was a 62-line traceback mid-epoch)."""
    import shutil
    prep = tmp_path / "prep"
    shutil.copytree(prepared, prep)
    record = sorted(json.loads((prep / "splits.json").read_text())["pretrain"])[0]
    path = prep / "records" / f"{record}.npy"
    signal = np.load(path, mmap_mode="r+")
    signal[len(signal) // 2, 0, 100] = np.nan
    signal.flush()
    del signal
    res = run_main(train_main, [ROOT / "recipes/eeg_sleep_demo.yaml", f"data.root={prep}",
                                f"run.output_dir={tmp_path / 'runs'}", "run.device=cpu", "model.dim=16",
                                "model.depth=1", "model.heads=2", "run.stages=[pretrain]"])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert f"{path}: window " in res.stderr and "holds non-finite values (NaN or Inf)" in res.stderr
    assert "delete it and re-run the preparation" in res.stderr
    assert list((tmp_path / "runs").glob("*")) == []  # no run directory (run.output_dir is checked writable)
