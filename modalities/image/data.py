"""The image plugin's datasets for a recipe: pretrain / finetune / test splits and their transforms."""
from __future__ import annotations

from torch.utils.data import Subset

from part.modality import DataBundle, subset_indices
from modalities.image.datasets import build_image_dataset
from modalities.image.transforms import build_transform

# The paper's numbers for context in reports (top-1 %, paper Tables 4, 5, 7; ViT-S, CIFAR-100).
PAPER_REFERENCE = {
    "cifar100": {"metric": "accuracy (%)", "source": "PART paper, Tables 4 and 7 (CIFAR-100, ViT-S)",
                 "values": {"part": 83.0, "part_grid": 82.1, "supervised": 73.6, "mae": 84.5, "mp3": 84.0}},
}


def limit(dataset, n, seed: int):
    """A seeded random subset of n items (the whole dataset when n is None or >= its size)."""
    idx = subset_indices(len(dataset), n, seed)
    return dataset if idx is None else Subset(dataset, idx.tolist())


def load_data(data_cfg, seed: int = 0, repeat: int = 0) -> DataBundle:
    """Train split for pretraining (labels unused) and finetuning, test split for evaluation.

    Transforms by name from the recipe: data.pretrain_augment, data.finetune_augment (training),
    the evaluation transform for test. repeat k > 0 draws another limit_train subset.
    """
    probe = build_image_dataset(data_cfg.name, data_cfg.root, "test")
    size, mean, std = data_cfg.image_size or probe.image_size, probe.mean, probe.std

    def split(name, augment, train):
        return build_image_dataset(data_cfg.name, data_cfg.root, name,
                                   build_transform(augment, size, mean, std, train=train))
    pretrain = limit(split("train", data_cfg.pretrain_augment, True), data_cfg.limit_train, seed)
    finetune = limit(split("train", data_cfg.finetune_augment, True), data_cfg.limit_train, seed + repeat)
    test = limit(split("test", "none", False), data_cfg.limit_test, seed)
    channels = probe.num_channels
    return DataBundle(
        pretrain=pretrain, finetune=finetune, test=test, class_names=list(probe.classes),
        input_info={"image_size": size, "channels": channels},
        reference=PAPER_REFERENCE.get(data_cfg.name),
        description=f"{data_cfg.name}: {len(finetune)} train / {len(test)} test images, "
                    f"{len(probe.classes)} classes, {size}x{size}x{channels}")
