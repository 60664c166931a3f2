"""The first staging runs as written: the EDF nights ``make demo`` leaves
(``modalities/eeg/sleep/demo_nights.py``) and every command of README's "Stage a night" run as
printed, against a tiny model trained under the demo model's run name on SYNTHETIC PC18 records
(the working directory moved to a folder laid out as after ``make demo``); a folder of nights
that lack the same channels is explained once, with a suggestion naming only EEG channels."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_main
from part.config import load_recipe
from part.data_prep.pc18_prepare import SplitSettings, prepare_dataset
from part.data_prep.pc18_synthetic import write_synthetic_records
from part.modalities.eeg.recordings import mne_reader
from part.modalities.eeg.recordings.constants import PC18_EEG_CHANNELS
from part.modalities.eeg.recordings.prepared import load_splits
from part.modalities.eeg.recordings.wfdb_reader import read_eeg
from part.modalities.eeg.sleep.demo_nights import other_names_channels, write_demo_nights
from part.modalities.eeg.sleep.hypnogram import Hypnogram
from part.stage import main as stage_main
from part.training.runner import run

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``demo_data/`` (6 synthetic records of 5-6 min: 4 test, 1 finetune, 1 pretrain; the EDF nights)
    and ``demo_runs/eeg_sleep_demo_part`` (a tiny supervised model) under one folder."""
    base = tmp_path_factory.mktemp("demo")
    data = base / "demo_data"
    write_synthetic_records(data / "raw", 6, seed=0, minutes=(5, 6))
    result = prepare_dataset(data / "raw", data / "prep", splits=SplitSettings(n_test=4, n_finetune=1, seed=0),
                             progress=False)
    assert not result.failed
    recipe = load_recipe(ROOT / "recipes/eeg_sleep_demo.yaml", [
        f"data.root={data / 'prep'}", f"run.output_dir={base / 'demo_runs'}", "run.device=cpu",
        "method.name=supervised", "run.stages=[finetune]", "model.dim=16", "model.depth=1", "model.heads=2",
        "finetune.epochs=1", "finetune.batch_size=32", "evaluate.repeats=1"])
    run(recipe)
    nights = write_demo_nights(data / "raw", data / "prep", data)
    return base, nights


