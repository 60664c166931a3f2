"""Record sources of own recordings (data_prep/psg_sources.py) and the resume rules of the shared
pipeline (data_prep/prepare.py): a rerun redoes records whose files, hypnogram or subject changed,
start-time alignment only between EDF headers, the synthetic flag, record-name clashes and the
speed of hypnogram pairing."""
from __future__ import annotations

import json
import sys
import time
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from part.data_prep.prepare import PrepConfig, RecordSource, prepare_record, record_files
from part.data_prep.psg_sources import record_names
from part.modalities.eeg.recordings.discovery import _best_matches, _common_prefix, pair_hypnograms
from part.modalities.eeg.recordings.hypnogram_io import HypnogramError
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.modalities.eeg.recordings.hypnogram_edf import align_to_recording, write_annotations_edf
from part.modalities.eeg.recordings.signal import RecordError
from part.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_psg_prepare import START, _edf_with_start, _run, eeg  # noqa: E402


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _labels(out: Path, record: str) -> list[int]:
    return np.load(out / "records" / f"{record}.labels.npy").tolist()


def test_a_rerun_redoes_records_whose_hypnogram_or_subject_changed(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    for name in ("subA_n1", "subB_n1"):
        _edf_with_start(src / f"{name}.edf", 120)
    assert _run(src, out) == 0
    assert not any(r["has_annotations"] for r in _manifest(out)["records"].values())
    for name in ("subA_n1", "subB_n1"):
        (src / f"{name}-Hypnogram.csv").write_text("W\nN2\nN2\nREM\n")
    capsys.readouterr()
    assert _run(src, out, "--subject-regex", "^(sub[AB])") == 0
    assert "(2 now, 0 already done)" in capsys.readouterr().out
    m = _manifest(out)
    assert {n: (r["has_annotations"], r["subject"]) for n, r in m["records"].items()} == {
        "subA_n1": (True, "subA"), "subB_n1": (True, "subB")}
    assert _labels(out, "subA_n1") == [0, 2, 2, 4]
    assert json.loads((out / "splits.json").read_text())["subjects"] == {"subA_n1": "subA", "subB_n1": "subB"}
    assert _run(src, out, "--subject-regex", "^(sub[AB])") == 0  # nothing changed: resumed
    assert "(0 now, 2 already done)" in capsys.readouterr().out


def _failing_reader(source, config):
    raise RecordError(f"{source.name}: unreadable now")


def test_a_record_that_fails_loses_its_old_done_marker(tmp_path):
    path = _edf_with_start(tmp_path / "night.edf", 60)
    from part.data_prep.psg_sources import read_psg

    config = PrepConfig(channels=("C4-A1", "F4-M1"))
    source = RecordSource("night", path, None, "psg", read_psg, options={"root": tmp_path})
    prepare_record(source, tmp_path, config)
    assert record_files(tmp_path, "night")["info"].is_file()
    with pytest.raises(RecordError, match="unreadable now"):
        prepare_record(RecordSource("night", path, None, "psg", _failing_reader), tmp_path, config)
    assert not record_files(tmp_path, "night")["info"].exists()  # a later run cannot take it as done


def test_a_fif_recording_is_not_aligned_on_an_edf_hypnograms_clock(tmp_path):
    import mne

    raw = mne.io.RawArray(np.stack([eeg(300, 100), eeg(300, 100)]) * 1e-6,
                          mne.create_info(["C4-M1", "F4-M1"], 100.0, "eeg"), verbose="error")
    raw.set_meas_date(START.replace(tzinfo=timezone.utc))  # FIF: true UTC
    (tmp_path / "src").mkdir()
    raw.save(tmp_path / "src" / "night_raw.fif", verbose="error")
    # the scoring software wrote the local clock (UTC+2) into its EDF header: 2 h "later"
    write_annotations_edf(tmp_path / "src" / "night_raw-Hypnogram.edf", [0, 60], [60, 60],
                          ["Sleep stage W", "Sleep stage 2"], start=START + timedelta(hours=2))
    assert _run(tmp_path / "src", tmp_path / "out") == 0
    info = _manifest(tmp_path / "out")["records"]["night_raw"]
    assert _labels(tmp_path / "out", "night_raw") == [0, 0, 2, 2] + [-1] * 6
    assert info["hypnogram_offset_s"] == 0.0 and "not aligned" in info["hypnogram_note"]


def test_align_to_recording_compares_edf_header_clocks_only(tmp_path):
    hyp = Hypnogram(np.zeros(3, np.int8), onsets_s=30.0 * np.arange(3), source="h")
    edf = write_annotations_edf(tmp_path / "h.edf", [0], [90], ["W"], start=START + timedelta(seconds=90))
    rec = _edf_with_start(tmp_path / "r.edf", 60)
    moved, note = align_to_recording(hyp, edf, START.replace(tzinfo=timezone.utc), rec)
    assert note is None and moved.onsets_s.tolist() == [90, 120, 150]
    moved, note = align_to_recording(hyp, edf, None, rec)  # the recording's start from its header
    assert note is None and moved.onsets_s.tolist() == [90, 120, 150]
    same, note = align_to_recording(hyp, edf, START, tmp_path / "r.fif")
    assert same is hyp and "r.fif is no EDF/BDF file" in note
    with pytest.raises(HypnogramError, match=r"h.edf starts at 1989-04-24 22:31:30, r.edf at 1989-04-27 22:30:00: "
                       r"3.0 days apart; the scoring does not belong to this recording \(pass the hypnogram of the "
                       r"same night\)"):
        align_to_recording(hyp, edf, START + timedelta(days=3), rec)  # real dates: another night's scoring
    unknown = write_annotations_edf(tmp_path / "u.edf", [0], [90], ["W"], start=START.replace(year=2100))
    far, note = align_to_recording(hyp, unknown, None, rec)  # EDF's placeholder date 01.01.85: not aligned
    assert far is hyp and "differ by more than a day, and u.edf carries EDF's placeholder date" in note
    (tmp_path / "h.csv").write_text("W\nW\nW\n")
    assert align_to_recording(hyp, tmp_path / "h.csv", START, tmp_path / "r.fif") == (hyp, None)


def test_a_hypnogram_of_another_night_fails_its_record(tmp_path, capsys):
    """Real header dates days apart (another subject's scoring paired by name): that record fails
    with the reason (exit 1); the other record is prepared."""
    src = tmp_path / "src"
    for name in ("SC4001E0-PSG", "SC4011E0-PSG"):
        _edf_with_start(src / f"{name}.edf", 120)
    write_annotations_edf(src / "SC4001EC-Hypnogram.edf", [0], [120], ["Sleep stage W"], start=START)
    write_annotations_edf(src / "SC4011EH-Hypnogram.edf", [0], [120], ["Sleep stage W"],
                          start=START + timedelta(days=6, minutes=42))
    assert _run(src, tmp_path / "out") == 1
    err = " ".join(capsys.readouterr().err.split())
    assert ("SC4011E0-PSG: SC4011EH-Hypnogram.edf starts at 1989-04-30 23:12:00, SC4011E0-PSG.edf at "
            "1989-04-24 22:30:00: 6.0 days apart; the scoring does not belong to this recording") in err
    assert set(_manifest(tmp_path / "out")["records"]) == {"SC4001E0-PSG"}


def _edf(path: Path, seconds: float, patient: str = "X") -> Path:
    import edfio

    signals = [edfio.EdfSignal(eeg(seconds, 100), 100, label=label, physical_dimension="uV",
                               physical_range=(-1000.0, 1000.0)) for label in ("C4-M1", "F4-M1")]
    path.parent.mkdir(parents=True, exist_ok=True)
    edfio.Edf(signals, patient=edfio.Patient(name=patient), starttime=START.time(),
              recording=edfio.Recording(startdate=START.date())).write(path)
    return path


def test_synthetic_headers_are_flagged_and_overwrite_recomputes_the_flag(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _edf(src / "night.edf", 60, patient="SYNTHETIC")  # as data_prep/sleep_edf_synthetic.py writes it
    assert _run(src, out) == 0
    m = _manifest(out)
    assert m["synthetic"] is True and m["records"]["night"]["origin"] == "synthetic"
    _edf(src / "night.edf", 60)  # real data replaces the synthetic night
    assert _run(src, out, "--overwrite") == 0
    m = _manifest(out)
    assert m["synthetic"] is False and m["records"]["night"]["origin"] == "psg"


def test_record_name_clashes_are_a_clear_error(tmp_path, capsys):
    files = [tmp_path / "x" / "night.edf", tmp_path / "y" / "night.edf", tmp_path / "x_night.edf"]
    with pytest.raises(DataError, match=r"same record name: 'x_night' from \['x/night.edf', 'x_night.edf'\]"):
        record_names(files, tmp_path)
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"")
    assert _run(tmp_path, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "x_night" in err and "rename one of the files" in err and "Traceback" not in err


def test_pairing_thousands_of_names_is_fast_and_keeps_the_rule(tmp_path):
    recordings = [tmp_path / f"S{i:04d}E0-PSG.edf" for i in range(2000)]
    hypnograms = [tmp_path / f"S{i:04d}EC-Hypnogram.edf" for i in range(2000)]
    began = time.perf_counter()
    pairs, failed = pair_hypnograms(recordings, hypnograms)
    assert time.perf_counter() - began < 2.0
    assert not failed and pairs == dict(zip(recordings, hypnograms))
    rng = np.random.default_rng(0)  # the sorted-neighbour search equals the exhaustive longest prefix
    for _ in range(200):
        names = sorted({"".join(rng.choice(list("ab"), rng.integers(0, 5))) for _ in range(rng.integers(1, 10))})
        query = "".join(rng.choice(list("abc"), rng.integers(0, 5)))
        scores = [_common_prefix(n, query) for n in names]
        lo, hi = _best_matches(names, query)
        assert names[lo:hi] == [n for n, s in zip(names, scores) if s == max(scores)]
