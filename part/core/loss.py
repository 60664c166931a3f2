"""PART's objective as a loss module for ANY encoder (paper section 3, eq. 4).

``PARTLoss`` owns the relative head. Given the patch embeddings ``z`` (B, N, d) of some encoder
(patch tokens only, no [CLS]) and the patches' geometry (B, N, G), it draws ``num_pairs`` random
ordered (ref, tgt) pairs per item (``part.core.pairs.sample_pairs``), predicts each pair's
relative transform with the head and returns the mean squared error against the true transform::

    criterion = PARTLoss(dim=384, target_dim=2, num_pairs=256)
    patches, geometry = part.get_modality("image", image_size=32, channels=3).sample(x)
    loss = criterion(my_encoder(patches), geometry)   # scalar; loss.backward()

Geometry is the box convention of ``part.core.geometry``: G = 2k numbers per patch, the k centre
coordinates then the k sizes, in the input's own units (pixels, samples). The default targets
are ``relative_targets``: with ``target_dim == k`` the translations (c_tgt - c_ref) / size_ref,
with ``target_dim == 2k`` also the size ratios (``scale_target``). A modality whose transform
differs passes its own ``target_fn`` (the PART method passes ``modality.targets``).

The PART method (``part.core.methods.part``) is built on this module: there is one
implementation of pairs, head and loss.

PART: M. Ayoughi, S. Abnar, C. Huang, C. Sandino, S. Lala, E. G. Dhekane, D. Busbridge,
S. Zhai, V. Thilak, J. Susskind, P. Mettes, P. Groth, H. Goh. "How PARTs assemble into wholes:
Learning the relative composition of images." arXiv:2506.03682, 2025 (formatted for Computer
Vision and Image Understanding; published at NLDL 2026, PMLR 307).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from part.core.geometry import SCALE_TARGETS, relative_targets
from part.core.heads import HEADS, build_head
from part.core.pairs import gather_tokens, sample_pairs

TargetFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class PARTLoss(nn.Module):
    """The PART loss (paper eq. 4) on the embeddings of any encoder.

    Args:
        dim: d, the width of the patch embeddings.
        target_dim: size of the relative transform: k (translations) or 2k (translations and
            scales) for G = 2k geometry values per patch; with ``target_fn`` what it returns.
            2k needs patches whose sizes vary (e.g. a modality's ``scale_range``): on boxes of
            one size the first batch raises a ValueError naming ``scale_range``.
        num_pairs: ordered pairs drawn per item (the paper: 2048 for CIFAR, 4802 for ImageNet).
        head: ``"cross_attention"`` (paper eq. 2-3), ``"pairwise_mlp"`` or ``"mlp"`` (Table 5), or
            a module called as ``head(z, ref, tgt) -> (B, M, target_dim)``.
        num_heads: attention heads of the cross-attention head (``dim`` must divide by it).
        head_hidden: hidden width of the pairwise MLP head (None: the paper's single Linear).
        exclude_self_pairs: never pair a patch with itself.
        scale_target: the scale target of the default targets, ``"ratio"`` (the paper's) or
            ``"log"``.
        num_patches: N, needed by the ``"mlp"`` head only (its size depends on N).
        target_fn: ``target_fn(geom_ref, geom_tgt) -> (..., target_dim)`` replacing the default
            ``relative_targets`` (e.g. a modality's ``targets``).

    ``forward(z, geometry)`` returns the scalar loss; ``return_details=True`` returns
    ``(loss, details)`` with ``details`` = {"pred", "target"} (B, M, target_dim) float32 and
    {"ref", "tgt"} (B, M) long pair indices.
    """

    def __init__(self, dim: int, target_dim: int, num_pairs: int,
                 head: Union[str, nn.Module] = "cross_attention", num_heads: int = 8,
                 head_hidden: Optional[int] = None, exclude_self_pairs: bool = False,
                 scale_target: str = "ratio", num_patches: Optional[int] = None,
                 target_fn: Optional[TargetFn] = None):
        super().__init__()
        for name, value in (("dim", dim), ("target_dim", target_dim), ("num_pairs", num_pairs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PARTLoss: {name}={value!r} must be an integer >= 1")
        if scale_target not in SCALE_TARGETS:
            raise ValueError(f"PARTLoss: scale_target={scale_target!r}; valid: "
                             f"{', '.join(SCALE_TARGETS)}")
        if isinstance(head, str):
            if head not in HEADS:
                raise ValueError(f"PARTLoss: head={head!r}; valid: {', '.join(HEADS)} or a module "
                                 f"called as head(z, ref, tgt)")
            if head == "mlp" and num_patches is None:
                raise ValueError("PARTLoss: head='mlp' maps all N embeddings at once and needs "
                                 "num_patches=N")
            if head_hidden is not None and head != "pairwise_mlp":
                raise ValueError(f"PARTLoss: head_hidden={head_hidden} applies to head "
                                 f"'pairwise_mlp' only, not {head!r}")
            head = build_head(head, dim, target_dim, num_patches or 0, num_heads, head_hidden)
        elif not isinstance(head, nn.Module):
            raise ValueError(f"PARTLoss: head must be a head name ({', '.join(HEADS)}) or an "
                             f"nn.Module, got {type(head).__name__}")
        self.dim, self.target_dim, self.num_pairs = dim, target_dim, num_pairs
        self.exclude_self_pairs, self.scale_target = exclude_self_pairs, scale_target
        self.target_fn = target_fn
        self.head = head
        self._sizes_checked = False  # scale targets: sizes must vary (checked on the first batch)

    def extra_repr(self) -> str:
        targets = "default" if self.target_fn is None else getattr(
            self.target_fn, "__qualname__", type(self.target_fn).__name__)
        return (f"dim={self.dim}, target_dim={self.target_dim}, num_pairs={self.num_pairs}, "
                f"exclude_self_pairs={self.exclude_self_pairs}, scale_target="
                f"{self.scale_target!r}, targets={targets}")

    # ------------------------------------------------------------------------------ targets

    def targets(self, geom_ref: torch.Tensor, geom_tgt: torch.Tensor) -> torch.Tensor:
        """The true relative transform (..., target_dim) between gathered geometries (..., G)."""
        if self.target_fn is not None:
            target = self.target_fn(geom_ref, geom_tgt)
            if target.shape[-1] != self.target_dim:
                raise ValueError(f"PARTLoss: target_fn returned {target.shape[-1]} values per "
                                 f"pair (shape {tuple(target.shape)}) but target_dim="
                                 f"{self.target_dim}; make them agree")
            return target
        G = geom_ref.shape[-1]
        k = G // 2
        if G % 2 or self.target_dim not in (k, 2 * k):
            valid = f"{k} (translations) or {2 * k} (translations and scales)" if not G % 2 else \
                "none: the geometry must hold 2k values (k centres, then k sizes)"
            raise ValueError(f"PARTLoss: target_dim={self.target_dim} does not fit geometry of "
                             f"G={G} values per patch; valid target_dim: {valid}")
        return relative_targets(geom_ref, geom_tgt, self.target_dim == 2 * k, self.scale_target)

    def check_sizes_vary(self, geometry: torch.Tensor) -> None:
        """Refuse scale targets on boxes (B, N, 2k) whose sizes never vary: the size ratios would
        be a constant 1.0 the head learns at once, halving the loss without learning anything.
        Checked on the first batch only (one host sync)."""
        if self._sizes_checked:
            return
        self._sizes_checked = True
        k = geometry.shape[-1] // 2
        sizes = geometry[..., k:]
        if not bool((sizes != sizes[:, :1]).any()):
            raise ValueError(f"PARTLoss: target_dim={self.target_dim} asks for scale targets (size ratios) "
                             f"but every patch of the batch has the same size {sizes[0, 0].tolist()}, so the "
                             f"scale target is a constant; use target_dim={k} (translations only), or draw "
                             f"patches of varying size (the modality's scale_range option)")

    # ------------------------------------------------------------------------------ forward

    def _check(self, z: torch.Tensor, geometry: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor) or z.dim() != 3:
            raise ValueError(f"PARTLoss: z must be the patch embeddings (B, N, d), got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        if not isinstance(geometry, torch.Tensor) or geometry.dim() != 3:
            got = tuple(geometry.shape) if isinstance(geometry, torch.Tensor) else type(geometry).__name__
            raise ValueError(f"PARTLoss: geometry must be (B, N, G), got {got}")
        if z.shape[-1] != self.dim:
            raise ValueError(f"PARTLoss: z has width {z.shape[-1]} (shape {tuple(z.shape)}) but "
                             f"dim={self.dim}")
        if z.shape[:2] != geometry.shape[:2]:
            raise ValueError(f"PARTLoss: z {tuple(z.shape)} and geometry {tuple(geometry.shape)} "
                             f"must agree on (B, N); pass the patch tokens only (drop [CLS] or "
                             f"other prefix tokens)")

    def predict(self, z: torch.Tensor, geometry: torch.Tensor,
                pairs: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                generator: Optional[torch.Generator] = None) -> dict:
        """The head's predictions and the true transforms of ordered pairs, without the loss.

        z (B, N, dim) patch embeddings, geometry (B, N, G). ``pairs``: (ref, tgt), each (B, M)
        long indices in [0, N), to predict exactly those pairs; None draws ``num_pairs`` pairs
        per item from the global RNG (or ``generator``). Returns {"pred", "target"} (B, M,
        target_dim) float32 and {"ref", "tgt"} (B, M) long.
        """
        self._check(z, geometry)
        B, N, _ = z.shape
        if pairs is None:
            ref, tgt = sample_pairs(B, N, self.num_pairs, self.exclude_self_pairs, z.device, generator)
        else:
            ref, tgt = pairs
            if ref.shape != tgt.shape or ref.dim() != 2 or ref.shape[0] != B:
                raise ValueError(f"PARTLoss: pairs must be (ref, tgt), each (B={B}, M) long, got "
                                 f"{tuple(ref.shape)} and {tuple(tgt.shape)}")
        G = geometry.shape[-1]
        if self.target_fn is None and not G % 2 and self.target_dim == G:
            self.check_sizes_vary(geometry)
        pred = self.head(z, ref, tgt).float()
        target = self.targets(gather_tokens(geometry, ref), gather_tokens(geometry, tgt)).float()
        return {"pred": pred, "target": target, "ref": ref, "tgt": tgt}

    def forward(self, z: torch.Tensor, geometry: torch.Tensor, return_details: bool = False,
                generator: Optional[torch.Generator] = None):
        """z (B, N, dim) patch embeddings, geometry (B, N, G) -> scalar MSE loss (float32).

        Pairs are drawn from the global RNG (or ``generator``), each item its own; the details
        are ``predict``'s.
        """
        details = self.predict(z, geometry, generator=generator)
        loss = F.mse_loss(details["pred"], details["target"])
        if return_details:
            return loss, details
        return loss
