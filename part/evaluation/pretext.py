"""Pretext diagnostics on held-out items: how well a relative-target method (PART, PART-grid)
predicts the relative transforms of patches it never trained on (paper Table 5: error in x,
error in y, Euclidean error).

At each pretraining epoch end the pretrain stage evaluates a FIXED batch of test-split items
(``heldout_batch``: the same items every epoch, chosen by the run's seed) with the method's own
pieces (``method.predict_pairs``: the modality's sampling and targets, the tokenizer, the encoder,
the head), in eval mode, under ``torch.no_grad()``, drawing patches and pairs from a dedicated
generator seeded the same way every epoch, inside ``torch.random.fork_rng``: the global RNG
streams of training are untouched, so a run with diagnostics trains exactly as one without, and
a resumed run logs the same numbers as an uninterrupted one.

Units: the targets' own (normalised) units, the values the loss regresses. Translations are
(c_tgt - c_ref) / size_ref per axis, i.e. in sizes of the reference patch (image: dx, dy in
reference-patch widths and heights; EEG: dt in reference-window lengths); scale values (dw, dh,
dlen) are ratios (or log-ratios with ``scale_target: log``). Errors (``pretext_errors``):

- ``mae``: per target value (names from ``modality.target_names``) the mean absolute error over
  all held-out pairs; ``mse``: the same with squared errors (the paper's section 4 names
  "the mean squared error in x and y", its Table 5 "error x, y"; both are given);
- ``l2``: the mean over pairs of the Euclidean norm of the translation error (the first
  ``modality.translation_dim`` values), as the training log's ``l2_error``.

- ``loss``: the MSE over pairs and target values (the training loss's measure), and
  ``by_pair_type``: the same per pair type (``part.evaluation.pair_types``) next to the error of
  the chance predictor on those pairs.

Methods without relative targets (MAE, MP3, DropPos, RP, TS, CPC) have no ``predict_pairs``: their
held-out record is their own loss on the held-out items (``part.evaluation.chance.heldout_loss``).
Every record carries the method's chance level (``pretext_chance``, docs/architecture.md).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import torch

from part.core.pairs import gather_tokens
from part.evaluation.chance import chance_text, cuda_devices, heldout_loss, method_chance
from part.evaluation.features import read_inputs
from part.evaluation.pair_types import pair_types, split_errors, type_sums

CHUNK_ITEMS = 64  # held-out items per forward pass (memory only; part of the fixed sampling)


def supports_pretext_errors(method) -> bool:
    """Whether ``method`` predicts relative targets (has ``predict_pairs``) on a modality."""
    return callable(getattr(method, "predict_pairs", None)) and hasattr(method, "modality")


def heldout_items(num_items: int, n: int, seed: int) -> torch.Tensor:
    """(min(n, num_items),) long: a seeded random choice of item indices, sorted."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_items, generator=g)[:max(0, min(n, num_items))].sort().values


def heldout_batch(dataset, n: int, seed: int):
    """The fixed held-out batch: (x (n', ...) stacked inputs of dataset items, indices (n',) long).

    n' = min(n, len(dataset)) items chosen by ``heldout_items(len(dataset), n, seed)``; items
    are ``(x, label)`` pairs (or bare inputs), loaded once in index order (one ``read_batch``
    where the dataset has one: ``part.evaluation.features.read_inputs``).
    """
    index = heldout_items(len(dataset), n, seed)
    return read_inputs(dataset, index.tolist()), index


def items_digest(index: torch.Tensor) -> str:
    """A short hash of the held-out item indices (to check that every epoch used the same)."""
    return hashlib.sha1(json.dumps(index.tolist()).encode()).hexdigest()[:12]


def error_summary(pred: torch.Tensor, target: torch.Tensor, names, translation_dim: int) -> dict:
    """Errors of predictions against targets, both (..., T) with T = len(names).

    Returns {"mae": {name: mean |pred - target|}, "mse": {name: mean (pred - target)^2},
    "l2": mean Euclidean norm of the first ``translation_dim`` values of pred - target,
    "pairs": number of (...) rows}, as Python floats (float64 sums).
    """
    sums = _error_sums(pred, target, translation_dim)
    return _summarise(sums, tuple(names))


def _error_sums(pred: torch.Tensor, target: torch.Tensor, translation_dim: int) -> dict:
    diff = (pred.double() - target.double()).reshape(-1, pred.shape[-1])
    return {"abs": diff.abs().sum(0), "sq": diff.pow(2).sum(0),
            "l2": diff[:, :translation_dim].norm(dim=-1).sum(), "n": diff.shape[0]}


def _summarise(sums: dict, names: tuple) -> dict:
    n = max(int(sums["n"]), 1)
    if len(names) != sums["abs"].numel():
        raise ValueError(f"{len(names)} target names {names} for {sums['abs'].numel()} target values")
    return {"mae": {k: float(v) / n for k, v in zip(names, sums["abs"].tolist())},
            "mse": {k: float(v) / n for k, v in zip(names, sums["sq"].tolist())},
            "l2": float(sums["l2"]) / n, "pairs": int(sums["n"])}


