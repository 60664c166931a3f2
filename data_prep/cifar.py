"""Download and extract CIFAR-10 / CIFAR-100 (official python-pickle tarballs).

    python data_prep/cifar.py --out DIR [--dataset cifar10|cifar100] [--url URL] [--md5 MD5]

Writes ``DIR/cifar-100-python/{train,test,meta}`` or
``DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (what
``modalities/image/datasets.py`` reads with ``data.root=DIR``). The tarball is kept in ``DIR``,
downloaded with resume and verified by MD5 first. Extraction refuses members that would land
outside ``DIR`` (absolute paths, ``..``, links, devices) and goes through a temporary folder that
is renamed into place, so an interrupted run never leaves a half-extracted dataset. Rerunning
when the dataset is complete does nothing. Exit codes: 0 done, 2 bad input or failed download.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

try:
    import data_prep  # noqa: F401
except ImportError:  # run as `python data_prep/cifar.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.download import download_file  # noqa: E402
from part.errors import DataError  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input / download failure)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (data.root)")
    p.add_argument("--dataset", choices=sorted(SOURCES), default="cifar100")
    p.add_argument("--url", default=None, help="mirror URL of the official tarball")
    p.add_argument("--md5", default=None, help="expected MD5 (default: the official one)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    try:
        folder = prepare_cifar(args.out, args.dataset, args.url, args.md5,
                               progress=not args.no_progress)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.dataset} ready in {folder} (use data.root={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
