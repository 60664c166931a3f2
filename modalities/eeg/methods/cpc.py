"""Contrastive predictive coding (CPC) on sleep EEG: van den Oord et al., "Representation
learning with contrastive predictive coding", 2018, as Banville et al. apply it to EEG ("Uncovering
the structure of clinical EEG signals with self-supervised learning", J. Neural Eng. 18(4)
046020, 2021, section 2.2.3).

A sample is a run of ``context_windows + predicted_windows`` consecutive windows of one recording
(``context_sampling.SequenceSampler``). Each window is embedded by h (``embedding.WindowEmbedder``:
the toolkit's encoder, [CLS] token, width d); a GRU (``context_dim`` units) reads the
``context_windows`` first embeddings into a context c; for each step k = 1..predicted_windows a
bilinear score ``h_{t+k}^T W_k c`` rates candidate future windows, and InfoNCE (cross-entropy of
the true future window against the negatives) is the loss, averaged over the steps.

Negatives: the windows at the same step k of the other sequences in the batch (van den Oord et
al.'s in-batch InfoNCE; they come from other recordings or other times of the same one), so a
batch of B sequences gives B - 1 negatives per prediction. An epoch holds
``len(windows) // (context_windows + predicted_windows)`` sequences.
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
from part.modalities.eeg.methods.context_sampling import ContextSamples, SequenceSampler
from part.modalities.eeg.methods.embedding import WindowEmbedder
from part.modalities.eeg.methods.temporal_context import NEEDS


@dataclass
class CPCOptions(Options):
    """The recipe's ``method`` section of CPC."""

    section = "method"

    name: str = "cpc"
    context_windows: int = field(default=10, metadata={"min": 1})
    predicted_windows: int = field(default=2, metadata={"min": 1})
    context_dim: int = field(default=256, metadata={"min": 1})


class CPC(nn.Module):
    """forward(x (B, Nc + Np, C, L), target ignored) -> {"loss", "accuracy"} (top-1 of InfoNCE)."""

    def __init__(self, modality, encoder, tokenizer, options: CPCOptions):
        super().__init__()
        self.modality, self.options = modality, options
        self.windows = options.context_windows + options.predicted_windows
        self.embedder = WindowEmbedder(modality, encoder, tokenizer, "cpc")
        self.context = nn.GRU(encoder.dim, options.context_dim, batch_first=True)
        self.predictors = nn.Linear(options.context_dim, encoder.dim * options.predicted_windows, bias=False)

    @property
    def tokenizer(self) -> nn.Module:
        return self.embedder.tokenizer

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Nc + Np, C, L) -> (Np, B, B) float32: [k, i, j] = h(future k of sequence j)^T W_k c_i."""
        if x.ndim != 4 or x.shape[1] != self.windows:
            raise ValueError(f"cpc takes runs of {self.windows} windows (B, {self.windows}, C, L) "
                             f"(method.context_windows + method.predicted_windows), got shape {tuple(x.shape)}")
        nc, npred = self.options.context_windows, self.options.predicted_windows
        h = self.embedder.embed_samples(x)
        c = self.context(h[:, :nc])[0][:, -1]
        predicted = self.predictors(c).view(x.shape[0], npred, -1)
        return torch.einsum("ikd,jkd->kij", predicted.float(), h[:, nc:].float())

    def pretext_chance(self, x=None, batch_size=None, generator=None) -> dict:
        """ln B: InfoNCE of a uniform guess among the B candidates of a batch (the true future
        window and the B - 1 in-batch negatives); B = the pretraining batch per step."""
        if batch_size is None:
            raise ValueError("cpc's chance level needs the pretraining batch size (its number of candidates)")
        return log_chance(int(batch_size), "cross_entropy",
                          f"a uniform guess among the {int(batch_size)} candidates per prediction "
                          "(batch size: 1 true future window + in-batch negatives)")

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict:
        s = self.scores(x)
        npred, B, _ = s.shape
        if B < 2:
            raise ValueError("cpc needs at least 2 sequences per batch (the others are the negatives)")
        truth = torch.arange(B, device=s.device).repeat(npred)
        logits = s.reshape(npred * B, B)
        return {"loss": F.cross_entropy(logits, truth),
                "accuracy": (logits.argmax(1) == truth).float().mean().detach()}


def _sequences(windows, options: CPCOptions, seed: int) -> ContextSamples:
    return ContextSamples(windows, partial(SequenceSampler, length=options.context_windows + options.predicted_windows,
                                           step_s=float(windows.window_s)), seed)


register_method("cpc", options=CPCOptions, build=CPC, position_embedding=True, modalities=("eeg",), needs=NEEDS,
                pretrain_data=_sequences, example=dict(context_windows=2, predicted_windows=1, context_dim=8))
