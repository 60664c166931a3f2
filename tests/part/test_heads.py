import pytest
import torch

from part.core.heads import CrossAttentionHead, MLPHead, PairwiseMLPHead, attention_mode, build_head, pair_rows
from part.core.pairs import gather_tokens, sample_pairs


def _inputs(B=3, N=7, d=16, M=11, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B, N, d, generator=g, dtype=dtype)
    ref, tgt = sample_pairs(B, N, M, generator=g)
    return z, ref, tgt


@pytest.mark.parametrize("name", ["cross_attention", "pairwise_mlp", "mlp"])
@pytest.mark.parametrize("target_dim", [1, 2, 4])
def test_head_output_shapes(name, target_dim):
    z, ref, tgt = _inputs()
    head = build_head(name, 16, target_dim, num_patches=7, num_heads=4)
    out = head(z, ref, tgt)
    assert out.shape == (3, 11, target_dim)
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("attention", ["logits", "fused"])
def test_factored_cross_attention_equals_literal_float64(attention):
    torch.manual_seed(0)
    z, ref, tgt = _inputs(dtype=torch.float64)
    head = CrossAttentionHead(16, 4, num_heads=4, attention=attention).double()
    for p in head.parameters():  # non-trivial biases too
        torch.nn.init.normal_(p, std=0.3)
    fast, slow = head(z, ref, tgt), head.forward_reference(z, ref, tgt)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=0)
    # and the gradients agree
    g_fast = torch.autograd.grad(fast.square().sum(), list(head.parameters()))
    g_slow = torch.autograd.grad(head.forward_reference(z, ref, tgt).square().sum(), list(head.parameters()))
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-5)


def test_cross_attention_uses_other_tokens():
    z, ref, tgt = _inputs(M=2)
    head = CrossAttentionHead(16, 2, num_heads=4)
    out = head(z, ref, tgt)
    others = torch.ones(z.shape[1], dtype=torch.bool)
    others[ref[0]] = False
    others[tgt[0]] = False
    z2 = z.clone()
    assert others.any()
    z2[0, others] += 1.0  # change tokens that are in no pair of item 0
    assert not torch.allclose(head(z2, ref, tgt)[0], out[0])


def test_pairwise_mlp_sees_only_the_pair():
    z, ref, tgt = _inputs()
    for hidden in (None, 8):
        head = PairwiseMLPHead(16, 2, hidden)
        out = head(z, ref, tgt)
        lit = head.second(head.first(torch.cat([gather_tokens(z, ref), gather_tokens(z, tgt)], -1)))
        assert torch.allclose(out, lit, atol=1e-6)


def test_paper_pairwise_mlp_parameter_count():
    head = PairwiseMLPHead(384, 2)
    assert sum(p.numel() for p in head.parameters()) == 2 * 384 * 2 + 2


def test_mlp_head_reads_the_right_pair():
    z, ref, tgt = _inputs()
    head = MLPHead(16, 2, 7)
    full = head.fc(z.reshape(3, -1)).view(3, 7, 7, 2)
    out = head(z, ref, tgt)
    b, m = 1, 4
    assert torch.allclose(out[b, m], full[b, ref[b, m], tgt[b, m]])
    with pytest.raises(ValueError, match="built for 7 patches"):
        head(z[:, :5], ref.clamp(max=4), tgt.clamp(max=4))


def test_unknown_head_lists_valid():
    with pytest.raises(ValueError, match="cross_attention, pairwise_mlp, mlp"):
        build_head("transformer", 16, 2, 7)


def test_pair_rows_gathers_and_scatters_back_per_token():
    """pair_rows = x_ref[ref] + x_tgt[tgt] (no one-hot selector); its backward adds every pair's
    gradient onto its token rows (index_add), checked against a hand-built sum."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True), \
        torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ref, tgt = sample_pairs(2, 6, 40, generator=g)
    rows = pair_rows(a, b, ref, tgt)
    assert rows.shape == (2, 3, 40, 5)
    assert torch.equal(rows[1, 2, 7], a[1, 2, ref[1, 7]] + b[1, 2, tgt[1, 7]])
    w = torch.randn(2, 3, 40, 5, generator=g, dtype=torch.float64)
    ga, gb = torch.autograd.grad((rows * w).sum(), (a, b))
    want_a, want_b = torch.zeros_like(a), torch.zeros_like(b)
    for i in range(2):
        want_a[i].index_add_(1, ref[i], w[i])
        want_b[i].index_add_(1, tgt[i], w[i])
    assert torch.allclose(ga, want_a) and torch.allclose(gb, want_b)


def test_pair_rows_one_hot_is_deprecated_and_ignored():
    a = b = torch.randn(1, 1, 4, 3)
    ref, tgt = sample_pairs(1, 4, 5)
    with pytest.warns(FutureWarning, match=r"one_hot=...\) is deprecated since part 0.1.0 .* removed in 0.2.0"):
        rows = pair_rows(a, b, ref, tgt, one_hot=True)
    assert torch.equal(rows, pair_rows(a, b, ref, tgt))


def test_attention_auto_picks_logits_on_cpu_and_lists_valid_modes():
    z = torch.randn(1, 3, 8)
    assert attention_mode("auto", z) == "logits"
    assert attention_mode("fused", z) == "fused"
    with pytest.raises(ValueError, match="attention='flash'; valid: auto, triton, fused, logits"):
        CrossAttentionHead(8, 2, num_heads=2, attention="flash")


def test_attention_auto_on_cuda_picks_triton_when_installed(monkeypatch):
    """attention_mode reads only the tensor's device; a stand-in CUDA tensor (no GPU needed)."""
    import types

    from part.core import heads

    on_cuda = types.SimpleNamespace(is_cuda=True)
    monkeypatch.setattr(heads, "TRITON_INSTALLED", True)
    assert attention_mode("auto", on_cuda) == "triton"
    assert attention_mode("logits", on_cuda) == "logits"
    monkeypatch.setattr(heads, "TRITON_INSTALLED", False)
    assert attention_mode("auto", on_cuda) == "fused"
