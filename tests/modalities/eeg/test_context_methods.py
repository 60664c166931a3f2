"""The EEG field's self-supervised methods (relative positioning, temporal shuffling, CPC): the
samplers' rules on thousands of draws, samples independent of batches and workers, the losses'
formulas, clear refusals, and each method trained by ``python -m part.train`` on tiny SYNTHETIC
records (loss falls, finetune and evaluation run)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import prepare_synthetic_pc18, run_main
from part.errors import DataError
from part.modalities.eeg.methods.context_sampling import (ContextSamples, PairSampler, SequenceSampler, Timeline,
                                                          TripletSampler, uniforms)
from part.registry import build_method, get_method, get_modality
from part.core.backbone import ViTEncoder
from part.train import main as train_main

ROOT = Path(__file__).resolve().parents[3]
STEP = 30.0


def _timeline(lengths=(400, 250, 90), shuffle=True, gap_at=None):
    """Windows of several records (30-s steps), optionally in a shuffled order and with a gap."""
    records, onsets = [], []
    for r, n in enumerate(lengths):
        t = np.arange(n) * STEP
        if gap_at is not None and r == 0:
            t[gap_at:] += 10 * STEP
        records += [f"rec{r}"] * n
        onsets.append(t)
    records, onsets = np.array(records, dtype=object), np.concatenate(onsets)
    order = np.random.default_rng(0).permutation(len(records)) if shuffle else np.arange(len(records))
    return records[order], onsets[order]


def test_uniforms_are_a_function_of_seed_epoch_and_item():
    items = np.arange(20000)
    u = uniforms(3, 1, items, 2)
    assert u.shape == (20000, 2) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    np.testing.assert_array_equal(uniforms(3, 1, items[5000:5010], 2), u[5000:5010])
    assert not np.allclose(uniforms(3, 2, items, 2), u) and not np.allclose(uniforms(4, 1, items, 2), u)


def test_pairs_follow_tau_pos_and_tau_neg_within_one_recording():
    records, onsets = _timeline()
    t = Timeline(records, onsets)
    s = PairSampler(t, tau_pos_s=300.0, tau_neg_s=1800.0)
    pos, label = s.draw(uniforms(0, 0, np.arange(20000), s.streams))
    a, b = t.order[pos[:, 0]], t.order[pos[:, 1]]
    assert (records[a] == records[b]).all() and (a != b).all()
    gap = np.abs(onsets[a] - onsets[b])
    assert (gap[label == 1] <= 300.0).all() and (gap[label == 0] > 1800.0).all()
    assert abs(label.mean() - 0.5) < 0.02
    middle = (records[a] == "rec2") & (onsets[a] > 89 * STEP - 1800.0) & (onsets[a] < 1800.0)
    assert not middle.any()  # rec2 spans 44.5 min: its middle windows have no partner > 30 min away
    assert (records[a] == "rec2").any()
    # every partner offset allowed by tau_pos is drawn (uniform choice, no bias to one side)
    signed = (onsets[b] - onsets[a])[label == 1]
    assert set(np.unique(signed)) == set(np.arange(-10, 11) * STEP) - {0.0}


def test_triplets_are_ordered_or_have_a_far_middle():
    records, onsets = _timeline()
    t = Timeline(records, onsets)
    s = TripletSampler(t, tau_pos_s=300.0, tau_neg_s=1800.0)
    pos, label = s.draw(uniforms(1, 0, np.arange(20000), s.streams))
    a, b, c = (t.order[pos[:, i]] for i in range(3))
    assert (records[a] == records[b]).all() and (records[a] == records[c]).all()
    ta, tb, tc = onsets[a], onsets[b], onsets[c]
    assert ((tc - ta) <= 300.0).all() and ((tc - ta) >= 2 * STEP).all()
    assert ((ta < tb) & (tb < tc))[label == 1].all()
    assert (np.abs(tb - ta) > 1800.0)[label == 0].all()
    assert abs(label.mean() - 0.5) < 0.02


def test_sequences_are_consecutive_and_never_cross_a_gap_or_a_record():
    records, onsets = _timeline(lengths=(40, 30), gap_at=20)
    t = Timeline(records, onsets)
    s = SequenceSampler(t, length=12, step_s=STEP)
    pos, _ = s.draw(uniforms(0, 0, np.arange(5000), s.streams))
    idx = t.order[pos]
    assert (records[idx] == records[idx[:, :1]]).all()
    np.testing.assert_allclose(np.diff(onsets[idx], axis=1), STEP)
    starts = set(onsets[idx[:, 0]][records[idx[:, 0]] == "rec0"])
    assert starts == set(np.arange(0, 9) * STEP) | set(np.arange(20, 29) * STEP + 10 * STEP)  # both sides of the gap


def test_records_too_short_for_the_taus_are_refused_with_the_option_named():
    records, onsets = _timeline(lengths=(100, 80))  # 50 min and 40 min
    t = Timeline(records, onsets)
    with pytest.raises(DataError, match=r"method.tau_neg_s=3600 s.*longest record spans 49.5 min.*lower "
                                        r"method.tau_neg_s"):
        PairSampler(t, tau_pos_s=3600.0, tau_neg_s=3600.0)
    with pytest.raises(DataError, match="run of 200 consecutive 30-s windows"):
        SequenceSampler(t, length=200, step_s=STEP)


class _Windows:
    """A stand-in for EEGWindows: window i holds the value i in every sample."""

    def __init__(self, records, onsets):
        self.records, self.onsets_s = records, onsets

    def __len__(self):
        return len(self.records)

    def read_batch(self, items):
        items = np.asarray(items)
        x = torch.from_numpy(items.astype(np.float32))[:, None, None].expand(-1, 2, 8).clone()
        return x, torch.zeros(len(items), dtype=torch.long)


def test_samples_do_not_depend_on_the_batch_or_the_worker_and_change_per_epoch():
    from functools import partial
    records, onsets = _timeline()
    ds = ContextSamples(_Windows(records, onsets), partial(PairSampler, tau_pos_s=300.0, tau_neg_s=1800.0), seed=7)
    assert len(ds) == len(records) // 2
    batch = ds.__getitems__([5, 17, 3])
    x, target = ds[17]
    assert x.shape == (2, 2, 8) and target.dtype == torch.float32
    torch.testing.assert_close(batch[1][0], x)
    index = x[:, 0, 0].long().numpy()
    assert records[index[0]] == records[index[1]]
    first = ds.draw(np.arange(len(ds)))[0]
    ds.set_epoch(1)
    assert (ds.draw(np.arange(len(ds)))[0] != first).any()
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds.draw(np.arange(len(ds)))[0], first)
    with pytest.raises(DataError, match="need windows that know their recording and onset"):
        ContextSamples(list(range(10)), PairSampler, 0)


def test_dataloader_workers_see_the_same_samples_as_the_main_process():
    from functools import partial
    from torch.utils.data import DataLoader
    records, onsets = _timeline(lengths=(120, 100))
    ds = ContextSamples(_Windows(records, onsets), partial(TripletSampler, tau_pos_s=300.0, tau_neg_s=1800.0), 3)
    ds.set_epoch(2)  # before the loader starts: workers get this epoch's dataset

    def batches(workers):
        loader = DataLoader(ds, batch_size=16, num_workers=workers, shuffle=False)
        return torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])
    x0, y0 = batches(0)
    x2, y2 = batches(2)
    assert x0.shape == (len(ds), 3, 2, 8)
    torch.testing.assert_close(x2, x0)
    torch.testing.assert_close(y2, y0)


def _method(name, **options):
    modality = get_modality("eeg", channels=2, window_samples=240, patch_samples=8, num_patches=12)
    encoder = ViTEncoder(32, 1, 4)
    return build_method(name, modality, encoder, modality.tokenizer(32), get_method(name).options(**options))


def test_temporal_context_losses_are_bce_of_the_abs_diff_logit():
    torch.manual_seed(0)
    rp = _method("relative_positioning", tau_pos_s=60, tau_neg_s=600)
    x, y = torch.randn(4, 2, 2, 240), torch.tensor([1.0, 0.0, 1.0, 0.0])
    h = rp.embedder(x.flatten(0, 1)).view(4, 2, -1)
    logit = rp.classifier.linear((h[:, 0] - h[:, 1]).abs()).squeeze(-1)
    out = rp(x, y)
    assert out["loss"].item() == pytest.approx(F.binary_cross_entropy_with_logits(logit, y).item(), rel=1e-5)
    swapped = rp(x.flip(1), y)  # |h1 - h2| is symmetric: the order of a pair does not matter
    assert swapped["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-5)
    ts = _method("temporal_shuffling")
    assert ts.classifier.linear.in_features == 2 * 32
    with pytest.raises(ValueError, match=r"takes samples of 3 windows \(B, 3, C, L\), got shape \(4, 2, 2, 240\)"):
        ts(x, y)


def test_cpc_infonce_scores_each_future_window_against_the_batch():
    torch.manual_seed(0)
    cpc = _method("cpc", context_windows=3, predicted_windows=2, context_dim=16)
    x = torch.randn(5, 5, 2, 240)
    s = cpc.scores(x)
    assert s.shape == (2, 5, 5)
    h = cpc.embedder(x.flatten(0, 1)).view(5, 5, -1)
    c = cpc.context(h[:, :3])[0][:, -1]  # the GRU's last state over the 3 context windows
    w = cpc.predictors.weight.view(2, 32, 16)  # W_k, k = 1, 2
    for k in range(2):
        for i in range(5):
            for j in range(5):  # future window k of sequence j scored against the context of i
                expected = h[j, 3 + k] @ (w[k] @ c[i])
                assert s[k, i, j].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)
    loss = cpc(x)["loss"]
    truth = torch.arange(5).repeat(2)
    assert loss.item() == pytest.approx(F.cross_entropy(s.reshape(10, 5), truth).item(), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 sequences"):
        cpc(x[:1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_synthetic_pc18(tmp_path_factory.mktemp("pc18_ssl"), records=5, n_test=1, n_finetune=2)


@pytest.mark.parametrize("recipe,overrides", [
    ("eeg_sleep_demo_rp.yaml", ["method.tau_pos_s=600", "method.tau_neg_s=1800", "pretrain.batch_size=32"]),
    ("eeg_sleep_demo_ts.yaml", ["method.tau_pos_s=600", "method.tau_neg_s=1800", "pretrain.batch_size=32"]),
    ("eeg_sleep_demo_cpc.yaml", ["method.context_windows=4", "method.predicted_windows=2",
                                 "method.context_dim=32", "pretrain.batch_size=16"]),
])
def test_each_method_trains_finetunes_and_evaluates(prepared, tmp_path, recipe, overrides):
    args = [ROOT / "recipes" / recipe, f"data.root={prepared}", f"run.output_dir={tmp_path}", "run.device=cpu",
            "model.dim=32", "model.depth=2", "model.heads=4", "pretrain.epochs=6", "pretrain.lr=2e-3",
            "pretrain.warmup_epochs=0", "finetune.epochs=1", "finetune.batch_size=64", "evaluate.repeats=1",
            "run.log_every=1", *overrides]
    res = run_main(train_main, args)
    assert res.returncode == 0, res.stderr[-3000:]
    run = next(tmp_path.iterdir())
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["loss"] for r in lines if r.get("stage") == "pretrain" and r.get("event") == "epoch_end"]
    assert len(epochs) == 6 and all(math.isfinite(v) for v in epochs)
    assert np.mean(epochs[-2:]) < epochs[0], epochs
    pretrained = torch.load(run / "checkpoints" / "pretrain.pt", weights_only=False)
    assert "encoder" in pretrained and "tokenizer" in pretrained
    report = json.loads((run / "report" / "report.json").read_text())
    assert 0.0 <= report["accuracy"] <= 1.0 and "kappa" in report
    # issue 26: the held-out pretext loss (samples made from the test split) next to its chance level
    expected = math.log(16) if "cpc" in recipe else math.log(2)
    assert report["pretext_chance"]["value"] == pytest.approx(expected)
    assert math.isfinite(report["pretext_heldout"]["loss"]) and report["pretext_heldout"]["items"] > 0
    assert "(chance " in res.stdout


def test_the_methods_are_refused_on_images_in_one_line(tmp_path):
    for name in ("relative_positioning", "temporal_shuffling", "cpc"):
        res = run_main(train_main, [ROOT / "recipes" / "digits_demo.yaml", f"method.name={name}",
                                    f"run.output_dir={tmp_path}"])
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"method '{name}' works on the modality 'eeg' only" in res.stderr
        assert len([line for line in res.stderr.splitlines() if "eeg' only" in line]) == 1
