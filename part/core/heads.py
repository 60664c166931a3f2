"""Relative heads: map patch embeddings (B, N, d) and pairs (ref, tgt) to predicted transforms.

All heads share one call signature: `head(z, ref, tgt) -> (B, M, target_dim)` with z the encoder
output for the N patch tokens (no [CLS]) and ref, tgt (B, M) long pair indices.

Linear maps that act on one token are computed on the N tokens BEFORE the pair gather whenever
that is exactly equivalent (a linear map of a concatenation is a sum of linear maps of its parts),
so the work scales with N rather than with #pairs (2048 pairs against N = 64 in the paper's
CIFAR setup).
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from part.core.pairs import gather_tokens


def _split_pair_linear(linear: nn.Linear, dim: int):
    """Weights of Linear(2d -> k) split into the ref half and the tgt half: two (k, d) matrices."""
    return linear.weight[:, :dim], linear.weight[:, dim:]


class CrossAttentionHead(nn.Module):
    """Paper eq. 2-3: query = Linear(2d -> d)(concat(z_ref, z_tgt)); keys = values = all N embeddings.

    Standard multi-head cross-attention (q, k, v and output projections, like timm's Attention),
    then Linear(d -> target_dim). The forward pass is algebraically factored:
    - pair projection and query projection are folded into two d x d maps applied per token,
      gathered and summed per pair;
    - value projection, output projection and the final linear are folded per head into
      (d -> target_dim) maps applied per token, so attention mixes target_dim-wide values;
    - attention itself: "triton" (CUDA default where Triton is installed) calls the fused pair
      attention kernel (``part/core/pair_attention.py``): per-token logit rows (N x N per head)
      added per pair on chip, softmax and values in one pass, forward and backward, never writing
      a (#pairs x N) or (#pairs x d/h) tensor; "logits" (CPU default) adds the same two rows
      gathered per pair in PyTorch, never forming a (#pairs x N x d/h) product; "fused" (CUDA
      default without Triton) gathers the per-pair queries and calls one fused
      scaled_dot_product_attention kernel (values zero-padded to the head width), never
      materialising the (#pairs x N) weights.
    `forward_reference` computes the same thing literally (tested equal in float64).
    """

    def __init__(self, dim: int, target_dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 attention: str = "auto"):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention={attention!r}; valid: {', '.join(ATTENTION)}")
        self.attention = attention
        if dim % num_heads:
            raise ValueError(f"head dim {dim} must be divisible by head num_heads={num_heads}")
        self.dim, self.num_heads, self.target_dim = dim, num_heads, target_dim
        self.pair_proj = nn.Linear(2 * dim, dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, target_dim)

    def _bias(self, linear: nn.Linear, rows: int, like: torch.Tensor):
        return linear.bias if linear.bias is not None else like.new_zeros(rows)

    def forward(self, z: torch.Tensor, ref: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        B, N, d = z.shape
        h, dh, T = self.num_heads, d // self.num_heads, self.target_dim
        w_ref, w_tgt = _split_pair_linear(self.pair_proj, d)
        wq = self.q.weight
        # Pair projection and query projection folded into two d x d maps applied per token.
        q_ref = F.linear(z, wq @ w_ref)
        q_tgt = F.linear(z, wq @ w_tgt, wq @ self.pair_proj.bias + self._bias(self.q, d, z))
        wk, wv = self.kv.weight[:d], self.kv.weight[d:]
        bkv = self._bias(self.kv, 2 * d, z)
        k = F.linear(z, wk, bkv[:d]).view(B, N, h, dh).transpose(1, 2)     # (B, h, N, dh)
        def heads(t):
            return t.view(B, N, h, dh).transpose(1, 2)
        q_ref, q_tgt = heads(q_ref), heads(q_tgt)
        # Output maps folded: out(proj(.)) = C @ (.) + c, C (T, d) split per head (h, T, dh).
        C = self.out.weight @ self.proj.weight
        c = self.out.weight @ self.proj.bias + self.out.bias
        C_h = C.view(T, h, dh).transpose(0, 1)                              # (h, T, dh)
        v_fold = torch.einsum("htk,hkd->htd", C_h, wv.view(h, dh, d))       # (h, T, d)
        v_bias = torch.einsum("htk,hk->ht", C_h, bkv[d:].view(h, dh))       # (h, T)
        v = torch.einsum("bnd,htd->bhnt", z, v_fold) + v_bias[None, :, None, :]  # (B, h, N, T)
        attend = {"triton": _attend_triton, "fused": _attend_fused, "logits": _attend_logits}
        return attend[attention_mode(self.attention, z)](q_ref, q_tgt, k, v, ref, tgt).sum(1) + c

    def forward_reference(self, z, ref, tgt):
        """Literal (unfactored) computation of the same head, for tests."""
        B, N, d = z.shape
        h, dh = self.num_heads, d // self.num_heads
        query = self.q(self.pair_proj(torch.cat([gather_tokens(z, ref), gather_tokens(z, tgt)], -1)))
        k, v = self.kv(z).chunk(2, -1)
        def split(t):
            return t.reshape(B, t.shape[1], h, dh).transpose(1, 2)
        att = (split(query) @ split(k).transpose(-1, -2) / dh ** 0.5).softmax(-1)
        o = (att @ split(v)).transpose(1, 2).reshape(B, -1, d)
        return self.out(self.proj(o))


ATTENTION = ("auto", "triton", "fused", "logits")
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None  # without importing it


def attention_mode(attention: str, z: torch.Tensor) -> str:
    """The attention path a head with option `attention` takes for encoder output `z`: "auto" is
    "triton" on CUDA where Triton is installed, "fused" on CUDA without it, "logits" elsewhere."""
    if attention != "auto":
        return attention
    if z.is_cuda:
        return "triton" if TRITON_INSTALLED else "fused"
    return "logits"


def pair_rows(x_ref: torch.Tensor, x_tgt: torch.Tensor, ref: torch.Tensor, tgt: torch.Tensor,
              one_hot: Optional[bool] = None) -> torch.Tensor:
    """x_ref[ref] + x_tgt[tgt] along the token axis: (B, h, N, D) x 2, (B, M) -> (B, h, M, D).

    Two gathers; their backward adds the M rows' gradients onto the N token rows (scatter-add,
    i.e. index_add): exact, and no (B, M, 2N) one-hot selector (about 1 GB at ImageNet sizes:
    128 items, 4802 pairs, 196 tokens). `one_hot` is deprecated and ignored (0.1.0; removed in 0.2.0)."""
    if one_hot is not None:
        warnings.warn("pair_rows(one_hot=...) is deprecated since part 0.1.0 and ignored (the one-hot "
                      "selector is gone); it will be removed in 0.2.0", FutureWarning, stacklevel=2)
    B, h, N, D = x_ref.shape
    M = ref.shape[1]
    def pick(x, i):
        return torch.gather(x, 2, i[:, None, :, None].expand(B, h, M, D))
    return pick(x_ref, ref) + pick(x_tgt, tgt)


def _token_logits(q_ref, q_tgt, k):
    """Per-token scaled logit rows q k^T / sqrt(dh): (B, h, N, dh) x 3 -> (B, h, N, N) x 2."""
    scale = k.shape[-1] ** -0.5
    return (q_ref * scale) @ k.transpose(-1, -2), (q_tgt * scale) @ k.transpose(-1, -2)


def _attend_logits(q_ref, q_tgt, k, v, ref, tgt):
    """softmax((q_ref[ref] + q_tgt[tgt]) k^T / sqrt(dh)) v from per-token logit rows: the logits of
    a pair are the sum of two rows of the (N x N) per-token logits. Returns (B, h, M, T)."""
    s_ref, s_tgt = _token_logits(q_ref, q_tgt, k)                            # (B, h, N, N)
    att = pair_rows(s_ref, s_tgt, ref, tgt).softmax(-1)                      # (B, h, M, N)
    return att.to(v.dtype) @ v


def _attend_triton(q_ref, q_tgt, k, v, ref, tgt):
    """The same logits through the fused Triton kernel (part/core/pair_attention.py): gather,
    softmax and values on chip, forward and backward. Returns (B, h, M, T)."""
    from part.core import pair_attention as kernel  # imports Triton: only on this path
    if not kernel.available(k.device):
        raise RuntimeError(f"attention='triton' needs Triton and a CUDA device (got {k.device}, "
                           f"Triton {'missing' if kernel.triton is None else 'installed'}); "
                           f"use attention 'auto', 'fused' or 'logits'")
    s_ref, s_tgt = _token_logits(q_ref, q_tgt, k)
    return kernel.pair_attention(s_ref, s_tgt, v, ref, tgt)


def _attend_fused(q_ref, q_tgt, k, v, ref, tgt):
    """The same with per-pair queries and one fused attention kernel (values zero-padded to the
    head width): never materialises the (M x N) weights. Returns (B, h, M, T)."""
    dh, T = k.shape[-1], v.shape[-1]
    q = pair_rows(q_ref, q_tgt, ref, tgt)                                    # (B, h, M, dh)
    out = F.scaled_dot_product_attention(q, k, F.pad(v, (0, dh - T)) if dh > T else v)
    return out[..., :T]


class PairwiseMLPHead(nn.Module):
    """Paper Table 5 'pairwise MLP': predicts from the two embeddings of the pair only.

    hidden=None is the paper's size (a single Linear(2d -> target_dim), 2*d*2 weights for 2-D
    targets); an int adds one GELU hidden layer. The first layer is applied per token, then summed.
    """

    def __init__(self, dim: int, target_dim: int, hidden: Optional[int] = None):
        super().__init__()
        self.dim = dim
        self.first = nn.Linear(2 * dim, hidden or target_dim)
        self.second = nn.Sequential(nn.GELU(), nn.Linear(hidden, target_dim)) if hidden else nn.Identity()

    def forward(self, z, ref, tgt):
        w_ref, w_tgt = _split_pair_linear(self.first, self.dim)
        a = gather_tokens(F.linear(z, w_ref), ref) + gather_tokens(F.linear(z, w_tgt, self.first.bias), tgt)
        return self.second(a)


class MLPHead(nn.Module):
    """Paper Table 5 'MLP': one linear map from ALL N embeddings (N*d) to every ordered pair's
    transform (N*N*target_dim outputs), then the sampled pairs are read out. N*d*N^2*T weights:
    only practical for small N; the number of patches must be fixed."""

    def __init__(self, dim: int, target_dim: int, num_patches: int):
        super().__init__()
        self.num_patches, self.target_dim = num_patches, target_dim
        self.fc = nn.Linear(num_patches * dim, num_patches * num_patches * target_dim)

    def forward(self, z, ref, tgt):
        B, N, _ = z.shape
        if N != self.num_patches:
            raise ValueError(f"MLPHead was built for {self.num_patches} patches, got {N}")
        allp = self.fc(z.reshape(B, -1)).view(B, N * N, self.target_dim)
        return gather_tokens(allp, ref * N + tgt)


HEADS = ("cross_attention", "pairwise_mlp", "mlp")


def build_head(name: str, dim: int, target_dim: int, num_patches: int, num_heads: int = 8,
               hidden: Optional[int] = None) -> nn.Module:
    """Head by recipe name: cross_attention | pairwise_mlp | mlp."""
    if name == "cross_attention":
        return CrossAttentionHead(dim, target_dim, num_heads)
    if name == "pairwise_mlp":
        return PairwiseMLPHead(dim, target_dim, hidden)
    if name == "mlp":
        return MLPHead(dim, target_dim, num_patches)
    raise ValueError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