def pretext_errors(method, x: torch.Tensor, seed: int, chunk_items: int = CHUNK_ITEMS) -> dict:
    """Held-out pretext errors of a relative-target ``method`` on inputs ``x`` (B, ...).

    Evaluated in eval mode under ``torch.no_grad()``, ``chunk_items`` items per forward pass,
    patches and pairs drawn from one generator on x's device seeded with ``seed`` (the same
    draws at every call), inside ``torch.random.fork_rng`` (the global RNG state is restored);
    the method's train/eval mode is restored too. Returns ``error_summary``'s dict plus
    "items" (B), "loss" (the MSE over pairs and target values: the training loss's measure,
    comparable with the chance level), "loss_mean_predictor" (the same loss of predicting the mean
    target of these very pairs: the chance predictor on this sample, without the Monte Carlo
    level's sampling noise) and "by_pair_type" (``pair_types.split_errors``: self, overlapping,
    adjacent, far). Units: see the module doc.
    """
    if not supports_pretext_errors(method):
        raise ValueError(f"{type(method).__name__} predicts no relative targets (no predict_pairs)")
    modality, was_training = method.modality, method.training
    k = modality.translation_dim
    total, by_type = None, None
    method.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda_devices(x)):
            generator = torch.Generator(device=x.device).manual_seed(int(seed))
            for chunk in x.split(chunk_items):
                pred, target, details = method.predict_pairs(chunk, generator=generator, return_details=True)
                sums = _error_sums(pred, target, k)
                total = sums if total is None else {key: total[key] + v for key, v in sums.items()}
                geom = details["geometry"]
                types = pair_types(gather_tokens(geom, details["ref"]), gather_tokens(geom, details["tgt"]), k)
                part = type_sums(pred, target, types)
                by_type = part if by_type is None else {key: by_type[key] + v for key, v in part.items()}
    finally:
        method.train(was_training)
    summary = _summarise(total, tuple(modality.target_names))
    loss = sum(summary["mse"].values()) / max(len(summary["mse"]), 1)
    split = split_errors(by_type)
    same_pairs = sum(v["mse_chance"] * v["pairs"] for v in split.values() if v["pairs"]) / max(summary["pairs"], 1)
    return {**summary, "items": int(x.shape[0]), "loss": loss, "loss_mean_predictor": same_pairs,
            "by_pair_type": split}


def _stack(items) -> list:
    """(inputs, target) samples of methods with their own pretraining data -> a list of stacked
    tensors, one per component."""
    return [torch.stack([torch.as_tensor(i[c]) for i in items]) for c in range(len(items[0]))]


def heldout_hook(method, dataset, n: int, seed: int, device, say: Callable = print,
                 batch_size: Optional[int] = None, own_samples: bool = False) -> Optional[Callable]:
    """The pretrain stage's epoch-end diagnostics: ``hook(model, epoch) -> record``, or None.

    None (and one line through ``say``) when ``n`` is 0 or the dataset is empty. Otherwise the
    held-out batch (``heldout_items(len(dataset), n, seed)``) is loaded once onto ``device``, the
    method's chance level is computed once on it (``part.evaluation.chance.method_chance``,
    ``batch_size``: the pretraining batch) and said, and each call returns {"event": "heldout",
    "heldout": {..., "loss", "digest"}, "chance": {...}} for the engine to log, saying the held-out
    loss next to chance. Relative-target methods: ``pretext_errors``; others: their own loss on
    the held-out items (``chance.heldout_loss``). ``own_samples``: the dataset's items are the
    method's ``(inputs, target)`` samples (methods with ``pretrain_data``; the first component
    is the input, the rest are passed to forward too); otherwise items are ``(x, label)``. The
    records seen are kept in ``hook.records`` (for ``chance.chance_warning``).
    """
    if n <= 0 or dataset is None or len(dataset) == 0:
        return None
    if own_samples:  # the method's (inputs, target) samples: every component
        index = heldout_items(len(dataset), n, seed)
        inputs = [t.to(device) for t in _stack([dataset[i] for i in index.tolist()])]
    else:
        x, index = heldout_batch(dataset, n, seed)
        inputs = [x.to(device)]
    relative = supports_pretext_errors(method) and not own_samples
    digest = items_digest(index)
    level = method_chance(method, inputs[0], batch_size, seed)
    say(f"[pretrain] held-out pretext loss each epoch on {len(index)} test items (digest {digest})"
        + (f"; chance {level['metric']} {level['value']:.4g}: {level['how']}" if level else
           f"; {type(method).__name__} states no chance level (no pretext_chance)"))

    def hook(model, epoch: int) -> dict:
        if relative:
            errors = pretext_errors(model, inputs[0], seed)
        else:
            loss, used = heldout_loss(model, inputs, seed, chunk=batch_size or CHUNK_ITEMS)
            errors = {"loss": loss, "items": used}
        record = {"event": "heldout", "heldout": {**errors, "digest": digest}}
        if level:
            record["chance"] = level
            say(f"[pretrain] epoch {epoch + 1} held-out {chance_text(errors['loss'], level)}")
        hook.records.append(record)
        return record
    hook.records = []
    return hook


def heldout_records(metrics_path: str | Path, stage: str = "pretrain") -> list:
    """The held-out records of ``stage`` in a run's ``metrics.jsonl`` in file order ({"epoch",
    "step", "heldout": {...}[, "chance"]}); [] without a file (torn lines are ignored).

    A resumed stage may repeat epochs: the last record of each epoch is kept."""
    path = Path(metrics_path)
    if not path.exists():
        return []
    by_epoch: dict = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("stage") == stage and record.get("event") == "heldout":
            by_epoch[record.get("epoch")] = record
    return list(by_epoch.values())


def last_heldout(metrics_path: str | Path, stage: str = "pretrain") -> Optional[dict]:
    """The last held-out record of ``stage`` in a run's ``metrics.jsonl`` ({"epoch", "step",
    "heldout": {...}[, "chance"]}), or None (no file, no such record; torn lines are ignored)."""
    records = heldout_records(metrics_path, stage)
    return records[-1] if records else None
