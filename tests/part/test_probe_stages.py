"""The ``linear_probe`` and ``knn`` stages on finished runs of the digits demo (tiny), and the
kNN monitor at pretraining epoch ends (``part.training.probe_stages``)."""
import json

import numpy as np
import pytest
import torch

from part.evaluation.probes import cohen_kappa, knn_predict, linear_probe
from part.evaluation.report import REQUIRED_KEYS
from part.training.rundir import read_metrics
from conftest import run_main
from part.train import main as train_main
from run_helpers import command, here

QUICK = ["pretrain.epochs=1", "finetune.epochs=1", "data.limit_train=200", "pretrain.heldout_items=0"]
PROBES = "run.stages=[linear_probe,knn]"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished pretrain -> finetune -> evaluate run with the kNN monitor on."""
    out = tmp_path_factory.mktemp("probes")
    res = here(out, *QUICK, "evaluate.knn_monitor=true", "evaluate.knn_monitor_bank=50",
               "evaluate.knn_monitor_queries=40")
    assert res.returncode == 0, res.stderr
    return out, out / "digits_demo", res.stdout


def _report(run, protocol):
    return json.loads((run / "report" / protocol / "report.json").read_text())


def test_probe_stages_run_on_a_finished_run_without_retraining_it(finished):
    out, run, _ = finished
    pretrained = (run / "checkpoints" / "pretrain.pt").read_bytes()
    rows_before = len(read_metrics(run / "metrics.jsonl"))
    res = here(out, *QUICK, "evaluate.knn_monitor=true", "evaluate.knn_monitor_bank=50",
               "evaluate.knn_monitor_queries=40", PROBES)
    assert res.returncode == 0, res.stderr
    assert (run / "checkpoints" / "pretrain.pt").read_bytes() == pretrained
    assert len(read_metrics(run / "metrics.jsonl")) == rows_before  # no training step logged
    assert "stages: [pretrain, finetune, evaluate, linear_probe, knn]" in (run / "config.yaml").read_text()
    for protocol in ("linear_probe", "knn"):
        report = _report(run, protocol)
        assert set(REQUIRED_KEYS) <= set(report)
        assert report["protocol"]["name"] == protocol
        assert "mean of the grid patch tokens of the pretrained encoder, frozen" in report["protocol"]["features"]
        assert report["chance"]["kappa"] == 0.0
        y = np.load(run / "report" / "predictions_r0.npz")["y_true"]
        majority = report["chance"]["majority_class"]
        assert report["chance"]["accuracy"] == pytest.approx((y == int(majority)).mean())
        md = (run / "report" / protocol / "report.md").read_text()
        assert "majority class" in md and protocol in md
        assert f"[{protocol}] kappa" in res.stdout and "(chance 0)" in res.stdout
    again = here(out, *QUICK, "evaluate.knn_monitor=true", "evaluate.knn_monitor_bank=50",
                 "evaluate.knn_monitor_queries=40", PROBES)
    assert "[knn] already finished; skipped" in again.stdout


def test_probe_reports_match_the_probes_on_the_cached_features(finished):
    out, run, _ = finished
    if not (run / "report" / "knn" / "report.json").exists():
        assert here(out, *QUICK, "evaluate.knn_monitor=true", "evaluate.knn_monitor_bank=50",
                    "evaluate.knn_monitor_queries=40", PROBES).returncode == 0
    cache = run / "features" / "pretrain_mean"
    train = torch.load(cache / "finetune_r0.pt", weights_only=True)
    test = torch.load(cache / "test.pt", weights_only=True)
    assert train["features"].shape == (200, 32) and test["features"].shape == (100, 32)
    pred, _ = knn_predict(train["features"], train["labels"], test["features"], 10, 20, 0.07)
    y = test["labels"].numpy()
    assert _report(run, "knn")["accuracy"] == pytest.approx((pred == y).mean())
    assert _report(run, "knn")["kappa"] == pytest.approx(cohen_kappa(y, pred, 10))
    probe_pred, _ = linear_probe(train["features"], train["labels"], 10, 1e-4).predict(test["features"])
    assert _report(run, "linear_probe")["accuracy"] == pytest.approx((probe_pred == y).mean())
    saved = np.load(run / "report" / "knn" / "predictions_r0.npz")
    assert saved["y_true"].tolist() == y.tolist() and saved["y_pred"].tolist() == pred.tolist()
    assert np.load(run / "report" / "linear_probe" / "predictions_r0.npz")["y_pred"].tolist() == probe_pred.tolist()


def test_knn_monitor_is_logged_each_epoch_and_changes_no_training_number(finished, tmp_path):
    out, run, _ = finished
    rows = read_metrics(run / "metrics.jsonl")
    monitor = [r for r in rows if r.get("event") == "knn_monitor"]
    assert [r["epoch"] for r in monitor] == [0] and monitor[0]["stage"] == "pretrain"
    assert monitor[0]["bank"] == 50 and monitor[0]["queries"] == 40
    assert 0.0 <= monitor[0]["accuracy"] <= 1.0 and -1.0 <= monitor[0]["kappa"] <= 1.0
    assert f"kNN monitor after epoch 1: kappa {monitor[0]['kappa']:.3f} (chance 0)" in finished[2]
    plain = here(tmp_path, *QUICK, "run.stages=[pretrain]")
    assert plain.returncode == 0, plain.stderr
    losses = [r["loss"] for r in rows if r["stage"] == "pretrain" and "event" not in r]
    plain_losses = [r["loss"] for r in read_metrics(tmp_path / "digits_demo" / "metrics.jsonl")
                    if r["stage"] == "pretrain" and "event" not in r]
    assert losses == plain_losses and len(losses) > 0


def test_supervised_reference_probes_its_finetuned_encoder(tmp_path):
    argv = [a for a in command(tmp_path, *QUICK, "method.name=supervised", "run.stages=[finetune,evaluate,knn]")[3:]
            if not a.startswith("method.num_pairs")]  # supervised has no pairs
    res = run_main(train_main, argv)
    assert res.returncode == 0, res.stderr
    report = _report(tmp_path / "digits_demo", "knn")
    assert "REFERENCE: the supervised FINETUNED encoder" in report["protocol"]["features"]
    assert (tmp_path / "digits_demo" / "features" / "finetuned_mean" / "test.pt").exists()


def test_probe_stage_without_a_pretrained_encoder_is_refused(tmp_path):
    res = here(tmp_path, *QUICK, "run.stages=[knn]")
    assert res.returncode == 2
    assert "probes the pretrained encoder of a 'part' run" in res.stderr
    assert "add 'pretrain' to run.stages" in res.stderr
    assert not (tmp_path / "digits_demo" / "report").exists()


@pytest.mark.parametrize("method,extra,embedded", [
    ("part", [], False), ("part_grid", [], False), ("mp3", [], False), ("mae", [], True),
    ("droppos", [], True), ("droppos", ["method.pos_embed=learnable"], False)])
def test_frozen_features_use_only_a_fixed_pretraining_position_embedding(method, extra, embedded):
    from part.config import load_recipe
    from part.core.methods.common import sincos_position_embedding
    from part.registry import get_modality
    from part.training.probe_stages import pretraining_position_embedding
    from run_helpers import RECIPE

    recipe = load_recipe(RECIPE, [f"method.name={method}", *extra])
    modality = get_modality("image", image_size=8, channels=1, patch_size=2)
    pe = pretraining_position_embedding(recipe, modality, 32)
    if embedded:
        torch.testing.assert_close(pe, sincos_position_embedding(tuple(modality.grid_shape), 32))
    else:
        assert pe is None


def test_changed_probe_options_need_force_and_redo_the_probes(finished):
    """Last in this file: it changes the shared run's evaluate.knn_k."""
    out, run, _ = finished
    monitor = ["evaluate.knn_monitor=true", "evaluate.knn_monitor_bank=50", "evaluate.knn_monitor_queries=40"]
    assert here(out, *QUICK, *monitor, PROBES).returncode == 0
    refused = here(out, *QUICK, *monitor, PROBES, "evaluate.knn_k=3")
    assert refused.returncode == 2 and "evaluate.knn_k: 20 -> 3" in refused.stderr
    forced = here(out, *QUICK, *monitor, PROBES, "evaluate.knn_k=3", "run.resume=force")
    assert forced.returncode == 0, forced.stderr
    assert "redoing" in forced.stdout and "knn" in forced.stdout.split("redoing", 1)[1].splitlines()[0]
    assert "k=3" in _report(run, "knn")["protocol"]["description"]


def test_the_knn_monitor_bank_is_read_in_one_batch_where_the_dataset_can():
    from part.training.probe_stages import labelled_items

    class Windows:  # a dataset with read_batch, like the EEG windows; item reads are counted
        labels = np.array([0, -1, 1, 2, -1, 0, 1, 2, 0, 1])
        item_reads, batch_reads = 0, []

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            Windows.item_reads += 1
            return torch.full((2, 3), float(i)), int(self.labels[i])

        def read_batch(self, items):
            Windows.batch_reads.append(list(items))
            return torch.stack([torch.full((2, 3), float(i)) for i in items]), torch.as_tensor(self.labels[items])

    x, y = labelled_items(Windows(), 5, seed=0)
    assert Windows.item_reads == 0 and len(Windows.batch_reads) == 1 and len(Windows.batch_reads[0]) == 5
    index = Windows.batch_reads[0]
    assert all(Windows.labels[i] >= 0 for i in index) and index == sorted(index)
    assert torch.equal(x[:, 0, 0], torch.tensor(index, dtype=torch.float32))
    assert torch.equal(y, torch.as_tensor(Windows.labels[index]))
