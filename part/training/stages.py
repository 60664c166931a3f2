"""The three stages a recipe chains: pretrain (the method's pretext objective), finetune (paper
section 3.4, repeated `evaluate.repeats` times on different finetune draws) and evaluate
(metrics, report, plots, and the dataset's report hook). Modality-agnostic: data, modality and
method come from the registry (`part.registry`), filled by plugins."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from part.atomic import atomic_write
from part.core.assemble import build_classifier, build_model_encoder, build_modality, build_pretext_method
from part.training.checkpoint import load_checkpoint, save_checkpoint
from part.training.engine import RunContext, TrainSpec, train
from part.errors import ConfigError, DataError
from part.evaluation.calibration import calibration_section, fit_temperature, holdout_split, softmax
from part.evaluation.metrics import classification_metrics, per_group_metrics
from part.evaluation.chance import chance_warning
from part.evaluation.pretext import heldout_hook, heldout_records, last_heldout
from part.evaluation.report import aggregate_repeats, write_report
from part.inference import model_card
from part.registry import dataset_spec, method_spec
from part.training.pretext import PRETEXT_FILE, pretext_state
from part.training.rundir import finished_stages, mark_finished


class Pipeline:
    """A recipe bound to a run directory: builds data, modality and models on demand."""

    def __init__(self, recipe, ctx: RunContext):
        self.recipe, self.ctx = recipe, ctx
        self._bundles = {}

    # --- bookkeeping of finished stages -------------------------------------------------
    def done(self) -> list:
        return finished_stages(self.ctx.run_dir)

    def mark_done(self, what: str) -> None:
        if self.ctx.dist.is_main:
            mark_finished(self.ctx.run_dir, what)

    def ckpt(self, name: str) -> Path:
        return self.ctx.run_dir / "checkpoints" / name

    # --- builders --------------------------------------------------------------------------
    def bundle(self, repeat: int = 0):
        if repeat not in self._bundles:
            r = self.recipe
            self._bundles[repeat] = dataset_spec(r.modality.name, r.data.name).load(r.data, r.run.seed, repeat)
        return self._bundles[repeat]

    def modality(self, bundle):
        """The recipe's modality for this data (the recipe's options win over the data's info)."""
        return build_modality(self.recipe.modality, bundle.input_info)

    def encoder(self):
        return build_model_encoder(self.recipe.model)

    def classifier(self, bundle, repeat_weights: Path | None):
        r = self.recipe
        clf = build_classifier(r.modality, r.model, bundle.input_info, len(bundle.class_names))
        if repeat_weights is not None:
            clf.load_state_dict(load_checkpoint(repeat_weights)["model"])
        return clf


def _inputs(batch):
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def pretrain(p: Pipeline) -> None:
    r, ctx = p.recipe, p.ctx
    spec = method_spec(r.method.name)
    if not spec.pretrains:
        ctx.say(f"[pretrain] method '{r.method.name}' has no pretraining; skipped")
        return p.mark_done("pretrain")
    bundle = p.bundle(0)
    method, modality, encoder = build_pretext_method(r, modality=p.modality(bundle))
    data = bundle.pretrain if spec.pretrain_data is None else spec.pretrain_data(bundle.pretrain, r.method, r.run.seed)

    def loss_fn(model, batch, device):
        if spec.pretrain_data is None:
            out = model(_inputs(batch).to(device, non_blocking=True))
        else:  # (inputs, target) samples the method made from the pretraining data
            out = model(batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True))
        return out["loss"], {k: v for k, v in out.items() if k != "loss"}

    def anneal(model, step, total):  # methods with schedules (e.g. DropPos smoothing) read this
        if hasattr(model, "progress"):
            model.progress = step / max(1, total)
    ctx.say(f"[pretrain] {r.method.name} on {bundle.description}")
    hooks = []
    if ctx.dist.is_main:  # pretext loss on fixed test items next to chance, and the kNN monitor, per epoch
        hooks.append(heldout_hook(method, _heldout_data(spec, bundle, r, ctx.say), r.pretrain.heldout_items,
                                  r.run.seed, ctx.device, ctx.say, r.pretrain.batch_size,
                                  own_samples=spec.pretrain_data is not None))
        if r.evaluate.knn_monitor:
            from part.training.probe_stages import knn_monitor_hook  # late: it imports this module
            hooks.append(knn_monitor_hook(p, modality, method.tokenizer, encoder, bundle, ctx.say))
    hooks = [h for h in hooks if h is not None]
    train(TrainSpec("pretrain", method, loss_fn, data, r.pretrain, encoder.depth, on_step=anneal,
                    on_epoch_end=(lambda model, ep: [h(model, ep) for h in hooks]) if hooks else None), ctx)
    warning = chance_warning(heldout_records(ctx.run_dir / "metrics.jsonl")) if ctx.dist.is_main else None
    if warning:
        ctx.say(warning)
    if ctx.dist.is_main:
        save_checkpoint(p.ckpt("pretrain.pt"), {"tokenizer": method.tokenizer.state_dict(),
                                                "encoder": encoder.state_dict(), "method": r.method.name})
        save_checkpoint(p.ckpt(PRETEXT_FILE), pretext_state(method, r, bundle.input_info))
    p.mark_done("pretrain")


