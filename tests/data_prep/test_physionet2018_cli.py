"""``python data_prep/physionet2018.py``: the output contract, splits, bad records, resume after a
kill, parameter changes, and the --download / --synthetic wiring.

Records are the REAL tr03-0005 header (shortened) and annotations next to a .mat written here.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from part.data_prep.pc18_labels import read_stage_notes, window_labels
from part.modalities.eeg.recordings.signal import filter_and_resample, normalise_windows
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.wfdb_reader import read_eeg
from part.data_prep.physionet2018 import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pc18_signal import needs_shared, write_record  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "data_prep" / "physionet2018.py"
pytestmark = needs_shared


def _run(*args) -> int:
    return main([str(a) for a in args] + ["--no-progress"])


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _mtimes(out: Path, record: str) -> list[int]:
    return [(out / "records" / f"{record}{s}").stat().st_mtime_ns for s in (".npy", ".labels.npy", ".info.json")]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """training/tr03-0005/ (10 min), flat tr03-0006 (12 min), test/te03-0001/ (5 min, no .arousal)."""
    root = tmp_path_factory.mktemp("raw")
    write_record(root / "training" / "tr03-0005", "tr03-0005", minutes=10, seed=0)
    write_record(root, "tr03-0006", minutes=12, seed=1)
    write_record(root / "test" / "te03-0001", "te03-0001", minutes=5, seed=2, annotations=False)
    rows = ["Subject,Record,Record type,Split,Age,Sex", "5,tr03-0005,PSG,training,59,male",
            "5,tr03-0005,Header,training,59,male"]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def test_output_contract_labels_windows_and_splits(raw, tmp_path):
    out = tmp_path / "prep"
    args = ["--workers", 1, "--n-test", 1, "--n-finetune", 1, "--metadata", raw / "meta.csv"]
    assert _run("--src", raw, "--out", out, *args) == 0
    m = _manifest(out)
    assert m["format_version"] == 1 and m["status"] == "complete" and m["failed"] == {}
    assert m["sampling_rate"] == 100 and m["window_s"] == 30 and m["channels"] == list(PC18_EEG_CHANNELS)
    assert m["filter"]["edges_hz"] == [0.1, 30.0] and len(m["params_hash"]) == 16 and m["synthetic"] is False
    assert sorted(m["records"]) == ["te03-0001", "tr03-0005", "tr03-0006"]
    headers = {"tr03-0005": "training/tr03-0005/", "tr03-0006": "", "te03-0001": "test/te03-0001/"}
    for name, folder in headers.items():
        header = raw / f"{folder}{name}.hea"
        info = m["records"][name]
        x = np.load(out / info["signal"])
        y = np.load(out / info["labels"])
        assert x.shape == (info["n_windows"], 6, 3000) and x.dtype == np.float16
        assert y.shape == (info["n_windows"],) and y.dtype == np.int8
        rec = read_eeg(header)
        notes = read_stage_notes(header.with_suffix(".arousal"), 200.0) if info["has_annotations"] else None
        grid = window_labels(notes, rec.n_samples, 200.0)
        np.testing.assert_array_equal(y, grid.labels)
        expected = normalise_windows(filter_and_resample(rec), grid.first_start, grid.n_windows, 3000).windows
        np.testing.assert_array_equal(x, expected)
        stats = x.astype(np.float32)
        assert np.allclose(stats.mean(-1), 0, atol=1e-2) and np.allclose(stats.std(-1), 1, atol=1e-2)
        assert info["subject"] == name and info["duration_s"] == rec.n_samples / 200
    assert m["records"]["tr03-0005"]["origin"] == "training" and m["records"]["te03-0001"]["origin"] == "test"
    assert (m["records"]["tr03-0005"]["age"], m["records"]["tr03-0005"]["sex"]) == (59, "male")
    assert m["records"]["tr03-0006"]["age"] is None
    assert m["records"]["te03-0001"]["label_counts"]["unlabelled"] == m["records"]["te03-0001"]["n_windows"]
    assert m["records"]["tr03-0005"]["label_counts"] == {"W": 8, "N1": 0, "N2": 0, "N3": 0, "REM": 0, "unlabelled": 12}
    s = json.loads((out / "splits.json").read_text())
    assert s["seed"] == 0 and len(s["test"]) == 1 and len(s["finetune"]) == 1
    assert set(s["test"] + s["finetune"]) == {"tr03-0005", "tr03-0006"}
    assert s["pretrain"] == sorted({"te03-0001", "tr03-0005", "tr03-0006"} - set(s["test"]))
    assert s["subjects"] == {n: n for n in m["records"]} and s["warnings"] == []


def test_two_workers_write_the_same_files_and_small_data_clamps_splits(raw, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run("--src", raw, "--out", one, "--workers", 1) == 0
    assert _run("--src", raw, "--out", two, "--workers", 2) == 0
    for name in ("te03-0001", "tr03-0005", "tr03-0006"):
        for suffix in (".npy", ".labels.npy"):
            digest = [hashlib.sha1((d / "records" / f"{name}{suffix}").read_bytes()).hexdigest() for d in (one, two)]
            assert digest[0] == digest[1]
    s = json.loads((two / "splits.json").read_text())
    assert (len(s["test"]), len(s["finetune"])) == (1, 1) and "only 2 labelled records" in s["warnings"][0]
    assert "warning: only 2 labelled records" in capsys.readouterr().out


def test_bad_records_fail_with_reasons_and_nothing_prepared_is_touched(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "prep"
    write_record(raw, "tr03-0005", minutes=5)
    assert _run("--src", raw, "--out", out, "--workers", 1) == 0
    before = _mtimes(out, "tr03-0005")
    write_record(raw, "tr03-0101", minutes=5)
    (raw / "tr03-0101.mat").write_bytes((raw / "tr03-0101.mat").read_bytes()[:-2])
    write_record(raw, "tr03-0102", minutes=5, edit_header=lambda t: t.replace(" C4-M1", " C4-XX"))
    write_record(raw, "tr03-0103", minutes=5)
    (raw / "tr03-0103.arousal").write_bytes(np.random.default_rng(0).bytes(4000))
    digital = write_record(raw, "tr03-0104", minutes=5)
    digital[0, 100] = -32768
    write_record(raw, "tr03-0104", digital=digital)
    write_record(raw, "tr03-0105", minutes=5, edit_header=lambda t: t.replace("16+24", "212+24"))
    write_record(raw, "tr03-0106", minutes=5, seed=3)
    capsys.readouterr()
    assert _run("--src", raw, "--out", out, "--workers", 2) == 1
    m = _manifest(out)
    expected = {
        "tr03-0101": "truncated",
        "tr03-0102": "no signal named ['C4-M1']",
        "tr03-0103": "cannot read annotation file tr03-0103.arousal",
        "tr03-0104": "invalid samples",
        "tr03-0105": "format code 212",
    }
    assert sorted(m["failed"]) == sorted(expected)
    for name, words in expected.items():
        assert words in m["failed"][name] and name in m["failed"][name] and "\n" not in m["failed"][name]
        assert not (out / "records" / f"{name}.npy").exists()
    assert sorted(m["records"]) == ["tr03-0005", "tr03-0106"]
    assert _mtimes(out, "tr03-0005") == before
    err = capsys.readouterr().err
    assert "FAILED 5 records" in err and "tr03-0104" in err and "Traceback" not in err


def test_killed_run_resumes_and_removes_temp_files(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prep"
    names = [f"tr03-{i:04d}" for i in range(1, 6)]
    for i, name in enumerate(names):
        write_record(raw, name, minutes=45, seed=i)
    cmd = [sys.executable, str(SCRIPT), "--src", str(raw), "--out", str(out), "--workers", "2", "--no-progress"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True, **quiet)
    deadline = time.monotonic() + 120
    while not list((out / "records").glob("*.info.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, mid-run
    proc.wait()
    done_before = {p.name.removesuffix(".info.json") for p in (out / "records").glob("*.info.json")}
    assert 1 <= len(done_before) < len(names), f"kill did not land mid-run: {done_before}"
    assert _manifest(out)["status"] == "in_progress"
    (out / "records" / ".tr03-0005.npy.cutoff.tmp").write_bytes(b"half a file")  # a cut-off write
    cut = sorted(set(names) - done_before)[0]  # its signal renamed in place, its marker not yet
    (out / "records" / f"{cut}.npy").write_bytes(b"not the finished record")
    before = {n: _mtimes(out, n) for n in done_before}
    assert _run("--src", raw, "--out", out, "--workers", 1) == 0
    m = _manifest(out)
    assert m["status"] == "complete" and sorted(m["records"]) == names and m["failed"] == {}
    assert not list((out / "records").glob("*.tmp")) and not list((out / "records").glob(".*"))
    assert {n: _mtimes(out, n) for n in done_before} == before  # finished records were not redone
    for name in names:
        assert np.load(out / "records" / f"{name}.npy").shape == (m["records"][name]["n_windows"], 6, 3000)
    again = {n: _mtimes(out, n) for n in names}
    assert _run("--src", raw, "--out", out, "--workers", 1) == 0
    assert {n: _mtimes(out, n) for n in names} == again


def _children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the workers")
def test_workers_die_when_only_the_parent_is_killed(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prep"
    names = [f"tr03-{i:04d}" for i in range(1, 7)]
    for i, name in enumerate(names):
        write_record(raw, name, minutes=45, seed=i)
    cmd = [sys.executable, str(SCRIPT), "--src", str(raw), "--out", str(out), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        workers = {c for c in _children(proc.pid) if "python" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")}
        time.sleep(0.01)
    assert len(workers) >= 2, "the pool did not start"
    proc.send_signal(signal.SIGKILL)  # the parent only, as a scheduler or OOM killer might
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived their parent"
    assert _run("--src", raw, "--out", out, "--workers", 2) == 0  # the rerun finishes the job
    m = _manifest(out)
    assert m["status"] == "complete" and sorted(m["records"]) == names and m["failed"] == {}


def test_other_parameters_refuse_unless_overwrite(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "prep"
    write_record(raw, "tr03-0005", minutes=5)
    assert _run("--src", raw, "--out", out, "--workers", 1) == 0
    before = _mtimes(out, "tr03-0005")
    capsys.readouterr()
    assert _run("--src", raw, "--out", out, "--workers", 1, "--dtype", "float32") == 2
    err = capsys.readouterr().err
    assert "other parameters" in err and "dtype" in err and "--overwrite" in err and "Traceback" not in err
    assert _mtimes(out, "tr03-0005") == before and _manifest(out)["dtype"] == "float16"
    assert _run("--src", raw, "--out", out, "--workers", 1, "--dtype", "float32", "--overwrite") == 0
    assert np.load(out / "records" / "tr03-0005.npy").dtype == np.float32 and _manifest(out)["dtype"] == "float32"
    two_channels = ["--channels", "O1-M2", "C4-M1"]
    assert _run("--src", raw, "--out", out, "--workers", 1, "--dtype", "float32", *two_channels, "--overwrite") == 0
    assert np.load(out / "records" / "tr03-0005.npy").shape[1:] == (2, 3000)


def test_script_runs_as_a_file_and_reports_bad_arguments(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "is not a directory" in result.stderr and "Traceback" not in result.stderr
    bad = (["--download"], ["--download", "--split", "training", "--synthetic", "2"], ["--limit", "3"],
           ["--workers", "0"])
    for args in bad:
        with pytest.raises(SystemExit) as info:
            main(["--src", str(tmp_path), "--out", str(tmp_path / "o"), *args])
        assert info.value.code == 2
    (tmp_path / "empty").mkdir()
    assert _run("--src", tmp_path / "empty", "--out", tmp_path / "o") == 2


def test_synthetic_records_are_prepared_and_a_used_src_is_refused(tmp_path, capsys):
    pytest.importorskip("part.data_prep.pc18_synthetic", reason="data_prep/pc18_synthetic.py not present yet")
    raw, out = tmp_path / "raw", tmp_path / "prep"
    assert _run("--src", raw, "--out", out, "--synthetic", 1, "--workers", 1) == 0
    m = _manifest(out)
    assert m["synthetic"] is True and len(m["records"]) == 1
    (info,) = m["records"].values()
    assert info["origin"] == "synthetic" and info["labelled_windows"] > 0
    capsys.readouterr()
    assert _run("--src", raw, "--out", out, "--synthetic", 1) == 2
    assert "already holds records" in capsys.readouterr().err


def test_download_fetches_into_src_then_prepares(tmp_path):
    pytest.importorskip("part.data_prep.pc18_download", reason="data_prep/pc18_download.py not present yet")
    loopback = pytest.importorskip("loopback_http", reason="tests/data_prep/loopback_http.py not present")
    site = tmp_path / "site"
    for name in ("tr03-0005", "tr03-0006"):
        write_record(site / "training" / name, name, minutes=3)
    files = {"/" + p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    files["/training/RECORDS"] = b"tr03-0005/\ntr03-0006/\n"
    files["/SHA256SUMS.txt"] = "".join(f"{hashlib.sha256(b).hexdigest()}  {p[1:]}\n" for p, b in files.items()).encode()
    raw, out = tmp_path / "raw", tmp_path / "prep"
    with loopback.LoopbackServer(files) as server:
        download = ["--download", "--split", "training", "--limit", 1, "--base-url", server.url]
        code = _run("--src", raw, "--out", out, *download, "--workers", 1)
    assert code == 0
    assert (raw / "training" / "tr03-0005" / "tr03-0005.mat").read_bytes() == files["/training/tr03-0005/tr03-0005.mat"]
    assert not (raw / "training" / "tr03-0006").exists()
    assert list(_manifest(out)["records"]) == ["tr03-0005"]
