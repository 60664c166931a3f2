"""part.data_prep.pc18_download against a loopback server in PhysioNet's layout.

The real tr03-0005 header and annotation files (../shared/data/pc18) are served and checked
against their official SHA1s from sleep_records.csv; signal files are small stand-ins.
"""
from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from loopback_http import LoopbackServer  # noqa: E402

from part.data_prep.pc18_download import download_records  # noqa: E402
from part.errors import DataError  # noqa: E402

from conftest import SHARED_DATA, requires_shared  # noqa: E402

PC18 = SHARED_DATA / "pc18"
needs_real = requires_shared("pc18/tr03-0005.hea", "pc18/tr03-0005.arousal", "pc18/sleep_records.csv")
RECS = ["tr03-0005", "tr03-0029", "tr04-0001"]


def _files(split: str = "training", recs=RECS) -> dict[str, bytes]:
    """Server files by URL path: real hea/arousal for tr03-0005, stand-ins elsewhere."""
    out = {}
    for i, rec in enumerate(recs):
        exts = [".hea", ".mat"] + ([".arousal"] if split == "training" else [])
        for ext in exts:
            out[f"/{split}/{rec}/{rec}{ext}"] = f"{rec}{ext} #{i}".encode() * 5000
    if split == "training" and "tr03-0005" in recs and (PC18 / "tr03-0005.hea").is_file():
        for ext in (".hea", ".arousal"):
            out[f"/training/tr03-0005/tr03-0005{ext}"] = (PC18 / f"tr03-0005{ext}").read_bytes()
    return out


def _sha256sums(files: dict[str, bytes]) -> bytes:
    lines = [f"{hashlib.sha256(b).hexdigest()}  {p.lstrip('/')}" for p, b in files.items()]
    return ("\n".join(lines) + "\n").encode()


def _server_tree(split="training", recs=RECS, records_at="split"):
    files = _files(split, recs)
    tree = dict(files)
    tree["/SHA256SUMS.txt"] = _sha256sums(files)
    if records_at == "split":
        tree[f"/{split}/RECORDS"] = "".join(f"{r}/\n" for r in recs).encode()
    else:  # only the top-level index, with both splits in it
        tree["/RECORDS"] = ("training/other-rec/\n" if split == "test" else "") .encode() + \
            "".join(f"{split}/{r}/\n" for r in recs).encode()
    return files, tree


def test_training_records_with_limit_and_sha256sums(tmp_path):
    files, tree = _server_tree()
    with LoopbackServer(tree) as srv:
        out = download_records(tmp_path, "training", limit=2, base_url=srv.url, workers=2,
                               progress=False)
    assert out == [tmp_path / "training" / r for r in RECS[:2]]
    for rec in RECS[:2]:
        for ext in (".hea", ".mat", ".arousal"):
            rel = f"training/{rec}/{rec}{ext}"
            assert (tmp_path / rel).read_bytes() == files["/" + rel]
    assert not (tmp_path / "training" / RECS[2]).exists()


def test_test_split_from_top_level_records_without_arousal(tmp_path):
    files, tree = _server_tree("test", ["te03-0024", "te03-0031"], records_at="top")
    with LoopbackServer(tree) as srv:
        out = download_records(tmp_path, "test", None, srv.url, progress=False)
    assert [p.name for p in out] == ["te03-0024", "te03-0031"]
    assert sorted(f.name for f in out[0].iterdir()) == ["te03-0024.hea", "te03-0024.mat"]


@needs_real
def test_official_sha1_metadata_verifies_real_files(tmp_path):
    files = _files(recs=["tr03-0005"])
    official = [r for r in csv.DictReader(open(PC18 / "sleep_records.csv"))
                if r["Record"] == "tr03-0005"]
    assert len(official) == 3
    for row in official:
        if row["fname"].endswith(".mat"):  # our stand-in signal: its own SHA1
            row["sha"] = hashlib.sha1(files["/" + row["fname"]]).hexdigest()
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(official[0]))
        w.writeheader()
        w.writerows(official)
    with LoopbackServer(files) as srv:  # no RECORDS, no SHA256SUMS needed
        out = download_records(tmp_path / "d", "training", base_url=srv.url,
                               metadata=meta, progress=False)
    assert out == [tmp_path / "d" / "training" / "tr03-0005"]
    assert (out[0] / "tr03-0005.hea").read_bytes() == (PC18 / "tr03-0005.hea").read_bytes()


