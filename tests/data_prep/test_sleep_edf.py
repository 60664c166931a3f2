"""``python data_prep/sleep_edf.py``: Sleep-EDF pairing and ids, wake trimming, subject splits read by
the ``sleep_edf`` dataset, ``--synthetic``, and ``--download`` against a loopback server with
SHA256SUMS.txt (limit, checksum mismatch)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from part.data_prep.sleep_edf import find_sleep_edf, main
from part.data_prep.sleep_edf_download import download_sleep_edf, parse_sha256sums
from part.errors import DataError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from loopback_http import LoopbackServer  # noqa: E402
from test_psg_prepare import _edf_with_start, _hypnogram_edf  # noqa: E402

# a hand-scored night: 10 epochs W, then N1 N2 N2 (R&K 4 = N3) R, 8 W, 1 '?', 2 'Movement time'
NOTES = [(0, 300, "Sleep stage W"), (300, 30, "Sleep stage 1"), (330, 60, "Sleep stage 2"), (390, 30, "Sleep stage 4"),
         (420, 30, "Sleep stage R"), (450, 240, "Sleep stage W"), (690, 30, "Sleep stage ?"),
         (720, 60, "Movement time")]


def _night(folder: Path, record: str, scorer: str = "C", seconds: float = 900) -> None:
    """A Sleep-EDF-layout night ``<record>E0-PSG.edf`` / ``<record>E<scorer>-Hypnogram.edf``."""
    labels = ("EEG Fpz-Cz", "EEG Pz-Oz")
    _edf_with_start(folder / f"{record}E0-PSG.edf", seconds, labels=labels)
    _hypnogram_edf(folder / f"{record}E{scorer}-Hypnogram.edf", NOTES)


def _run(src: Path, out: Path, *extra) -> int:
    return main(["--src", str(src), "--out", str(out), "--workers", "1", "--no-progress", "--n-test", "1",
                 "--n-finetune", "1", *map(str, extra)])


def test_wake_trimming_keeps_exact_windows_and_the_label_map(tmp_path):
    _night(tmp_path / "raw" / "sleep-cassette", "SC4001")
    assert _run(tmp_path / "raw", tmp_path / "keep", "--trim-wake-min", "0") == 0
    full = np.load(tmp_path / "keep" / "records" / "SC4001.labels.npy").tolist()
    assert full == [0] * 10 + [1, 2, 2, 3, 4] + [0] * 8 + [-1] * 7  # 4 -> N3, ? and MT -> -1, after: -1
    assert _run(tmp_path / "raw", tmp_path / "trim", "--trim-wake-min", "1") == 0
    m = json.loads((tmp_path / "trim" / "manifest.json").read_text())
    rec = m["records"]["SC4001"]
    assert np.load(tmp_path / "trim" / "records" / "SC4001.labels.npy").tolist() == [0, 0, 1, 2, 2, 3, 4, 0, 0]
    assert rec["trim"] == {"wake_min": 1.0, "dropped_before": 8, "dropped_after": 13}
    assert rec["first_window_start_s"] == 240.0 and rec["subject"] == "SC400" and m["params"]["trim_wake_min"] == 1
    assert np.load(tmp_path / "trim" / "records" / "SC4001.npy").shape == (9, 2, 3000)


def test_pairing_ids_and_subject_limit(tmp_path):
    folder = tmp_path / "sleep-cassette"
    for rec, scorer in (("SC4001", "C"), ("SC4002", "H"), ("SC4011", "J"), ("SC4021", "P")):
        _night(folder, rec, scorer, seconds=60)
    (folder / "SC4022E0-PSG.edf").write_bytes((folder / "SC4021E0-PSG.edf").read_bytes())  # no hypnogram
    (folder / "SC4012EC-Hypnogram.edf").write_bytes(b"x")  # hypnogram without PSG: not a record
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "SC4011EX-Hypnogram.edf").write_bytes(b"x")  # a second hypnogram for SC4011
    sources, failed = find_sleep_edf(tmp_path)
    got = {s.name: (s.subject, s.signal.name, s.annotation and s.annotation.name) for s in sources}
    assert got == {"SC4001": ("SC400", "SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"),
                   "SC4002": ("SC400", "SC4002E0-PSG.edf", "SC4002EH-Hypnogram.edf"),
                   "SC4021": ("SC402", "SC4021E0-PSG.edf", "SC4021EP-Hypnogram.edf"),
                   "SC4022": ("SC402", "SC4022E0-PSG.edf", None)}
    assert list(failed) == ["SC4011", "SC4012"] and "remove the extra copies" in failed["SC4011"]
    assert [s.name for s in find_sleep_edf(tmp_path, limit=1)[0]] == ["SC4001", "SC4002"]
    with pytest.raises(DataError, match="no Sleep-EDF telemetry night"):
        find_sleep_edf(tmp_path, "telemetry")


def test_synthetic_nights_split_by_subject_and_load_as_sleep_edf(tmp_path, capsys):
    from part.registry import dataset_spec

    raw, out = tmp_path / "raw", tmp_path / "prep"
    assert _run(raw, out, "--synthetic", "2", "--synthetic-hours", "0.5") == 0
    assert "wrote 4 SYNTHETIC nights" in capsys.readouterr().err
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(splits["subjects"].items()) == [("SC4001", "SC400"), ("SC4002", "SC400"), ("SC4011", "SC401"),
                                                  ("SC4012", "SC401")]
    test_subject = splits["test"][0][:5]
    assert splits["test"] == [f"{test_subject}1", f"{test_subject}2"]
    assert not set(splits["test"]) & set(splits["pretrain"] + splits["finetune"])
    spec = dataset_spec("eeg", "sleep_edf")
    bundle = spec.load(spec.options(root=str(out)))
    assert bundle.input_info == {"channels": 2, "window_samples": 3000} and bundle.reference is None
    assert set(bundle.test_groups) == {test_subject} and "Sleep-EDF" in bundle.description
    assert "SYNTHETIC" in bundle.description and bundle.test[0][0].shape == (2, 3000)
    assert _run(raw, tmp_path / "again", "--synthetic", "1") == 2  # a used --src is refused


def _server_files(tmp_path: Path) -> dict[str, bytes]:
    local = tmp_path / "server"
    for rec, scorer in (("SC4001", "C"), ("SC4002", "H"), ("SC4011", "J")):
        _night(local, rec, scorer, seconds=600)
    files = {f"/sleep-cassette/{p.name}": p.read_bytes() for p in sorted(local.iterdir())}
    files["/sleep-telemetry/ST7011J0-PSG.edf"] = b"telemetry"
    return files


def _sums(files: dict[str, bytes], wrong: str | None = None) -> bytes:
    lines = [f"{hashlib.sha256(b).hexdigest() if p != wrong else '0' * 64}  {p.lstrip('/')}" for p, b in files.items()]
    return ("\n".join(lines + [f"{'a' * 64}  SC-subjects.xls"]) + "\n").encode()


def test_download_limit_verifies_every_file_then_prepares(tmp_path):
    files = _server_files(tmp_path)
    with LoopbackServer({**files, "/SHA256SUMS.txt": _sums(files)}) as srv:
        code = _run(tmp_path / "raw", tmp_path / "prep", "--download", "--limit", "1", "--base-url", srv.url)
    got = sorted(p.name for p in (tmp_path / "raw" / "sleep-cassette").iterdir())
    assert got == ["SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4002E0-PSG.edf", "SC4002EH-Hypnogram.edf"]
    assert all((tmp_path / "raw" / "sleep-cassette" / n).read_bytes() == files[f"/sleep-cassette/{n}"] for n in got)
    assert code == 0 and sorted(json.loads((tmp_path / "prep" / "manifest.json").read_text())["records"]) == [
        "SC4001", "SC4002"]


def test_download_checksum_mismatch_deletes_the_file_and_fails(tmp_path, capsys):
    files = _server_files(tmp_path)
    wrong = "/sleep-cassette/SC4002E0-PSG.edf"
    with LoopbackServer({**files, "/SHA256SUMS.txt": _sums(files, wrong)}) as srv:
        with pytest.raises(DataError, match=r"checksum mismatch for .*SC4002E0-PSG\.edf"):
            download_sleep_edf(tmp_path / "raw", "cassette", 1, srv.url, workers=2, progress=False)
        assert _run(tmp_path / "raw2", tmp_path / "prep", "--download", "--base-url", srv.url) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    folder = tmp_path / "raw" / "sleep-cassette"
    assert not (folder / "SC4002E0-PSG.edf").exists() and not list(folder.glob("*.part"))
    assert (folder / "SC4001E0-PSG.edf").is_file()  # the verified files are kept
    with pytest.raises(DataError, match="line 2: expected '<sha256 hex>  <path>'"):
        parse_sha256sums(f"{'b' * 64}  a.edf\nnot a checksum line\n", "SHA256SUMS.txt")


def test_synthetic_subject_count_is_checked_by_the_cli(tmp_path, capsys):
    for n in ("0", "101"):
        with pytest.raises(SystemExit) as exit_info:
            _run(tmp_path / "raw", tmp_path / "prep", "--synthetic", n)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--synthetic must be >= 1, got 0" in err
    assert "--synthetic must be <= 100 (Sleep-EDF subject numbers have two digits, 00-99), got 101" in err
    assert not (tmp_path / "raw").exists()
