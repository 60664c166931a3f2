"""DropPos: reconstructing dropped positions (Wang et al., "DropPos: Pre-Training Vision
Transformers by Reconstructing Dropped Positions", NeurIPS 2023), a grid baseline of the paper.

Grid patches (B, N, F) -> tokenizer -> drop a random `mask_ratio` of the patches (only the
K = floor(N (1 - mask_ratio)) visible ones are encoded) -> each visible token gets its grid
position embedding, except a random `position_mask_ratio` of them, whose embedding is replaced by
one learnable [MASK] position token -> encoder -> light decoder without position embedding ->
N logits per visible token -> cross-entropy against the token's true grid index, over the visible
tokens whose position was dropped only (as DropPos' code weights the loss by its `mask_pos`).

Position smoothing (DropPos' eq. for `label_smoothing_sigma`): the target of a patch at cell i is
w_ij = exp(-|c_i - c_j|^2 / sigma^2) over the grid cells j (cell units, 2-D or 1-D), normalised to
sum to 1; sigma is annealed linearly, sigma = smoothing_sigma * (1 - progress), where `progress`
in [0, 1] is set by the training engine each step (`method.progress = step / total`; default 1.0
= no smoothing, plain cross-entropy). `smoothing_sigma: 0` turns smoothing off.

Attentive reconstruction (`attn_guide`, DropPos section 3.2; official code
`models_DropPos_mae.py`, `get_feature_similarity` and `forward_drop_pos_loss`, switched on by
`--attn_guide` in `scripts/pretrain_base.sh`): visually similar patches (sky, background) need
not be placed exactly, so each token's loss is weighted by how salient the patch is. A second
encoder pass, without gradient, sees ALL N patches with their true position embeddings; the
affinity of patch i is A_i = softmax_i(cos(f_cls, f_i) / tau) over the N patches (f: the final,
normed encoder outputs, tau = `attn_guide_tau`, the code's 0.1); A is gathered at the K visible
patches and renormalised to sum to 1 per item, and the loss is the A-weighted mean over the
tokens whose position was dropped: sum(A * dropped * CE) / sum(A * dropped). The targets
themselves (one-hot or position-smoothed) are unchanged. Cost: one extra forward pass over N
tokens (4x the K = N / 4 tokens of the training pass at mask_ratio 0.75). `attn_guide: false`
gives the plain mean over dropped tokens.

Defaults follow DropPos' released ViT-B script (`scripts/pretrain_base.sh`): mask_ratio 0.75,
position_mask_ratio 0.75 (the paper's EEG recipe sets 0.2, PART paper section 4), sigma 1
decayed to 0 (`--label_smoothing_sigma 1 --sigma_decay`), attentive reconstruction on with
tau 0.1, a 2-block decoder.

Deliberate differences:
- the similarity pass runs the encoder in eval mode (no drop path; DropPos' encoder has none);
  `position_accuracy` is the plain hit rate over dropped tokens (the code weights it by A too);
- the decoder is 256 wide by default (DropPos: 512), sized for the paper's small encoders;
- sigma is annealed per step rather than per epoch, and each target row is normalised to sum to
  1 (DropPos' code divides by column sums, which differs near the grid border);
- the pretraining position embedding (fixed sin-cos as in DropPos' code, or `pos_embed: learnable`)
  belongs to this method and is dropped after pretraining: the finetune stage adds the harness's
  learnable, randomly initialised embedding as for every method (paper section 3.4).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from part.config.options import Options
from part.core.chance import log_chance
from part.core.methods.common import (LightDecoder, grid_squared_distances, num_kept,
                                 random_masking, require_no_position_embedding,
                                 sincos_position_embedding)
from part.core.pairs import gather_tokens
from part.registry import register_method



@dataclass
class DropPosOptions(Options):
    """The recipe's `method` section for DropPos."""

    section = "method"

    name: str = "droppos"
    mask_ratio: float = field(default=0.75, metadata={"range": (0.0, 1.0), "half_open": True})
    position_mask_ratio: float = field(default=0.75, metadata={"range": (0.0, 1.0), "half_open": True})
    smoothing_sigma: float = field(default=1.0, metadata={"min": 0.0})  # grid cells; 0: off
    pos_embed: Literal["sincos", "learnable"] = "sincos"
    decoder_dim: int = field(default=256, metadata={"min": 1})
    decoder_depth: int = field(default=2, metadata={"min": 1})
    decoder_heads: int = field(default=8, metadata={"min": 1})
    attn_guide: bool = True  # attentive reconstruction (DropPos' --attn_guide), see module doc
    attn_guide_tau: float = field(default=0.1, metadata={"gt": 0})  # its softmax temperature


    def check(self):
        if self.decoder_dim % self.decoder_heads:
            yield "decoder_dim", (f"= {self.decoder_dim} must be divisible by "
                                  f"decoder_heads={self.decoder_heads}")

