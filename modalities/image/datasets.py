"""Image datasets: CIFAR-10/100 (official python pickles), ImageFolder trees, scikit-learn digits.

``build_image_dataset(name, root, split, transform)`` returns a ``torch.utils.data.Dataset`` of
``(image, label)``: ``image`` a float tensor (C, H, W) (values in [0, 1] without a transform;
whatever the transform returns otherwise), ``label`` a Python int. Every dataset has
``classes`` (list[str]), ``targets`` (int64 array, one label per item), ``num_channels``,
``image_size`` (native side length in pixels) and its normalisation constants ``mean`` / ``std``
(per channel, in [0, 1] units).

A transform receives a PIL image (mode ``RGB``, or ``L`` for digits) and must return a tensor;
see ``modalities/image/transforms.py``. Bad input raises :class:`part.errors.DataError` naming
the file and what to do.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from part.config.schema import DataConfig
from part.core.modality import DataBundle, subset_indices
from part.errors import DataError
from part.registry import register_dataset
from part.modalities.image.transforms import TRANSFORMS, BatchMixup, build_transform

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR = {  # layout of the official python tarballs, and per-channel statistics of train
    "cifar10": dict(folder="cifar-10-batches-py", meta="batches.meta", names=b"label_names",
                    labels=b"labels", train=[f"data_batch_{i}" for i in range(1, 6)],
                    test=["test_batch"], mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(folder="cifar-100-python", meta="meta", names=b"fine_label_names",
                     labels=b"fine_labels", train=["train"], test=["test"],
                     mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}
_PICKLE_ALLOWED = {  # the only globals an official CIFAR pickle references (numpy arrays)
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
}


class ArrayImageDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, C); item -> (float (C, H, W), int label)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: list[str],
                 mean: tuple[float, ...], std: tuple[float, ...],
                 transform: Callable | None = None, exact: torch.Tensor | None = None):
        self.images = images
        self._exact = exact  # optional float (N, C, H, W) returned when there is no transform
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.num_channels = int(images.shape[3])
        self.image_size = int(images.shape[1])
        self.mean, self.std = tuple(mean), tuple(std)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = self.images[i]
        label = int(self.targets[i])
        if self.transform is None:
            if self._exact is not None:
                return self._exact[i].clone(), label
            return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0), label
        pil = Image.fromarray(img[:, :, 0] if self.num_channels == 1 else img)
        return self.transform(pil), label


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays: a pickle cannot run arbitrary code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_pickle(path: Path) -> dict:
    """Load one CIFAR pickle (bytes keys) with clear errors for missing/corrupt files."""
    hint = "Delete the folder and prepare it again with `python data_prep/cifar.py --out DIR`."
    if not path.is_file():
        raise DataError(f"CIFAR file {path} is missing. {hint}")
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cannot read CIFAR file {path} ({e.strerror or e}). {hint}") from e
    except Exception as e:  # any unpickling failure of damaged bytes (LookupError, OverflowError, ...)
        raise DataError(f"CIFAR file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                        f"expected an official python-pickle batch. {hint}") from e
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR file {path} holds a {type(obj).__name__}, expected a dict. {hint}")
    return obj


def _batch_arrays(path: Path, labels_key: bytes, n_classes: int):
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) from one CIFAR batch file."""
    d = _load_pickle(path)
    data, labels = d.get(b"data"), d.get(labels_key)
    ok = (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
          and data.shape[1] == 3 * 32 * 32 and labels is not None and len(labels) == len(data))
    if not ok:
        shape = getattr(data, "shape", None)
        raise DataError(f"CIFAR file {path} does not hold b'data' as uint8 (N, 3072) with "
                        f"{labels_key!r} of length N (got data shape {shape}); the file is not an "
                        "official CIFAR batch. Prepare it again with "
                        "`python data_prep/cifar.py --out DIR`.")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"CIFAR file {path} has labels outside 0..{n_classes - 1} "
                        f"(min {labels.min()}, max {labels.max()}); prepare the data again.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_folder(name: str, root: str | Path | None) -> Path:
    """The folder holding the pickles: ``root/<folder>`` or ``root`` itself."""
    spec = CIFAR[name]
    cmd = f"python data_prep/cifar.py --out DIR --dataset {name}"
    if root is None:
        raise DataError(f"dataset {name!r} needs data.root: prepare it with `{cmd}` and set "
                        "data.root=DIR.")
    root = Path(root)
    for folder in (root / spec["folder"], root):
        if (folder / spec["meta"]).is_file():
            return folder
    raise DataError(f"no {name} data under {root}: expected {root / spec['folder']}/"
                    f"{spec['meta']}. Prepare it with `{cmd.replace('DIR', str(root))}`.")


