"""Unit tests of the engine's pieces: deterministic sharded sampling with resume offsets, the
AdamW parameter groups (weight decay, layer-wise lr decay), the warmup + cosine schedule and the
finetuning classifier, and one DataLoader whose workers persist across a stage's epochs."""

import multiprocessing
import os

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from part.config.schema import OptimConfig
from part.registry import get_modality
from part.core.backbone import ViTEncoder
from part.core.classifier import PatchClassifier
from part.training.distributed import DistInfo
from part.training.engine import EpochSampler, RunContext, TrainSpec, train
from part.training.optim import cosine_lr, param_groups


def test_epoch_sampler_same_order_for_same_seed_epoch_and_shards_cover_global_batches():
    one = EpochSampler(103, 10, seed=3)
    one.set_epoch(2)
    order = list(one)
    assert len(order) == 100 and len(set(order)) == 100  # whole global batches, no repeats
    again = EpochSampler(103, 10, seed=3)
    again.set_epoch(2)
    assert list(again) == order
    other = EpochSampler(103, 10, seed=3)
    other.set_epoch(3)
    assert list(other) != order
    r0, r1 = EpochSampler(103, 10, 3, rank=0, world=2), EpochSampler(103, 10, 3, rank=1, world=2)
    for s in (r0, r1):
        s.set_epoch(2)
    a, b = list(r0), list(r1)
    for step in range(10):  # each global batch of the single-process order is split across ranks
        assert (sorted(a[step * 5:(step + 1) * 5] + b[step * 5:(step + 1) * 5])
                == sorted(order[step * 10:(step + 1) * 10]))


def test_epoch_sampler_resume_skips_done_batches():
    s = EpochSampler(50, 8, seed=0)
    s.set_epoch(1)
    full = list(s)
    s.set_epoch(1, start_batch=4)
    assert list(s) == full[32:] and len(s) == len(full) - 32


def test_epoch_sampler_weights_draw_with_replacement():
    w = torch.tensor([0.0, 1.0, 0.0, 1.0])
    s = EpochSampler(4000, 100, seed=0, weights=w)
    drawn = torch.tensor(list(s))
    assert set(drawn.tolist()) == {1, 3}


