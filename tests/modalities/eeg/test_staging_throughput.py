"""Staging many nights and staging fast: part-stage on a folder (pairing, skipping finished
nights, --overwrite) and the precisions of the forward pass (auto, fp32, bf16, int8), with the
tiny run of ``staging_night``."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from part.errors import DataError
from part.modalities.eeg.sleep.staging import Stager
from part.stage import main as stage_main
from staging_night import make_night


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("staging"))


def test_a_folder_of_nights_is_staged_in_one_process_and_a_rerun_skips_them(night, tmp_path, capsys):
    """part-stage on a folder: its recordings (the annotation-only scoring is no recording) each
    paired with its scoring by name; a rerun skips the finished nights, --overwrite redoes them, a
    newer recording is redone."""
    folder = tmp_path / "nights"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(night["edf"], folder / "SC4001E0-PSG.edf")
    shutil.copy(night["scoring"], folder / "SC4001EC-Hypnogram.edf")
    shutil.copy(night["edf"], folder / "sub" / "SC4002E0-PSG.edf")  # no scoring: staged without
    out = tmp_path / "out"
    assert stage_main([str(night["run"]), str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SC4001E0-PSG: " in printed and "kappa" in printed.split("SC4001E0-PSG: ")[1].splitlines()[0]
    assert "SC4002E0-PSG: " in printed and (out / "SC4001E0-PSG.agreement.json").is_file()
    assert not (out / "SC4002E0-PSG.agreement.json").exists() and not (out / "SC4001EC-Hypnogram.stats.json").exists()
    again = stage_main([str(night["run"]), str(folder), "--out", str(out)])
    assert again == 0 and "2 of 2 recordings already staged" in capsys.readouterr().out
    marker = out / "SC4002E0-PSG.stats.json"
    old = marker.stat().st_mtime
    os.utime(folder / "sub" / "SC4002E0-PSG.edf", (old + 10, old + 10))  # the recording changed since
    assert stage_main([str(night["run"]), str(folder), "--out", str(out)]) == 0
    assert "1 of 2 recordings already staged" in capsys.readouterr().out
    assert stage_main([str(night["run"]), str(folder), "--out", str(out), "--overwrite"]) == 0
    assert "already staged" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        stage_main([str(night["run"]), str(folder), "--out", str(out), "--hypnogram", str(night["scoring"])])
    assert info.value.code == 2 and "is a folder, whose scorings are paired by name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        stage_main([str(night["run"]), str(tmp_path / "out"), "--out", str(tmp_path / "o2")])  # no recording there
    assert "holds no recording" in capsys.readouterr().err


def test_precision_auto_fp32_bf16_int8(night, monkeypatch):
    """auto is bf16 exactly where the hardware has bf16 arithmetic; bf16 and int8 stay close to
    fp32; int8 quantises the Linear layers of a copy and refuses a GPU."""
    import part.modalities.eeg.sleep.staging as staging
    stager = night["stager"]
    assert staging.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert staging.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(staging, "bf16_native", lambda device: False)
    assert staging.resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(DataError, match="precision 'fp16': expected one of"):
        staging.resolve_precision("fp16", torch.device("cpu"))
    fp32 = Stager(stager.finetuned, "fp32").predict_file(night["edf"])
    bf16 = Stager(stager.finetuned, "bf16").predict_file(night["edf"])
    assert fp32.info["precision"] == "fp32" and bf16.info["precision"] == "bf16"
    np.testing.assert_allclose(bf16.proba, fp32.proba, atol=0.05)
    assert (bf16.stages == fp32.stages).mean() >= 0.8
    int8 = Stager(stager.finetuned, "int8")
    assert isinstance(stager.finetuned.model.head, torch.nn.Linear)  # the loaded model is untouched
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    staged = int8.predict_file(night["edf"])
    assert staged.info["precision"] == "int8"
    np.testing.assert_allclose(staged.proba, fp32.proba, atol=0.05)
    with pytest.raises(DataError, match="precision 'int8' runs on the CPU only"):
        staging.resolve_precision("int8", torch.device("cuda"))
