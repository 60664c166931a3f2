"""Label efficiency on SYNTHETIC PC18 records: ``data.finetune_subjects`` draws and the
``part-label-efficiency`` sweep (draws never touch test subjects, finished points are skipped,
points beyond the pool are refused)."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import prepare_synthetic_pc18, run_main
from part.config import load_recipe
from part.label_efficiency import main as sweep_main
from part.modalities.eeg.datasets import SleepDataOptions, load_data
from part.train import main as train_main
from part.training.checkpoint import load_checkpoint, save_checkpoint
from part.training.stages import finetuned_name

ROOT = Path(__file__).resolve().parents[3]
TINY = ["run.device=cpu", "model.dim=32", "model.depth=2", "model.heads=4", "method.num_pairs=32",
        "pretrain.epochs=1", "pretrain.batch_size=64", "pretrain.heldout_items=0", "data.limit_train=192",
        "data.limit_test=96", "data.hypnograms=0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_synthetic_pc18(tmp_path_factory.mktemp("pc18le"), records=6, n_test=2, n_finetune=2)


@pytest.fixture(scope="module")
def pretrained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("le_runs")
    res = run_main(train_main, [ROOT / "recipes/eeg_sleep_demo.yaml", f"data.root={prepared}",
                                f"run.output_dir={out}", *TINY, "run.stages=[pretrain]"])
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "eeg_sleep_demo_part"


def _test_subjects(bundle):
    return set(bundle.test.subjects)


def test_finetune_subjects_draws_stay_outside_the_test_split(prepared):
    splits = json.loads((prepared / "splits.json").read_text())
    test = {splits["subjects"].get(r, r) for r in splits["test"]}
    seen = set()
    for repeat in range(6):
        bundle = load_data(SleepDataOptions(root=str(prepared), finetune_subjects=3), seed=0, repeat=repeat)
        drawn = set(bundle.finetune.subjects)
        assert len(drawn) == 3 and not drawn & test and _test_subjects(bundle) == test
        seen.add(frozenset(drawn))
        assert bundle.label_budget == {"key": "data.finetune_subjects", "unit": "labelled subjects",
                                       "pool": 4, "all": 4}
    assert len(seen) == 4  # all 4 ways of choosing 3 of the 4 non-test subjects, then repeats


def test_sweep_draws_never_touch_test_subjects_and_resumes(pretrained, tmp_path):
    out, source = tmp_path / "le", tmp_path / "run"  # a copy: its encoder is replaced at the end
    shutil.copytree(pretrained, source)
    args = [source, "--points", "1", "all", "--draws", "2", "--out", out, "--set", "finetune.epochs=1",
            "finetune.batch_size=64"]
    res = run_main(sweep_main, args)
    assert res.returncode == 0, res.stderr[-3000:]
    table = json.loads((out / "label_efficiency.json").read_text())
    assert table["synthetic"] is True and [r["point"] for r in table["rows"]] == ["1", "all"]
    assert [r["value"] for r in table["rows"]] == [1, 4]
    for row in table["rows"]:
        recipe = load_recipe(Path(row["sub_run"]) / "config.yaml", ())
        assert recipe.data.finetune_subjects == row["value"] and recipe.evaluate.repeats == 2
        for repeat in range(2):  # the draws the sub-run trained and probed on
            bundle = load_data(recipe.data, recipe.run.seed, repeat)
            drawn = set(bundle.finetune.subjects)
            assert len(drawn) == row["value"] and not drawn & _test_subjects(bundle)
            card = load_checkpoint(Path(row["sub_run"]) / "checkpoints" / finetuned_name(repeat))["card"]
            assert card["trained_on"]["groups"] == sorted(drawn)  # finetuned on every labelled subject drawn
            assert card.get("temperature") is None  # so none is held out to calibrate on
        for protocol in ("finetune", "linear_probe", "knn"):
            assert len(row["protocols"][protocol]["kappas"]) == 2
    first, second = (Path(r["sub_run"]) / "features" / "pretrain_mean" / "test.pt" for r in table["rows"])
    assert first.samefile(second)  # test features extracted once per encoder, shared by the points
    md = (out / "label_efficiency.md").read_text()
    assert "SYNTHETIC" in md and "kappa 0" in md and "uncalibrated" in md
    assert (out / "label_efficiency.png").stat().st_size > 5000
    again = run_main(sweep_main, args)
    assert again.returncode == 0
    assert again.stdout.count("finished; skipped") == 2 and "[finetune]" not in again.stdout
    state = load_checkpoint(source / "checkpoints" / "pretrain.pt")  # the run's encoder changes
    state["encoder"] = {k: v + 1 for k, v in state["encoder"].items()}
    save_checkpoint(source / "checkpoints" / "pretrain.pt", state)
    stale = run_main(sweep_main, args)
    assert stale.returncode == 2 and "[finetune]" not in stale.stdout
    assert stale.stderr.count("\n") == 1 and "was made from another version of" in stale.stderr
    assert f"delete {out / 'runs' / 'eeg_sleep_demo_part'} to redo" in stale.stderr
    for record in (out / "runs").glob("*/*/encoder_source.json"):  # a sub-run without the record: its own copy
        record.unlink()
    assert run_main(sweep_main, args).returncode == 2


@pytest.fixture(scope="module")
def supervised(prepared, tmp_path_factory):
    """A supervised run (no pretraining, so nothing is trained): a method without method.num_pairs."""
    out = tmp_path_factory.mktemp("le_sup")
    res = run_main(train_main, [ROOT / "recipes/eeg_sleep_demo.yaml", f"data.root={prepared}", f"run.output_dir={out}",
                                "run.name=sup", "method.name=supervised",
                                *[t for t in TINY if not t.startswith("method.")], "run.stages=[pretrain]"])
    assert res.returncode == 0, res.stderr[-2000:]
    return out / "sup"


def test_a_bad_override_for_a_later_run_is_refused_before_anything_trains(pretrained, supervised, tmp_path):
    res = run_main(sweep_main, [pretrained, supervised, "--points", "1", "--draws", "1", "--out", tmp_path / "le",
                                "--set", "method.num_pairs=64", "finetune.epochs=1"])
    assert res.returncode == 2 and "[finetune]" not in res.stdout
    assert "unknown key 'method.num_pairs'" in res.stderr and res.stderr.count("\n") == 1
    assert not (tmp_path / "le").exists()


def test_sweep_refuses_a_point_beyond_the_pool(pretrained, tmp_path):
    res = run_main(sweep_main, [pretrained, "--points", "1", "9", "--out", tmp_path / "le"])
    assert res.returncode == 2
    assert "'9' is outside (0, 4]" in res.stderr and "labelled subjects" in res.stderr
    assert not (tmp_path / "le").exists()


def test_splits_record_the_finetune_pool_outside_the_test_split(prepared):
    from part.data_prep.splits import SplitSettings, make_splits

    records = {f"r{i}": {"labelled_windows": 0 if i == 9 else 5} for i in range(10)}
    splits, _ = make_splits(records, SplitSettings(n_test=3, n_finetune=2, seed=0))
    assert splits["finetune_pool"] == 6  # 9 labelled subjects, 3 of them in test
    assert len(splits["finetune"]) == 2 and not set(splits["finetune"]) & set(splits["test"])
    on_disk = json.loads((prepared / "splits.json").read_text())
    assert on_disk["finetune_pool"] == load_data(SleepDataOptions(root=str(prepared))).label_budget["pool"] == 4