def _heldout_data(spec, bundle, recipe, say):
    """The test items of the held-out pretext loss: the test split, or for a method with its own
    pretraining samples (``pretrain_data``) those samples made from the test split (None, with a
    line, when they cannot be made there)."""
    if spec.pretrain_data is None:
        return bundle.test
    try:
        return spec.pretrain_data(bundle.test, recipe.method, recipe.run.seed)
    except (DataError, ValueError) as exc:
        say(f"[pretrain] no held-out pretext loss: {recipe.method.name}'s samples cannot be made from "
            f"the test split ({exc})")
        return None


def _labels_of(dataset) -> np.ndarray:
    """Labels of a dataset without loading its inputs (datasets expose `targets` or `labels`)."""
    if isinstance(dataset, Subset):
        return _labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr))
    raise DataError(f"{type(dataset).__name__} exposes no `targets`/`labels`; class balancing needs them")


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.tensor(w, dtype=torch.float32)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c targets_c * log_softmax(logits)_c (timm's
    ``SoftTargetCrossEntropy``); logits (B, C), targets (B, C) float rows summing to 1."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def finetune_loss(n_classes: int, label_smoothing: float = 0.0, class_weights=None,
                  batch_transform=None):
    """The finetune stage's ``loss_fn(model, batch, device) -> (loss, {"accuracy"})``.

    Without ``batch_transform``: cross-entropy on the hard labels (optional class weights and
    label smoothing; label -1 ignored). With one (``DataBundle.finetune_batch_transform``, e.g.
    Mixup/CutMix): the batch becomes ``(x, y_soft)``, the soft targets are smoothed as timm's
    Mixup does (``(1 - e) * y_soft + e / classes``) and the loss is the soft-target
    cross-entropy; class weights are refused there (undefined for mixed targets). ``accuracy``
    compares the logits' argmax with the label, or with the soft targets' argmax (the dominant
    label of a mix).
    """
    if batch_transform is not None and class_weights is not None:
        raise ConfigError("class weights (data.class_balance: weighted_loss) cannot be combined with "
                          "the dataset's finetune batch transform (e.g. Mixup/CutMix, soft targets); "
                          "use class_balance: balanced_sampler or turn the batch transform off")
    eps = float(label_smoothing)

    def loss_fn(model, batch, device):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        if batch_transform is None:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y,
                                   weight=None if class_weights is None else class_weights.to(device),
                                   label_smoothing=eps, ignore_index=-1)
            acc = (logits.argmax(-1) == y).float().mean()
            return loss, {"accuracy": acc.detach()}
        x, soft = batch_transform(x, y)
        soft = soft.float()
        if eps:
            soft = soft * (1.0 - eps) + eps / n_classes
        logits = model(x)
        loss = soft_target_cross_entropy(logits, soft)
        acc = (logits.argmax(-1) == soft.argmax(-1)).float().mean()
        return loss, {"accuracy": acc.detach()}
    return loss_fn


