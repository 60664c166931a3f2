"""data_prep/cifar.py: download a small official-layout tarball from loopback, verify, extract."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "modalities" / "image"))
sys.path.insert(0, str(REPO))

from cifar_pickles import read_raw, write_cifar  # noqa: E402
from loopback_http import LoopbackServer  # noqa: E402

from part.data_prep.cifar import main, prepare_cifar  # noqa: E402
from part.modalities.image.datasets import build_image_dataset  # noqa: E402
from part.errors import DataError  # noqa: E402


def _tarball(tmp_path: Path, dataset: str) -> bytes:
    """A gzip tarball holding the official folder, as the real archive does."""
    src = tmp_path / "src"
    folder = write_cifar(src, dataset, n_train=6, n_test=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def _evil_tarball(name: str, kind: str = "file") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buf.getvalue()


def test_cli_downloads_verifies_extracts_and_is_idempotent(tmp_path):
    blob = _tarball(tmp_path, "cifar100")
    out = tmp_path / "data"
    with LoopbackServer({"/cifar-100-python.tar.gz": blob}) as srv:
        cmd = [sys.executable, str(REPO / "data_prep" / "cifar.py"), "--out", str(out),
               "--url", srv.url + "cifar-100-python.tar.gz",
               "--md5", hashlib.md5(blob).hexdigest(), "--no-progress"]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert run.returncode == 0, run.stderr
        assert len(srv.requests) == 1
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert again.returncode == 0 and len(srv.requests) == 1  # nothing fetched again
    for name in ("train", "test", "meta"):
        assert (out / "cifar-100-python" / name).is_file()
    ds = build_image_dataset("cifar100", out, "train")
    raw = read_raw(tmp_path / "src" / "cifar-100-python", "train")
    assert len(ds) == 6 and ds.targets.tolist() == raw[b"fine_labels"]
    assert not list(out.glob(".extract-*"))


def test_cifar10_resumes_after_cut(tmp_path):
    blob = _tarball(tmp_path, "cifar10")
    with LoopbackServer({"/c10.tgz": blob}, cut_once={"/c10.tgz"}) as srv:
        folder = prepare_cifar(tmp_path / "d", "cifar10", srv.url + "c10.tgz",
                               hashlib.md5(blob).hexdigest(), progress=False)
    assert srv.requests[1][1] == f"bytes={len(blob) // 2}-"
    assert folder == tmp_path / "d" / "cifar-10-batches-py"
    assert len(build_image_dataset("cifar10", tmp_path / "d", "train")) == 30


def test_wrong_md5_exit_code_2_and_nothing_extracted(tmp_path):
    blob = _tarball(tmp_path, "cifar100")
    out = tmp_path / "data"
    with LoopbackServer({"/c.tar.gz": blob}) as srv:
        code = main(["--out", str(out), "--url", srv.url + "c.tar.gz", "--no-progress"])
    assert code == 2  # the official MD5 does not match the test tarball
    assert not (out / "cifar-100-python").exists()
    assert not (out / "c.tar.gz").exists() and not (out / "c.tar.gz.part").exists()


def test_official_checksum_used_by_default(tmp_path, capsys):
    blob = _tarball(tmp_path, "cifar10")
    with LoopbackServer({"/c.tar.gz": blob}) as srv:
        main(["--out", str(tmp_path / "o"), "--dataset", "cifar10",
              "--url", srv.url + "c.tar.gz", "--no-progress"])
    err = capsys.readouterr().err
    assert "c58f30108f718f92721af3b95e74349a" in err and hashlib.md5(blob).hexdigest() in err


@pytest.mark.parametrize("name,kind", [("../escape.txt", "file"), ("/abs/evil.txt", "file"),
                                       ("cifar-100-python/link", "symlink")])
def test_unsafe_archive_rejected(tmp_path, name, kind):
    blob = _evil_tarball(name, kind)
    out = tmp_path / "out"
    with LoopbackServer({"/evil.tar.gz": blob}) as srv:
        with pytest.raises(DataError) as err:
            prepare_cifar(out, "cifar100", srv.url + "evil.tar.gz",
                          hashlib.md5(blob).hexdigest(), progress=False)
    assert name in str(err.value)
    assert not (tmp_path / "escape.txt").exists()
    assert not (out / "cifar-100-python").exists()


def test_archive_without_the_dataset_rejected(tmp_path):
    blob = _tarball(tmp_path, "cifar10")  # asked for cifar100, got cifar10 content
    with LoopbackServer({"/x.tar.gz": blob}) as srv:
        with pytest.raises(DataError, match="cifar-100-python/train"):
            prepare_cifar(tmp_path / "o", "cifar100", srv.url + "x.tar.gz",
                          hashlib.md5(blob).hexdigest(), progress=False)


def test_imagefolder_subset_is_balanced_readable_and_kept(tmp_path):
    """--imagefolder writes N train / M test JPEGs per class that the imagefolder dataset reads
    back with the right labels (pixels within JPEG error), and a rerun keeps it."""
    from part.data_prep.cifar import export_imagefolder

    write_cifar(tmp_path / "c", "cifar10", n_train=20, n_test=10)  # 100 train, 10 test images
    subset = export_imagefolder(tmp_path / "c", "cifar10", tmp_path / "sub", (3, 1), seed=1)
    train = build_image_dataset("imagefolder", subset, "train")
    test = build_image_dataset("imagefolder", subset, "test")
    assert len(train) == 30 and len(test) == 10
    assert np.bincount(np.asarray(train.targets), minlength=10).tolist() == [3] * 10
    assert train.classes[:3] == ["airplane", "automobile", "bird"]
    cifar = build_image_dataset("cifar10", tmp_path / "c", "train")
    first = train.files[0]  # <index>.jpg names the CIFAR item it came from
    x, label = train[0]
    ref, ref_label = cifar[int(first.stem)]
    assert label == ref_label == 0
    assert (x - ref).abs().mean() < 0.08  # JPEG q95 of noise images: small mean error
    mtime = (subset / "subset.json").stat().st_mtime_ns
    assert export_imagefolder(tmp_path / "c", "cifar10", tmp_path / "sub", (3, 1), seed=1) == subset
    assert (subset / "subset.json").stat().st_mtime_ns == mtime
    with pytest.raises(DataError, match="made with"):
        export_imagefolder(tmp_path / "c", "cifar10", tmp_path / "sub", (4, 1), seed=1)
    with pytest.raises(DataError, match="at most that many"):
        export_imagefolder(tmp_path / "c", "cifar10", tmp_path / "other", (11, 1))
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other-*"))
