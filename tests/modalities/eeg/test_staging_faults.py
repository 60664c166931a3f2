"""Nothing silently wrong in staging (issue 24), on the tiny run trained on SYNTHETIC PC18 records:
EDF+D recordings with gaps and subsecond starts, UTF-8 channel labels, one part-stage per --out
(two real processes), name clashes and changed sources, partly flat / clipped epochs, and a
checkpoint that cannot stage."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from part.data_prep.psg import main as prepare_psg_main
from part.modalities.eeg.recordings import mne_reader
from part.modalities.eeg.recordings.constants import FLAT_EPOCH_SHARE, PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.edf_records import record_onsets, record_segments
from part.modalities.eeg.recordings.flatness import no_signal_samples, no_signal_share
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.stage import main as stage_main
from staging_night import REC, ROOT, START, make_night, write_edf, write_edf_plus
from conftest import run_main

GAP_S, SUBSECOND = 600.0, 0.37


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    found = make_night(tmp_path_factory.mktemp("staging"))
    found["gapped"] = write_edf_plus(found["base"] / "gapped.edf", PC18_EEG_CHANNELS, found["uv"], found["fs"],
                                     gaps={150: GAP_S}, subsecond=SUBSECOND)
    return found


def test_edf_plus_d_records_are_read_at_their_true_onsets(night):
    """The TALs give every record's onset; MNE would read the 1-s records as one run."""
    onsets = record_onsets(night["gapped"])
    n = night["uv"].shape[1] // int(night["fs"])
    expected = np.arange(n) + SUBSECOND + np.where(np.arange(n) >= 150, GAP_S, 0.0)
    np.testing.assert_allclose(onsets, expected, atol=1e-9)
    first, segments = record_segments(night["gapped"], night["fs"])
    assert first == pytest.approx(SUBSECOND) and len(segments) == 2
    assert (segments[0].onset_s, segments[0].start, segments[0].stop) == (0.0, 0, 150 * 200)
    assert segments[1].onset_s == pytest.approx(150 + GAP_S) and segments[1].stop == n * 200
    read = mne_reader.read_recording_full(night["gapped"], PC18_EEG_CHANNELS, annotations=False)
    assert read.recording.segments == segments and read.recording.duration_s == pytest.approx(n + GAP_S)
    assert read.start_offset_s == pytest.approx(SUBSECOND)


def test_edf_plus_d_is_staged_at_true_onsets_with_the_gap_unscored(night, tmp_path, capsys):
    """Windows sit at their true onsets, none spans the gap, each part is staged exactly as that
    part alone; the CSV has no rows in the gap, the statistics count it (TIB spans it, unscored),
    and the subsecond start is kept."""
    stager, uv, fs = night["stager"], night["uv"], night["fs"]
    staged = stager.predict_file(night["gapped"])
    before = 150 // 30
    after = (uv.shape[1] / fs - 150) // 30
    expected = np.concatenate([30.0 * np.arange(before), 150 + GAP_S + 30.0 * np.arange(after)])
    np.testing.assert_allclose(staged.onsets_s, expected)
    assert staged.start == START + timedelta(seconds=SUBSECOND)
    cut = int(150 * fs)
    for part, rows in ((uv[:, :cut], slice(0, before)), (uv[:, cut:], slice(before, None))):
        alone = stager.predict_array(part * 1e-6, fs, PC18_EEG_CHANNELS)
        np.testing.assert_array_equal(alone.stages, staged.stages[rows])
        np.testing.assert_allclose(alone.proba, staged.proba[rows], atol=1e-6)
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(night["gapped"]), "--out", str(out)]) == 0
    lines = (out / "gapped.hypnogram.csv").read_text().splitlines()
    assert lines[0] == f"# start: {(START + timedelta(seconds=SUBSECOND)).isoformat()}"
    onsets = [float(r.split(",")[0]) for r in lines[2:]]  # after the start time and the header
    np.testing.assert_allclose(onsets, expected)
    stats = json.loads((out / "gapped.stats.json").read_text())
    assert stats["start"] == (START + timedelta(seconds=SUBSECOND)).isoformat()
    assert stats["tib_min"] == pytest.approx((expected[-1] + 30) / 60)
    assert stats["unscored_min"] >= GAP_S / 60 and stats["info"]["gap_epochs"] == GAP_S // 30
    assert (out / "gapped.hypnogram.png").stat().st_size > 0


