"""PART: pairwise relative translations (Ayoughi et al., paper section 3).

Patches sampled off-grid by the modality -> tokenizer -> encoder with NO position embedding ->
``PARTLoss`` (relative head on #pairs random ordered pairs -> MSE against the modality's relative
transform, paper eq. 4). Modality-agnostic: it only calls the plugin interface. The head, the
pairs and the loss are ``part.core.loss.PARTLoss``'s, the same module a user puts on their own
encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import nn

from part.config.options import Options
from part.core.chance import chance, mean_predictor_chance
from part.core.loss import PARTLoss
from part.core.pairs import gather_tokens, sample_pairs
from part.errors import ConfigError
from part.registry import register_method


CHANCE_DRAWS = 16  # samplings of the held-out batch for the Monte Carlo chance level


@dataclass
class PARTOptions(Options):
    """The recipe's `method` section for PART."""

    section = "method"

    name: str = "part"
    num_pairs: int = field(default=2048, metadata={"min": 1})
    head: Literal["cross_attention", "pairwise_mlp", "mlp"] = "cross_attention"
    head_heads: Optional[int] = field(default=None, metadata={"min": 1})  # None: encoder's heads
    head_hidden: Optional[int] = field(default=None, metadata={"min": 1})  # pairwise_mlp only
    exclude_self_pairs: bool = False

    def check(self):
        if self.head_hidden is not None and self.head != "pairwise_mlp":
            yield "head_hidden", f"applies to head 'pairwise_mlp' only, not {self.head!r}"


