"""Named image transforms for recipes: ``none``, ``pretrain`` (MAE/MP3 standard), ``deit``.

``build_transform(name, image_size, mean, std, train)`` returns a callable that takes a PIL image
(``RGB`` or ``L``) and returns a float tensor (C, image_size, image_size), normalised with the
dataset's per-channel ``mean`` / ``std`` (in [0, 1] units; take them from the dataset's
``mean`` / ``std`` attributes). With ``train=False`` every name gives the evaluation transform:
resize the shorter side to ``image_size / crop_pct``, centre-crop ``image_size``, normalise.

``deit`` is timm's DeiT transform with one repair: its RandAugment ``rand-m9-mstd0.5-inc1`` draws
magnitudes up to 10, where ``PosterizeIncreasing`` keeps 0 bits, which Pillow >= 10 refuses
("bits must be between or equal to 1 and 8", about 1 call in 700 on 32x32 images; older Pillow
returned a black image). The Posterize ops of this transform's own RandAugment keep at least 1
bit; nothing of timm's is changed for other users.

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


class _AtLeastOneBit:
    """Wraps timm's posterize op ``fn(img, bits, **kw)`` so that it keeps at least 1 bit (Pillow
    refuses 0). A class, not a closure, so the transform pickles for DataLoader workers."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, img, bits_to_keep, **kwargs):
        return self.fn(img, max(1, int(bits_to_keep)), **kwargs)


def clamp_posterize(transform) -> int:
    """Make every Posterize op of the timm RandAugments inside ``transform`` (a Compose, or one
    RandAugment) keep >= 1 bit, by wrapping that op instance's ``aug_fn``; returns how many ops
    were wrapped. Only these instances change: timm's module-level ops and tables stay as they
    are. Ops are found by name (``Posterize``, ``PosterizeIncreasing``, ``PosterizeOriginal``)."""
    count = 0
    for t in getattr(transform, "transforms", [transform]):
        for op in getattr(t, "ops", ()):
            if (str(getattr(op, "name", "")).startswith("Posterize") and hasattr(op, "aug_fn")
                    and not isinstance(op.aug_fn, _AtLeastOneBit)):
                op.aug_fn = _AtLeastOneBit(op.aug_fn)
                count += 1
    return count


def deit_transform(image_size: int, mean, std) -> Callable:
    """DeiT finetuning: RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, normalise,
    RandomErasing p=0.25 (timm's ``create_transform``; torchvision ops if timm cannot build it).
    Posterize keeps at least 1 bit (``clamp_posterize``; see the module docstring)."""
    try:
        from timm.data import create_transform
        transform = create_transform(image_size, is_training=True, auto_augment=DEIT_AUTO_AUGMENT,
                                     interpolation="bicubic", re_prob=DEIT_RE_PROB, re_mode="pixel",
                                     re_count=1, mean=tuple(mean), std=tuple(std))
        clamp_posterize(transform)
        return transform
    except (ImportError, TypeError, ValueError):
        return v2.Compose([
            v2.RandomResizedCrop(image_size, interpolation=BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(), v2.RandAugment(num_ops=2, magnitude=9),
            *_to_normalised_tensor(mean, std),
            v2.RandomErasing(p=DEIT_RE_PROB, value=0)])


class BatchMixup:
    """DeiT's Mixup / CutMix on a training batch, the image plugin's
    ``DataBundle.finetune_batch_transform``: ``(x (B, C, H, W) float, y (B,) long) ->
    (x mixed, y_soft (B, num_classes) float, rows summing to 1)``.

    timm's ``Mixup`` as DeiT builds it (mode ``batch``, probability 1, switch probability 0.5
    between Mixup and CutMix when both are on, area-corrected lambda), with Beta alphas
    ``mixup`` / ``cutmix`` (0 turns one off) and no label smoothing: the finetune stage smooths
    the soft targets with ``finetune.label_smoothing``, which equals timm's ``Mixup(...,
    label_smoothing=e)``. timm pairs item i with item B-1-i and needs an even batch; an odd
    batch (an odd ``finetune.batch_size`` per process, or a dataset smaller than the batch) mixes
    its first B-1 items and leaves the last one unmixed, with its one-hot target.
    Randomness: NumPy's global generator (as timm), which checkpoints restore.
    """

    def __init__(self, mixup: float, cutmix: float, num_classes: int):
        if not (mixup > 0 or cutmix > 0):
            raise ValueError("BatchMixup needs mixup > 0 or cutmix > 0")
        from timm.data import Mixup
        self.num_classes = int(num_classes)
        self.mixup = Mixup(mixup_alpha=float(mixup), cutmix_alpha=float(cutmix), prob=1.0,
                           switch_prob=0.5, mode="batch", correct_lam=True, label_smoothing=0.0,
                           num_classes=self.num_classes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        even = x.shape[0] - x.shape[0] % 2
        if even == x.shape[0]:
            return self.mixup(x, y)
        last = torch.nn.functional.one_hot(y[even:].long(), self.num_classes).float()
        if even == 0:
            return x, last
        mixed, soft = self.mixup(x[:even], y[:even])
        return torch.cat([mixed, x[even:]]), torch.cat([soft, last.to(soft.device)])

    def __repr__(self) -> str:
        m = self.mixup
        return (f"BatchMixup(mixup={m.mixup_alpha}, cutmix={m.cutmix_alpha}, "
                f"num_classes={self.num_classes})")


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
