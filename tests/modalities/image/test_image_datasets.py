"""Image datasets (CIFAR pickles, ImageFolder, digits), transforms and every bad-input error."""
from __future__ import annotations

import pickle
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cifar_pickles import read_raw, write_cifar  # noqa: E402

from part.modalities.image.datasets import build_image_dataset  # noqa: E402
from part.modalities.image.transforms import build_transform  # noqa: E402
from part.errors import DataError  # noqa: E402

from conftest import SHARED_DATA, requires_shared  # noqa: E402

SUBSET = SHARED_DATA / "cifar10_subset"
needs_subset = requires_shared("cifar10_subset/train", "cifar10_subset/test")


# ---------------------------------------------------------------- CIFAR

def test_cifar100_layout_and_pixels(tmp_path):
    folder = write_cifar(tmp_path, "cifar100", n_train=12, n_test=5)
    ds = build_image_dataset("cifar100", str(tmp_path), "train")
    raw = read_raw(folder, "train")
    assert len(ds) == 12 and ds.classes[:2] == ["fine0", "fine1"] and len(ds.classes) == 100
    assert (ds.num_channels, ds.image_size) == (3, 32)
    assert ds.images.shape == (12, 32, 32, 3) and ds.images.dtype == np.uint8
    img, label = ds[7]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and isinstance(label, int)
    expected = torch.from_numpy(raw[b"data"][7].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.equal(img, expected)  # channel planes R, G, B; row-major 32x32
    assert label == raw[b"fine_labels"][7]
    assert len(ds.mean) == len(ds.std) == 3
    test = build_image_dataset("cifar100", tmp_path / "cifar-100-python", "test")  # folder itself
    assert len(test) == 5 and test.targets.tolist() == [0, 1, 2, 3, 4]


def test_cifar10_concatenates_five_batches(tmp_path):
    folder = write_cifar(tmp_path, "cifar10", n_train=4, n_test=3)
    ds = build_image_dataset("cifar10", tmp_path, "train")
    assert len(ds) == 20 and ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    last = read_raw(folder, "data_batch_5")[b"data"][3]
    assert np.array_equal(ds.images[19], last.reshape(3, 32, 32).transpose(1, 2, 0))
    assert len(build_image_dataset("cifar10", tmp_path, "test")) == 3
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 3, 32, 32) and batch[1].dtype == torch.int64


def test_missing_cifar_root_says_which_command(tmp_path):
    with pytest.raises(DataError, match=r"python data_prep/cifar\.py --out") as err:
        build_image_dataset("cifar100", tmp_path / "nowhere", "train")
    assert "nowhere" in str(err.value)
    with pytest.raises(DataError, match="data.root"):
        build_image_dataset("cifar10", None, "train")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_structure", "malicious"])
def test_corrupt_pickle_names_the_file(tmp_path, damage):
    folder = write_cifar(tmp_path, "cifar100", n_train=6, n_test=2)
    target = folder / "train"
    blob = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x00not a pickle at all" * 10)
    elif damage == "wrong_structure":
        target.write_bytes(pickle.dumps({b"data": [1, 2, 3], b"fine_labels": [0]}))
    else:
        target.write_bytes(pickle.dumps(print))  # a global that is not a numpy array
    with pytest.raises(DataError) as err:
        build_image_dataset("cifar100", tmp_path, "train")
    assert str(target) in str(err.value)
    assert "data_prep/cifar.py" in str(err.value)


