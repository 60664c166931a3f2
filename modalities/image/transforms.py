"""Named image transforms for recipes: ``none``, ``pretrain`` (MAE/MP3 standard), ``deit``.

``build_transform(name, image_size, mean, std, train)`` returns a callable that takes a PIL image
(``RGB`` or ``L``) and returns a float tensor (C, image_size, image_size), normalised with the
dataset's per-channel ``mean`` / ``std`` (in [0, 1] units; take them from the dataset's
``mean`` / ``std`` attributes). With ``train=False`` every name gives the evaluation transform:
resize the shorter side to ``image_size / crop_pct``, centre-crop ``image_size``, normalise.

Randomness comes from ``torch`` (torchvision ops), Python's ``random`` and NumPy's global RNG
(timm's RandAugment picks its ops with ``np.random``). DataLoader workers seed all three; in the
main process (``num_workers=0``) seed all three for a repeatable run.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from part.errors import DataError

TRANSFORMS = ("none", "pretrain", "deit")
BICUBIC = InterpolationMode.BICUBIC
DEIT_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
DEIT_RE_PROB = 0.25
PRETRAIN_SCALE = (0.2, 1.0)


def _to_normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std))]


def default_crop_pct(image_size: int) -> float:
    """Evaluation crop fraction: 0.875 (ImageNet convention) from 128 px up, else 1.0."""
    return 0.875 if image_size >= 128 else 1.0


def eval_transform(image_size: int, mean, std, crop_pct: float | None = None) -> Callable:
    """Resize (bicubic) the shorter side to image_size / crop_pct, centre-crop, normalise."""
    crop_pct = crop_pct or default_crop_pct(image_size)
    resize = int(round(image_size / crop_pct))
    return v2.Compose([v2.Resize(resize, interpolation=BICUBIC, antialias=True),
                       v2.CenterCrop(image_size), *_to_normalised_tensor(mean, std)])


def pretrain_transform(image_size: int, mean, std) -> Callable:
    """MAE / MP3 pretraining: RandomResizedCrop(scale 0.2-1, bicubic), h-flip, normalise."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=PRETRAIN_SCALE, interpolation=BICUBIC,
                             antialias=True),
        v2.RandomHorizontalFlip(), *_to_normalised_tensor(mean, std)])


def deit_transform(image_size: int, mean, std) -> Callable:
    """DeiT finetuning: RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, normalise,
    RandomErasing p=0.25 (timm's ``create_transform``; torchvision ops if timm cannot build it)."""
    try:
        from timm.data import create_transform
        return create_transform(image_size, is_training=True, auto_augment=DEIT_AUTO_AUGMENT,
                                interpolation="bicubic", re_prob=DEIT_RE_PROB, re_mode="pixel",
                                re_count=1, mean=tuple(mean), std=tuple(std))
    except (ImportError, TypeError, ValueError):
        return v2.Compose([
            v2.RandomResizedCrop(image_size, interpolation=BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(), v2.RandAugment(num_ops=2, magnitude=9),
            *_to_normalised_tensor(mean, std),
            v2.RandomErasing(p=DEIT_RE_PROB, value=0)])


def _check(name: str, image_size: int, mean, std) -> None:
    if name not in TRANSFORMS:
        raise DataError(f"unknown transform {name!r}; expected one of {TRANSFORMS}.")
    if int(image_size) != image_size or image_size < 1:
        raise DataError(f"transform image_size must be a positive integer, got {image_size!r}.")
    if len(mean) != len(std) or not len(mean) or min(std) <= 0:
        raise DataError(f"transform mean {tuple(mean)} and std {tuple(std)} must have one value "
                        "per channel and std > 0.")


def build_transform(name: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                    train: bool, crop_pct: float | None = None) -> Callable:
    """The transform called ``name`` for training (``train=True``) or evaluation.

    ``none`` resizes/centre-crops to ``image_size`` (a no-op at native size) and normalises.
    """
    _check(name, image_size, mean, std)
    if not train or name == "none":
        return eval_transform(int(image_size), mean, std, crop_pct if not train else 1.0)
    if name == "pretrain":
        return pretrain_transform(int(image_size), mean, std)
    return deit_transform(int(image_size), mean, std)
