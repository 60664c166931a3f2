"""Checkpoint I/O: round trip, atomicity under a crash, clear errors, identical random draws."""

import random

import numpy as np
import pytest
import torch

from part.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from part.errors import DataError


def _training_state(seed: int) -> dict:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "stage": "pretrain", "epoch": 3, "step": 120, "rng": rng_state()}


def _draws() -> tuple:
    return (
        [random.random() for _ in range(3)] + [random.gauss(0, 1)],
        np.random.rand(4).tolist() + [float(np.random.standard_normal())],
        torch.rand(4).tolist() + torch.randn(3).tolist(),
    )


def test_round_trip_keeps_tensors_and_counters(tmp_path):
    state = _training_state(0)
    path = save_checkpoint(tmp_path / "checkpoints" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert (loaded["stage"], loaded["epoch"], loaded["step"]) == ("pretrain", 3, 120)
    for key, tensor in state["model"].items():
        assert torch.equal(loaded["model"][key], tensor)
    moment = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], moment)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind


def test_restored_rng_state_repeats_the_same_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached second Gaussian in Python's generator
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = _draws()
    _draws()  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == expected


def test_crash_during_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.arange(5.0)})
    before = path.read_bytes()

    def save_half_then_crash(obj, fileobj, *args, **kwargs):
        fileobj.write(b"PK\x03\x04 half a zip archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(5)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_is_a_clear_data_error(tmp_path, damage):
    path = save_checkpoint(tmp_path / "last.pt", _training_state(0))
    content = path.read_bytes()
    path.write_bytes({"truncated": content[: len(content) // 2],
                      "garbage": b"\x00\x01 not a checkpoint at all" * 10,
                      "empty": b""}[damage])
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "delete it and rerun the same command" in message
    assert "run.resume=never" not in message  # that setting refuses any existing run: no advice


def test_missing_checkpoint_and_non_dict_content(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    path = save_checkpoint(tmp_path / "list.pt", [1, 2, 3])
    with pytest.raises(DataError, match="not a checkpoint dictionary"):
        load_checkpoint(path)
    path = save_checkpoint(tmp_path / "foreign.pt", {"best": np.float64(0.5)})
    with pytest.raises(DataError, match="safe loader refuses"):
        load_checkpoint(path)
    assert load_checkpoint(path, weights_only=False)["best"] == 0.5
