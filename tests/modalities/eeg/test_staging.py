"""Staging new recordings (modalities/eeg/sleep/, part-stage) with a tiny run trained on
SYNTHETIC PC18 records: self-describing checkpoints, windows identical to the training preparation,
PC18 .hea / EDF / MNE Raw / arrays, the output files (CSV, EDF+ round trip, PNG, statistics,
agreement), channel mapping and its errors, exit codes, and the hypnogram plot convention."""
from __future__ import annotations

import json
import runpy
import shutil
import sys
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
import torch

import part.modalities.eeg.sleep.hypnogram as hypnogram_module
from part.modalities.eeg.recordings import mne_reader
from part.modalities.eeg.recordings.channels import ChannelError
from part.modalities.eeg.recordings.constants import CLASS_NAMES, PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.hypnogram_edf import write_hypnogram_edf
from part.modalities.eeg.recordings.mne_reader import read_recording
from part.modalities.eeg.recordings.signal import RecordError
from part.modalities.eeg.recordings.windows import window_grid
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.modalities.eeg.sleep.staging import Stager
from staging_night import REC, START, make_night, write_edf
from part.errors import DataError
from part.evaluation.metrics import classification_metrics
from part.stage import main as stage_main

read_hypnogram = Hypnogram.from_file


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("staging"))


def test_checkpoint_describes_itself(night):
    state = torch.load(night["run"] / "checkpoints" / "best.pt", weights_only=True)
    card = state["card"]
    assert card["class_names"] == ["W", "N1", "N2", "N3", "REM"] and card["method"] == "supervised"
    assert card["modality"]["name"] == "eeg" and card["modality"]["options"]["patch_samples"] == 100
    assert card["model"]["dim"] == 16 and card["model"]["depth"] == 1 and card["dataset"] == "pc18"
    data = card["data"]
    assert data["channels"] == list(PC18_EEG_CHANNELS) and data["sampling_rate"] == 100.0
    assert data["window_s"] == 30.0 and data["window_samples"] == 3000 and data["dtype"] == "float16"
    assert data["filter"]["l_freq"] == 0.1 and data["filter"]["h_freq"] == 30.0
    assert data["normalisation"]["eps"] == 1e-6 and data["label_names"] == card["class_names"]
    json.dumps(card)  # plain JSON types only


def test_windows_are_the_training_windows(night):
    """On the scoring's grid the stager's windows equal the prepared ones bit for bit, and its
    reference labels equal the prepared labels."""
    stager = night["stager"]
    prepared = np.load(night["base"] / "prep" / "records" / f"{REC}.npy")
    labels = np.load(night["base"] / "prep" / "records" / f"{REC}.labels.npy")
    windows = stager.windows(read_recording(night["hea"], PC18_EEG_CHANNELS), night["scoring"])
    n = min(len(prepared), windows.n_windows)
    assert n >= len(prepared) - 1 and windows.windows.dtype == prepared.dtype
    np.testing.assert_array_equal(windows.windows[:n], prepared[:n])
    np.testing.assert_array_equal(windows.labels[:n], labels[:n])
    result = stager.predict_file(night["hea"], hypnogram=night["scoring"])
    reference = read_hypnogram(night["scoring"]).aligned_to(result).labels_at(result.onsets_s)
    np.testing.assert_array_equal(reference[:n], labels[:n])
    np.testing.assert_allclose(result.proba[:n], stager.classify(prepared[:n]), rtol=0, atol=1e-6)


