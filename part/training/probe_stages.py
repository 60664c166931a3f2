"""The frozen-feature stages ``linear_probe`` and ``knn`` and the kNN monitor of pretraining.

Both stages read the pretrained encoder (``checkpoints/pretrain.pt``; for ``supervised``, which
has no pretraining, the finetuned encoder of each repeat, as a reference) and never train it:
features of the finetune items (the training set of the probe; each repeat's draw) and of the
test items are extracted once per encoder (``part.evaluation.features``, cached under
``<run_dir>/features/``), then

- ``linear_probe``: logistic regression on the standardised features (``evaluate.probe_weight_decay``;
  class weights as the finetune stage's when ``data.class_balance`` is not ``none``);
- ``knn``: weighted kNN (``evaluate.knn_k``, ``evaluate.knn_temperature``, cosine similarity).

Reports: ``report/<stage>/report.json|md`` with the keys of ``report/report.json`` plus
``protocol`` and ``chance`` (``part.evaluation.probes.chance_levels``), and
``report/<stage>/predictions_r<k>.npz`` (y_true, y_pred, probs[, groups]) per repeat.
"""
from __future__ import annotations

import numpy as np
import torch

from part.atomic import atomic_write
from part.evaluation.features import FrozenEncoder, cached_features, encode_tensor, extract_features, read_inputs
from part.evaluation.metrics import classification_metrics, per_group_metrics
from part.evaluation.probes import chance_levels, cohen_kappa, knn_predict, linear_probe
from part.evaluation.report import aggregate_repeats, write_report
from part.core.methods.common import sincos_position_embedding
from part.errors import DataError
from part.evaluation.pretext import heldout_items
from part.registry import method_spec
from part.training.checkpoint import load_checkpoint
from part.training.stages import _class_weights, _labels_of, finetuned_name

PROBE_STAGES = ("linear_probe", "knn")
PROTOCOLS = {
    "linear_probe": "linear probe: multinomial logistic regression (L-BFGS, weight decay {wd:g}) on standardised "
                    "frozen features; trained on the finetune items, scored on the test items",
    "knn": "weighted kNN on frozen features: cosine similarity, k={k}, vote weight exp(sim/{t:g}) (DINO); "
           "bank = the finetune items, queries = the test items",
}


def pretraining_position_embedding(recipe, modality, dim: int):
    """The fixed (N_grid, dim) sin-cos embedding a method adds to its tokens in pretraining (MAE,
    DropPos with ``pos_embed: sincos``, RP, TS, CPC), or None (PART, PART-grid, MP3; a learnt
    DropPos embedding is not kept in ``pretrain.pt``)."""
    spec = method_spec(recipe.method.name)
    if not spec.position_embedding or getattr(recipe.method, "pos_embed", "sincos") != "sincos":
        return None
    return sincos_position_embedding(tuple(modality.grid_shape), dim)


def frozen_encoder(p, repeat: int):
    """(FrozenEncoder, checkpoint path, cache tag, what in words) of the run's encoder for repeat
    ``repeat``: the pretrained one, or for a method without pretraining the finetuned one."""
    r = p.recipe
    bundle = p.bundle(repeat)
    pooling = r.evaluate.probe_pooling
    if method_spec(r.method.name).pretrains:
        ckpt = p.ckpt("pretrain.pt")
        if not ckpt.exists():
            raise DataError(f"the frozen-feature stages of a '{r.method.name}' run read its pretrained encoder "
                            f"'{ckpt}', which does not exist; add 'pretrain' to run.stages")
        modality, encoder = p.modality(bundle), p.encoder()
        tokenizer = modality.tokenizer(encoder.dim)
        state = load_checkpoint(ckpt)
        tokenizer.load_state_dict(state["tokenizer"])
        encoder.load_state_dict(state["encoder"])
        pe = pretraining_position_embedding(r, modality, encoder.dim)
        what = ("the pretrained encoder, frozen"
                + (" (with the method's fixed sin-cos position embedding)" if pe is not None else
                   " (no position embedding: the method learnt none)"))
        return FrozenEncoder(modality, tokenizer, encoder, pe, pooling), ckpt, f"pretrain_{pooling}", what
    ckpt = p.ckpt(finetuned_name(repeat))
    if not ckpt.exists():
        raise DataError(f"'{r.method.name}' has no pretraining: its frozen-feature stages read the finetuned "
                        f"encoder '{ckpt}' (a supervised reference), which does not exist; add 'finetune' "
                        f"to run.stages")
    clf = p.classifier(bundle, ckpt)
    what = ("REFERENCE: the supervised FINETUNED encoder (no pretraining; trained on these labels), frozen, "
            "with its learnt position embedding")
    return (FrozenEncoder(clf.modality, clf.tokenizer, clf.encoder, None, pooling), ckpt,
            f"{ckpt.stem}_{pooling}", what)