def finetune(p: Pipeline, repeat: int) -> None:
    r, ctx = p.recipe, p.ctx
    bundle = p.bundle(repeat)
    clf = p.classifier(bundle, None)
    if method_spec(r.method.name).pretrains:
        weights = p.ckpt("pretrain.pt")
        if not weights.exists():
            raise DataError(f"finetuning a '{r.method.name}' run needs its pretrained weights '{weights}', "
                            f"which do not exist; add 'pretrain' to run.stages, or use method.name=supervised "
                            f"for a from-scratch baseline")
        state = load_checkpoint(weights)
        clf.tokenizer.load_state_dict(state["tokenizer"])
        clf.encoder.load_state_dict(state["encoder"], strict=False)  # the position embedding is new
    n_classes, cfg = len(bundle.class_names), r.finetune
    data, calibration_data, held_out = _calibration_split(bundle, cfg.calibration_fraction, r.run.seed + repeat, ctx)
    class_w, sample_w = None, None
    if r.data.class_balance != "none":
        labels = _labels_of(data)
        w = _class_weights(labels, n_classes)
        if r.data.class_balance == "weighted_loss":
            class_w = w
        else:
            sample_w = w[torch.as_tensor(labels.clip(min=0), dtype=torch.long)] * torch.as_tensor(labels >= 0)
    loss_fn = finetune_loss(n_classes, cfg.label_smoothing, class_w, bundle.finetune_batch_transform)
    ctx.say(f"[finetune] repeat {repeat}: {bundle.description}")
    if bundle.finetune_batch_transform is not None:
        ctx.say(f"[finetune] training batches through {bundle.finetune_batch_transform!r}; "
                "soft-target cross-entropy")
    train(TrainSpec("finetune", clf, loss_fn, data, cfg, clf.encoder.depth, sample_weights=sample_w,
                    extra_state={"repeat": repeat}), ctx)
    if ctx.dist.is_main:
        card = model_card(r, bundle)  # self-describing: usable without the recipe
        card["trained_on"] = _trained_on(bundle, data)
        if calibration_data is not None:
            card.update(_fit_calibration(clf, calibration_data, held_out, r.evaluate.batch_size, ctx))
        out = {"model": clf.state_dict(), "repeat": repeat, "seed": r.run.seed + repeat, "card": card}
        save_checkpoint(p.ckpt(finetuned_name(repeat)), out)
        if repeat == 0:
            save_checkpoint(p.ckpt("best.pt"), out)
    p.mark_done(f"finetune:{repeat}")


def _calibration_split(bundle, fraction: float, seed: int, ctx: RunContext):
    """(training data, calibration data or None, held-out group ids): ``fraction`` of the
    finetune pool's groups (items without groups) held out by ``seed`` to fit the temperature."""
    if fraction <= 0:
        return bundle.finetune, None, []
    split = holdout_split(len(bundle.finetune), bundle.finetune_groups, fraction, seed)
    unit = "groups (subjects)" if bundle.finetune_groups is not None else "items"
    if split is None:
        ctx.say(f"[finetune] finetune.calibration_fraction={fraction:g}, but the finetune pool has fewer than 2 "
                f"{unit}: training on all of it; the model stays uncalibrated")
        return bundle.finetune, None, []
    train_idx, cal_idx, held_out = split
    ctx.say(f"[finetune] calibration: {len(cal_idx)} of {len(bundle.finetune)} finetune items held out of training"
            + (f" (subjects {', '.join(held_out)})" if held_out else "") + " to fit the temperature on")
    plain = bundle.finetune_eval if bundle.finetune_eval is not None else bundle.finetune  # no augmentation
    return Subset(bundle.finetune, train_idx.tolist()), Subset(plain, cal_idx.tolist()), held_out


def _trained_on(bundle, data) -> dict:
    """What the finetune stage trained on (the card's ``trained_on``): ``items`` and, where the
    finetune pool has groups, the ``groups`` (subject ids, sorted) of the items in ``data``."""
    groups = None
    if bundle.finetune_groups is not None:
        index = range(len(bundle.finetune_groups)) if data is bundle.finetune else data.indices  # our Subset
        groups = sorted({str(bundle.finetune_groups[i]) for i in index})
    return {"items": len(data), "groups": groups}


def _fit_calibration(model, data, held_out: list, batch_size: int, ctx: RunContext) -> dict:
    """The card's ``temperature`` fitted on ``data`` (held-out finetune items) and how."""
    y, logits = predict_logits(model, data, batch_size, ctx)
    temperature = fit_temperature(logits, y)
    section = calibration_section(logits, y, temperature)
    before, after = section["before"], section["after"]
    ctx.say(f"[finetune] temperature {temperature:.3f} fitted on {int((y >= 0).sum())} held-out finetune items: "
            f"NLL {before['nll']:.4f} -> {after['nll']:.4f}, ECE {before['ece']:.4f} -> {after['ece']:.4f} "
            "(on the calibration items)")
    return {"temperature": temperature,
            "calibration": {"fitted_on": "finetune items held out of training, never test items",
                            "held_out_groups": held_out, "items": int((y >= 0).sum()),
                            "nll_before": before["nll"], "nll_after": after["nll"],
                            "ece_before": before["ece"], "ece_after": after["ece"]}}


