"""Frozen-feature protocols on feature tensors: a linear probe and DINO's weighted kNN.

Both take features already extracted from a frozen encoder (``part.evaluation.features``) and
labels, and return predictions for query features; they know nothing of the modality or method.

- ``knn_predict``: cosine similarity (features L2-normalised), the ``k`` most similar training
  items vote for their class with weight ``exp(sim / temperature)`` (DINO's
  ``eval_knn.knn_classifier``, lightly's ``knn_predict``; k = 20, T = 0.07 by default). The
  similarities are computed ``chunk`` queries at a time against the whole bank, so memory is
  ``chunk x N_train`` floats, never ``N_query x N_train``.
- ``linear_probe``: multinomial logistic regression on standardised features (mean and std of
  the training features), full-batch L-BFGS on
  ``mean_i w_{y_i} CE_i / mean_i w_{y_i} + weight_decay / 2 * ||W||^2`` (bias not decayed, class
  weights ``w`` optional), from zero weights: deterministic on the CPU. With uniform weights it is
  scikit-learn's ``LogisticRegression(C=1 / (N * weight_decay))``.
- ``chance_levels``: what a classifier without features scores (majority class, kappa 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from part.evaluation.metrics import kappa_from_confusion

KNN_CHUNK = 1024  # queries per similarity matmul: chunk x N_train floats in memory


def knn_scores(train: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, n_classes: int,
               k: int = 20, temperature: float = 0.07, chunk: int = KNN_CHUNK) -> torch.Tensor:
    """Weighted kNN class scores of ``query`` (M, D) against the bank ``train`` (N, D).

    ``train_labels`` (N,) long in [0, n_classes). Returns (M, n_classes) float32: per query the
    sum over its k = min(k, N) nearest training items (cosine similarity s) of exp(s / temperature)
    for each item's class. Shape and units: similarities in [-1, 1]; scores >= 0.
    """
    if train.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature vector")
    k = min(int(k), train.shape[0])
    bank = F.normalize(train.float(), dim=1)
    labels = train_labels.long().to(bank.device)
    out = []
    for q in query.float().split(chunk):
        sim = F.normalize(q, dim=1) @ bank.T  # (chunk, N)
        top, idx = sim.topk(k, dim=1, sorted=False)  # the vote is a sum: order does not matter
        weights = (top / temperature).exp()
        scores = torch.zeros(q.shape[0], n_classes, device=bank.device)
        out.append(scores.scatter_add_(1, labels[idx], weights))
    return torch.cat(out) if out else torch.zeros(0, n_classes)


def knn_predict(train, train_labels, query, n_classes: int, k: int = 20, temperature: float = 0.07,
                chunk: int = KNN_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (M,) int64, class probabilities (M, C) float32) of the weighted kNN vote;
    probabilities are the scores normalised to sum 1 (ties go to the lower class index)."""
    scores = knn_scores(train, train_labels, query, n_classes, k, temperature, chunk)
    probs = scores / scores.sum(1, keepdim=True).clamp_min(1e-30)
    return scores.argmax(1).numpy(), probs.numpy()


@dataclass
class LinearProbe:
    """A fitted probe: ``mean``/``std`` (D,) standardisation, ``weight`` (C, D), ``bias`` (C,),
    ``iterations`` of L-BFGS and the final ``loss``."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    loss: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D) -> (M, C) float32."""
        z = (features.float() - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class (M,) int64, softmax probabilities (M, C) float32)."""
        logits = self.logits(features)
        return logits.argmax(1).numpy(), logits.softmax(1).numpy()


def linear_probe(train: torch.Tensor, labels: torch.Tensor, n_classes: int, weight_decay: float = 1e-4,
                 class_weights: Optional[torch.Tensor] = None, max_iter: int = 500) -> LinearProbe:
    """Fit a multinomial logistic regression on standardised ``train`` (N, D) features.

    ``labels`` (N,) long in [0, n_classes); ``class_weights`` (C,) or None (uniform). Loss (float64,
    full batch): weighted mean cross-entropy + weight_decay / 2 * ||W||^2, minimised by L-BFGS
    (strong Wolfe line search) from zeros for at most ``max_iter`` iterations.
    """
    if train.shape[0] == 0:
        raise ValueError("the linear probe needs at least one labelled training feature vector")
    x = train.double()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    z, y = (x - mean) / std, labels.long()
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    cw = None if class_weights is None else class_weights.double()
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _probe_loss(z @ w.T + b, y, cw) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        final = float(_probe_loss(z @ w.T + b, y, cw) + 0.5 * weight_decay * w.pow(2).sum())
    iterations = int(opt.state[opt._params[0]].get("n_iter", 0))
    return LinearProbe(mean.float(), std.float(), w.detach().float(), b.detach().float(), iterations, final)


def _probe_loss(logits: torch.Tensor, y: torch.Tensor, class_weights: Optional[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy, weighted mean over items (torch's ``weight`` convention)."""
    return F.cross_entropy(logits, y, weight=class_weights)


def chance_levels(train_labels: np.ndarray, test_labels: np.ndarray, class_names) -> dict:
    """What a classifier that ignores its input scores on the test labels (-1 = unlabelled, left out).

    ``accuracy``: always predicting the training labels' majority class, scored on the test set;
    ``balanced_accuracy``: 1 / classes (any constant prediction); ``kappa``: 0 (chance agreement
    by definition). Returns a JSON-ready dict with the rule in words.
    """
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    train_labels, test_labels = train_labels[train_labels >= 0], test_labels[test_labels >= 0]
    counts = np.bincount(train_labels, minlength=len(class_names))
    majority = int(counts.argmax()) if counts.sum() else 0
    accuracy = float((test_labels == majority).mean()) if test_labels.size else None
    return {"kappa": 0.0, "accuracy": accuracy, "balanced_accuracy": 1.0 / len(class_names),
            "majority_class": str(class_names[majority]),
            "rule": (f"always predicting the training set's majority class '{class_names[majority]}': "
                     f"accuracy on the test set; kappa 0 (chance agreement); balanced accuracy "
                     f"1/{len(class_names)}")}


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) from the confusion counts, with numpy only (for the
    kNN monitor, which must not import scikit-learn); 0.0 where p_e = 1 (one class only)."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, -1)
    kappa = kappa_from_confusion(confusion)
    return float(kappa) if np.isfinite(kappa) else 0.0