def split_features(p, model, ckpt, tag: str, split: str, dataset):
    """(features (N, D), labels (N,)) of ``dataset`` through the cache ``features/<tag>/<split>.pt``."""
    ctx, r = p.ctx, p.recipe
    labels = _labels_of(dataset)
    return cached_features(
        ctx.run_dir / "features" / tag / f"{split}.pt", ckpt, labels,
        lambda: extract_features(model, dataset, r.evaluate.batch_size, ctx.device, ctx.amp_dtype, ctx.num_workers),
        ctx.say, "bf16" if ctx.amp_dtype is not None else "fp32")


def probe_repeat(p, protocol: str, repeat: int) -> tuple[dict, dict, str, dict]:
    """One repeat of a protocol: (metrics dict, chance dict, encoder in words, predictions
    {y_true, y_pred, probs[, groups]})."""
    r = p.recipe
    bundle = p.bundle(repeat)
    model, ckpt, tag, what = frozen_encoder(p, repeat)
    train_set = bundle.finetune_eval if bundle.finetune_eval is not None else bundle.finetune
    train_x, train_y = split_features(p, model, ckpt, tag, f"finetune_r{repeat}", train_set)
    test_x, test_y = split_features(p, model, ckpt, tag, "test", bundle.test)
    keep = train_y >= 0
    train_x, train_y = train_x[keep], train_y[keep]
    n_classes = len(bundle.class_names)
    if protocol == "knn":
        pred, prob = knn_predict(train_x, train_y, test_x, n_classes, r.evaluate.knn_k, r.evaluate.knn_temperature)
    else:
        weights = _class_weights(train_y.numpy(), n_classes) if r.data.class_balance != "none" else None
        pred, prob = linear_probe(train_x, train_y, n_classes, r.evaluate.probe_weight_decay, weights,
                                  r.evaluate.probe_max_iter).predict(test_x)
    labels, y = list(range(n_classes)), test_y.numpy()
    metrics = classification_metrics(y, pred, labels, prob, bundle.class_names)
    arrays = {"y_true": y, "y_pred": pred, "probs": prob}
    if bundle.test_groups is not None:
        metrics["per_subject"] = per_group_metrics(y, pred, np.asarray(bundle.test_groups), labels)
        arrays["groups"] = np.asarray(bundle.test_groups).astype(str)
    return metrics, chance_levels(train_y.numpy(), y, bundle.class_names), what, arrays


def probe_stage(p, protocol: str) -> dict:
    """Run the ``linear_probe`` or ``knn`` stage over ``evaluate.repeats`` finetune draws and write
    ``report/<protocol>/``; returns the metrics (repeat 0's, with ``repeats`` when > 1)."""
    r, ctx = p.recipe, p.ctx
    if not ctx.dist.is_main:
        return {}
    results, chances, seeds, what = [], [], [], ""
    report_dir = ctx.run_dir / "report" / protocol
    for k in range(r.evaluate.repeats):
        m, chance, what, arrays = probe_repeat(p, protocol, k)
        atomic_write(report_dir / f"predictions_r{k}.npz", lambda f, arrays=arrays: np.savez(f, **arrays))
        results.append(m)
        chances.append(chance)
        seeds.append(r.run.seed + k)
    metrics = dict(results[0])
    if r.evaluate.repeats > 1:
        metrics["repeats"] = aggregate_repeats(results, seeds)
    text = PROTOCOLS[protocol].format(wd=r.evaluate.probe_weight_decay, k=r.evaluate.knn_k,
                                      t=r.evaluate.knn_temperature)
    features = (f"{'mean of the grid patch tokens' if r.evaluate.probe_pooling == 'mean' else 'the [CLS] token'} "
                f"of {what}")
    metrics["protocol"] = {"name": protocol, "description": text, "features": features}
    metrics["chance"] = chances[0]
    bundle = p.bundle(0)
    context = {"recipe": r.run.name, "method": r.method.name, "data": bundle.description,
               "protocol": text, "features": features, "repeats": r.evaluate.repeats, "seed": r.run.seed,
               "chance": chances[0]["rule"] + f" = {chances[0]['accuracy']:.3f}"}
    write_report(report_dir, metrics, bundle.class_names, f"{r.run.name}: {r.method.name}, {protocol}", context)
    ctx.say(f"[{protocol}] " + summary_line(metrics) + f"; report in {report_dir}")
    p.mark_done(protocol)
    return metrics