def finetuned_name(repeat: int) -> str:
    return "finetuned.pt" if repeat == 0 else f"finetuned_r{repeat}.pt"


@torch.no_grad()
def predict_logits(model, dataset, batch_size: int, ctx: RunContext):
    """(y_true (n,), logits (n, classes) float32) over a dataset in its order; the model is left
    in eval mode."""
    model.to(ctx.device).eval()
    ys, logits = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=ctx.num_workers)
    for x, y in loader:
        with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None):
            logits.append(model(x.to(ctx.device)).float().cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(ys), np.concatenate(logits)


def predict(model, dataset, batch_size: int, ctx: RunContext, temperature: float | None = None):
    """(y_true, y_pred, probs) over a dataset in its order; probs = softmax(logits / temperature)
    (None: 1, uncalibrated), float32."""
    y, logits = predict_logits(model, dataset, batch_size, ctx)
    return y, logits.argmax(-1), softmax(logits, temperature).astype(np.float32)


def evaluate(p: Pipeline) -> dict:
    r, ctx = p.recipe, p.ctx
    if not ctx.dist.is_main:
        return {}
    report_dir = ctx.run_dir / "report"
    results, seeds, first_predictions = [], [], None
    for k in range(r.evaluate.repeats):
        bundle = p.bundle(k)
        weights = p.ckpt(finetuned_name(k))
        if not weights.exists():
            raise DataError(f"evaluation needs the finetuned weights '{weights}'; add 'finetune' to run.stages")
        state = load_checkpoint(weights)
        clf = p.classifier(bundle, None)
        clf.load_state_dict(state["model"])
        temperature = (state.get("card") or {}).get("temperature")
        if temperature is None and k == 0:
            ctx.say(f"[evaluate] {weights.name} has no temperature (finetune.calibration_fraction=0 or a checkpoint "
                    "from before calibration): probabilities are uncalibrated")
        y, logits = predict_logits(clf, bundle.test, r.evaluate.batch_size, ctx)
        prob = softmax(logits, temperature).astype(np.float32)
        pred = logits.argmax(-1)  # the same with any temperature
        labels = list(range(len(bundle.class_names)))
        m = classification_metrics(y, pred, labels, prob, bundle.class_names)
        m["calibration"] = calibration_section(logits, y, temperature)
        groups = np.asarray(bundle.test_groups) if bundle.test_groups is not None else None
        if groups is not None:
            m["per_subject"] = per_group_metrics(y, pred, groups, labels)
        report_dir.mkdir(parents=True, exist_ok=True)
        arrays = {"y_true": y, "y_pred": pred, "probs": prob}
        if groups is not None:
            arrays["groups"] = groups.astype(str)
        atomic_write(report_dir / f"predictions_r{k}.npz", lambda f: np.savez(f, **arrays))
        if k == 0:
            first_predictions = arrays
        results.append(m)
        seeds.append(r.run.seed + k)
    metrics = dict(results[0])
    if r.evaluate.repeats > 1:
        metrics["repeats"] = aggregate_repeats(results, seeds)
    bundle = p.bundle(0)
    context = {"recipe": r.run.name, "method": r.method.name, "data": bundle.description,
               "pretrain_epochs": (r.pretrain.epochs
                                   if "pretrain" in r.run.stages and method_spec(r.method.name).pretrains else 0),
               "finetune_epochs": r.finetune.epochs, "repeats": r.evaluate.repeats, "seed": r.run.seed,
               "synthetic": bool(bundle.synthetic)}
    write_report(report_dir, metrics, bundle.class_names, f"{r.run.name}: {r.method.name}", context, bundle.reference,
                 pretext=last_heldout(ctx.run_dir / "metrics.jsonl"),
                 pretext_warning=chance_warning(heldout_records(ctx.run_dir / "metrics.jsonl")))
    if bundle.report_hook is not None and first_predictions is not None:
        bundle.report_hook(report_dir, first_predictions)
    ctx.say("[evaluate] " + ", ".join(f"{k} {metrics[k]:.4f}" for k in ("kappa", "accuracy", "macro_f1")
                                        if isinstance(metrics.get(k), float)) + f"; report in {report_dir}")
    p.mark_done("evaluate")
    return metrics
