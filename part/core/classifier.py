"""The finetuning model (paper section 3.4): tokenizer + encoder with a learnable position
embedding (random init) over fixed-grid patches, and a linear head on [CLS]."""
from __future__ import annotations

import torch
from torch import nn
from part.core.blocks import trunc_normal_

from part.core.backbone import random_position_drop


class PatchClassifier(nn.Module):
    """x -> grid patches -> tokens (+ position embedding) -> encoder -> Linear on [CLS] -> logits.

    pos_drop_ratio: fraction of the position embeddings left out at random per item during
    training (the paper's "20% of the position embeddings masked" for EEG); none at evaluation.
    """

    def __init__(self, modality, tokenizer: nn.Module, encoder: nn.Module, num_classes: int,
                 pos_drop_ratio: float = 0.0):
        super().__init__()
        self.modality, self.tokenizer, self.encoder = modality, tokenizer, encoder
        if encoder.pos_embed is None or encoder.pos_embed.shape[1] != modality.num_grid_patches + 1:
            encoder.add_position_embedding(modality.num_grid_patches)
        self.head = nn.Linear(encoder.dim, num_classes)
        trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)
        self.pos_drop_ratio = pos_drop_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches, _ = self.modality.grid(x)
        drop = None
        if self.training and self.pos_drop_ratio > 0:
            drop = random_position_drop(patches.shape[0], patches.shape[1], self.pos_drop_ratio, x.device)
        z = self.encoder(self.tokenizer(patches), pos_drop=drop)
        return self.head(z[:, 0])
