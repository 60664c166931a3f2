"""Frozen features for the probes: what an encoder says about each item, extracted once and cached.

The feature of an item (``FrozenEncoder``) is the MEAN over the fixed-grid patch tokens of the
encoder's output ([CLS] left out), shape (D,):

- patches come from the modality's ``grid`` (the same patches the finetune stage sees);
- tokens get the position embedding the encoder was trained with, and no other: none for PART,
  PART-grid and MP3 (they never learnt one; a random one would only add noise), the method's
  fixed sin-cos embedding for the methods that pretrain with one (MAE, DropPos, RP, TS, CPC), and
  for the supervised reference its finetuned encoder with its learnt embedding;
- mean pooling by default (``evaluate.probe_pooling: mean``): PART's head reads patch tokens
  and MAE's decoder reconstructs from them, so the patch tokens are what those pretexts train,
  and [CLS] is trained by none of them; RP, TS and CPC embed a window by its [CLS] token, which
  ``probe_pooling: cls`` reads instead (one pooling for all methods of a comparison).

The cache (``cached_features``) is ``<run_dir>/features/<encoder>/<split>.pt`` holding the
features, labels and the SHA-1 of the checkpoint they came from: a cache whose checkpoint hash,
item count, labels or precision differ is stale and rebuilt (said in one line), never used.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from part.atomic import atomic_write, file_sha256

CACHE_VERSION = 1


class FrozenEncoder(nn.Module):
    """x -> grid patches -> tokens (+ ``pos_embed``) -> encoder -> mean of the patch tokens
    (``pooling="mean"``) or the [CLS] token (``"cls"``).

    ``pos_embed``: (N_grid, D) fixed embedding added to the tokens, or None. An encoder that holds
    its own learnt position embedding (a finetuned one) adds it itself. Output (B, D) float.
    """

    def __init__(self, modality, tokenizer: nn.Module, encoder: nn.Module,
                 pos_embed: Optional[torch.Tensor] = None, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling={pooling!r}; expected 'mean' or 'cls'")
        self.modality, self.tokenizer, self.encoder, self.pooling = modality, tokenizer, encoder, pooling
        self.register_buffer("pos_embed", pos_embed, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, _ = self.modality.grid(x)
        tokens = self.tokenizer(patches)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed.to(tokens.dtype)
        z = self.encoder(tokens)
        return z[:, 0] if self.pooling == "cls" else z[:, 1:].mean(1)


def extract_features(model: nn.Module, dataset, batch_size: int, device: torch.device,
                     amp_dtype: Optional[torch.dtype] = None, num_workers: int = 0):
    """(features (N, D) float32 CPU, labels (N,) int64) of a dataset of ``(x, label)`` items, in
    its order; eval mode, ``torch.inference_mode``, bf16 autocast where ``amp_dtype`` says so.

    A dataset with ``read_batch(items) -> (x (B, ...), labels (B,))`` (e.g. the EEG windows: one
    read per record) is read batch by batch directly, without ``num_workers`` processes (no
    per-item collation); any other through a DataLoader."""
    model.to(device).eval()
    feats, labels = [], []
    with torch.inference_mode():
        for x, y in _batches(dataset, batch_size, num_workers):
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                feats.append(model(x.to(device, non_blocking=True)).float().cpu())
            labels.append(torch.as_tensor(y).long())
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(feats), torch.cat(labels)


def read_inputs(dataset, index) -> torch.Tensor:
    """Inputs (k, ...) of the dataset items ``index`` (k ints), in that order: one
    ``dataset.read_batch(index)`` where the dataset has one (e.g. the EEG windows: one read per
    record), else item by item (``(x, label)`` items keep x)."""
    index = [int(i) for i in index]
    if callable(getattr(dataset, "read_batch", None)):
        return torch.as_tensor(dataset.read_batch(index)[0])
    items = [dataset[i] for i in index]
    return torch.stack([torch.as_tensor(it[0] if isinstance(it, (list, tuple)) else it) for it in items])


def _batches(dataset, batch_size: int, num_workers: int):
    """``(x, labels)`` batches of a dataset in its order."""
    if callable(getattr(dataset, "read_batch", None)):
        for start in range(0, len(dataset), batch_size):
            yield dataset.read_batch(list(range(start, min(start + batch_size, len(dataset)))))
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def encode_tensor(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
                  amp_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Features (B, D) float32 CPU of inputs already in memory, ``batch_size`` at a time; no
    DataLoader (which would draw from the global RNG); eval mode, ``torch.inference_mode``."""
    model.to(device).eval()
    out = []
    with torch.inference_mode():
        for chunk in x.split(batch_size):
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out.append(model(chunk.to(device, non_blocking=True)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def labels_sha1(labels) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes()).hexdigest()


def cached_features(path: str | Path, checkpoint: str | Path, labels: np.ndarray,
                    extract: Callable[[], tuple], say: Callable = print,
                    precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Features from the cache file ``path`` when it matches, else ``extract()`` and cache them.

    A cache matches when it was made from a checkpoint with the same SHA-256 as ``checkpoint``, for
    the same ``labels`` (N,) of the dataset (item count and order) and at the same ``precision``
    (e.g. "fp32", "bf16"). ``extract() -> (features (N, D), labels (N,))``. Written atomically.
    Returns (features, labels).
    """
    path, key = Path(path), {"version": CACHE_VERSION, "checkpoint_sha256": file_sha256(checkpoint),
                             "labels_sha1": labels_sha1(labels), "n": int(len(labels)), "precision": precision}
    if path.exists():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unreadable (e.g. written by another version): rebuilt
            cached = {}
            say(f"feature cache '{path}' is unreadable ({type(exc).__name__}); rebuilding it")
        if cached.get("key") == key:
            return cached["features"], cached["labels"]
        if cached:
            changed = [k for k in key if (cached.get("key") or {}).get(k) != key[k]]
            say(f"feature cache '{path}' is stale ({', '.join(changed)} changed); rebuilding it")
    features, got = extract()
    if got.numel() != len(labels) or not np.array_equal(got.numpy(), np.asarray(labels, dtype=np.int64)):
        raise ValueError(f"feature extraction for '{path}' returned {got.numel()} labels that differ from the "
                         f"dataset's {len(labels)}; the dataset must give the same items in the same order")
    state = {"key": key, "features": features.contiguous(), "labels": got, "checkpoint": str(checkpoint)}
    atomic_write(path, lambda f: torch.save(state, f))
    return features, got
