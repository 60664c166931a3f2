"""Relative positioning (RP) and temporal shuffling (TS): Banville et al., "Uncovering the
structure of clinical EEG signals with self-supervised learning", J. Neural Eng. 18(4) 046020,
2021, section 2.2 (methods) and section 3 (sleep staging on Sleep-EDF and PhysioNet 2018).

RP: pairs of windows of one recording (``context_sampling.PairSampler``); the embedder h
(``embedding.WindowEmbedder``) embeds both, a linear layer on |h(x) - h(x')| predicts whether
their onsets are within ``tau_pos_s`` (1) or more than ``tau_neg_s`` apart (0); binary
cross-entropy. TS: triplets (a, b, c) (``TripletSampler``), a linear layer on
[|h_a - h_b|, |h_b - h_c|] predicts whether b lies between a and c (1) or far from them (0).

``tau_pos_s`` / ``tau_neg_s`` default to 60 min (positives within an hour, negatives more than an
hour apart: sleep cycles last about 90 min); braindecode's relative-positioning example uses 1
and 15 min; both are options. Deliberate differences from the paper: h is the toolkit's
transformer encoder on 1-s patches ([CLS] token, width d) instead of the paper's small CNN with
a 100-d output, so PART and these methods are finetuned on the same encoder; labels are drawn
50/50; an epoch holds ``len(windows) // k`` samples (k windows each), as many encoded windows
as PART's epoch on the same records.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from part.config.options import Options
from part.core.chance import log_chance
from part.registry import register_method
from part.modalities.eeg.methods.context_sampling import ContextSamples, PairSampler, TripletSampler
from part.modalities.eeg.methods.embedding import AbsDiffClassifier, WindowEmbedder

NEEDS = "it samples windows by their place in a recording"


@dataclass
class TemporalContextOptions(Options):
    """The recipe's ``method`` section of relative positioning / temporal shuffling."""

    section = "method"

    name: str = "relative_positioning"
    tau_pos_s: float = field(default=3600.0, metadata={"min": 0.0})
    tau_neg_s: float = field(default=3600.0, metadata={"min": 0.0})
    dropout: float = field(default=0.0, metadata={"range": (0.0, 1.0), "half_open": True})

    def check(self):
        if self.tau_neg_s < self.tau_pos_s:
            yield "tau_neg_s", (f"= {self.tau_neg_s:g} is below tau_pos_s={self.tau_pos_s:g}: a pair cannot be "
                                f"both close and far; choose tau_neg_s >= tau_pos_s")


@dataclass
class RelativePositioningOptions(TemporalContextOptions):
    name: str = "relative_positioning"


@dataclass
class TemporalShufflingOptions(TemporalContextOptions):
    name: str = "temporal_shuffling"


class TemporalContextTask(nn.Module):
    """forward(x (B, k, C, L), target (B,) float 0/1) -> {"loss", "accuracy"}; k = 2 (RP) or 3 (TS)."""

    def __init__(self, modality, encoder, tokenizer, options: TemporalContextOptions, windows: int):
        super().__init__()
        self.modality, self.options, self.windows = modality, options, windows
        self.embedder = WindowEmbedder(modality, encoder, tokenizer, options.name)
        self.classifier = AbsDiffClassifier(encoder.dim, windows, options.dropout)

    @property
    def tokenizer(self) -> nn.Module:
        return self.embedder.tokenizer

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, k, C, L) -> (B,) logit of label 1."""
        if x.ndim != 4 or x.shape[1] != self.windows:
            raise ValueError(f"{self.options.name} takes samples of {self.windows} windows (B, {self.windows}, "
                             f"C, L), got shape {tuple(x.shape)}")
        return self.classifier(self.embedder.embed_samples(x))

    def pretext_chance(self, x=None, batch_size=None, generator=None) -> dict:
        """ln 2: the binary cross-entropy of guessing 0.5 (labels are drawn 50/50)."""
        return log_chance(2, "bce", "guessing p = 0.5 (labels drawn 50/50)")

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> dict:
        logits = self.logits(x).float()
        target = target.to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        accuracy = ((logits > 0).to(target.dtype) == target).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach()}


def _pairs(windows, options: TemporalContextOptions, seed: int) -> ContextSamples:
    return ContextSamples(windows, partial(PairSampler, tau_pos_s=options.tau_pos_s, tau_neg_s=options.tau_neg_s),
                          seed)


def _triplets(windows, options: TemporalContextOptions, seed: int) -> ContextSamples:
    return ContextSamples(windows, partial(TripletSampler, tau_pos_s=options.tau_pos_s,
                                           tau_neg_s=options.tau_neg_s), seed)


@register_method("relative_positioning", options=RelativePositioningOptions, position_embedding=True,
                 modalities=("eeg",), needs=NEEDS, pretrain_data=_pairs,
                 example=dict(tau_pos_s=60.0, tau_neg_s=600.0))
def relative_positioning(modality, encoder, tokenizer, options) -> TemporalContextTask:
    return TemporalContextTask(modality, encoder, tokenizer, options, PairSampler.windows)


@register_method("temporal_shuffling", options=TemporalShufflingOptions, position_embedding=True,
                 modalities=("eeg",), needs=NEEDS, pretrain_data=_triplets,
                 example=dict(tau_pos_s=60.0, tau_neg_s=600.0))
def temporal_shuffling(modality, encoder, tokenizer, options) -> TemporalContextTask:
    return TemporalContextTask(modality, encoder, tokenizer, options, TripletSampler.windows)
