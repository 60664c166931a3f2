"""Checkpoint files and random-number-generator state.

``save_checkpoint`` writes atomically (temp file in the same directory, fsync, ``os.replace``): a
crash or ``kill -9`` during a save leaves the previous checkpoint intact. ``load_checkpoint`` turns
an unreadable file into a ``DataError`` that names it and says what to do.

``rng_state`` / ``set_rng_state`` capture and restore Python's ``random``, NumPy's global generator,
torch's CPU generator and (when available) every CUDA device's generator, so that a resumed run
draws the same random numbers as an uninterrupted one. The state holds only tensors, numbers and
strings, so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from part.atomic import atomic_write
from part.errors import DataError

_RESUME_HINT = ("delete it and rerun the same command: the stage it belonged to restarts from its "
                "beginning and finished stages are kept (or choose a new run.name to start a new run)")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with ``torch.save`` to ``path`` atomically; returns the path.

    Keep ``state`` to tensors, state dicts, numbers, strings, lists and dicts (and ``rng_state()``)
    so that ``load_checkpoint`` can read it with the safe ``weights_only`` loader.
    """
    return atomic_write(path, lambda fileobj: torch.save(state, fileobj))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    weights_only: bool = True, advice: str = _RESUME_HINT) -> dict:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises ``DataError`` naming the file when it is missing, truncated, corrupt or not a
    checkpoint of this toolkit, ending with ``advice`` (what to do; default: the training
    stage's, delete it and rerun).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint '{path}' does not exist; check the run directory (or run the stage that "
                        f"writes it).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            KeyError, IndexError, UnicodeDecodeError) as exc:
        reason = "the file is empty" if path.stat().st_size == 0 else _short_reason(exc)
        if reason.startswith("Unsupported global"):
            raise DataError(f"checkpoint '{path}' holds Python objects that the safe loader "
                            f"refuses ({reason}); it was not written by this toolkit's "
                            f"save_checkpoint: {advice}.") from exc
        raise DataError(f"checkpoint '{path}' is corrupt or truncated (a crash during an "
                        f"earlier save, or a damaged copy): {reason}; {advice}.") from exc
    except OSError as exc:
        raise DataError(f"cannot read checkpoint '{path}': {exc}; check its permissions, or "
                        f"{advice}.") from exc
    if not isinstance(state, dict):
        raise DataError(f"checkpoint '{path}' holds a {type(state).__name__}, not a checkpoint "
                        f"dictionary; {advice}.")
    return state


def _short_reason(exc: BaseException) -> str:
    """The informative line of torch.load's (long) error message."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
    if found:
        text = found.group(1)
        text = text.split(" was not an allowed global")[0]
    text = " ".join(text.split()).split(". ")[0]
    return text[:200] or type(exc).__name__


def rng_state() -> dict:
    """The state of every random number generator a run uses (CUDA only when available)."""
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore generators from ``rng_state()``'s output (CUDA states only where CUDA exists)."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()),
                     python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy["bit_generator"],
        "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": int(numpy["pos"])},
        "has_gauss": int(numpy["has_gauss"]),
        "gauss": float(numpy["gauss"]),
    })
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        count = min(len(saved), torch.cuda.device_count())
        for device in range(count):
            torch.cuda.set_rng_state(saved[device].cpu(), device)
