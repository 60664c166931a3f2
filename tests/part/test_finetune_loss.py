"""The finetune stage's loss: hard labels exactly as before without a batch transform; with the
dataset's ``finetune_batch_transform`` (DeiT's Mixup/CutMix in the image plugin) soft targets,
label smoothing as timm's Mixup does it, soft-target cross-entropy, no class weights."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from part.config import load_recipe
from part.errors import ConfigError
from part.registry import dataset_spec
from part.training.stages import finetune_loss, soft_target_cross_entropy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "modalities" / "image"))
from cifar_pickles import write_cifar  # noqa: E402

DEIT = ROOT / "recipes" / "cifar100_vits.yaml"  # DeiT finetuning: mixup 0.8, cutmix 1.0, smoothing 0.1
TINY_MODEL = ["model.size=custom", "model.dim=32", "model.depth=2", "model.heads=4", "run.num_workers=0"]


class Recorder(nn.Module):
    """A fixed linear classifier that remembers its last input."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(features, classes)
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny CIFAR-100 in the official layout (random 32x32 RGB images, labels i % 100)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar100", n_train=126, n_test=10)
    return root


def _batch(seed=0, b=16, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 8, 8, generator=g), torch.randint(0, classes, (b,), generator=g)


def _deit_bundle(root, *overrides):
    r = load_recipe(DEIT, [f"data.root={root}", *TINY_MODEL, *overrides])
    return r, dataset_spec(r.modality.name, r.data.name).load(r.data, r.run.seed, 0)


def test_without_batch_transform_the_loss_is_bit_identical_to_hard_label_cross_entropy():
    torch.manual_seed(0)
    model = Recorder(64, 10)
    x, y = _batch()
    y[3] = -1  # unlabelled items are still ignored
    w = torch.rand(10)
    for eps, weights in [(0.0, None), (0.1, None), (0.1, w)]:
        loss, extras = finetune_loss(10, eps, weights, None)(model, (x, y), torch.device("cpu"))
        logits = model.fc(x.flatten(1))
        before = F.cross_entropy(logits.float(), y, weight=weights, label_smoothing=eps, ignore_index=-1)
        assert torch.equal(loss, before)
        assert torch.equal(extras["accuracy"], (logits.argmax(-1) == y).float().mean())


def test_deit_recipe_with_mixup_off_has_no_batch_transform_and_the_same_loss(cifar):
    r, bundle = _deit_bundle(cifar, "data.mixup=0", "data.cutmix=0")
    assert bundle.finetune_batch_transform is None
    x, y = next(iter(DataLoader(bundle.finetune, batch_size=16)))
    torch.manual_seed(0)
    model = Recorder(3 * 32 * 32, 100)
    loss, _ = finetune_loss(100, r.finetune.label_smoothing, None, bundle.finetune_batch_transform)(
        model, (x, y), torch.device("cpu"))
    assert torch.equal(loss, F.cross_entropy(model.fc(x.flatten(1)).float(), y, label_smoothing=0.1,
                                             ignore_index=-1))


def test_deit_recipe_finetune_batch_targets_are_soft(cifar):
    """The real CIFAR-100 bundle of the DeiT recipe (tiny pickles): the batch transform mixes, the
    targets are soft (rows sum to 1, not one-hot), the stage smooths them as timm's
    Mixup(label_smoothing) and takes the soft-target cross-entropy."""
    r, bundle = _deit_bundle(cifar)
    assert (r.data.mixup, r.data.cutmix, r.finetune.label_smoothing) == (0.8, 1.0, 0.1)
    mix = bundle.finetune_batch_transform
    assert mix is not None
    np.random.seed(0)
    torch.manual_seed(0)
    x, y = next(iter(DataLoader(bundle.finetune, batch_size=16)))  # DeiT-augmented images
    assert x.shape == (16, 3, 32, 32)
    for seed in range(4):
        np.random.seed(seed)
        xm, soft = mix(x.clone(), y)
        assert soft.shape == (16, 100) and soft.dtype == torch.float32
        assert torch.allclose(soft.sum(1), torch.ones(16))
        assert not torch.equal(soft, F.one_hot(y, 100).float()) and not torch.equal(xm, x)

    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
    torch.manual_seed(0)
    model = Recorder(3 * 32 * 32, 100)
    np.random.seed(5)
    loss, extras = finetune_loss(100, r.finetune.label_smoothing, None, mix)(model, (x.clone(), y),
                                                                             torch.device("cpu"))
    np.random.seed(5)  # DeiT: timm's Mixup with the smoothing, then SoftTargetCrossEntropy
    xt, target = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=100)(x.clone(), y)
    assert torch.equal(model.seen, xt)
    assert torch.allclose(target.sum(1), torch.ones(16)) and target.min() > 0
    logits = model.fc(xt.flatten(1))
    assert torch.allclose(loss, SoftTargetCrossEntropy()(logits, target), atol=1e-6)
    assert torch.allclose(loss, soft_target_cross_entropy(logits, target), atol=1e-6)
    assert torch.equal(extras["accuracy"], (logits.argmax(-1) == target.argmax(-1)).float().mean())


def test_class_weights_are_refused_with_soft_targets():
    with pytest.raises(ConfigError, match="weighted_loss"):
        finetune_loss(10, 0.1, torch.ones(10), lambda x, y: (x, y))
    with pytest.raises(ConfigError, match="data.class_balance.*weighted_loss.*balanced_sampler"):
        load_recipe(DEIT, ["data.class_balance=weighted_loss"])
    load_recipe(DEIT, ["data.class_balance=weighted_loss", "data.mixup=0", "data.cutmix=0"])


def test_deit_recipe_supervised_finetune_run_with_an_odd_batch(tmp_path, cifar):
    """End to end: the DeiT recipe's Mixup/CutMix through the core, odd batches (63) included."""
    from conftest import run_main
    from part.train import main
    args = [ROOT / "recipes" / "cifar100_vits_supervised.yaml",
            f"run.output_dir={tmp_path}", f"data.root={cifar}", *TINY_MODEL, "run.device=cpu",
            "run.log_every=1", "run.stages=[finetune]", "finetune.epochs=1", "finetune.batch_size=63",
            "finetune.warmup_epochs=0"]
    res = run_main(main, args)  # `python -m part.train ...`, in this process
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BatchMixup(mixup=0.8, cutmix=1.0, num_classes=100)" in res.stdout
    run = tmp_path / "cifar100_vits_supervised"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if row["stage"] == "finetune" and "accuracy" in row]
    assert len(steps) == 2 and all(np.isfinite(row["loss"]) for row in steps)