@needs_real
def test_official_sha1_rejects_a_tampered_header(tmp_path):
    files = _files(recs=["tr03-0005"])
    files["/training/tr03-0005/tr03-0005.hea"] += b"# tampered\r\n"
    lines = (PC18 / "sleep_records.csv").read_text().splitlines()
    meta = tmp_path / "official_rows.csv"  # the official rows of tr03-0005, unchanged
    meta.write_text("\n".join([lines[0]] + [ln for ln in lines if ",tr03-0005," in ln]) + "\n")
    with LoopbackServer(files) as srv:
        with pytest.raises(DataError) as err:
            download_records(tmp_path, "training", base_url=srv.url, metadata=meta,
                             progress=False)
    msg = str(err.value)
    assert "2 of 3" in msg  # the stand-in .mat fails its official SHA1 too
    assert "tr03-0005.hea" in msg and "286eeb1edf3e0b826c61fc0ccaeac48475e3d742" in msg
    rec = tmp_path / "training" / "tr03-0005"
    assert not (rec / "tr03-0005.hea").exists() and not (rec / "tr03-0005.mat").exists()
    real = (PC18 / "tr03-0005.arousal").read_bytes()  # passes the official SHA1
    assert (rec / "tr03-0005.arousal").read_bytes() == real


def test_wrong_checksum_rejected_cut_resumed_rest_kept(tmp_path):
    files, tree = _server_tree()
    bad = "/training/tr03-0029/tr03-0029.mat"
    tree[bad] = b"corrupted on the server" * 100
    cut = "/training/tr04-0001/tr04-0001.mat"
    with LoopbackServer(tree, cut_once={cut}) as srv:
        with pytest.raises(DataError) as err:
            download_records(tmp_path, "training", base_url=srv.url, progress=False)
        assert (cut, f"bytes={len(files[cut]) // 2}-") in srv.requests
    assert "tr03-0029.mat" in str(err.value) and "1 of 9" in str(err.value)
    assert not (tmp_path / bad.lstrip("/")).exists()
    assert not (tmp_path / (bad.lstrip("/") + ".part")).exists()
    assert (tmp_path / cut.lstrip("/")).read_bytes() == files[cut]


def test_rerun_fetches_nothing_again(tmp_path):
    _, tree = _server_tree(recs=RECS[:1])
    with LoopbackServer(tree) as srv:
        download_records(tmp_path, "training", base_url=srv.url, progress=False)
        n = len(srv.requests)
        download_records(tmp_path, "training", base_url=srv.url, progress=False)
        again = [p for p, _ in srv.requests[n:]]
    assert all(p.endswith(("RECORDS", "SHA256SUMS.txt")) for p in again)


def test_checksum_file_by_path_and_missing_entry(tmp_path):
    files, tree = _server_tree(recs=RECS[:1])
    sums = tmp_path / "sha1sums.txt"
    sums.write_text("".join(f"{hashlib.sha1(b).hexdigest()}  {p.lstrip('/')}\n"
                            for p, b in files.items() if not p.endswith(".arousal")))
    with LoopbackServer(tree) as srv:
        with pytest.raises(DataError, match="no published checksum for .*tr03-0005.arousal"):
            download_records(tmp_path / "x", "training", base_url=srv.url, checksums=sums,
                             progress=False)
    assert not (tmp_path / "x").exists()  # refused before any download


@pytest.mark.parametrize("records,match", [(b"../../etc/\n", "unsafe"), (b"", "no training")])
def test_bad_records_index(tmp_path, records, match):
    with LoopbackServer({"/training/RECORDS": records, "/SHA256SUMS.txt": b""}) as srv:
        with pytest.raises(DataError, match=match):
            download_records(tmp_path, "training", base_url=srv.url, progress=False)


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="'train'"):
        download_records(tmp_path, "train")
    with pytest.raises(DataError, match="limit"):
        download_records(tmp_path, "training", limit=0)
    with pytest.raises(DataError, match="columns"):
        bad = tmp_path / "m.csv"
        bad.write_text("a,b\n1,2\n")
        download_records(tmp_path, "training", metadata=bad, base_url="http://127.0.0.1:9/")
    with pytest.raises(DataError, match="does not exist"):
        download_records(tmp_path, "training", metadata=tmp_path / "nope.csv")
    sums = tmp_path / "s.txt"  # a malformed checksum line names the file and line
    sums.write_text("xyz  training/a/a.hea\n")
    with LoopbackServer({"/training/RECORDS": b"a\n"}) as srv:
        with pytest.raises(DataError, match=r"s\.txt line 1"):
            download_records(tmp_path, "training", base_url=srv.url, checksums=sums)
