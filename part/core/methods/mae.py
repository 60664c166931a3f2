"""MAE: masked autoencoder on the fixed grid (He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022), the paper's grid-based reconstruction baseline (Tables 2, 3, 6, 7).

Grid patches (B, N, F) -> tokenizer -> + fixed sin-cos position embedding (2-D from the
modality's `grid_shape` for images, 1-D for signals: for EEG the N = 30 one-second windows of the
30-s window) -> keep a random K = floor(N (1 - mask_ratio)) per item (argsort of noise) -> encoder
on the visible tokens only -> light decoder: Linear to `decoder_dim`, mask tokens scattered into
the masked places, its own fixed sin-cos embedding, `decoder_depth` blocks, Linear to F values
per patch -> MSE on the masked patches only, against per-patch normalised values when
`norm_pix_loss` (MAE's best setting, its Table 1d; for 1-D: normalised per window).

Deliberate differences from MAE's code:
- the decoder defaults to 256 wide, 4 blocks, 8 heads (MAE: 512 x 8 blocks for ViT-B/L): sized for
  the paper's small encoders (ViT-S on CIFAR-100, the 12.9M 1-D ViT for EEG); options change it;
- the sin-cos embedding lives in this method (a buffer), not in the encoder: the finetune stage
  adds its own learnable, randomly initialised grid embedding, as for every baseline (paper 3.4),
  so all methods are finetuned identically (MAE finetunes with its fixed sin-cos embedding);
- the encoder is the toolkit's shared `ViTEncoder`; the [CLS] token gets no position embedding
  (MAE adds a zero one: the same thing).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from part.config.options import Options
from part.core.chance import chance, mean_predictor_chance
from part.core.methods.common import (LightDecoder, num_kept, random_masking,
                                 require_no_position_embedding, sincos_position_embedding)
from part.core.pairs import gather_tokens
from part.registry import register_method



@dataclass
class MAEOptions(Options):
    """The recipe's `method` section for MAE."""

    section = "method"

    name: str = "mae"
    mask_ratio: float = field(default=0.75, metadata={"range": (0.0, 1.0), "half_open": True})
    decoder_dim: int = field(default=256, metadata={"min": 1})
    decoder_depth: int = field(default=4, metadata={"min": 1})
    decoder_heads: int = field(default=8, metadata={"min": 1})
    norm_pix_loss: bool = True

    def check(self):
        if self.decoder_dim % self.decoder_heads:
            yield "decoder_dim", (f"= {self.decoder_dim} must be divisible by "
                                  f"decoder_heads={self.decoder_heads}")


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch standardisation (B, N, F) -> (B, N, F): (p - mean) / sqrt(var + eps), as MAE."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean over masked patches of the per-patch MSE: pred, target (B, N, F), masked (B, N) bool."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    weight = masked.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum()


@register_method("mae", options=MAEOptions, position_embedding=True,
                 example=dict(decoder_dim=16, decoder_depth=1, decoder_heads=2))
class MAE(nn.Module):
    """Pretext model: forward(x) -> {"loss"}; `outputs(x)` gives the tensors the loss is built from."""

    def __init__(self, modality, encoder, tokenizer, options: MAEOptions):
        super().__init__()
        require_no_position_embedding(encoder, "mae")
        self.ratio = options.mask_ratio
        n = modality.num_grid_patches
        kept = num_kept(n, self.ratio)
        if kept < 1 or kept == n:
            raise ValueError(f"method.mask_ratio={options.mask_ratio} keeps {kept} of the {n} grid "
                             f"patches; MAE needs at least one visible and one masked patch: "
                             f"choose a ratio in (0, {1 - 1 / n:.3f}]")
        self.modality, self.encoder, self.tokenizer, self.options = modality, encoder, tokenizer, options
        shape = tuple(modality.grid_shape)
        self.register_buffer("pos_embed", sincos_position_embedding(shape, encoder.dim), persistent=False)
        dd = options.decoder_dim
        self.decoder = LightDecoder(encoder.dim, dd, options.decoder_depth, options.decoder_heads,
                                    modality.patch_dim)
        self.register_buffer("decoder_pos_embed",
                             sincos_position_embedding(shape, dd, "method.decoder_dim"), persistent=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        nn.init.normal_(self.mask_token, std=0.02)

    def decode(self, z: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Encoder output z (B, 1 + K, d) of the kept patches `keep` (B, K) -> (B, N, F) predictions."""
        y = self.decoder.embed(z)
        B, dd = y.shape[0], y.shape[-1]
        n = self.decoder_pos_embed.shape[0]
        slots = self.mask_token.to(y.dtype).expand(B, n, dd)
        full = slots.scatter(1, keep.unsqueeze(-1).expand(-1, -1, dd), y[:, 1:])
        full = full + self.decoder_pos_embed.to(y.dtype)
        return self.decoder.head(torch.cat([y[:, :1], full], dim=1))[:, 1:]

    def outputs(self, x: torch.Tensor) -> dict:
        """pred and target (B, N, F), masked (B, N) bool (True: masked, in the loss), keep (B, K)."""
        patches, _ = self.modality.grid(x)
        B, n, _ = patches.shape
        tokens = self.tokenizer(patches) + self.pos_embed.to(patches.dtype)
        keep, masked = random_masking(B, n, self.ratio, patches.device)
        pred = self.decode(self.encoder(gather_tokens(tokens, keep)), keep)
        target = normalize_patches(patches) if self.options.norm_pix_loss else patches
        return {"pred": pred, "target": target, "masked": masked, "keep": keep}

    @torch.no_grad()
    def pretext_chance(self, x: torch.Tensor, batch_size=None, generator=None) -> dict:
        """The loss of predicting the mean (normalised, with ``norm_pix_loss``) patch for every
        masked patch, exact over all grid patches of the held-out batch ``x`` (B, ...): masking
        is uniform, so every patch is equally likely in the loss."""
        patches, _ = self.modality.grid(x)
        target = normalize_patches(patches) if self.options.norm_pix_loss else patches
        stats = mean_predictor_chance(target.reshape(-1, target.shape[-1]))
        kind = "per-patch normalised " if self.options.norm_pix_loss else ""
        return chance("mse", stats["value"], f"predicting the mean {kind}patch; exact over the "
                      f"{stats['rows']} grid patches of {x.shape[0]} held-out items", patches=stats["rows"])

    def forward(self, x: torch.Tensor) -> dict:
        out = self.outputs(x)
        return {"loss": masked_patch_mse(out["pred"], out["target"], out["masked"])}

