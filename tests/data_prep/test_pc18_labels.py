"""Stage notes -> per-window labels (data_prep/pc18_labels.py), checked against the challenge's own
per-sample stage file (tr03-*-arousal.mat, HDF5) for the real tr03-0005 and tr03-0029 notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from part.data_prep.pc18_labels import StageNotes, label_counts, read_stage_notes, window_labels
from part.modalities.eeg.recordings.signal import RecordError
from part.modalities.eeg.recordings.wfdb_reader import read_header
from part.modalities.eeg.recordings.constants import UNLABELLED

from conftest import SHARED_DATA, requires_shared

SHARED = SHARED_DATA / "pc18"
needs_shared = requires_shared("pc18/tr03-0005.arousal", "pc18/tr03-0029.arousal")
# sample counts at 200 Hz: tr03-0005 from its real header; tr03-0029 from the data README
LENGTHS = {"tr03-0005": None, "tr03-0029": 4_770_000}
CLASSES = ("wake", "nonrem1", "nonrem2", "nonrem3", "rem", "undefined")


def _challenge_epoch_majority(record: str, first_start_200: int, n_windows: int) -> np.ndarray:
    """Per-window majority class of the challenge's per-sample stage file; undefined -> -1."""
    import h5py

    with h5py.File(SHARED / f"{record}-arousal.mat", "r") as f:
        onehot = np.stack([np.asarray(f["data/sleep_stages"][k]).ravel() for k in CLASSES])
    assert np.all(onehot.sum(axis=0) == 1)
    epochs = onehot[:, first_start_200 : first_start_200 + n_windows * 6000].reshape(6, n_windows, 6000)
    majority = epochs.sum(axis=-1).argmax(axis=0)
    return np.where(majority == 5, UNLABELLED, majority).astype(np.int8)


@needs_shared
@pytest.mark.parametrize("record", sorted(LENGTHS))
def test_window_labels_agree_with_challenge_per_sample_stages(record):
    n_samples = LENGTHS[record] or int(read_header(SHARED / f"{record}.hea").sig_len)
    notes = read_stage_notes(SHARED / f"{record}.arousal", fs=200.0)
    grid = window_labels(notes, n_samples, fs=200.0)
    assert grid.window_len == 3000 and grid.target_fs == 100.0
    assert grid.first_start == (notes.onsets[0] // 2) % 3000
    assert grid.n_windows == (n_samples // 2 - grid.first_start) // 3000
    expected = _challenge_epoch_majority(record, 2 * grid.first_start, grid.n_windows)
    np.testing.assert_array_equal(grid.labels, expected)
    counts = label_counts(grid.labels)
    assert sum(counts.values()) == grid.n_windows
    assert counts["unlabelled"] == notes.onsets[0] // 6000  # only the unscored lead-in
    assert all(counts[name] > 0 for name in ("W", "N1", "N2", "N3", "REM"))


@needs_shared
def test_read_stage_notes_keeps_stages_and_drops_events():
    import wfdb

    notes = read_stage_notes(SHARED / "tr03-0005.arousal", fs=200.0)
    raw = wfdb.rdann(str(SHARED / "tr03-0005"), "arousal")
    stage_notes = [(s, a) for s, a in zip(raw.sample, raw.aux_note) if a in ("W", "N1", "N2", "N3", "R")]
    assert notes.onsets[0] == stage_notes[0][0] == 72000
    assert len(notes.onsets) <= len(stage_notes) and np.all(np.diff(notes.onsets) > 0)
    assert np.all(notes.stages[1:] != notes.stages[:-1])  # repeats merged
    assert set(notes.stages.tolist()) == {0, 1, 2, 3, 4}


def _write_annotations(tmp_path: Path, samples: list[int], notes: list[str], fs: int = 200) -> Path:
    import wfdb

    symbols = ['"'] * len(samples)
    wfdb.wrann("rec", "arousal", np.array(samples), symbol=symbols, aux_note=notes, fs=fs, write_dir=str(tmp_path))
    return tmp_path / "rec.arousal"


def test_off_grid_change_and_repeated_notes(tmp_path):
    # W at 60 s, an event bracket, W again at 75 s (no change), N2 at 135 s (off the 30-s grid),
    # REM at 180 s; 300 s record at 200 Hz
    path = _write_annotations(
        tmp_path,
        [12000, 13000, 14000, 15000, 27000, 36000],
        ["W", "(arousal_rera", "arousal_rera)", "W", "N2", "R"],
    )
    notes = read_stage_notes(path, fs=200.0)
    np.testing.assert_array_equal(notes.onsets, [12000, 27000, 36000])
    grid = window_labels(notes, 60_000, fs=200.0)
    assert grid.first_start == 0 and grid.n_windows == 10
    # windows (s): 0-60 unscored, 60-90 W, 90-120 W, 120-150 straddles W->N2, 150-180 N2, then REM
    np.testing.assert_array_equal(grid.labels, [-1, -1, 0, 0, -1, 2, 4, 4, 4, 4])


def test_grid_is_anchored_at_the_first_stage_onset_for_any_rate():
    fs = 256.0  # first stage 7 s in: grid starts at 700 output samples, one window before it is cut
    notes = StageNotes(onsets=np.array([7 * 256, 67 * 256]), stages=np.array([1, 3], np.int8), fs=fs)
    grid = window_labels(notes, n_samples=int(200 * fs), fs=fs)
    assert grid.first_start == 700
    assert grid.n_windows == (20_000 - 700) // 3000
    np.testing.assert_array_equal(grid.labels, [1, 1, 3, 3, 3, 3])


def test_no_annotations_gives_all_unlabelled_from_sample_zero():
    grid = window_labels(None, n_samples=200 * 95, fs=200.0)
    assert grid.first_start == 0 and grid.n_windows == 3
    assert np.all(grid.labels == UNLABELLED) and grid.labels.dtype == np.int8
    assert label_counts(grid.labels) == {"W": 0, "N1": 0, "N2": 0, "N3": 0, "REM": 0, "unlabelled": 3}


@pytest.mark.parametrize("content", ["random", "text", "empty", "events_only", "wrong_rate"])
def test_unusable_annotation_files_raise_one_line_reasons(tmp_path, content):
    path = tmp_path / "rec.arousal"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif content == "text":
        path.write_bytes(b"this is not an annotation file\n" * 20)
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "events_only":
        _write_annotations(tmp_path, [100, 900], ["(resp_hypopnea", "resp_hypopnea)"])
    else:
        _write_annotations(tmp_path, [0, 6000], ["W", "N1"], fs=250)
    with pytest.raises(RecordError) as info:
        read_stage_notes(path, fs=200.0)
    assert "rec.arousal" in str(info.value) and "\n" not in str(info.value)


@needs_shared
def test_truncated_real_annotation_file_is_rejected(tmp_path):
    data = (SHARED / "tr03-0005.arousal").read_bytes()
    (tmp_path / "rec.arousal").write_bytes(data[: len(data) // 2 + 1])
    with pytest.raises(RecordError, match="cannot read annotation file rec.arousal"):
        read_stage_notes(tmp_path / "rec.arousal", fs=200.0)
