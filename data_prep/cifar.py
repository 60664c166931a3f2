"""Download and extract CIFAR-10 / CIFAR-100 (official python-pickle tarballs).

    python data_prep/cifar.py --out DIR [--dataset cifar10|cifar100] [--url URL] [--md5 MD5]
                              [--imagefolder SUBSET_DIR --per-class TRAIN TEST [--seed S]]

Writes ``DIR/cifar-100-python/{train,test,meta}`` or
``DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (what
``modalities/image/datasets.py`` reads with ``data.root=DIR``). The tarball is kept in ``DIR``,
downloaded with resume and verified by MD5 first. Extraction refuses members that would land
outside ``DIR`` (absolute paths, ``..``, links, devices) and goes through a temporary folder that
is renamed into place, so an interrupted run never leaves a half-extracted dataset. Rerunning
when the dataset is complete does nothing. Exit codes: 0 done, 2 bad input or failed download.

``--imagefolder SUBSET_DIR --per-class TRAIN TEST`` also writes a class-balanced subset as JPEG
files in ImageFolder layout, ``SUBSET_DIR/{train,test}/<class>/<index>.jpg`` (TRAIN images per
class from the training batches, TEST per class from the test batch, a seeded draw; quality 95,
no chroma subsampling),
read by the ``imagefolder`` dataset (e.g. ``recipes/cifar10_subset.yaml``: 500 and 100 per class).
The subset is built in a temporary folder renamed into place; an existing one is kept.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    from part.data_prep.download import download_file
except ModuleNotFoundError as exc:  # `python data_prep/cifar.py` without the toolkit installed
    sys.exit(f"error: {exc}; install the toolkit first (`pip install -e .` in the repository), then run "
             "`part-prepare-cifar` or `python data_prep/cifar.py`")
import numpy as np  # noqa: E402

from part.errors import DataError, run_cli  # noqa: E402

SUBSET_INFO = "subset.json"  # written last in an ImageFolder subset: its completion marker

SOURCES = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "files": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"],
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "files": ["train", "test", "meta"],
    },
}


def is_prepared(out: Path, dataset: str) -> bool:
    """True when every file the dataset loader needs is present under ``out``."""
    src = SOURCES[dataset]
    return all((out / src["folder"] / f).is_file() for f in src["files"])


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse tar members that are not plain files/folders or would escape the output folder."""
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"unsafe path {name!r} in archive {archive}: it would be written outside "
                        "the output folder. The archive is not the official CIFAR tarball; "
                        "delete it and download again.")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"archive {archive} holds {name!r}, which is a link or special file; "
                        "the official CIFAR tarball holds only regular files. Delete the archive "
                        "and download again.")


def safe_extract(archive: Path, out: Path, folder: str, required: list[str]) -> Path:
    """Extract ``folder`` from the gzip tarball ``archive`` into ``out/folder`` atomically.

    Every member is checked first; then the archive is extracted into a temporary folder in
    ``out`` and ``out/folder`` is replaced by it in one rename. Returns ``out/folder``.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=out))
            try:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
                    tar.extractall(tmp, members=members, filter="data")
                else:  # members were checked above
                    tar.extractall(tmp, members=members)
                return _move_into_place(tmp, out, folder, required, archive)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract {archive}: {e}. The archive is corrupt or truncated; "
                        "delete it and rerun the command to download it again.") from e


def _move_into_place(tmp: Path, out: Path, folder: str, required: list[str],
                     archive: Path) -> Path:
    """Check the extracted tree holds ``folder/required`` and rename it to ``out/folder``."""
    missing = [f for f in required if not (tmp / folder / f).is_file()]
    if missing:
        raise DataError(f"archive {archive} does not hold {folder}/{missing[0]} (missing: "
                        f"{', '.join(missing)}). It is not the official tarball for this dataset; "
                        "check --dataset and --url.")
    target = out / folder
    if target.exists():
        shutil.rmtree(target)  # an incomplete earlier extraction
    (tmp / folder).rename(target)
    return target


def prepare_cifar(out: Path, dataset: str = "cifar100", url: str | None = None,
                  md5: str | None = None, progress: bool = True) -> Path:
    """Download (resumable, MD5-checked) and extract a CIFAR dataset; returns the data folder.

    Args:
        out: output folder (created). The tarball is kept there as ``<basename of url>``.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        url: mirror URL of the same tarball (default: the official Toronto URL).
        md5: expected MD5 (default: the official one). Give it with a custom ``url``.
    """
    if dataset not in SOURCES:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(SOURCES)}")
    src = SOURCES[dataset]
    out = Path(out)
    if is_prepared(out, dataset):
        return out / src["folder"]
    out.mkdir(parents=True, exist_ok=True)
    url = url or src["url"]
    archive = out / (url.rstrip("/").rsplit("/", 1)[-1] or f"{dataset}.tar.gz")
    download_file(url, archive, md5 or src["md5"], algo="md5", progress=progress)
    return safe_extract(archive, out, src["folder"], src["files"])


def _balanced_draw(targets: np.ndarray, n_classes: int, per_class: int, seed: int, split: str) -> np.ndarray:
    """Indices (n_classes * per_class,) of a seeded draw of ``per_class`` items of every class,
    sorted within each class."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(n_classes):
        pool = np.flatnonzero(targets == c)
        if len(pool) < per_class:
            raise DataError(f"--per-class asks for {per_class} {split} images of class {c}, but the "
                            f"{split} split holds {len(pool)}; ask for at most that many")
        picks.append(np.sort(rng.choice(pool, per_class, replace=False)))
    return np.concatenate(picks)