def test_demo_nights_hold_the_test_records_and_their_scorings(demo):
    base, nights = demo
    data = base / "demo_data"
    assert [p.relative_to(data).as_posix() for p in nights] == [
        "edf/night1.edf", "edf/night2.edf", "edf/night3.edf", "edf_other_names/night4.edf"]
    first = load_splits(data / "prep")["test"][0]
    rec = read_eeg(data / "raw" / f"{first}.hea", PC18_EEG_CHANNELS)
    edf = mne_reader.read_recording(nights[0], PC18_EEG_CHANNELS)
    whole = int(rec.n_samples // rec.fs * rec.fs)
    uv = edf.digital.astype(np.float64) * np.asarray(edf.uv_per_unit)[:, None]
    assert edf.fs == rec.fs and uv.shape[1] == whole
    np.testing.assert_allclose(uv, rec.digital[:, :whole], atol=0.02)  # EDF's 16-bit quantisation
    scoring = Hypnogram.from_file(data / "edf" / "night1-Hypnogram.edf")
    labels = np.load(data / "prep" / "records" / f"{first}.labels.npy")
    scored = scoring.stages[scoring.stages >= 0]
    assert np.array_equal(scored, labels[labels >= 0]) and scoring.start is not None
    other = mne_reader.open_raw(nights[3]).ch_names
    assert "EOG horizontal" in other and "EMG submental" in other and "EEG F3-A2" in other
    assert write_demo_nights(data / "raw", data / "prep", data) == nights  # kept, not rewritten


def readme_stage_commands() -> list[str]:
    """The commands of the first bash block in README's "Stage a night" (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Stage a night", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_every_stage_a_night_command_runs_as_printed(demo, monkeypatch):
    base, _ = demo
    monkeypatch.chdir(base)
    commands = readme_stage_commands()
    assert len(commands) == 4 and all(c.startswith("part-stage demo_runs/eeg_sleep_demo_part ") for c in commands)
    assert other_names_channels() in commands[-1]
    for command in commands:
        res = run_main(stage_main, shlex.split(command)[1:])
        assert res.returncode == 0, (command, res.stderr)
    assert (base / "staged/night1.stats.json").is_file()
    assert json.loads((base / "staged_scored/night1.agreement.json").read_text())["n_compared"] > 0
    rows = (base / "staged_cohort/cohort.csv").read_text().splitlines()
    assert len(rows) == 4 and (base / "staged_cohort/cohort_agreement.json").is_file()
    assert (base / "staged_other/night4.agreement.json").is_file()
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme and "export PATH=$PWD/.venv/bin:$PATH" in readme


def test_a_folder_missing_the_same_channels_is_explained_once_with_eeg_only(demo, tmp_path):
    base, nights = demo
    folder = tmp_path / "other"
    folder.mkdir()
    for name in ("nightX", "nightY", "nightZ"):
        shutil.copy(nights[3], folder / f"{name}.edf")
    res = run_main(stage_main, [base / "demo_runs/eeg_sleep_demo_part", folder, "--out", tmp_path / "out",
                                "--no-progress"])
    assert res.returncode == 1
    assert res.stderr.count("the model expects the channels") == 1, res.stderr
    assert res.stderr.count("the same channels are missing as in nightX.edf (see above)") == 2
    suggestion = re.search(r'--channels "([^"]*)"', res.stderr.split("syntax")[0]).group(1)
    assert suggestion.startswith("F3-M2=EEG F3-A2,F4-M1=EEG F4-A1")
    assert "EOG" not in suggestion and "EMG" not in suggestion


def test_channel_suggestions_never_name_eog_emg_or_respiration():
    from part.modalities.eeg.recordings.channels import ModelChannels, eeg_like
    assert [eeg_like(n) for n in ("EEG Fpz-Cz", "C3-M2", "Fz", "EOG horizontal", "E1-M2", "EMG submental",
                                  "Resp oro-nasal", "SaO2", "Temp rectal", "Event marker", "ECG", "AIRFLOW")] == [
        True, True, True, False, False, False, False, False, False, False, False, False]
    present = ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "Resp oro-nasal", "EMG submental", "Temp rectal"]
    model = ModelChannels(PC18_EEG_CHANNELS)
    with pytest.raises(Exception) as info:  # the README's old example: two EEG channels mapped
        model.select(present, {"F3-M2": "EEG Fpz-Cz", "C3-M2": "EEG Pz-Oz"}, "night.edf")
    suggestion = re.search(r'--channels "([^"]*)"', str(info.value)).group(1)
    assert "EOG" not in suggestion and "Resp" not in suggestion and "EMG" not in suggestion
    assert "EEG Fpz-Cz" in suggestion or "EEG Pz-Oz" in suggestion


def test_demo_prints_ece_before_and_after_calibration(tmp_path, capsys):
    from part.modalities.eeg.sleep.demo import print_calibration
    for name, cal in (("calibrated", {"temperature": 1.8, "before": {"ece": 0.25, "nll": 0.9},
                                      "after": {"ece": 0.031, "nll": 0.4}}),
                      ("uncalibrated", {"temperature": None, "before": {"ece": 0.2, "nll": 0.8}})):
        (tmp_path / name / "report").mkdir(parents=True)
        (tmp_path / name / "report" / "report.json").write_text(json.dumps({"calibration": cal}))
    print_calibration([tmp_path / "calibrated", tmp_path / "uncalibrated", tmp_path / "missing"])
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "ECE before" in out
    assert re.search(r"calibrated\s+1\.800\s+0\.250\s+0\.031\s+0\.900\s+0\.400", out)
    assert re.search(r"uncalibrated\s+n/a\s+0\.200\s+n/a\s+0\.800\s+n/a", out)
    assert "missing" in out and "no calibration" in out


def test_demo_protocol_table_shows_the_mean_over_draws_and_chance(tmp_path, capsys):
    """make demo's protocol lines: finetune / linear-probe / kNN kappa as mean ± std over the
    finetune draws (as the comparison shows them), the single kappa where there are no repeats,
    'n/a' for a missing report, and the chance accuracy of the majority class."""
    import json
    from part.modalities.eeg.sleep.demo import print_protocols
    run = tmp_path / "run_a"
    for sub, kappa, repeats in [("", 0.9, {"kappa_mean": 0.876, "kappa_std": 0.058}), ("linear_probe", 0.4, None)]:
        folder = run / "report" / sub
        folder.mkdir(parents=True, exist_ok=True)
        report = {"kappa": kappa, "chance": {"accuracy": 0.478, "majority_class": "N2"}} if sub else {"kappa": kappa}
        if repeats:
            report["repeats"] = repeats
        (folder / "report.json").write_text(json.dumps(report))
    print_protocols([run])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("run_a")][0]
    assert line.split()[1:] == ["0.876", "±", "0.058", "0.400", "n/a", "0.478", "(N2)"]
