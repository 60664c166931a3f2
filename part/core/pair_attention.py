"""Fused pair attention in Triton: softmax(s_ref[ref] + s_tgt[tgt]) @ v, forward and backward.

The cross-attention head (``part/core/heads.py``) reduces its attention to per-token logit rows:
for item b, head h and pair m = (ref, tgt) the logits over the N keys are
``s_ref[b, h, ref] + s_tgt[b, h, tgt]`` (each (B, h, N, N), already scaled by 1/sqrt(d_head)),
and the values are the folded (B, h, N, T) maps (T = target_dim, 1-4). This module computes

    o[b, h, m] = softmax_n(s_ref[b, h, ref[b, m], n] + s_tgt[b, h, tgt[b, m], n]) @ v[b, h]

without writing a (B, h, M, N) or (B, h, M, d_head) tensor to memory:

- forward: one program per (item, head, block of pairs) gathers the two logit rows on chip, takes
  the softmax in float32 and multiplies by the values (``tl.dot``); it writes o (B, h, M, T) and
  the log-sum-exp (B, h, M) float32 for the backward.
- backward: one program per (item, head, block of key columns) walks over all M pairs, recomputes
  the weights from the saved log-sum-exp, forms dS = P * (dO v^T - delta) on chip and sums the
  pairs' contributions per token with an on-chip one-hot matmul (BLOCK_N x BLOCK_M @ BLOCK_M x
  BLOCK_K, built in registers from the indices, never written). That is a segmented reduction,
  not atomics: each output block is owned by one program, so the result is deterministic, and
  there is no contention (with 2048 pairs over 64 tokens, atomics would add about 32 pairs' rows
  into every element of a token's row). The price is 2 * N_padded multiply-adds per dS element
  and side on tensor cores: about 0.1 TFLOP per step at the ViT-S/4 size (64 tokens, B=512),
  about 1.7 TFLOP at the ImageNet size (196 tokens padded to 256, 128 items, 4802 pairs), where
  a sort-based (CSR) reduction would be cheaper if the GPU run shows it matters. dv = P^T dO
  accumulates in the same loop.

``pair_attention`` is a ``torch.autograd`` function registered as the custom op
``part::pair_attention`` (torch.library) with a fake (meta) implementation, so it traces under
``torch.compile`` and runs under bf16 autocast (inputs in bf16 or float32; softmax and sums in
float32; the products on tensor cores in the input's half type, IEEE float32 otherwise).
On the CPU it runs only under Triton's interpreter (``TRITON_INTERPRET=1`` set before
``import triton``), which the tests use.
"""
from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU wheels of torch ship without Triton: the head falls back
    triton = None

HALF_TYPES = (torch.float16, torch.bfloat16)