def summary_line(metrics: dict) -> str:
    """'kappa 0.512 (chance 0), accuracy 0.700 (chance 0.410, majority class N2), ...'."""
    chance = metrics.get("chance") or {}
    kappa, acc, f1 = (metrics.get(k) for k in ("kappa", "accuracy", "macro_f1"))
    parts = [f"kappa {kappa:.3f} (chance 0)" if isinstance(kappa, float) else "kappa n/a"]
    if isinstance(acc, float):
        parts.append(f"accuracy {acc:.3f} (chance {chance.get('accuracy') or 0:.3f}, majority class "
                     f"{chance.get('majority_class')})")
    if isinstance(f1, float):
        parts.append(f"macro F1 {f1:.3f}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- kNN monitor

def labelled_items(dataset, n: int, seed: int):
    """(x (n', ...), labels (n',) long) of a fixed seeded choice of up to ``n`` labelled items,
    read in one ``dataset.read_batch(items)`` where the dataset has one (else item by item)."""
    labels = _labels_of(dataset)
    labelled = np.flatnonzero(labels >= 0)
    index = labelled[heldout_items(len(labelled), n, seed).numpy()]
    return read_inputs(dataset, index), torch.as_tensor(labels[index], dtype=torch.long)


def knn_monitor_hook(p, modality, tokenizer, encoder, bundle, say=print):
    """The pretrain stage's epoch-end kNN monitor: ``hook(model, epoch) -> record``.

    Bank: ``evaluate.knn_monitor_bank`` labelled finetune items; queries: ``knn_monitor_queries``
    labelled test items (fixed, seeded by run.seed, loaded once). Each call extracts their
    features with the pretraining ``tokenizer`` and ``encoder`` as they are now (eval mode,
    inference mode; their train/eval mode and the global RNG state restored) and returns
    ``{"event": "knn_monitor", "accuracy", "kappa", "bank", "queries"}``. Cost per epoch: one
    forward pass over bank + queries items (no backward), e.g. 1500 items by default.
    """
    r = p.recipe
    n_classes = len(bundle.class_names)
    train_set = bundle.finetune_eval if bundle.finetune_eval is not None else bundle.finetune
    bank_x, bank_y = labelled_items(train_set, r.evaluate.knn_monitor_bank, r.run.seed)
    query_x, query_y = labelled_items(bundle.test, r.evaluate.knn_monitor_queries, r.run.seed)
    frozen = FrozenEncoder(modality, tokenizer, encoder, pretraining_position_embedding(r, modality, encoder.dim),
                           r.evaluate.probe_pooling)
    device, amp, batch = p.ctx.device, p.ctx.amp_dtype, r.evaluate.batch_size
    chance = chance_levels(bank_y.numpy(), query_y.numpy(), bundle.class_names)["accuracy"]
    say(f"[pretrain] kNN monitor each epoch: {len(bank_y)} finetune items as the bank, {len(query_y)} test "
        f"items as queries (k={r.evaluate.knn_k}; kappa chance 0)")

    def hook(model, epoch: int) -> dict:
        modes = [(m, m.training) for m in (tokenizer, encoder)]
        devices = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                bank = encode_tensor(frozen, bank_x, batch, device, amp)
                query = encode_tensor(frozen, query_x, batch, device, amp)
        finally:
            for m, mode in modes:
                m.train(mode)
        pred, _ = knn_predict(bank, bank_y, query, n_classes, r.evaluate.knn_k, r.evaluate.knn_temperature)
        y = query_y.numpy()
        record = {"event": "knn_monitor", "accuracy": float((pred == y).mean()),
                  "kappa": cohen_kappa(y, pred, n_classes), "bank": int(len(bank_y)), "queries": int(len(y))}
        say(f"[pretrain] kNN monitor after epoch {epoch + 1}: kappa {record['kappa']:.3f} (chance 0), "
            f"accuracy {record['accuracy']:.3f} (chance {chance:.3f}, majority class)")
        return record
    return hook