def test_acquisition_skips_an_mne_reader_reports_are_gaps(night, tmp_path):
    """A FIF file whose reader reports an acquisition skip (BAD_ACQ_SKIP, data filled with zeros)
    is staged like an EDF+D file: no window in or across the skip, the others at their onsets."""
    import mne
    fs, uv = night["fs"], night["uv"].copy()
    uv[:, int(100 * fs):int(200 * fs)] = 0.0
    raw = mne.io.RawArray(uv * 1e-6, mne.create_info(list(PC18_EEG_CHANNELS), fs, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([100.0], [100.0], ["BAD_ACQ_SKIP"]))
    path = tmp_path / "skips_raw.fif"
    raw.save(path, verbose="error")
    staged = night["stager"].predict_file(path)
    after = 210.0 + 30.0 * np.arange((uv.shape[1] / fs - 210) // 30)
    np.testing.assert_allclose(staged.onsets_s, np.concatenate([[0.0, 30.0, 60.0], after]))
    assert staged.info["gap_epochs"] == 4 and (staged.stages >= 0).all()
    from_raw = night["stager"].predict(mne.io.read_raw_fif(path, verbose="error"))
    np.testing.assert_array_equal(from_raw.onsets_s, staged.onsets_s)
    np.testing.assert_allclose(from_raw.proba, staged.proba, atol=1e-6)


def test_edf_plus_d_preparation_skips_the_gap(night, tmp_path):
    """part-prepare-psg keeps the windows of each part (the same windows as staging's) and none in
    or across the gap."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(night["gapped"], src / "gapped.edf")
    out = tmp_path / "prep"
    result = run_main(prepare_psg_main, ["--src", src, "--out", out, "--channels", ",".join(PC18_EEG_CHANNELS),
                                         "--n-test", 0, "--n-finetune", 0, "--no-progress"])
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "records" / "gapped.info.json").read_text())
    staged = night["stager"].windows(mne_reader.read_recording(night["gapped"], PC18_EEG_CHANNELS))
    assert info["n_windows"] == staged.n_windows == 11 and info["gap_windows_skipped"] == GAP_S // 30
    assert info["segments"] == 2 and info["duration_s"] == pytest.approx(night["uv"].shape[1] / 200 + GAP_S)
    np.testing.assert_array_equal(np.load(out / "records" / "gapped.npy"), staged.windows)


def test_utf8_labels_are_decoded_and_the_pasted_hint_stages(night, tmp_path, capsys):
    """A UTF-8 label is read as UTF-8 (not 'EEG Fpzâ\\x80\\x93Cz'); dashes and spaces match loosely;
    the --channels hint, pasted as printed, stages the recording."""
    names = ["EEG Fpz–Cz", "EEG Pz−Oz"]  # en dash, minus sign
    path = write_edf_plus(tmp_path / "utf8.edf", names, night["uv"][[0, 4]], night["fs"])
    assert mne_reader.recording_channels(path) == names
    for spelling in ("EEG Fpz–Cz", "Fpz-Cz", "EEG Fpz — Cz", "fpz‐cz"):
        read = mne_reader.read_recording(path, [spelling])
        np.testing.assert_allclose(read.digital[0], night["uv"][0], atol=1e-3)
    assert stage_main([str(night["run"]), str(path), "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    hint = re.search(r'--channels "([^"]+)"', err).group(1)
    assert hint == ",".join(f"{m}={names[i % 2]}" for i, m in enumerate(PC18_EEG_CHANNELS))
    assert stage_main([str(night["run"]), str(path), "--out", str(tmp_path / "o2"), "--channels", hint]) == 0
    assert (tmp_path / "o2" / "utf8.stats.json").is_file()


def test_an_ambiguous_channel_hint_stages_when_pasted(night):
    """A model channel matching two recording channels loosely: the hint is a mapping that works."""
    from part.modalities.eeg.recordings.channels import ChannelError
    names = ["EEG F3-M2", "F3-M2-REF", *PC18_EEG_CHANNELS[1:]]
    data = np.concatenate([night["uv"][:1], night["uv"]]) * 1e-6
    with pytest.raises(ChannelError) as info:
        night["stager"].predict_array(data, night["fs"], names, name="rec")
    hint = re.search(r'--channels "([^"]+)"', str(info.value)).group(1)
    assert hint == "F3-M2=EEG F3-M2" and "or another of ['EEG F3-M2', 'F3-M2-REF']" in str(info.value)
    staged = night["stager"].predict_array(data, night["fs"], names, channels=hint, name="rec")
    alone = night["stager"].predict_array(data[1:], night["fs"], PC18_EEG_CHANNELS, name="rec")
    np.testing.assert_array_equal(staged.stages, alone.stages)


HOLD = """import pathlib, sys, time
import part.modalities.eeg.sleep.cli as cli
real = cli.stage_one
def held(*args, **kwargs):  # hold --out's lock until the test says go
    pathlib.Path(sys.argv[1]).touch()
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.05)
    return real(*args, **kwargs)
cli.stage_one = held
sys.exit(cli.main(sys.argv[3:]))
"""


def test_a_second_part_stage_on_one_out_is_refused_naming_the_holder(night, tmp_path):
    """Two real part-stage processes on one --out: the first holds the lock (paused by a hook
    inside its first night, not by racing the clock); the second is refused at once with one
    line naming the first's PID and host, and writes nothing; the first finishes normally."""
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    args = [str(night["run"]), str(night["edf"]), "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(started), str(go), *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not started.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first part-stage never reached its first night"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "part.stage", *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.count("\n") == 1 and second.stderr.startswith(
            f"error: --out directory '{out}' is in use by another part-stage (process {first.pid} on "
            f"{socket.gethostname()} since ")
        assert "wait for it to finish or stop it, or stage into another --out" in second.stderr
        assert not (out / f"{REC}.stats.json").exists()
    finally:
        go.touch()
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert f"{REC}: " in stdout and (out / f"{REC}.stats.json").is_file()


def test_a_name_clash_is_refused_and_a_changed_source_is_restaged(night, tmp_path, capsys):
    """Another recording with the same stem into one --out was 'already staged: skipped', exit 0:
    now it is refused with one line (the first's results untouched); the same file changed is
    restaged; stats.json records the source (path, size, mtime, checkpoint hash)."""
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out)]) == 0
    capsys.readouterr()
    stats_file = out / f"{REC}.stats.json"
    first = stats_file.read_bytes()
    source = json.loads(first)["info"]["staged_from"]
    assert source["recording"] == {"path": str(night["edf"].resolve()), "size": night["edf"].stat().st_size,
                                   "mtime_ns": night["edf"].stat().st_mtime_ns}
    digest = hashlib.sha256((night["run"] / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    assert source["checkpoint_sha256"] == digest and source["hypnogram"] is None
    other = tmp_path / "other" / f"{REC}.edf"
    other.parent.mkdir()
    write_edf(other, PC18_EEG_CHANNELS, night["uv"][:, ::-1], night["fs"])
    assert stage_main([str(night["run"]), str(other), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"error: {other}: name clash: {out} already holds '{REC}' staged from another recording, " \
           f"{night['edf'].resolve()}; stage {other} into another --out" in captured.err
    assert "already staged" not in captured.out and stats_file.read_bytes() == first
    assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out)]) == 0
    assert "1 of 1 recordings already staged" in capsys.readouterr().out
    copy = tmp_path / "copy" / f"{REC}.edf"  # same stem, same bytes, another file: still a clash
    copy.parent.mkdir()
    shutil.copy(night["edf"], copy)
    assert stage_main([str(night["run"]), str(copy), "--out", str(out)]) == 1
    assert "name clash" in capsys.readouterr().err
    moved = tmp_path / f"{REC}.edf"
    shutil.copy(night["edf"], moved)
    mine = tmp_path / "mine"
    assert stage_main([str(night["run"]), str(moved), "--out", str(mine)]) == 0
    capsys.readouterr()
    later = moved.stat().st_mtime + 10
    os.utime(moved, (later, later))  # the same file changed since: restaged, one line saying why
    assert stage_main([str(night["run"]), str(moved), "--out", str(mine)]) == 0
    printed = capsys.readouterr().out
    assert f"{REC}: restaged: the recording changed since {REC}.stats.json was written" in printed
    assert json.loads((mine / f"{REC}.stats.json").read_text())["info"]["staged_from"]["recording"]["mtime_ns"] == \
        moved.stat().st_mtime_ns
    assert stage_main([str(night["run"]), str(other), "--out", str(out), "--overwrite"]) == 0  # replaces on request
    wfdb = tmp_path / "wfdb"  # a WFDB record: its signal file changing restages it too
    shutil.copytree(night["hea"].parent, wfdb)
    hea = wfdb / night["hea"].name
    assert stage_main([str(night["run"]), str(hea), "--out", str(tmp_path / "w")]) == 0
    data = json.loads((tmp_path / "w" / f"{REC}.stats.json").read_text())["info"]["staged_from"]["recording"]["data"]
    assert [Path(d["path"]).name for d in data] == [f"{REC}.mat"]
    signal = wfdb / f"{REC}.mat"
    os.utime(signal, (signal.stat().st_mtime + 10,) * 2)
    assert stage_main([str(night["run"]), str(hea), "--out", str(tmp_path / "w")]) == 0
    assert f"{REC}: restaged: the recording changed since" in capsys.readouterr().out


def long_night(night, hours: float) -> np.ndarray:
    """(6, n) micro-volt integers: the synthetic test record repeated for ``hours``."""
    uv = night["uv"]
    n = int(hours * 3600 * night["fs"])
    return np.tile(uv, (1, -(-n // uv.shape[1])))[:, :n].copy()


def test_flat_and_clipped_stretches(night):
    """Runs of one value >= 1 s and samples at the channel's extremes have no signal (by hand);
    the share per window is their count over the window (numpy)."""
    fs = 10.0
    row = np.array([1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, -5, 2, 1, 1], np.float32)
    expected = np.zeros(row.size, bool)
    expected[3:13] = True  # ten zeros = 1 s at 10 Hz
    expected[[13, 16]] = True  # the max (3) and the min (-5)
    np.testing.assert_array_equal(no_signal_samples(row, fs), expected)
    nine = row.copy()
    nine[12] = 7  # nine zeros: shorter than 1 s, not flat (and 7 is the new max)
    assert not no_signal_samples(nine, fs)[3:12].any()
    share = no_signal_share(np.stack([row, row * 0]), fs, np.array([0, 10]), 10)
    np.testing.assert_allclose(share, [[expected[:10].mean(), 1.0], [expected[10:].mean(), 1.0]])


def test_edge_zero_epochs_and_an_hour_of_saturation(night, tmp_path, capsys):
    """1 h of exact zeros starting mid-epoch: the two epochs at its edges (half zero) are
    unscored like the zero epochs between them, and not counted in TST. A channel saturated
    (clipped at the rails) for 1 h of 1.5 h is warned about on screen, naming it and the share."""
    fs = night["fs"]
    zeros = long_night(night, 2.0)
    a, b = int(1815 * fs), int(5415 * fs)  # 60.5 epochs in, 1 h long: epochs 60 and 180 are half zero
    zeros[:, a:b] = 0
    clipped = long_night(night, 1.5)
    c, d = int(600 * fs), int(4200 * fs)
    clipped[1, c:d] = np.clip(clipped[1, c:d] * 1e5, -32768, 32767)  # F4-M1 at the rails for 1 h
    paths = [write_edf(tmp_path / "zeros.edf", PC18_EEG_CHANNELS, zeros, fs),
             write_edf(tmp_path / "clipped.edf", PC18_EEG_CHANNELS, clipped, fs)]
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), *map(str, paths), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    staged = Hypnogram.from_file(out / "zeros.hypnogram.csv")
    assert (staged.stages[60:181] == -1).all() and staged.stages[59] >= 0 and staged.stages[181] >= 0
    assert 0.5 > FLAT_EPOCH_SHARE  # the half-zero edge epochs are past the share
    stats = json.loads((out / "zeros.stats.json").read_text())
    sleep = np.isin(staged.stages, [1, 2, 3, 4])
    assert stats["tst_min"] == pytest.approx(sleep.sum() / 2) and stats["info"]["no_signal_epochs"] == 121
    assert "warning: zeros: 121 of 240 epochs have no signal" in err
    lines = [line for line in err.splitlines() if line.startswith("warning: clipped: ")]
    k = json.loads((out / "clipped.stats.json").read_text())["info"]["flat_epochs"]["F4-M1"]
    assert k >= 119 and lines == [f"warning: clipped: channel 'F4-M1' is flat or clipped in {k} of 180 epochs "
                                  f"({k / 180:.0%}, more than 10%: a loose or saturated electrode?); its epochs rest "
                                  "on the other channels: map another recording channel to it with --channels if "
                                  "it has one"]


def test_a_checkpoint_that_cannot_stage_says_what_to_do_when_staging(night, tmp_path, capsys):
    """A damaged checkpoint was 'corrupt or truncated' with training-resume advice (delete it and
    rerun: the stage restarts): staging now says what to do when staging."""
    run = tmp_path / "run"
    shutil.copytree(night["run"], run)
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    assert stage_main([str(run), str(night["edf"]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: checkpoint '{best}' is corrupt or truncated")
    assert ("it cannot be used for staging: stage with another finetuned checkpoint of the run (--checkpoint "
            "NAME;") in err
    assert "rerun the same command" not in err and "restarts from its beginning" not in err
    assert not (tmp_path / "out").exists()


def test_another_channel_map_or_precision_restages_saying_what_changed(night, tmp_path, capsys):
    """A rerun with a corrected --channels (or another --precision) on the same --out was
    'already staged: skipped'; now it restages with one line naming the old and new setting."""
    out, base = tmp_path / "out", [str(night["run"]), str(night["edf"]), "--out", str(tmp_path / "out")]
    assert stage_main([*base, "--precision", "fp32"]) == 0
    capsys.readouterr()
    stats_file = out / f"{REC}.stats.json"
    assert json.loads(stats_file.read_text())["info"]["staged_from"]["channels"] == {}
    assert stage_main([*base, "--precision", "fp32", "--channels", "C3-M2=C4-M1"]) == 0
    printed = capsys.readouterr().out
    assert (f"{REC}: restaged: the --channels map ({{}} -> {{'C3-M2': 'C4-M1'}}) changed since {REC}.stats.json "
            "was written") in printed and "already staged" not in printed
    source = json.loads(stats_file.read_text())["info"]["staged_from"]
    assert source["channels"] == {"C3-M2": "C4-M1"} and source["precision"] == "fp32"
    assert stage_main([*base, "--precision", "fp32", "--channels", "C3-M2=C4-M1"]) == 0
    assert "1 of 1 recordings already staged" in capsys.readouterr().out
    assert stage_main([*base, "--precision", "int8", "--channels", "C3-M2=C4-M1"]) == 0
    printed = capsys.readouterr().out
    assert f"{REC}: restaged: the precision (fp32 -> int8) changed since" in printed
    assert json.loads(stats_file.read_text())["info"]["staged_from"]["precision"] == "int8"
