"""``data.label_fraction`` of the image datasets (label efficiency) and ``finetune_eval`` (the
same finetune images without augmentation, for the probes), on scikit-learn's digits."""
import numpy as np
import pytest
import torch

from part.config.options import OptionsError
from part.modalities.image.datasets import ImageDataOptions, load_data


def _indices(subset):
    return np.asarray(subset.indices)


def test_label_fraction_draws_a_seeded_share_per_repeat():
    full = load_data(ImageDataOptions(name="digits", limit_train=400), seed=0, repeat=0)
    assert len(full.finetune) == 400 and full.label_budget["key"] == "data.label_fraction"
    draws = [load_data(ImageDataOptions(name="digits", limit_train=400, label_fraction=0.1), seed=0, repeat=r)
             for r in range(2)]
    assert [len(b.finetune) for b in draws] == [40, 40]
    assert not np.array_equal(_indices(draws[0].finetune), _indices(draws[1].finetune))
    again = load_data(ImageDataOptions(name="digits", limit_train=400, label_fraction=0.1), seed=0, repeat=0)
    assert np.array_equal(_indices(draws[0].finetune), _indices(again.finetune))
    assert "label_fraction 0.1" in draws[0].description
    assert len(draws[0].test) == len(full.test)  # the test images never change


def test_finetune_eval_holds_the_same_images_without_augmentation():
    options = ImageDataOptions(name="digits", limit_train=200, label_fraction=0.5, finetune_augment="pretrain")
    bundle = load_data(options, seed=0, repeat=1)
    assert len(bundle.finetune_eval) == len(bundle.finetune) == 100
    torch.manual_seed(0)
    changed = 0
    for i in range(0, 100, 10):
        x_eval, y_eval = bundle.finetune_eval[i]
        assert y_eval == bundle.finetune[i][1]
        assert torch.equal(x_eval, bundle.finetune_eval[i][0])  # deterministic: no augmentation
        changed += not torch.equal(bundle.finetune[i][0], bundle.finetune[i][0])  # augmented: random
    assert changed >= 5


def test_label_fraction_outside_the_unit_interval_is_refused():
    with pytest.raises(OptionsError, match=r"'data.label_fraction' = 0.0 is out of range; allowed: in \(0.0, 1.0\]"):
        ImageDataOptions(name="digits", label_fraction=0.0)