def available(device: torch.device) -> bool:
    """Whether the kernel can run on `device`: Triton importable, and CUDA (or the interpreter)."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << (int(n) - 1).bit_length())


# Block sizes: (BLOCK_M, BLOCK_N) float32 tiles and two (BLOCK_N, BLOCK_K) accumulators that fit
# in registers. Compiled for sm_90 by Triton 3.8 + ptxas without a GPU (benchmarks/
# kernel_compile_check.py): no spills in bf16 for N up to 256. Not yet tuned on a GPU.
NUM_WARPS = 8


def forward_blocks(N: int, T: int, half: bool) -> dict:
    """Constexpr block sizes of the forward kernel for N tokens and T value columns."""
    BLOCK_N = _pow2(N)
    BLOCK_M = 64 if BLOCK_N <= 64 else (32 if half else 16)
    return {"BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "BLOCK_T": _pow2(T), "HALF": half}


def backward_blocks(N: int, T: int, half: bool) -> dict:
    """Constexpr block sizes of the backward kernel (BLOCK_K key columns per program)."""
    BLOCK_N = _pow2(N)
    BLOCK_K, BLOCK_M = (BLOCK_N, 32) if BLOCK_N <= 64 else (32, 16)
    return {"BLOCK_M": BLOCK_M, "BLOCK_N": BLOCK_N, "BLOCK_K": BLOCK_K, "BLOCK_T": _pow2(T), "HALF": half}


if triton is not None:
    @triton.jit
    def _pair_rows_tile(S_REF, S_TGT, r, t, cols, mask_rows, mask_cols, s_row, s_col):
        """Logits of a block of pairs on a block of key columns, float32: (BLOCK_M, BLOCK_cols)."""
        m2 = mask_rows[:, None] & mask_cols[None, :]
        a = tl.load(S_REF + r[:, None] * s_row + cols[None, :] * s_col, mask=m2, other=0.0)
        b = tl.load(S_TGT + t[:, None] * s_row + cols[None, :] * s_col, mask=m2, other=0.0)
        return a.to(tl.float32) + b.to(tl.float32)

    @triton.jit
    def _fwd_kernel(S_REF, S_TGT, V, REF, TGT, OUT, LSE,
                    ss_b, ss_h, ss_r, ss_c, sv_b, sv_h, sv_n, sv_t, si_b, si_m,
                    so_b, so_h, so_m, so_t, sl_b, sl_h, sl_m,
                    H, N, M, T,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                    HALF: tl.constexpr):
        pid_m, pid_bh = tl.program_id(0), tl.program_id(1)
        b, h = pid_bh // H, pid_bh % H
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n, offs_t = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_T)
        mask_m, mask_n, mask_t = offs_m < M, offs_n < N, offs_t < T
        r = tl.load(REF + b * si_b + offs_m * si_m, mask=mask_m, other=0)
        t = tl.load(TGT + b * si_b + offs_m * si_m, mask=mask_m, other=0)
        off_s = b * ss_b + h * ss_h
        logits = _pair_rows_tile(S_REF + off_s, S_TGT + off_s, r, t, offs_n, mask_m, mask_n, ss_r, ss_c)
        logits = tl.where(mask_n[None, :], logits, float("-inf"))
        row_max = tl.max(logits, 1)
        p = tl.exp(logits - row_max[:, None])
        denom = tl.sum(p, 1)
        v = tl.load(V + b * sv_b + h * sv_h + offs_n[:, None] * sv_n + offs_t[None, :] * sv_t,
                    mask=mask_n[:, None] & mask_t[None, :], other=0.0)
        if HALF:
            o = tl.dot(p.to(v.dtype), v)
        else:
            o = tl.dot(p, v.to(tl.float32), input_precision="ieee")
        o = o / denom[:, None]
        tl.store(OUT + b * so_b + h * so_h + offs_m[:, None] * so_m + offs_t[None, :] * so_t,
                 o.to(OUT.dtype.element_ty), mask=mask_m[:, None] & mask_t[None, :])
        tl.store(LSE + b * sl_b + h * sl_h + offs_m * sl_m, row_max + tl.log(denom), mask=mask_m)

    @triton.jit
    def _bwd_kernel(S_REF, S_TGT, V, REF, TGT, DO, LSE, DELTA, DS_REF, DS_TGT, DV,
                    ss_b, ss_h, ss_r, ss_c, sv_b, sv_h, sv_n, sv_t, si_b, si_m,
                    sdo_b, sdo_h, sdo_m, sdo_t, sl_b, sl_h, sl_m,
                    H, N, M, T,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_T: tl.constexpr, HALF: tl.constexpr):
        """Gradients of the columns [pid_k * BLOCK_K, ...) of ds_ref, ds_tgt (rows: all N tokens)
        and of the rows of dv for those keys, over all M pairs of one (item, head). DS_* and DV
        are contiguous (B, h, N, N) and (B, h, N, T), written in their own dtypes from float32 sums."""
        pid_k, pid_bh = tl.program_id(0), tl.program_id(1)
        b, h = pid_bh // H, pid_bh % H
        offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        rows, offs_t = tl.arange(0, BLOCK_N), tl.arange(0, BLOCK_T)
        mask_k, mask_t = offs_k < N, offs_t < T
        off_s = b * ss_b + h * ss_h
        v = tl.load(V + b * sv_b + h * sv_h + offs_k[:, None] * sv_n + offs_t[None, :] * sv_t,
                    mask=mask_k[:, None] & mask_t[None, :], other=0.0).to(tl.float32)  # (K, T)
        acc_ref = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        acc_tgt = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        acc_v = tl.zeros((BLOCK_K, BLOCK_T), dtype=tl.float32)
        for m0 in range(0, M, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < M
            r = tl.load(REF + b * si_b + offs_m * si_m, mask=mask_m, other=0)
            t = tl.load(TGT + b * si_b + offs_m * si_m, mask=mask_m, other=0)
            s = _pair_rows_tile(S_REF + off_s, S_TGT + off_s, r, t, offs_k, mask_m, mask_k, ss_r, ss_c)
            lse = tl.load(LSE + b * sl_b + h * sl_h + offs_m * sl_m, mask=mask_m, other=0.0)
            delta = tl.load(DELTA + b * sl_b + h * sl_h + offs_m * sl_m, mask=mask_m, other=0.0)
            p = tl.where(mask_m[:, None] & mask_k[None, :], tl.exp(s - lse[:, None]), 0.0)
            do = tl.load(DO + b * sdo_b + h * sdo_h + offs_m[:, None] * sdo_m + offs_t[None, :] * sdo_t,
                         mask=mask_m[:, None] & mask_t[None, :], other=0.0).to(tl.float32)
            sel_r = ((r[:, None] == rows[None, :]) & mask_m[:, None]).to(tl.float32)   # (M, N)
            sel_t = ((t[:, None] == rows[None, :]) & mask_m[:, None]).to(tl.float32)
            if HALF:  # products in the input's half type on tensor cores, sums in float32
                half = V.dtype.element_ty
                dp = tl.dot(do.to(half), tl.trans(v.to(half)))                       # (M, K)
                ds = p * (dp - delta[:, None])
                ds_h = ds.to(half)
                acc_ref += tl.dot(tl.trans(sel_r.to(half)), ds_h)
                acc_tgt += tl.dot(tl.trans(sel_t.to(half)), ds_h)
                acc_v += tl.dot(tl.trans(p.to(half)), do.to(half))
            else:
                dp = tl.dot(do, tl.trans(v), input_precision="ieee")                   # (M, K)
                ds = p * (dp - delta[:, None])
                acc_ref += tl.dot(tl.trans(sel_r), ds, input_precision="ieee")
                acc_tgt += tl.dot(tl.trans(sel_t), ds, input_precision="ieee")
                acc_v += tl.dot(tl.trans(p), do, input_precision="ieee")
        out = pid_bh * N * N + rows[:, None] * N + offs_k[None, :]
        m_out = (rows[:, None] < N) & mask_k[None, :]
        tl.store(DS_REF + out, acc_ref.to(DS_REF.dtype.element_ty), mask=m_out)
        tl.store(DS_TGT + out, acc_tgt.to(DS_TGT.dtype.element_ty), mask=m_out)
        tl.store(DV + pid_bh * N * T + offs_k[:, None] * T + offs_t[None, :], acc_v.to(DV.dtype.element_ty),
                 mask=mask_k[:, None] & mask_t[None, :])


def _check(s_ref, s_tgt, v, ref, tgt):
    B, h, N, N2 = s_ref.shape
    if s_tgt.shape != s_ref.shape or N2 != N or v.shape[:3] != (B, h, N) or ref.shape != tgt.shape \
            or ref.shape[0] != B or ref.dtype != torch.long or tgt.dtype != torch.long:
        raise ValueError(f"pair_attention: expected s_ref, s_tgt (B, h, N, N), v (B, h, N, T), ref, tgt "
                         f"(B, M) long; got {tuple(s_ref.shape)}, {tuple(s_tgt.shape)}, {tuple(v.shape)}, "
                         f"{tuple(ref.shape)} {ref.dtype}, {tuple(tgt.shape)} {tgt.dtype}")


def _forward(s_ref, s_tgt, v, ref, tgt):
    _check(s_ref, s_tgt, v, ref, tgt)
    # one stride set for s_ref and s_tgt, one for ref and tgt (no-ops for the head's tensors)
    s_ref, s_tgt, ref, tgt = s_ref.contiguous(), s_tgt.contiguous(), ref.contiguous(), tgt.contiguous()
    B, h, N, _ = s_ref.shape
    M, T = ref.shape[1], v.shape[3]
    o = v.new_empty(B, h, M, T)
    lse = torch.empty(B, h, M, device=v.device, dtype=torch.float32)
    blocks = forward_blocks(N, T, v.dtype in HALF_TYPES)
    grid = (triton.cdiv(M, blocks["BLOCK_M"]), B * h)
    _fwd_kernel[grid](s_ref, s_tgt, v, ref, tgt, o, lse,
                      *s_ref.stride(), *v.stride(), *ref.stride(), *o.stride(), *lse.stride(),
                      h, N, M, T, **blocks, num_warps=NUM_WARPS)
    return o, lse


def _backward(do, s_ref, s_tgt, v, ref, tgt, o, lse):
    s_ref, s_tgt, ref, tgt = s_ref.contiguous(), s_tgt.contiguous(), ref.contiguous(), tgt.contiguous()
    B, h, N, _ = s_ref.shape
    M, T = ref.shape[1], v.shape[3]
    delta = (do.float() * o.float()).sum(-1)                                   # (B, h, M)
    lse = lse.contiguous()
    ds_ref, ds_tgt = s_ref.new_empty(B, h, N, N), s_tgt.new_empty(B, h, N, N)  # contiguous
    dv = v.new_empty(B, h, N, T)
    blocks = backward_blocks(N, T, v.dtype in HALF_TYPES)
    grid = (triton.cdiv(N, blocks["BLOCK_K"]), B * h)
    _bwd_kernel[grid](s_ref, s_tgt, v, ref, tgt, do, lse, delta.contiguous(), ds_ref, ds_tgt, dv,
                      *s_ref.stride(), *v.stride(), *ref.stride(), *do.stride(), *lse.stride(),
                      h, N, M, T, **blocks, num_warps=NUM_WARPS)
    return ds_ref, ds_tgt, dv


@torch.library.custom_op("part::pair_attention", mutates_args=())
def _pair_attention_op(s_ref: torch.Tensor, s_tgt: torch.Tensor, v: torch.Tensor, ref: torch.Tensor,
                       tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if triton is None:
        raise RuntimeError("part::pair_attention needs Triton (pip install triton); "
                           "or set the head's attention to 'fused' or 'logits'")
    return _forward(s_ref, s_tgt, v, ref, tgt)


@_pair_attention_op.register_fake
def _(s_ref, s_tgt, v, ref, tgt):
    B, h, N, _ = s_ref.shape
    M, T = ref.shape[1], v.shape[3]
    return v.new_empty(B, h, M, T), v.new_empty(B, h, M, dtype=torch.float32)


@torch.library.custom_op("part::pair_attention_backward", mutates_args=())
def _pair_attention_backward_op(do: torch.Tensor, s_ref: torch.Tensor, s_tgt: torch.Tensor,
                                v: torch.Tensor, ref: torch.Tensor, tgt: torch.Tensor, o: torch.Tensor,
                                lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backward(do, s_ref, s_tgt, v, ref, tgt, o, lse)


@_pair_attention_backward_op.register_fake
def _(do, s_ref, s_tgt, v, ref, tgt, o, lse):
    def like(x):  # the real op returns contiguous tensors
        return x.new_empty(x.shape)
    return like(s_ref), like(s_tgt), like(v)


def _setup_context(ctx, inputs, output):
    s_ref, s_tgt, v, ref, tgt = inputs
    o, lse = output
    ctx.save_for_backward(s_ref, s_tgt, v, ref, tgt, o, lse)


def _backward_rule(ctx, do, dlse):
    s_ref, s_tgt, v, ref, tgt, o, lse = ctx.saved_tensors
    ds_ref, ds_tgt, dv = _pair_attention_backward_op(do, s_ref, s_tgt, v, ref, tgt, o, lse)
    return ds_ref, ds_tgt, dv, None, None


_pair_attention_op.register_autograd(_backward_rule, setup_context=_setup_context)


def pair_attention(s_ref: torch.Tensor, s_tgt: torch.Tensor, v: torch.Tensor, ref: torch.Tensor,
                   tgt: torch.Tensor) -> torch.Tensor:
    """softmax(s_ref[ref] + s_tgt[tgt]) @ v per item and head, fused (see the module doc).

    s_ref, s_tgt (B, h, N, N) scaled per-token logits; v (B, h, N, T); ref, tgt (B, M) long in
    [0, N) -> (B, h, M, T) in v's dtype. Differentiable in s_ref, s_tgt and v."""
    return _pair_attention_op(s_ref, s_tgt, v, ref, tgt)[0]