@register_method("part", options=PARTOptions, example=dict(num_pairs=16))
class PART(nn.Module):
    """Pretext model: forward(x) -> {"loss", "l2_error"}; `on_grid` gives the PART-grid ablation.

    ``l2_error``: mean over pairs of the Euclidean norm of the translation error (the first
    ``modality.translation_dim`` target values). ``predict_pairs(x, generator)`` returns the
    predictions and true targets (B, M, target_dim) for diagnostics and analyses
    (``part.evaluation.pretext``). ``criterion`` is the ``PARTLoss``; its only parameters are its
    relative head, registered here as ``head`` (so checkpoints keep the keys ``head.*``).
    """

    def __init__(self, modality, encoder, tokenizer, options: PARTOptions, on_grid: bool = False):
        super().__init__()
        self.modality, self.encoder, self.tokenizer = modality, encoder, tokenizer
        self.options, self.on_grid = options, on_grid
        n = modality.num_grid_patches if on_grid else modality.num_patches
        self.scale_targets = modality.target_dim == modality.geometry_dim and not modality.geometry_dim % 2
        if self.scale_targets and getattr(modality, "scale_range", None) is None:
            raise ConfigError(f"method 'part': modality {modality.name!r} has target_dim={modality.target_dim} "
                              f"(scale targets) but no scale_range, so its patch sizes never vary and the scale "
                              f"target is a constant; set modality.scale_range (e.g. [0.5, 2.0]) or drop the "
                              f"scale targets")
        if self.scale_targets and on_grid:
            raise ConfigError(f"method 'part_grid': the fixed grid's patches all have one size, so the scale "
                              f"targets of modality {modality.name!r} (scale_range={modality.scale_range}) "
                              f"would be a constant; remove modality.scale_range or use method 'part'")
        criterion = PARTLoss(encoder.dim, modality.target_dim, options.num_pairs,
                             head=options.head, num_heads=options.head_heads or encoder.num_heads,
                             head_hidden=options.head_hidden,
                             exclude_self_pairs=options.exclude_self_pairs, num_patches=n,
                             target_fn=modality.targets)
        self.head = criterion.head
        object.__setattr__(self, "criterion", criterion)  # not a second owner of the head

    def encode(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        """Raw inputs -> (z (B, N, d) patch embeddings without [CLS], geometry (B, N, G)).

        Off-grid patches drawn by the modality from the global RNG (or ``generator``), or the
        fixed grid for PART-grid; then the tokenizer and the encoder (no position embedding).
        """
        if self.on_grid:
            patches, geom = self.modality.grid(x)
        else:
            patches, geom = self.modality.sample(x, generator)
        return self.encoder(self.tokenizer(patches))[:, 1:], geom

    def predict_pairs(self, x: torch.Tensor, generator: Optional[torch.Generator] = None,
                      pairs: Optional[tuple] = None, return_details: bool = False):
        """The relative head's predictions and the true relative transforms, for analyses.

        Exactly the pieces of ``forward`` (the modality's sampling, tokenizer, encoder, the
        head and ``modality.targets``), without the loss and without touching the global RNG when
        ``generator`` is given (it draws the patches, then the pairs). Run it under
        ``torch.no_grad()`` and ``eval()`` for diagnostics.

        x: a batch of raw inputs (B, ...). pairs: optional (ref, tgt), each (B, M) long patch
        indices in [0, N), to predict those pairs (e.g. all N x N); None draws ``num_pairs``.
        Returns (pred, target), each (B, M, target_dim) float32, in the targets' own units
        (image: (dx, dy[, dw, dh]), translations in reference-patch sizes; EEG: dt[, dlen]).
        With ``return_details``: (pred, target, details), details = {"ref", "tgt" (B, M) long,
        "geometry" (B, N, G) the patches' boxes in the input's units}.
        """
        z, geom = self.encode(x, generator)
        out = self.criterion.predict(z, geom, pairs=pairs, generator=generator)
        if return_details:
            return out["pred"], out["target"], {"ref": out["ref"], "tgt": out["tgt"], "geometry": geom}
        return out["pred"], out["target"]

    @torch.no_grad()
    def pretext_chance(self, x: torch.Tensor, batch_size: Optional[int] = None,
                       generator: Optional[torch.Generator] = None, draws: int = CHANCE_DRAWS) -> dict:
        """The loss (MSE over pairs and target values) of always predicting the mean relative
        transform, under this run's own sampler: the modality's patches (off-grid ``sample`` with
        its strategy, or the grid for PART-grid) and the pairs of ``PARTLoss`` (``num_pairs``
        per item, self-pairs as ``exclude_self_pairs`` says).

        Off-grid: Monte Carlo over ``draws`` samplings of the held-out batch ``x`` (B, ...), all
        draws from ``generator``. On the grid the geometry is fixed, so all ordered pairs are
        enumerated (exact). Returns ``part.core.chance.chance`` with "per_target" (MSE per target
        value), "l2" (mean Euclidean norm of the translation part around its mean) and "pairs".
        """
        names = list(self.modality.target_names)
        if self.on_grid:
            _, geom = self.modality.grid(x[:1])
            n = geom.shape[1]
            ref, tgt = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            keep = ref != tgt if self.options.exclude_self_pairs else torch.ones_like(ref, dtype=torch.bool)
            ref, tgt = ref[keep].reshape(1, -1).to(geom.device), tgt[keep].reshape(1, -1).to(geom.device)
            targets = self.criterion.targets(gather_tokens(geom, ref), gather_tokens(geom, tgt))
            how = f"exact: all {ref.shape[1]} ordered grid pairs"
        else:
            parts = []
            for _ in range(draws):
                _, geom = self.modality.sample(x, generator)
                ref, tgt = sample_pairs(geom.shape[0], geom.shape[1], self.options.num_pairs,
                                        self.options.exclude_self_pairs, geom.device, generator)
                parts.append(self.criterion.targets(gather_tokens(geom, ref), gather_tokens(geom, tgt)))
            targets = torch.cat([p.reshape(-1, p.shape[-1]) for p in parts])
            how = (f"Monte Carlo: {draws} samplings of {x.shape[0]} items x {self.options.num_pairs} "
                   f"pairs ({targets.shape[0]} pairs), the run's sampler")
        stats = mean_predictor_chance(targets, names)
        k = self.modality.translation_dim
        centred = targets[..., :k].double() - targets[..., :k].double().reshape(-1, k).mean(0)
        self_pairs = "self-pairs excluded" if self.options.exclude_self_pairs else "self-pairs included"
        return chance("mse", stats["value"], f"predicting the mean relative transform; {how}; {self_pairs}",
                      per_target=stats["per_target"], l2=float(centred.norm(dim=-1).mean()),
                      pairs=stats["rows"])

    def forward(self, x: torch.Tensor) -> dict:
        z, geom = self.encode(x)
        if self.scale_targets:
            self.criterion.check_sizes_vary(geom)
        loss, details = self.criterion(z, geom, return_details=True)
        with torch.no_grad():
            k = self.modality.translation_dim
            l2 = (details["pred"][..., :k] - details["target"][..., :k]).norm(dim=-1).mean()
        return {"loss": loss, "l2_error": l2}
