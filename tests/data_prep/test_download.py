"""part.data_prep.download against a loopback HTTP server: normal, resume, bad checksum, no Range."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from loopback_http import LoopbackServer  # noqa: E402

from part.data_prep.download import (  # noqa: E402
    DownloadError, DownloadItem, download_file, download_many, file_checksum, part_path)
from part.errors import DataError  # noqa: E402

BODY = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA1 = hashlib.sha1(BODY).hexdigest()


def test_normal_download_verifies_and_renames(tmp_path):
    with LoopbackServer({"/f.bin": BODY}) as srv:
        out = download_file(srv.url + "f.bin", tmp_path / "f.bin", SHA1, progress=False)
    assert out == tmp_path / "f.bin"
    assert out.read_bytes() == BODY
    assert not part_path(out).exists()
    assert srv.requests == [("/f.bin", None)]


@pytest.mark.parametrize("algo", ["md5", "sha256"])
def test_other_algorithms(tmp_path, algo):
    digest = hashlib.new(algo, BODY).hexdigest().upper()  # case-insensitive
    with LoopbackServer({"/f.bin": BODY}) as srv:
        out = download_file(srv.url + "f.bin", tmp_path / "f.bin", digest, algo=algo,
                            progress=False)
    assert file_checksum(out, algo) == digest.lower()


def test_resume_after_cut_uses_range(tmp_path):
    with LoopbackServer({"/f.bin": BODY}, cut_once={"/f.bin"}) as srv:
        out = download_file(srv.url + "f.bin", tmp_path / "f.bin", SHA1, retries=2,
                            progress=False)
    assert out.read_bytes() == BODY
    assert len(srv.requests) == 2
    assert srv.requests[0][1] is None
    assert srv.requests[1][1] == f"bytes={len(BODY) // 2}-"


def test_resume_from_existing_partial_file(tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY[:1234])
    with LoopbackServer({"/f.bin": BODY}) as srv:
        download_file(srv.url + "f.bin", dest, SHA1, progress=False)
    assert dest.read_bytes() == BODY
    assert srv.requests == [("/f.bin", "bytes=1234-")]


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"garbage that must not stay at the front")
    with LoopbackServer({"/f.bin": BODY}, ignore_range=True) as srv:
        download_file(srv.url + "f.bin", dest, SHA1, progress=False)
    assert dest.read_bytes() == BODY


def test_cut_with_server_ignoring_range(tmp_path):
    with LoopbackServer({"/f.bin": BODY}, cut_once={"/f.bin"}, ignore_range=True) as srv:
        out = download_file(srv.url + "f.bin", tmp_path / "f.bin", SHA1, progress=False)
    assert out.read_bytes() == BODY
    assert len(srv.requests) == 2


def test_partial_longer_than_file_restarts(tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(BODY + b"extra")
    with LoopbackServer({"/f.bin": BODY}) as srv:
        download_file(srv.url + "f.bin", dest, SHA1, progress=False)
    assert dest.read_bytes() == BODY


def test_wrong_checksum_rejected_and_partial_removed(tmp_path):
    dest = tmp_path / "f.bin"
    bad = "0" * 40
    with LoopbackServer({"/f.bin": BODY}) as srv:
        with pytest.raises(DataError) as err:
            download_file(srv.url + "f.bin", dest, bad, progress=False)
    msg = str(err.value)
    assert srv.url + "f.bin" in msg and bad in msg and SHA1 in msg
    assert not dest.exists() and not part_path(dest).exists()


def test_existing_good_file_is_not_fetched(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(BODY)
    with LoopbackServer({"/f.bin": b"different"}) as srv:
        download_file(srv.url + "f.bin", dest, SHA1, progress=False)
    assert srv.requests == []
    assert dest.read_bytes() == BODY


def test_existing_bad_file_is_replaced(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    with LoopbackServer({"/f.bin": BODY}) as srv:
        download_file(srv.url + "f.bin", dest, SHA1, progress=False)
    assert dest.read_bytes() == BODY


def test_missing_url_is_a_clear_error(tmp_path):
    with LoopbackServer({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404") as err:
            download_file(srv.url + "nope.bin", tmp_path / "n.bin", None, progress=False)
    assert "nope.bin" in str(err.value)
    assert len(srv.requests) == 1  # a 404 is not retried


def test_unreachable_server_gives_up_after_retries(tmp_path):
    with LoopbackServer({}) as srv:
        url = srv.url
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download_file(url + "f.bin", tmp_path / "f.bin", SHA1, retries=1, timeout=2,
                      progress=False)


def test_unknown_algorithm_rejected(tmp_path):
    with pytest.raises(ValueError, match="crc32"):
        download_file("http://127.0.0.1:9/x", tmp_path / "x", "00", algo="crc32")


def test_download_many_mixed(tmp_path):
    files = {f"/f{i}.bin": BODY[i * 1000:(i + 1) * 50_000] for i in range(4)}
    with LoopbackServer(files, cut_once={"/f2.bin"}) as srv:
        items = [DownloadItem(srv.url + p[1:], tmp_path / p[1:],
                              hashlib.md5(b).hexdigest(), "md5") for p, b in files.items()]
        items.append((srv.url + "f0.bin", tmp_path / "sub" / "copy.bin"))  # tuple form
        out = download_many(items, workers=3, progress=False)
    assert out == [it.dest for it in items[:4]] + [tmp_path / "sub" / "copy.bin"]
    for (p, b), path in zip(files.items(), out):
        assert path.read_bytes() == b


def test_download_many_reports_every_failure_and_keeps_the_rest(tmp_path):
    files = {"/ok.bin": BODY, "/bad.bin": BODY}
    with LoopbackServer(files) as srv:
        items = [(srv.url + "ok.bin", tmp_path / "ok.bin", SHA1),
                 (srv.url + "bad.bin", tmp_path / "bad.bin", "1" * 40),
                 (srv.url + "gone.bin", tmp_path / "gone.bin", None)]
        with pytest.raises(DownloadError) as err:
            download_many(items, workers=2, progress=False)
    msg = str(err.value)
    assert "2 of 3" in msg and "bad.bin" in msg and "gone.bin" in msg
    assert (tmp_path / "ok.bin").read_bytes() == BODY
    assert not (tmp_path / "bad.bin").exists()