def test_hea_edf_array_raw_agree(night):
    stager = night["stager"]
    by_hea = stager.predict_file(night["hea"])
    by_edf = stager.predict_file(night["edf"])
    assert len(by_hea) == len(by_edf) == int(night["uv"].shape[1] / night["fs"] // 30)
    np.testing.assert_allclose(by_edf.proba, by_hea.proba, atol=1e-4)
    np.testing.assert_allclose(by_hea.proba.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(by_hea.onsets_s, 30.0 * np.arange(len(by_hea)))
    assert by_hea.start is None and by_edf.start == START
    by_array = stager.predict_array(night["uv"] * 1e-6, night["fs"], PC18_EEG_CHANNELS)
    np.testing.assert_allclose(by_array.proba, by_hea.proba, atol=1e-4)
    import mne
    info = mne.create_info(list(PC18_EEG_CHANNELS), night["fs"], "eeg")
    raw = mne.io.RawArray(night["uv"] * 1e-6, info, verbose=False)
    np.testing.assert_array_equal(stager.predict(raw).proba, by_array.proba)
    with pytest.raises(DataError, match="volts like mne.io.RawArray"):
        stager.predict_array(night["uv"], night["fs"], PC18_EEG_CHANNELS)  # micro-volts by mistake


def test_cli_writes_the_files_and_matches_the_api(night, tmp_path, capsys):
    out = tmp_path / "out"
    code = stage_main([str(night["run"]), str(night["edf"]), "--out", str(out), "--hypnogram", str(night["scoring"])])
    assert code == 0, capsys.readouterr().err
    assert f"{REC}: " in capsys.readouterr().out
    api = night["stager"].predict_file(night["edf"], hypnogram=night["scoring"])
    api.to_csv(tmp_path / "api.csv")
    assert (out / f"{REC}.hypnogram.csv").read_text() == (tmp_path / "api.csv").read_text()
    lines = (out / f"{REC}.hypnogram.csv").read_text().splitlines()
    assert lines[0] == f"# start: {START.isoformat()}"  # issue 25: the CSV keeps the start time
    assert lines[1] == "onset_s,duration_s,stage,p_W,p_N1,p_N2,p_N3,p_REM" and len(lines) == len(api) + 2
    rows = np.array([line.split(",") for line in lines[2:]])
    np.testing.assert_allclose(rows[:, 3:].astype(float).sum(1), 1.0, atol=1e-5)
    assert set(rows[:, 2]) <= {"W", "N1", "N2", "N3", "REM"} and (rows[:, 1].astype(float) == 30).all()
    # EDF+ hypnogram round trip (Sleep-EDF labels) and the CSV read back as a scoring
    back = read_hypnogram(out / f"{REC}.hypnogram.edf")
    np.testing.assert_allclose(back.onsets_s, api.onsets_s, atol=1e-3)
    np.testing.assert_array_equal(back.stages, api.stages)
    np.testing.assert_array_equal(read_hypnogram(out / f"{REC}.hypnogram.csv").stages, api.stages)
    assert read_hypnogram(out / f"{REC}.hypnogram.csv").start == START
    stats = json.loads((out / f"{REC}.stats.json").read_text())
    assert stats["tib_min"] == len(api) * 0.5 and stats["start"] == START.isoformat()
    assert (out / f"{REC}.hypnogram.png").read_bytes().startswith(b"\x89PNG")
    # agreement.json = part.evaluation.metrics on the epochs scored in both
    agreement = json.loads((out / f"{REC}.agreement.json").read_text())
    # the reference labels of the staged windows: the window grid's labels (the preparation's rule)
    reference = night["stager"].windows(read_recording(night["edf"], PC18_EEG_CHANNELS), night["scoring"],
                                        str(night["edf"]), START).labels
    expected = classification_metrics(reference, api.stages, range(5), class_names=list(CLASS_NAMES))
    assert agreement["kappa"] == expected["kappa"] and agreement["confusion"] == expected["confusion"]
    assert agreement["n_compared"] == int((reference >= 0).sum()) and "macro_f1" in agreement
    assert set(agreement["per_class_f1"]) == {"W", "N1", "N2", "N3", "REM"}


def test_channel_mismatch_and_mapping(night, tmp_path, capsys, monkeypatch):
    stager = night["stager"]
    with pytest.raises(ChannelError) as info:
        stager.predict_file(night["two"])
    message = str(info.value)
    assert "\n" not in message and "two.edf" in message
    assert str(list(PC18_EEG_CHANNELS)) in message and "['EEG Fpz-Cz', 'EEG Pz-Oz']" in message
    # the whole mapping, which works when pasted (issue 24: a trailing ',...' did not)
    assert ('--channels "F3-M2=EEG Fpz-Cz,F4-M1=EEG Pz-Oz,C3-M2=EEG Fpz-Cz,C4-M1=EEG Pz-Oz,O1-M2=EEG Fpz-Cz,'
            'O2-M1=EEG Pz-Oz"') in message and "channels={" in message
    mapping = {c: ("EEG Fpz-Cz" if i % 2 == 0 else "EEG Pz-Oz") for i, c in enumerate(PC18_EEG_CHANNELS)}
    mapped = stager.predict_file(night["two"], channels=mapping)
    assert mapped.proba.shape == (len(mapped), 5) and mapped.start is None
    text = ",".join(f"{k}={v}" for k, v in mapping.items())
    assert stager.predict_file(night["two"], channels=text).stages.tolist() == mapped.stages.tolist()
    with pytest.raises(DataError, match="MODEL=RECORDING"):
        stager.predict_file(night["two"], channels="F3-M2")
    # file names the training preparation renamed (the card's data.rename) are found by themselves
    monkeypatch.setattr(stager.montage, "rename", {"EEG Fpz-Cz": "F3-M2", "EEG Pz-Oz": "F4-M1"})
    rest = {c: mapping[c] for c in PC18_EEG_CHANNELS[2:]}
    assert stager.predict_file(night["two"], channels=rest).stages.tolist() == mapped.stages.tolist()
    # CLI: one recording fails (exit 1), the other is still written
    code = stage_main([str(night["run"]), str(night["two"]), str(night["hea"]), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "--channels" in err and "1 of 2 recordings failed" in err
    assert (tmp_path / f"{REC}.hypnogram.csv").is_file() and not (tmp_path / "two.hypnogram.csv").exists()


def test_bad_recordings_are_one_line_errors(night, tmp_path):
    stager, uv, fs = night["stager"], night["uv"], night["fs"]
    with pytest.raises(DataError, match="short.wav: 20.0 s long, shorter than one 30-s window"):
        stager.predict_array(uv[:, :int(20 * fs)] * 1e-6, fs, PC18_EEG_CHANNELS, name="short.wav")
    with pytest.raises(DataError, match="slow: sampled at 50 Hz; .* needs more than 60 Hz"):
        stager.predict_array(uv[:, ::4] * 1e-6, fs / 4, PC18_EEG_CHANNELS, name="slow")
    broken = tmp_path / "broken.edf"
    broken.write_bytes(b"0       not an edf")
    for path in (broken, tmp_path / "missing.edf"):
        with pytest.raises(DataError) as info:
            stager.predict_file(path)
        assert path.name in str(info.value) and "\n" not in str(info.value)


def test_usage_errors_exit_2(night, tmp_path, capsys, monkeypatch):
    assert stage_main([str(tmp_path / "no_run"), str(night["edf"]), "--out", str(tmp_path)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        stage_main([str(night["run"]), str(night["edf"]), str(night["hea"]), "--out", str(tmp_path),
                    "--hypnogram", str(night["scoring"])])
    assert info.value.code == 2 and "one per RECORDING" in capsys.readouterr().err
    argv = ["part.stage", str(night["run"]), str(night["edf"]), "--out", str(tmp_path), "--channels", "F3-M2"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delitem(sys.modules, "part.stage")  # run it afresh as __main__
    with pytest.raises(SystemExit) as info:  # python -m part.stage, in this process
        runpy.run_module("part.stage", run_name="__main__")
    assert info.value.code == 2 and "MODEL=RECORDING" in capsys.readouterr().err


def test_old_checkpoint_without_card(night, tmp_path):
    """A checkpoint written before cards: rebuilt from the run's config.yaml and data; without
    config.yaml a one-line error naming the run and saying to refinetune."""
    old = tmp_path / "old_run"
    (old / "checkpoints").mkdir(parents=True)
    state = torch.load(night["run"] / "checkpoints" / "best.pt", weights_only=True)
    del state["card"]
    torch.save(state, old / "checkpoints" / "best.pt")
    with pytest.raises(DataError, match="old_run.*no 'card'.*config.yaml' is missing.*refinetune"):
        Stager.from_run(old)
    shutil.copy(night["run"] / "config.yaml", old / "config.yaml")
    assert Stager.from_run(old).channels == tuple(PC18_EEG_CHANNELS)


def test_one_nan_sample_is_a_one_line_error(night):
    """A NaN would spread over the whole channel in the band-pass (every window scored W): refused,
    naming the recording and the channel, for arrays and MNE Raws; a NaN in a channel not read is fine."""
    import mne
    stager, fs = night["stager"], night["fs"]
    volts = night["uv"] * 1e-6
    volts[2, 1234] = np.nan
    message = (rf"night: channel '{PC18_EEG_CHANNELS[2]}' holds 1 non-finite sample\(s\) \(NaN or Inf\) of "
               rf"{volts.shape[1]}")
    with pytest.raises(RecordError, match=message) as info:
        stager.predict_array(volts, fs, PC18_EEG_CHANNELS, name="night")
    assert "\n" not in str(info.value)
    raw = mne.io.RawArray(volts, mne.create_info(list(PC18_EEG_CHANNELS), fs, "eeg"), verbose=False)
    with pytest.raises(RecordError, match=f"raw: channel '{PC18_EEG_CHANNELS[2]}' holds 1 non-finite"):
        stager.predict(raw)
    extra = np.vstack([night["uv"] * 1e-6, np.full((1, volts.shape[1]), np.nan)])
    assert len(stager.predict_array(extra, fs, [*PC18_EEG_CHANNELS, "EXTRA"])) > 0


def test_hypnogram_file_is_aligned_by_start_time_and_outputs_are_computed_once(night, tmp_path, capsys,
                                                                                monkeypatch):
    """An EDF+ scoring whose header starts 60 s after the recording is moved by 60 s (as in the
    preparation); the recording is opened twice at most and the agreement and the statistics
    are computed once by the CLI."""
    scoring = read_hypnogram(night["scoring"])
    keep = scoring.onsets_s >= 60
    on, st = scoring.onsets_s[keep], scoring.stages[keep]
    later = write_hypnogram_edf(tmp_path / "later.edf", Hypnogram(st, onsets_s=on - 60, source="later"),
                                START + timedelta(seconds=60))
    duration = night["uv"].shape[1] / night["fs"]
    expected = window_grid(Hypnogram(st, onsets_s=on), duration, 100.0, 30.0)
    earlier = window_grid(Hypnogram(st, onsets_s=on - 60), duration, 100.0, 30.0)
    assert not np.array_equal(earlier.labels, expected.labels)
    result = night["stager"].predict_file(night["edf"], hypnogram=later)
    # staging put the scoring on the recording's clock before cutting its windows ...
    staged_labels = night["stager"].windows(read_recording(night["edf"], PC18_EEG_CHANNELS), later, str(night["edf"]),
                                            START).labels
    np.testing.assert_array_equal(staged_labels, expected.labels)
    # ... with an offset that is not a multiple of 30 s the grid itself moves with the scoring
    odd = write_hypnogram_edf(tmp_path / "odd.edf", Hypnogram(st, onsets_s=on - 60), START + timedelta(seconds=75))
    moved = night["stager"].predict_file(night["edf"], hypnogram=odd)
    assert moved.onsets_s[0] % 30 == 15.0 and result.onsets_s[0] % 30 == 0.0
    assert result.agreement(later)["reference_offset_s"] == 60.0 and "reference_note" not in result.agreement(later)
    np.testing.assert_array_equal(read_hypnogram(later).aligned_to(result).labels_at(result.onsets_s), expected.labels)
    opens, calls, real_open = [], Counter(), mne_reader.open_raw
    monkeypatch.setattr(mne_reader, "open_raw", lambda *a, **k: opens.append(a) or real_open(*a, **k))
    for fn in ("classification_metrics", "sleep_statistics"):
        monkeypatch.setattr(hypnogram_module, fn, (lambda f, real: lambda *a, **k: calls.update([f]) or real(*a, **k))(
            fn, getattr(hypnogram_module, fn)))
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out), "--hypnogram", str(later)]) == 0
    assert "(aligned by start time: +60 s)" in capsys.readouterr().out
    # the night's statistics once, plus the model's and the scorer's on the epochs both scored
    # (paired_stats.json, written whenever there is a scoring: fixes item 4)
    assert len(opens) <= 2 and calls == {"classification_metrics": 1, "sleep_statistics": 3}
    assert (out / f"{REC}.paired_stats.json").is_file()
    agreement = json.loads((out / f"{REC}.agreement.json").read_text())
    assert agreement["reference_offset_s"] == 60.0 and agreement["n_compared"] == int((expected.labels >= 0).sum())


def test_a_hypnogram_of_another_night_fails_and_leaves_no_empty_out(night, tmp_path, capsys):
    """Real header dates days apart: the scoring is another night's (another subject paired by
    mistake): that recording fails (exit 1) instead of a meaningless kappa, and an --out this call
    created is not left behind empty when no recording was staged."""
    scoring = read_hypnogram(night["scoring"])
    other = write_hypnogram_edf(tmp_path / "SC4001EC-Hypnogram.edf", scoring, START + timedelta(days=6, minutes=42))
    out = tmp_path / "new" / "err1"
    assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out), "--hypnogram", str(other)]) == 1
    err = capsys.readouterr().err
    assert (f"error: SC4001EC-Hypnogram.edf starts at 2021-03-10 23:27:00, {REC}.edf at 2021-03-04 22:45:00: "
            "6.0 days apart; the scoring does not belong to this recording (pass the hypnogram of the same night)"
            ) in err
    assert "no recording was staged (1 of 1 failed, listed above)" in err and "the others" not in err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()  # an --out that existed before is kept
    assert stage_main([str(night["run"]), str(night["scoring"]), "--out", str(kept)]) == 1
    err = capsys.readouterr().err  # (b) the hypnogram passed as the RECORDING
    assert (f"error: {night['scoring']} holds no signals (an annotations-only EDF, e.g. a hypnogram? pass it "
            "with --hypnogram)") in err and "the recording has []" not in err
    assert kept.is_dir() and not any(kept.iterdir())


def test_channel_messages_suggest_only_what_needs_mapping(night, tmp_path, capsys):
    stager, edf = night["stager"], night["edf"]
    # (a) the model's channels are all present under their own names: no identity mapping suggested
    with pytest.raises(ChannelError) as info:
        stager.predict_file(edf, channels={"F3-M2": "EEG Foo"})
    assert str(info.value) == (f"{edf}: 'EEG Foo' is not in the recording (channels: {list(PC18_EEG_CHANNELS)}); the "
                               "model's channels are all present under their own names: omit --channels")
    # only the absent model channel is in the suggestion, with a recording channel no other one uses
    names = [*PC18_EEG_CHANNELS[:5], "EEG X1"]
    with pytest.raises(ChannelError) as info:
        stager.predict_array(np.zeros((6, 10)), 100.0, names, channels={"F3-M2": "EEG Foo"}, name="rec")
    message = str(info.value)
    assert "the recording has no channel ['EEG Foo', 'O2-M1']" in message
    assert '--channels "O2-M1=EEG X1"' in message and "F4-M1=" not in message
    assert "'F3-M2' is present under its own name: drop F3-M2=EEG Foo from --channels" in message
    # (c) a model channel the model does not have: a usage error before any recording is staged
    out = tmp_path / "out"
    for mapping, extra in (("Fz-Cz=EEG Fpz-Cz", ""), ("EEG Fpz-Cz=F3-M2", " (EEG Fpz-Cz=F3-M2 looks reversed")):
        assert stage_main([str(night["run"]), str(edf), str(night["two"]), "--out", str(out),
                           "--channels", mapping]) == 2
        captured = capsys.readouterr()
        key = mapping.split("=")[0]
        assert captured.err.startswith(f"error: --channels maps ['{key}'], which the model does not have{extra}")
        assert f"the model's channels are {list(PC18_EEG_CHANNELS)}" in captured.err
        assert captured.out == "" and "two.edf" not in captured.err and not out.exists()


def test_checkpoint_errors_name_what_exists(night, tmp_path, capsys):
    run_dir = night["run"]
    held = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    assert "best.pt" in held
    assert stage_main([str(run_dir), str(night["edf"]), "--out", str(tmp_path / "o"), "--checkpoint",
                       "nothere.pt"]) == 2
    assert (f"error: run directory '{run_dir}' has no checkpoint 'nothere.pt'; its checkpoints/ holds {held}: "
            "pass one with --checkpoint NAME") in capsys.readouterr().err
    best = run_dir / "checkpoints" / "best.pt"
    assert stage_main([str(best), str(night["edf"]), "--out", str(tmp_path / "o")]) == 2
    assert (f"error: '{best}' is a checkpoint file, not a run directory: pass the run directory '{run_dir}' "
            "(<run.output_dir>/<run.name>), or --checkpoint <file>") in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_truncated_edf_is_refused_not_staged(night, tmp_path, capsys):
    """An EDF cut to half its size was staged as half a night with exit 0: now that recording
    fails with one line saying it is truncated, and nothing is written for it."""
    cut = tmp_path / "cut.edf"
    data = night["edf"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match=r"cut.edf is truncated: its header says \d+ data records"):
        night["stager"].predict_file(cut)
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(cut), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cut.edf is truncated" in err and "copy or download it again" in err and not out.exists()


def test_flat_recordings_and_windows_are_not_staged_as_sleep(night, tmp_path, capsys):
    """An all-zero recording was staged as an hour of REM at 100 % sleep efficiency: it is refused.
    Windows without signal in an otherwise good night are unscored (not sleep), counted in
    stats.json and warned about; a dead channel is named."""
    fs, uv = night["fs"], night["uv"].copy()
    flat_night = write_edf(tmp_path / "flat.edf", PC18_EEG_CHANNELS, np.zeros_like(uv), fs)
    with pytest.raises(RecordError, match="flat.edf: no signal in any of its .* windows"):
        night["stager"].predict_file(flat_night)
    uv[:, : int(120 * fs)] = 0.0  # a disconnected headbox for 2 min: 4 windows flat (issue 24: the 4th, whose
    # samples are all zero but whose band-passed signal rings with the signal that starts at 120 s, was staged)
    uv[1] = 0.0  # and F4-M1 dead all night
    gap = write_edf(tmp_path / "gap.edf", PC18_EEG_CHANNELS, uv, fs)
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(gap), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    stats = json.loads((out / "gap.stats.json").read_text())
    n = stats["n_epochs"]
    assert f"warning: gap: 4 of {n} epochs have no signal" in err
    assert f"warning: gap: channel 'F4-M1' is flat or clipped in {n} of {n} epochs (100%, more than 10%" in err
    assert f"channel 'F3-M2' is flat or clipped in 4 of {n} epochs ({4 / n:.0%}, more than 10%" in err
    assert stats["info"]["no_signal_epochs"] == 4 and stats["info"]["flat_epochs"]["F4-M1"] == n
    assert stats["n_scored"] == n - 4
    rows = (out / "gap.hypnogram.csv").read_text().splitlines()[2:6]  # after the start time and the header
    assert all(r.split(",")[2] == "unscored" and r.endswith(",,,,,") for r in rows)
    staged = Hypnogram.from_file(out / "gap.hypnogram.csv")
    assert (staged.stages[:4] == -1).all() and (staged.stages[4:] >= 0).all()


def test_cli_warns_about_soremp_and_a_late_scoring_in_one_line_each(night, tmp_path, capsys, monkeypatch):
    """part-stage prints the statistics' SOREMP flag and the scoring check's lag warning (issue
    25), one line each, and writes both flags; the staged stages are a constructed night (the tiny
    model's are near chance), the scoring the same night 30 min late, as a CSV file."""
    rng = np.random.default_rng(5)
    stages = np.r_[[0] * 10, [4] * 4, np.repeat(rng.integers(0, 5, 80), rng.integers(2, 12, 80))[:500]]
    staged = Hypnogram(stages, source=str(night["edf"]), scorer="constructed")
    late = staged.moved_by(1800).replace(source="late.csv", scorer="late.csv").to_csv(tmp_path / "late.csv")
    monkeypatch.setattr(Stager, "predict_file", lambda self, path, **kwargs: staged)
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out), "--hypnogram", str(late)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"warning: {REC}: ")]
    assert len(lines) == 2 and "ScoringWarning" not in err
    assert lines[0].startswith(f"warning: {REC}: sleep-onset REM period: REM 0 min after sleep onset")
    assert "late.csv agrees best with syn00-0003 when moved by -1800 s (-30 min)" in lines[1]
    assert json.loads((out / f"{REC}.stats.json").read_text())["flags"] == {"soremp": True}
    agreement = json.loads((out / f"{REC}.agreement.json").read_text())
    assert agreement["flags"] == {"lag_warning": True, "low_agreement": False}
    assert agreement["lag_scan"]["best_lag_s"] == 1800.0 and agreement["kappa"] < 0.9


def test_a_pc18_arousal_scoring_is_accepted_by_part_stage(night, tmp_path, capsys):
    """--hypnogram takes the record's own PC18 .arousal (its .hea beside it) and agrees exactly
    as the EDF+ scoring written from the same stage notes (issue 25)."""
    arousal = night["hea"].with_suffix(".arousal")
    runs = {}
    for name, scoring in (("arousal", arousal), ("edf", night["scoring"])):
        out = tmp_path / name
        assert stage_main([str(night["run"]), str(night["edf"]), "--out", str(out), "--hypnogram", str(scoring)]) == 0
        runs[name] = json.loads((out / f"{REC}.agreement.json").read_text())
    capsys.readouterr()
    assert runs["arousal"]["reference"] == arousal.name
    for key in ("n_compared", "confusion", "kappa"):
        assert runs["arousal"][key] == runs["edf"][key], key
    assert runs["arousal"]["n_compared"] > 0