def export_imagefolder(cifar_root: Path, dataset: str, subset_dir: Path, per_class: tuple[int, int],
                       seed: int = 0, quality: int = 95) -> Path:
    """Write a class-balanced subset of a prepared CIFAR dataset as ImageFolder JPEGs.

    ``per_class`` = (train, test) images per class. Returns ``subset_dir``; an existing complete
    subset with the same settings is kept, one with other settings is refused.
    """
    from PIL import Image

    from part.modalities.image.datasets import load_cifar

    subset_dir = Path(subset_dir)
    settings = {"dataset": dataset, "per_class": list(per_class), "seed": seed, "quality": quality}
    marker = subset_dir / SUBSET_INFO
    if marker.is_file():
        if json.loads(marker.read_text()) == settings:
            return subset_dir
        raise DataError(f"{subset_dir} holds a subset made with {marker.read_text().strip()}, not "
                        f"{json.dumps(settings)}; choose another --imagefolder folder or delete it")
    if subset_dir.exists() and any(subset_dir.iterdir()):
        raise DataError(f"--imagefolder {subset_dir} exists and is not a subset written by this "
                        "command (no subset.json); choose an empty or new folder")
    subset_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{subset_dir.name}-", dir=subset_dir.parent))
    try:
        for split, n in zip(("train", "test"), per_class):
            data = load_cifar(dataset, cifar_root, split)
            for i in _balanced_draw(data.targets, len(data.classes), n, seed, split):
                folder = tmp / split / data.classes[data.targets[i]]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(data.images[i]).save(folder / f"{i:05d}.jpg", quality=quality, subsampling=0)
        (tmp / SUBSET_INFO).write_text(json.dumps(settings))
        if subset_dir.exists():
            subset_dir.rmdir()
        tmp.rename(subset_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return subset_dir


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input / download failure)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (data.root)")
    p.add_argument("--dataset", choices=sorted(SOURCES), default="cifar100")
    p.add_argument("--url", default=None, help="mirror URL of the official tarball")
    p.add_argument("--md5", default=None, help="expected MD5 (default: the official one)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--imagefolder", type=Path, default=None,
                   help="also write a class-balanced JPEG subset in ImageFolder layout here")
    p.add_argument("--per-class", type=int, nargs=2, default=(500, 100), metavar=("TRAIN", "TEST"),
                   help="images per class in the subset's train and test splits (default 500 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset draw")
    args = p.parse_args(argv)
    if min(args.per_class) < 1:
        p.error(f"--per-class {args.per_class[0]} {args.per_class[1]}: expected two positive integers")

    def work() -> None:
        folder = prepare_cifar(args.out, args.dataset, args.url, args.md5, progress=not args.no_progress)
        print(f"{args.dataset} ready in {folder} (use data.root={args.out})")
        if args.imagefolder is not None:
            subset = export_imagefolder(args.out, args.dataset, args.imagefolder, tuple(args.per_class), args.seed)
            print(f"ImageFolder subset ({args.per_class[0]} train / {args.per_class[1]} test per class) in "
                  f"{subset} (use data.name=imagefolder data.root={subset})")
    return run_cli(work, interrupted="interrupted: a partial download is kept as .part and resumed by the same "
                                     "command")


if __name__ == "__main__":
    sys.exit(main())