def smoothed_position_targets(labels: torch.Tensor, sq_dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """labels (B, K) grid indices, sq_dist (N, N) -> (B, K, N) target distributions: one-hot for
    sigma <= 0, else exp(-d^2 / sigma^2) normalised over the N cells."""
    if sigma <= 0:
        return F.one_hot(labels, sq_dist.shape[0]).float()
    weights = torch.exp(-sq_dist / sigma ** 2)
    return (weights / weights.sum(dim=-1, keepdim=True))[labels]


def position_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                  sq_dist: torch.Tensor, sigma: float, attn: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Soft cross-entropy of logits (B, K, N) against the (smoothed) targets of labels (B, K),
    averaged over the tokens where weight (B, K) bool is True (positions dropped); with attn
    (B, K) >= 0 (attentive reconstruction) the average is weighted by it:
    sum(attn * weight * CE) / sum(attn * weight)."""
    target = smoothed_position_targets(labels, sq_dist, sigma)
    per_token = -(target * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    w = weight.to(per_token.dtype)
    if attn is not None:
        w = w * attn.to(per_token.dtype)
    return (per_token * w).sum() / w.sum()


def feature_similarity(features: torch.Tensor, tau: float) -> torch.Tensor:
    """DropPos' patch affinities: features (B, 1 + N, d), [CLS] first -> (B, N) =
    softmax over the N patches of cos(f_cls, f_i) / tau (rows sum to 1)."""
    sim = F.cosine_similarity(features[:, :1].float(), features[:, 1:].float(), dim=-1)
    return torch.softmax(sim / tau, dim=-1)


def attentive_weights(similarity: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """similarity (B, N) at the kept patches keep (B, K) long, renormalised: (B, K), rows sum to 1."""
    attn = torch.gather(similarity, 1, keep)
    return attn / attn.sum(dim=-1, keepdim=True)


@register_method("droppos", options=DropPosOptions, position_embedding=True,
                 example=dict(decoder_dim=16, decoder_depth=1, decoder_heads=2))
class DropPos(nn.Module):
    """Pretext model: forward(x) -> {"loss", "position_accuracy", "sigma"}; `outputs(x)` gives the
    tensors. Set `progress` (in [0, 1]) during training to anneal the smoothing."""

    def __init__(self, modality, encoder, tokenizer, options: DropPosOptions):
        super().__init__()
        require_no_position_embedding(encoder, "droppos")
        self.ratio = options.mask_ratio
        self.pos_ratio = options.position_mask_ratio
        n = modality.num_grid_patches
        self._check_counts(n, options)
        self.modality, self.encoder, self.tokenizer, self.options = modality, encoder, tokenizer, options
        shape = tuple(modality.grid_shape)
        if options.pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_position_embedding(shape, encoder.dim), persistent=False)
        else:
            self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.zeros(n, encoder.dim), std=0.02))
        self.mask_pos_token = nn.Parameter(torch.zeros(1, 1, encoder.dim))
        nn.init.normal_(self.mask_pos_token, std=0.02)
        self.decoder = LightDecoder(encoder.dim, options.decoder_dim, options.decoder_depth,
                                    options.decoder_heads, n)
        self.register_buffer("sq_dist", grid_squared_distances(shape), persistent=False)
        self.progress = 1.0

    @staticmethod
    def _check_counts(n: int, options: DropPosOptions) -> None:
        kept = num_kept(n, options.mask_ratio)
        if kept < 1:
            raise ValueError(f"method.mask_ratio={options.mask_ratio} keeps none of the {n} grid "
                             f"patches; allowed: in [0, {1 - 1 / n:.3f}]")
        if num_kept(kept, options.position_mask_ratio) == kept:
            raise ValueError(f"method.position_mask_ratio={options.position_mask_ratio} drops no "
                             f"position of the {kept} visible patches, so DropPos has nothing to "
                             f"predict; allowed: in (0, 1)")

    @property
    def progress(self) -> float:
        return self._progress

    @progress.setter
    def progress(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"DropPos progress must be in [0, 1] (step / total steps), got {value}")
        self._progress = float(value)

    @property
    def sigma(self) -> float:
        """The smoothing sigma now: smoothing_sigma * (1 - progress)."""
        return self.options.smoothing_sigma * (1.0 - self._progress)

    @torch.no_grad()
    def similarity(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attentive reconstruction's affinities: tokens (B, N, d) of ALL grid patches -> (B, N),
        from an encoder pass in eval mode with every true position embedding (no gradient)."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            features = self.encoder(tokens + self.pos_embed.to(tokens.dtype))
        finally:
            self.encoder.train(was_training)
        return feature_similarity(features, self.options.attn_guide_tau)

    def outputs(self, x: torch.Tensor) -> dict:
        """logits (B, K, N); labels (B, K): true grid index of each visible token; weight (B, K)
        bool: position dropped (in the loss); pos (B, K, d): the position embedding each got;
        attn (B, K): attentive-reconstruction weights (rows sum to 1), or None without attn_guide."""
        patches, _ = self.modality.grid(x)
        B, n, _ = patches.shape
        keep, _ = random_masking(B, n, self.ratio, patches.device)
        all_tokens = self.tokenizer(patches)
        attn = attentive_weights(self.similarity(all_tokens), keep) if self.options.attn_guide else None
        tokens = gather_tokens(all_tokens, keep)
        k, d = tokens.shape[1], tokens.shape[2]
        _, pos_dropped = random_masking(B, k, self.pos_ratio, patches.device)
        pos = gather_tokens(self.pos_embed.to(tokens.dtype).expand(B, n, d), keep)
        pos = torch.where(pos_dropped.unsqueeze(-1), self.mask_pos_token.to(tokens.dtype), pos)
        logits = self.decoder(self.encoder(tokens + pos))[:, 1:]
        return {"logits": logits, "labels": keep, "weight": pos_dropped, "pos": pos, "attn": attn}

    def pretext_chance(self, x=None, batch_size=None, generator=None) -> dict:
        """ln N: the cross-entropy of a uniform guess among the N grid positions, which is the
        loss's floor for an uninformed model once the smoothing has annealed to sigma 0 (with
        sigma > 0 the smoothed targets make the floor higher)."""
        return log_chance(self.sq_dist.shape[0], "cross_entropy",
                          "a uniform guess among the N grid positions of each dropped position "
                          "(sigma 0, the end of the smoothing schedule)")

    def forward(self, x: torch.Tensor) -> dict:
        out, sigma = self.outputs(x), self.sigma
        loss = position_loss(out["logits"], out["labels"], out["weight"], self.sq_dist, sigma, out["attn"])
        with torch.no_grad():
            weight = out["weight"].float()
            hits = (out["logits"].argmax(-1) == out["labels"]).float()
            accuracy = (hits * weight).sum() / weight.sum()
        return {"loss": loss, "position_accuracy": accuracy,
                "sigma": torch.tensor(sigma, device=loss.device)}