def test_cosine_schedule_with_warmup():
    assert cosine_lr(0, 100, 10, 1.0, 0.0) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert cosine_lr(10, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 10, 1.0, 0.0) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_param_groups_decay_and_layer_scales():
    model = nn.Module()
    model.tokenizer = nn.Linear(4, 8)
    model.encoder = ViTEncoder(8, 3, 2)
    model.encoder.add_position_embedding(4)
    model.head = nn.Linear(8, 2)
    groups = param_groups(model, 0.05, layer_decay=0.5, depth=3)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["encoder.blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.05
    assert by_param[id(named["encoder.blocks.0.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_param[id(named["encoder.pos_embed"])]["weight_decay"] == 0.0
    assert by_param[id(named["encoder.cls_token"])]["weight_decay"] == 0.0
    assert by_param[id(named["head.weight"])]["lr_scale"] == 1.0
    assert by_param[id(named["encoder.blocks.2.mlp.fc1.weight"])]["lr_scale"] == pytest.approx(0.5)
    assert by_param[id(named["encoder.blocks.0.mlp.fc1.weight"])]["lr_scale"] == pytest.approx(0.125)
    assert by_param[id(named["tokenizer.weight"])]["lr_scale"] == pytest.approx(0.0625)
    assert sum(len(g["params"]) for g in groups) == len(named)
    flat = param_groups(model, 0.05)
    assert all(g["lr_scale"] == 1.0 for g in flat)


def test_classifier_uses_grid_position_embedding_and_drops_only_in_training():
    torch.manual_seed(0)
    m = get_modality("image", image_size=8, channels=1, patch_size=2)
    enc = ViTEncoder(16, 1, 2)
    clf = PatchClassifier(m, m.tokenizer(16), enc, num_classes=3, pos_drop_ratio=0.5)
    assert enc.pos_embed.shape == (1, 17, 16)
    x = torch.rand(4, 1, 8, 8)
    clf.eval()
    out1, out2 = clf(x), clf(x)
    assert out1.shape == (4, 3) and torch.equal(out1, out2)  # no randomness at evaluation
    clf.train()
    assert not torch.allclose(clf(x), clf(x))  # random position-embedding drop in training


class _Probe(Dataset):
    """Item i: (i, the fetching process's pid, the epoch it was handed, a torch.rand draw), float64."""

    def __init__(self):
        self.epoch = -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.tensor([i, os.getpid(), self.epoch, torch.rand(()).item()], dtype=torch.float64)


def _probe_run(tmp_path, epochs=3):
    """3 epochs x 4 steps of batch 8 fetched by 2 DataLoader workers; every batch the loss saw."""
    seen = []

    def loss_fn(model, batch, device):
        seen.append(batch.clone())
        return model(batch[:, :1].float()).pow(2).mean(), {}
    (tmp_path / "checkpoints").mkdir(parents=True, exist_ok=True)
    ctx = RunContext(tmp_path, torch.device("cpu"), DistInfo(), num_workers=2, log_every=100, progress=False)
    train(TrainSpec("pretrain", nn.Linear(1, 1), loss_fn, _Probe(), OptimConfig(epochs=epochs, batch_size=8)), ctx)
    return torch.cat(seen).view(epochs, 32, 4)


def test_dataloader_workers_persist_across_epochs_and_see_each_epoch(tmp_path):
    before = set(multiprocessing.active_children())
    rows = _probe_run(tmp_path / "a")
    assert set(multiprocessing.active_children()) == before  # the stage's workers ended with it
    pids = [set(rows[e, :, 1].long().tolist()) for e in range(3)]
    assert len(pids[0]) == 2 and pids[0] == pids[1] == pids[2] and os.getpid() not in pids[0]  # no respawn
    for e in range(3):  # the epoch reached the workers' copy of the dataset, and the order is the sampler's
        assert (rows[e, :, 2] == e).all()
        sampler = EpochSampler(32, 8, seed=0)
        sampler.set_epoch(e)
        assert rows[e, :, 0].long().tolist() == list(sampler)
    draws = rows[:, :, 3]
    assert not torch.equal(draws[0], draws[1])  # workers reseeded per epoch, not replaying one stream
    assert torch.equal(_probe_run(tmp_path / "b")[:, :, 3], draws)  # and the same on every run


class _ItemAndWorker(torch.utils.data.Dataset):
    """Item i -> (i, id of the worker that read it)."""

    def __len__(self):
        return 160

    def __getitem__(self, i):
        return torch.tensor(float(i)), torch.tensor(torch.utils.data.get_worker_info().id)


def test_stage_loader_workers_outlive_a_group_sigterm_and_close_loader_ends_them():
    """A SIGTERM to the process group reaches the workers too: they ignore it (the main process
    stops at its step boundary), keep fetching, and close_loader ends them. The signal is sent
    once both workers have delivered a batch (so both ran their worker_init_fn), with most of
    the epoch's 20 batches still to be read."""
    import signal
    from part.training.data_order import close_loader, stage_loader
    before = set(multiprocessing.active_children())
    sampler = EpochSampler(160, 8, seed=0)
    loader = stage_loader(_ItemAndWorker(), sampler, 8, num_workers=2, seed=0, pin_memory=False)
    try:
        batches = iter(loader)
        seen, read = set(), []
        while seen != {0, 1}:
            items, worker = next(batches)
            read.append(items)
            seen |= set(worker.tolist())
        workers = [p for p in multiprocessing.active_children() if p not in before]
        assert len(workers) == 2 and len(read) < 10
        for w in workers:
            os.kill(w.pid, signal.SIGTERM)
        rest = [b[0] for b in batches]  # the workers are still there to fetch the epoch's other batches
        assert sorted(torch.cat([*read, *rest]).long().tolist()) == list(range(160))
        assert all(w.is_alive() for w in workers)
    finally:
        close_loader(loader)
    assert set(multiprocessing.active_children()) == before


class _Draws(Dataset):
    """Item i: (i, a torch.rand draw): what an augmentation sees of the worker's generator."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.tensor([float(i), torch.rand(()).item()], dtype=torch.float64)


def test_a_mid_epoch_resume_with_workers_draws_what_the_uninterrupted_epoch_drew():
    """Workers reseed per (epoch, batch), not per worker: a loader restarted at batch 3 of an
    epoch (a resume; its first batch goes to worker 0) hands every later batch the random draws
    the uninterrupted epoch gave it, and another epoch draws anew."""
    from part.training.data_order import close_loader, stage_loader
    sampler = EpochSampler(64, 8, seed=0)
    loader = stage_loader(_Draws(), sampler, 8, num_workers=2, seed=0, pin_memory=False)
    try:
        sampler.set_epoch(1)
        whole = torch.stack(list(loader))  # (8 batches, 8, 2)
        sampler.set_epoch(1, start_batch=3)
        resumed = torch.stack(list(loader))
        sampler.set_epoch(2)
        other = torch.stack(list(loader))
    finally:
        close_loader(loader)
    assert torch.equal(resumed, whole[3:])
    assert not torch.equal(other[:, :, 1], whole[:, :, 1])