def test_every_byte_damage_is_data_or_the_corrupt_file_message(tmp_path):
    """A few changed bytes anywhere in a batch (header, keys, pixel data) must either load or
    raise the corrupt-file DataError: never LookupError, OverflowError or another escape."""
    folder = write_cifar(tmp_path, "cifar100", n_train=6, n_test=2)
    target = folder / "train"
    blob = target.read_bytes()
    rng = random.Random(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(1500):
        damaged = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(min(len(blob), 400)) if rng.random() < 0.8 else rng.randrange(len(blob))
            damaged[pos] = rng.randrange(256)
        target.write_bytes(bytes(damaged))
        try:
            build_image_dataset("cifar100", tmp_path, "train")
            outcomes["loaded"] += 1
        except DataError as err:
            assert str(target) in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 0, outcomes


def test_missing_batch_file_named(tmp_path):
    folder = write_cifar(tmp_path, "cifar10", n_train=2, n_test=2)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        build_image_dataset("cifar10", tmp_path, "train")


# ---------------------------------------------------------------- ImageFolder

@needs_subset
def test_imagefolder_on_real_cifar10_subset():
    train = build_image_dataset("imagefolder", SUBSET, "train")
    test = build_image_dataset("imagefolder", SUBSET, "test")
    assert len(train) == 5000 and len(test) == 1000
    assert train.classes == test.classes == sorted(p.name for p in (SUBSET / "train").iterdir())
    assert (train.num_channels, train.image_size) == (3, 32)
    i = 1234
    img, label = train[i]
    path = train.files[i]
    assert train.classes[label] == path.parent.name
    ref = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    assert img.shape == (3, 32, 32)
    assert torch.allclose(img, torch.from_numpy(ref).permute(2, 0, 1))
    assert np.bincount(test.targets).tolist() == [100] * 10


def _small_tree(tmp_path: Path, n: int = 2) -> Path:
    root = tmp_path / "tree"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for f in sorted((SUBSET / split / cls).iterdir())[:n]:
                shutil.copy(f, d / f.name)
    return root


@needs_subset
def test_unreadable_and_truncated_jpeg_named(tmp_path):
    root = _small_tree(tmp_path)
    bad = root / "train" / "cat" / "0001.jpg"
    bad.write_bytes(b"this is not a jpeg")
    ds = build_image_dataset("imagefolder", root, "train")  # decoding is lazy
    idx = ds.files.index(bad)
    with pytest.raises(DataError, match="0001.jpg") as err:
        ds[idx]
    assert str(bad) in str(err.value)
    cut = root / "train" / "dog" / sorted(p.name for p in (root / "train" / "dog").iterdir())[0]
    cut.write_bytes(cut.read_bytes()[:200])
    with pytest.raises(DataError, match=str(cut.name)):
        ds[ds.files.index(cut)]


@needs_subset
def test_empty_class_folder_named(tmp_path):
    root = _small_tree(tmp_path)
    for f in (root / "test" / "dog").iterdir():
        f.unlink()
    (root / "test" / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no image") as err:
        build_image_dataset("imagefolder", root, "test")
    assert str(root / "test" / "dog") in str(err.value)


@needs_subset
def test_class_sets_must_match(tmp_path):
    root = _small_tree(tmp_path)
    shutil.copytree(root / "train" / "cat", root / "train" / "bird")
    for split in ("train", "test"):
        with pytest.raises(DataError, match="bird"):
            build_image_dataset("imagefolder", root, split)


def test_missing_imagefolder_root(tmp_path):
    with pytest.raises(DataError, match="train"):
        build_image_dataset("imagefolder", tmp_path / "absent", "train")


# ---------------------------------------------------------------- digits

def test_digits_split_is_stratified_and_deterministic():
    from sklearn.datasets import load_digits
    train = build_image_dataset("digits", None, "train")
    test = build_image_dataset("digits", None, "test")
    assert (len(train), len(test)) == (1437, 360)
    assert (train.num_channels, train.image_size, train.classes[3]) == (1, 8, "3")
    all_counts = np.bincount(load_digits().target)
    assert np.abs(np.bincount(test.targets) - all_counts * 0.2).max() <= 1
    again = build_image_dataset("digits", None, "test")
    assert np.array_equal(again.targets, test.targets) and torch.equal(again[5][0], test[5][0])
    img, label = test[0]
    assert img.shape == (1, 8, 8) and 0 <= img.min() and img.max() <= 1
    assert torch.equal(img * 16, torch.round(img * 16))  # exactly value / 16
    imgs = torch.stack([train[i][0] for i in range(len(train))] +
                       [test[i][0] for i in range(len(test))])
    assert abs(imgs.mean().item() - train.mean[0]) < 2e-3
    assert abs(imgs.std().item() - train.std[0]) < 2e-3


def test_unknown_name_and_split():
    with pytest.raises(DataError, match="imagefolder"):
        build_image_dataset("mnist", None, "train")
    with pytest.raises(DataError, match="'val'"):
        build_image_dataset("digits", None, "val")


# ---------------------------------------------------------------- transforms

def _rgb(size: int, seed: int = 0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def test_none_transform_is_exact_normalisation():
    img = _rgb(32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    for train in (True, False):
        out = build_transform("none", 32, mean, std, train)(img)
        ref = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        ref = (ref - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("name", ["pretrain", "deit"])
def test_random_transforms_shape_and_seed(name):
    t = build_transform(name, 32, (0.5,) * 3, (0.25,) * 3, train=True)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        random.seed(3)
        np.random.seed(3)  # timm's RandAugment picks its ops with numpy
        outs.append(t(_rgb(40)))
    assert outs[0].shape == (3, 32, 32) and outs[0].dtype == torch.float32
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(4)
    random.seed(4)
    np.random.seed(4)
    assert not torch.equal(t(_rgb(40)), outs[0])


def test_transforms_with_datasets():
    digits = build_image_dataset("digits", None, "train")
    for name in ("none", "pretrain", "deit"):
        digits.transform = build_transform(name, 8, digits.mean, digits.std, train=True)
        assert digits[0][0].shape == (1, 8, 8)
    big = build_transform("deit", 224, (0.5,) * 3, (0.25,) * 3, train=False)(_rgb(300))
    assert big.shape == (3, 224, 224)


def test_bad_transform_arguments():
    with pytest.raises(DataError, match="'autoaug'"):
        build_transform("autoaug", 32, (0.5,), (0.5,), True)
    with pytest.raises(DataError, match="std"):
        build_transform("none", 32, (0.5, 0.5), (0.5,), True)