def load_cifar(name: str, root: str | Path | None, split: str,
               transform: Callable | None = None) -> ArrayImageDataset:
    """CIFAR-10/100 from the official python pickles, decoded once into uint8 (N, 32, 32, 3)."""
    spec = CIFAR[name]
    folder = _cifar_folder(name, root)
    meta = _load_pickle(folder / spec["meta"])
    names = meta.get(spec["names"])
    if not isinstance(names, list) or not names:
        raise DataError(f"CIFAR meta file {folder / spec['meta']} has no {spec['names']!r} list; "
                        "prepare the data again with `python data_prep/cifar.py --out DIR`.")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    parts = [_batch_arrays(folder / f, spec["labels"], len(classes)) for f in spec[split]]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    targets = np.concatenate([p[1] for p in parts])
    return ArrayImageDataset(images, targets, classes, spec["mean"], spec["std"], transform)


DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)  # over all 1797 images, values / 16


def load_digits_dataset(split: str, transform: Callable | None = None,
                        seed: int = 0) -> ArrayImageDataset:
    """scikit-learn's digits (embedded, 1797 8x8 images, values 0..16 scaled to [0, 1]).

    Deterministic stratified 80/20 train/test split with ``seed``. Without a transform items are
    exactly ``value / 16``; a transform gets a PIL ``L`` image of ``round(value * 255 / 16)``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    idx = np.arange(len(bunch.target))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=seed,
                                           stratify=bunch.target)
    keep = np.sort(train_idx if split == "train" else test_idx)
    values = bunch.images[keep] / 16.0  # (N, 8, 8) float in [0, 1]
    images = np.rint(values * 255.0).astype(np.uint8)[..., None]
    exact = torch.from_numpy(values.astype(np.float32))[:, None]  # (N, 1, 8, 8)
    return ArrayImageDataset(images, bunch.target[keep], [str(c) for c in range(10)],
                             DIGITS_MEAN, DIGITS_STD, transform, exact=exact)


def _class_dirs(split_dir: Path) -> list[str]:
    """Sorted class folder names under ``split_dir`` (hidden folders ignored)."""
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(class_dir: Path) -> list[Path]:
    """Sorted image files of one class folder; an empty folder is a DataError."""
    files = sorted(f for f in class_dir.iterdir()
                   if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
    if not files:
        raise DataError(f"class folder {class_dir} holds no image file "
                        f"({'/'.join(IMAGE_EXTENSIONS)}); add images or remove the folder "
                        "(from both train/ and test/).")
    return files


def _check_same_classes(root: Path, classes: list[str]) -> None:
    """Train and test must hold the same class folders (labels are indices into them)."""
    for other in SPLITS:
        if (root / other).is_dir():
            got = _class_dirs(root / other)
            if got != classes:
                only_a = sorted(set(classes) - set(got))
                only_b = sorted(set(got) - set(classes))
                raise DataError(
                    f"ImageFolder {root}: train/ and test/ must hold the same class folders, but "
                    f"{root / other} lacks {only_a or 'nothing'} and has extra "
                    f"{only_b or 'nothing'}. Make the two folder sets equal.")


class ImageFolderDataset(Dataset):
    """``root/<split>/<class>/*.jpg|png``; images decoded lazily to RGB with PIL.

    ``classes`` are the sorted class folder names (same for train and test); ``image_size``
    is the shorter side of the first image (recipes resize through their transform).
    """

    def __init__(self, root: str | Path | None, split: str, transform: Callable | None = None):
        if root is None or not (Path(root) / split).is_dir():
            raise DataError(
                f"ImageFolder data not found: expected {Path(str(root)) / split}/<class>/*.jpg. "
                "Set data.root to a folder holding train/ and test/ class folders.")
        root = Path(root)
        self.root, self.split, self.transform = root, split, transform
        self.classes = _class_dirs(root / split)
        if not self.classes:
            raise DataError(f"{root / split} holds no class folder; expected "
                            f"{root / split}/<class>/*.jpg.")
        _check_same_classes(root, self.classes)
        per_class = [_image_files(root / split / c) for c in self.classes]
        self.files = [f for files in per_class for f in files]
        self.targets = np.repeat(np.arange(len(per_class)), [len(f) for f in per_class])
        self.num_channels = 3
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.image_size = self._header_size(0)

    def __len__(self) -> int:
        return len(self.files)

    def _header_size(self, i: int) -> int:
        """Shorter side of image ``i`` from its header (no pixel decoding)."""
        try:
            with Image.open(self.files[i]) as img:
                return min(img.size)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot read image {self.files[i]} ({e}); the file is corrupt or "
                            "not an image. Replace or delete it.") from e

    def _open(self, i: int) -> Image.Image:
        """Decode file ``i`` to an RGB PIL image, or raise a DataError naming it."""
        path = self.files[i]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot read image {path} ({e}); the file is corrupt or not an "
                            "image. Replace or delete it.") from e

    def __getitem__(self, i: int):
        img, label = self._open(i), int(self.targets[i])
        if self.transform is None:
            arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
            return arr.permute(2, 0, 1).float().div_(255.0), label
        return self.transform(img), label



def build_image_dataset(name: str, root: str | Path | None, split: str,
                        transform: Callable | None = None) -> Dataset:
    """Build the ``split`` ("train" or "test") of dataset ``name``.

    Names: ``cifar10``, ``cifar100`` (root holds ``cifar-*-python`` from ``data_prep/cifar.py``),
    ``imagefolder`` (``root/train/<class>/*.jpg|png`` and ``root/test/...``), ``digits``
    (embedded; ``root`` ignored).
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not valid; expected one of {SPLITS}.")
    if name in CIFAR:
        return load_cifar(name, root, split, transform)
    if name == "digits":
        return load_digits_dataset(split, transform)
    if name == "imagefolder":
        return ImageFolderDataset(root, split, transform)
    raise DataError(f"unknown image dataset {name!r} (data.name); expected one of "
                    f"{sorted([*CIFAR, 'digits', 'imagefolder'])}.")


# ----------------------------------------------------------------------------- recipes

# The paper's numbers for context in reports (top-1 %, paper Tables 4, 5, 7; ViT-S, CIFAR-100).
PAPER_REFERENCE = {
    "cifar100": {"metric": "accuracy (%)", "source": "PART paper, Tables 4 and 7 (CIFAR-100, ViT-S)",
                 "values": {"part": 83.0, "part_grid": 82.1, "supervised": 73.6, "mae": 84.5, "mp3": 84.0}},
}


def limit(dataset, n, seed: int):
    """A seeded random subset of n items (the whole dataset when n is None or >= its size)."""
    idx = subset_indices(len(dataset), n, seed)
    return dataset if idx is None else Subset(dataset, idx.tolist())


@dataclass
class ImageDataOptions(DataConfig):
    """The recipe's ``data`` section for images: ``image_size`` resizes (None: native size);
    ``pretrain_augment`` / ``finetune_augment`` name the training transforms
    (``modalities/image/transforms.py``). ``mixup`` / ``cutmix`` are the Beta alphas of DeiT's
    batch Mixup / CutMix during finetuning (0: off; DeiT uses 0.8 and 1.0), applied by the
    finetune stage through ``DataBundle.finetune_batch_transform`` (``BatchMixup``) with a
    soft-target cross-entropy; they cannot be combined with ``class_balance: weighted_loss``."""

    image_size: Optional[int] = field(default=None, metadata={"min": 1})
    pretrain_augment: str = field(default="none", metadata={"choices": TRANSFORMS})
    finetune_augment: str = field(default="none", metadata={"choices": TRANSFORMS})
    mixup: float = field(default=0.0, metadata={"min": 0.0})
    cutmix: float = field(default=0.0, metadata={"min": 0.0})
    # label efficiency: the fraction of the (limit_train) training images whose labels finetuning
    # and the probes see, a seeded draw per repeat (part-label-efficiency sweeps it)
    label_fraction: float = field(default=1.0, metadata={"range": (0.0, 1.0), "bounds": "(]"})

    def check(self):
        yield from super().check()
        if self.class_balance == "weighted_loss" and (self.mixup > 0 or self.cutmix > 0):
            yield "class_balance", (
                f"= 'weighted_loss' cannot be combined with data.mixup={self.mixup:g} / "
                f"data.cutmix={self.cutmix:g}: class weights are undefined for mixed (soft) "
                "targets; use data.class_balance: balanced_sampler, or set data.mixup and data.cutmix to 0")


def load_data(data_cfg: ImageDataOptions, seed: int = 0, repeat: int = 0) -> DataBundle:
    """Train split for pretraining (labels unused) and finetuning, test split for evaluation.

    Transforms by name from the recipe: data.pretrain_augment, data.finetune_augment (training),
    the evaluation transform for test. repeat k > 0 draws another limit_train subset. With
    data.mixup or data.cutmix > 0 the bundle's ``finetune_batch_transform`` is a ``BatchMixup``.
    data.label_fraction < 1 keeps that fraction of the finetune images (at least one), another
    seeded draw for each repeat; ``finetune_eval`` holds the same images without augmentation.
    """
    probe = build_image_dataset(data_cfg.name, data_cfg.root, "test")
    size, mean, std = data_cfg.image_size or probe.image_size, probe.mean, probe.std

    def split(name, augment, train):
        return build_image_dataset(data_cfg.name, data_cfg.root, name,
                                   build_transform(augment, size, mean, std, train=train))
    pretrain = limit(split("train", data_cfg.pretrain_augment, True), data_cfg.limit_train, seed)
    finetune = limit(split("train", data_cfg.finetune_augment, True), data_cfg.limit_train, seed + repeat)
    finetune_eval = (finetune if data_cfg.finetune_augment == "none"  # else the same images, not augmented
                     else limit(split("train", "none", False), data_cfg.limit_train, seed + repeat))
    keep = subset_indices(len(finetune), max(1, round(data_cfg.label_fraction * len(finetune))),
                          seed + 7919 * (repeat + 1))  # label efficiency: a seeded fraction of them
    if keep is not None:
        finetune, finetune_eval = Subset(finetune, keep.tolist()), Subset(finetune_eval, keep.tolist())
    test = limit(split("test", "none", False), data_cfg.limit_test, seed)
    channels = probe.num_channels
    mix = (BatchMixup(data_cfg.mixup, data_cfg.cutmix, len(probe.classes))
           if data_cfg.mixup > 0 or data_cfg.cutmix > 0 else None)
    return DataBundle(
        pretrain=pretrain, finetune=finetune, test=test, class_names=list(probe.classes),
        input_info={"image_size": size, "channels": channels},
        reference=PAPER_REFERENCE.get(data_cfg.name), finetune_batch_transform=mix, finetune_eval=finetune_eval,
        label_budget={"key": "data.label_fraction", "unit": "label fraction", "pool": 1.0, "all": 1.0},
        description=f"{data_cfg.name}: {len(finetune)} train"
                    + (f" (label_fraction {data_cfg.label_fraction:g})" if keep is not None else "")
                    + f" / {len(test)} test images, "
                    f"{len(probe.classes)} classes, {size}x{size}x{channels}")


for _name in ("digits", *CIFAR, "imagefolder"):
    register_dataset("image", _name, options=ImageDataOptions)(load_data)
