"""Classification metrics: pooled, per group (subject) and mean +/- std.

Conventions used throughout:

- label ``-1`` in ``y_true`` means "unlabelled" (e.g. an unscored sleep window); those items are
  excluded before anything is computed, and the count excluded is reported;
- ``labels`` fixes the classes (e.g. ``[0, 1, 2, 3, 4]`` for W N1 N2 N3 REM), so a class missing
  from one subject still has its row, column and F1 (0 when it is never true nor predicted,
  scikit-learn's ``zero_division=0``);
- Cohen's kappa is scikit-learn's ``cohen_kappa_score`` with ``labels`` fixed; where it is
  undefined (one class only, both in truth and prediction) it is reported as ``None`` (JSON null);
- std is the sample standard deviation (ddof=1); with a single value it is ``None``.

scikit-learn is imported when a metric is first computed, not with this module, so a command
that only parses its arguments or trains never imports it.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from part.errors import DataError

UNLABELLED = -1
STD_NOTE = "std is the sample standard deviation (ddof=1)"


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _kappa(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> float | None:
    """scikit-learn's Cohen's kappa, ``None`` where it is undefined (0/0)."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return _finite_or_none(cohen_kappa_score(y_true, y_pred, labels=list(labels)))


def kappa_from_confusion(confusion: Any) -> np.ndarray:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) of confusion matrices, numpy only (no scikit-learn).

    Shape: ``confusion`` (..., K, K) counts (rows one rater, columns the other) -> kappa (...)
    float64; NaN where it is undefined (no item, or p_e = 1: one class only in both). The same
    number as scikit-learn's ``cohen_kappa_score`` on the items behind each matrix.
    """
    c = np.asarray(confusion, np.float64)
    n = c.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(c, axis1=-2, axis2=-1) / n
        expected = (c.sum(-1) * c.sum(-2)).sum(-1) / n ** 2
        kappa = (observed - expected) / (1.0 - expected)
    return np.where((n > 0) & np.isfinite(kappa), kappa, np.nan)


def _labelled(y_true: Any, y_pred: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened arrays and the mask of labelled items; checks that the lengths agree."""
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{what}: y_true has {y_true.size} items but y_pred has {y_pred.size}; "
                         f"they must be the predictions for the same items.")
    return y_true, y_pred, y_true != UNLABELLED


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of the finite values; ``None`` values and NaN are skipped.

    Returns ``(None, None)`` with no finite value and ``(mean, None)`` with exactly one.
    """
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if finite.size == 0:
        return None, None
    std = float(finite.std(ddof=1)) if finite.size > 1 else None
    return float(finite.mean()), std


def classification_metrics(y_true: Any, y_pred: Any, labels: Sequence[int], probs: Any = None,
                           class_names: Sequence[str] | None = None) -> dict:
    """Pooled metrics over all labelled items (``y_true != -1``).

    Returns ``accuracy``, ``kappa``, ``macro_f1``, ``balanced_accuracy``, ``per_class_f1``,
    ``per_class_recall`` (per-class accuracy) and ``support`` (dicts by class name),
    ``confusion`` (counts, rows = true, columns = predicted, in ``labels`` order), ``n``,
    ``n_unlabelled_excluded``, ``labels``, ``class_names`` and, when ``probs`` (items x classes,
    columns in ``labels`` order) is given and there are more than 5 classes, ``top5``.
    """
    labels = [int(label) for label in labels]
    names = [str(n) for n in (labels if class_names is None else class_names)]
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} class names for {len(labels)} labels; give one per label.")
    y_true, y_pred, keep = _labelled(y_true, y_pred, "classification_metrics")
    if not keep.any():
        raise DataError(f"no labelled item to evaluate: all {y_true.size} items have label "
                        f"{UNLABELLED} (unlabelled); evaluation needs a test split with labels.")
    unknown = np.setdiff1d(y_true[keep], labels)
    if unknown.size:
        raise DataError(f"true labels {unknown.tolist()} are not among the classes {labels}; "
                        f"check the dataset's labels (use {UNLABELLED} for unlabelled items).")
    yt, yp = y_true[keep], y_pred[keep]
    from sklearn.metrics import confusion_matrix, f1_score

    confusion = confusion_matrix(yt, yp, labels=labels)
    support = (yt[:, None] == np.asarray(labels)[None, :]).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.diag(confusion) / support
    per_class_f1 = f1_score(yt, yp, labels=labels, average=None, zero_division=0)
    result = {
        "n": int(yt.size),
        "n_unlabelled_excluded": int((~keep).sum()),
        "accuracy": float(np.mean(yt == yp)),
        "kappa": _kappa(yt, yp, labels),
        "macro_f1": float(f1_score(yt, yp, labels=labels, average="macro", zero_division=0)),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "per_class_f1": dict(zip(names, map(float, per_class_f1))),
        "per_class_recall": dict(zip(names, map(_finite_or_none, recall))),
        "support": dict(zip(names, map(int, support))),
        "confusion": confusion.tolist(),
        "labels": labels,
        "class_names": names,
    }
    if probs is not None and len(labels) > 5:
        probs = np.asarray(probs)
        if probs.shape != (y_true.size, len(labels)):
            raise ValueError(f"probs has shape {probs.shape}; expected ({y_true.size}, "
                             f"{len(labels)}): one row per item, one column per label.")
        top5 = np.argpartition(-probs[keep], 4, axis=1)[:, :5]
        result["top5"] = float((np.asarray(labels)[top5] == yt[:, None]).any(axis=1).mean())
    return result


def per_group_metrics(y_true: Any, y_pred: Any, groups: Any, labels: Sequence[int]) -> dict:
    """Kappa, accuracy and n per group (e.g. per subject) plus their mean and std.

    Groups whose kappa is undefined (a single class in truth and prediction) report ``None``
    and are left out of the kappa mean, listed in ``kappa_undefined`` with a ``note`` saying so.
    Groups with no labelled item are listed in ``groups_without_labels`` only.
    """
    y_true, y_pred, keep = _labelled(y_true, y_pred, "per_group_metrics")
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != y_true.shape:
        raise ValueError(f"per_group_metrics: {groups.size} group ids for {y_true.size} items; "
                         f"give one group id per item.")
    ids, inverse = np.unique(groups[keep], return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    splits = np.cumsum(np.bincount(inverse, minlength=ids.size))[:-1]
    per_group = {}
    for gid, t, p in zip(ids, np.split(y_true[keep][order], splits),
                         np.split(y_pred[keep][order], splits)):
        per_group[str(gid)] = {
            "kappa": _kappa(t, p, labels), "accuracy": float(np.mean(t == p)), "n": int(t.size)}
    undefined = [gid for gid, m in per_group.items() if m["kappa"] is None]
    kappa_mean, kappa_std = mean_std(m["kappa"] for m in per_group.values())
    accuracy_mean, accuracy_std = mean_std(m["accuracy"] for m in per_group.values())
    result = {
        "groups": per_group,
        "n_groups": len(per_group),
        "kappa_mean": kappa_mean, "kappa_std": kappa_std,
        "accuracy_mean": accuracy_mean, "accuracy_std": accuracy_std,
        "kappa_undefined": undefined,
        "groups_without_labels": sorted(map(str, set(np.unique(groups).tolist())
                                            - set(np.unique(groups[keep]).tolist()))),
        "std": STD_NOTE,
    }
    if undefined:
        result["note"] = (f"kappa is undefined for {len(undefined)} group(s) with a single class "
                          f"in truth and prediction ({', '.join(undefined)}); they are reported "
                          f"as null and left out of the kappa mean and std.")
    return result
