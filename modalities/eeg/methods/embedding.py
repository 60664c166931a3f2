"""The window embedder h(x) and the contrastive module of the temporal-context methods.

``WindowEmbedder``: a 30-s window -> one vector, with the toolkit's tokenizer and encoder (so the
finetune stage loads them as it loads PART's): the modality's fixed grid of patches (for EEG the
30 one-second patches) -> tokenizer -> + a fixed 1-D sin-cos position embedding (a buffer of the
method, as MAE's; the finetune stage adds its own learnable one) -> encoder -> the [CLS] token.

``AbsDiffClassifier``: Banville et al.'s contrastive module on embeddings of k windows,
``w^T [|h_1 - h_2|, ..., |h_{k-1} - h_k|] + b`` (k = 2: relative positioning; k = 3: temporal
shuffling), with optional dropout on the features.
"""
from __future__ import annotations

import torch
from torch import nn

from part.core.methods.common import require_no_position_embedding, sincos_position_embedding


class WindowEmbedder(nn.Module):
    """h(x): windows (B, C, L) -> embeddings (B, d), d = the encoder's width."""

    def __init__(self, modality, encoder: nn.Module, tokenizer: nn.Module, method: str):
        super().__init__()
        require_no_position_embedding(encoder, method)
        self.modality, self.encoder, self.tokenizer = modality, encoder, tokenizer
        self.register_buffer("pos_embed", sincos_position_embedding(tuple(modality.grid_shape), encoder.dim),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, _ = self.modality.grid(x)
        tokens = self.tokenizer(patches) + self.pos_embed.to(patches.dtype)
        return self.encoder(tokens)[:, 0]

    def embed_samples(self, x: torch.Tensor) -> torch.Tensor:
        """Samples of k windows (B, k, C, L) -> (B, k, d), one encoder pass over all B * k."""
        B, k = x.shape[:2]
        return self.forward(x.flatten(0, 1)).view(B, k, -1)


class AbsDiffClassifier(nn.Module):
    """Embeddings (B, k, d) -> one logit (B,) from the k - 1 absolute differences of neighbours."""

    def __init__(self, dim: int, windows: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim * (windows - 1), 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        features = (h[:, 1:] - h[:, :-1]).abs().flatten(1)
        return self.linear(self.dropout(features)).squeeze(-1)
