"""The fused Triton pair-attention kernel (part/core/pair_attention.py) against PyTorch, on the CPU
through Triton's interpreter (TRITON_INTERPRET=1, in one child process so the setting reaches no
other test): forward and backward of the op and of the cross-attention head on small and odd
shapes. The references are computed here, in float64."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from part.core.heads import CrossAttentionHead
from part.core.pairs import sample_pairs

CHILD = Path(__file__).with_name("pair_attention_child.py")
ROOT = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                  reason="Triton is not installed (CPU wheels of torch ship without it): "
                                         "the fused kernel cannot run; the head uses its PyTorch paths")

# name: (B, heads, N, M, T, how pairs are drawn)
OP_CASES = {
    "small": (2, 3, 7, 11, 2, "random"),
    "odd": (1, 2, 37, 70, 4, "random"),          # N not a power of two, M not a multiple of 32/64
    "blocks": (2, 1, 64, 130, 1, "random"),      # N = one full block, M over three blocks
    "wide": (1, 1, 100, 45, 2, "random"),        # N > 64: several key-column blocks in the backward
    "self_pairs": (2, 2, 9, 20, 4, "self"),       # ref == tgt for every pair
    "repeated": (1, 2, 12, 40, 2, "repeated"),    # one pair repeated, plus a few others
    "strided": (2, 2, 10, 30, 2, "strided"),      # tgt a non-contiguous view (other strides than ref)
}


def _pairs(B, N, M, how, g):
    if how == "self":
        ref = torch.randint(0, N, (B, M), generator=g)
        return ref, ref.clone()
    ref, tgt = sample_pairs(B, N, M, generator=g)
    if how == "repeated":
        ref[:, : M // 2], tgt[:, : M // 2] = 3, 5
    if how == "strided":
        tgt = torch.stack([ref, tgt], -1)[..., 1]
        assert not tgt.is_contiguous()
    return ref, tgt


def _op_case(B, h, N, M, T, how, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ref, tgt = _pairs(B, N, M, how, g)
    return {"kind": "op", "s_ref": torch.randn(B, h, N, N, generator=g).to(dtype),
            "s_tgt": torch.randn(B, h, N, N, generator=g).to(dtype),
            "v": torch.randn(B, h, N, T, generator=g).to(dtype), "ref": ref, "tgt": tgt,
            "w": torch.randn(B, h, M, T, generator=g)}


def _head_case(dim=24, target_dim=4, num_heads=3, B=2, N=13, M=37, compiled=False):
    torch.manual_seed(1)
    head = CrossAttentionHead(dim, target_dim, num_heads)
    for p in head.parameters():  # non-trivial biases too
        torch.nn.init.normal_(p, std=0.3)
    g = torch.Generator().manual_seed(2)
    ref, tgt = sample_pairs(B, N, M, generator=g)
    return {"kind": "head", "dim": dim, "target_dim": target_dim, "num_heads": num_heads,
            "state": head.state_dict(), "z": torch.randn(B, N, dim, generator=g), "ref": ref, "tgt": tgt,
            "compiled": compiled}


def _reference_op(c):
    """softmax(s_ref[ref] + s_tgt[tgt]) @ v in float64 with gathers, and its gradients."""
    leaves = [c[k].double().requires_grad_() for k in ("s_ref", "s_tgt", "v")]
    s_ref, s_tgt, v = leaves
    B, h, N, _ = s_ref.shape
    M = c["ref"].shape[1]
    def rows(s, i):
        return torch.gather(s, 2, i[:, None, :, None].expand(B, h, M, N))
    out = (rows(s_ref, c["ref"]) + rows(s_tgt, c["tgt"])).softmax(-1) @ v
    return out, torch.autograd.grad(out.mul(c["w"].double()).sum(), leaves)


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory):
    """Every case through the kernel in one interpreter process: (cases, results)."""
    cases = {name: _op_case(*shape) for name, shape in OP_CASES.items()}
    cases["half"] = _op_case(2, 2, 20, 50, 4, "random", dtype=torch.float16)
    cases["head"] = _head_case()
    cases["head_target1"] = _head_case(dim=16, target_dim=1, num_heads=2, N=6, M=9)
    cases["head_compiled"] = _head_case(compiled=True)
    tmp = tmp_path_factory.mktemp("pair_attention")
    torch.save(cases, tmp / "cases.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(CHILD), str(tmp / "cases.pt"), str(tmp / "results.pt")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cases, torch.load(tmp / "results.pt")


@needs_triton
@pytest.mark.parametrize("name", list(OP_CASES))
def test_kernel_forward_backward_equal_reference_float32(kernel_run, name):
    cases, results = kernel_run
    want, want_grads = _reference_op(cases[name])
    got = results[name]
    assert got["out"].dtype == torch.float32 and got["out"].shape == want.shape
    assert torch.allclose(got["out"].double(), want, atol=2e-6, rtol=1e-5)
    for g, w, what in zip(got["grads"], want_grads, ("s_ref", "s_tgt", "v")):
        assert g.shape == w.shape and g.dtype == torch.float32, what
        assert torch.allclose(g.double(), w, atol=1e-5, rtol=1e-5), (what, (g.double() - w).abs().max())


@needs_triton
def test_kernel_sums_repeated_and_self_pairs_per_token(kernel_run):
    """A token row that no pair uses gets exactly zero gradient; with ref == tgt both logit
    matrices get the same gradient (each pair's dS added once to each)."""
    cases, results = kernel_run
    c, got = cases["self_pairs"], results["self_pairs"]
    assert torch.equal(got["grads"][0], got["grads"][1])
    c, got = cases["repeated"], results["repeated"]
    unused = torch.ones(c["s_ref"].shape[2], dtype=torch.bool)
    unused[c["ref"][0]] = False
    assert unused.any()
    assert torch.count_nonzero(got["grads"][0][0, :, unused]) == 0


@needs_triton
def test_kernel_half_precision_close_to_float64(kernel_run):
    """float16 inputs (the half path: products in float16, softmax and sums in float32). The
    interpreter cannot run bfloat16 (its loads misread bf16 buffers), so bf16 waits for a GPU."""
    cases, results = kernel_run
    want, want_grads = _reference_op(cases["half"])
    got = results["half"]
    assert got["out"].dtype == torch.float16
    assert torch.allclose(got["out"].double(), want, atol=5e-3, rtol=1e-2)
    for g, w in zip(got["grads"], want_grads):
        assert g.dtype == torch.float16
        assert torch.allclose(g.double(), w, atol=2e-2, rtol=2e-2), (g.double() - w).abs().max()


def _reference_head(c):
    head = CrossAttentionHead(c["dim"], c["target_dim"], c["num_heads"]).double()
    head.load_state_dict(c["state"])
    z = c["z"].double().requires_grad_()
    out = head.forward_reference(z, c["ref"], c["tgt"])
    return out, torch.autograd.grad(out.square().sum(), [z, *head.parameters()])


@needs_triton
@pytest.mark.parametrize("name", ["head", "head_target1", "head_compiled"])
def test_head_with_triton_attention_equals_forward_reference(kernel_run, name):
    """The head's attention='triton' path (eager, and under torch.compile through the custom op's
    fake kernel) against the literal head in float64: output, input and parameter gradients."""
    cases, results = kernel_run
    want, want_grads = _reference_head(cases[name])
    got = results[name]
    assert torch.allclose(got["out"].double(), want, atol=1e-5, rtol=1e-5)
    assert len(got["grads"]) == len(want_grads)
    for g, w in zip(got["grads"], want_grads):
        scale = w.abs().max().item() + 1.0
        assert (g.double() - w).abs().max().item() <= 1e-5 * scale, (g.double() - w).abs().max()


@needs_triton
def test_custom_op_passes_opcheck(kernel_run):
    """torch.library.opcheck (schema, fake kernel vs real strides, autograd registration, AOT
    dispatch) ran in the child on the odd-shaped case."""
    assert kernel_run[1]["opcheck"] == "passed"


def test_triton_attention_refused_without_interpreter_or_cuda():
    """On a CPU tensor without TRITON_INTERPRET the explicit choice fails with one line naming
    the alternatives (auto never picks it on the CPU)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1 in this process: the kernel would run")
    head = CrossAttentionHead(16, 2, num_heads=4, attention="triton")
    z = torch.randn(2, 5, 16)
    ref, tgt = sample_pairs(2, 5, 3)
    with pytest.raises(RuntimeError, match=r"attention='triton' needs Triton and a CUDA device \(got cpu"
                                           r".*use attention 'auto', 'fused' or 'logits'"):
        head(z, ref, tgt)


needs_cuda_triton = pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
                                       reason="needs a CUDA device and Triton (the GPU check runs these)")


def _head_and_grads(head, z, ref, tgt, mode, autocast=False):
    head.attention = mode
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = head(z, ref, tgt)
    grads = torch.autograd.grad(out.float().square().sum(), [z, *head.parameters()])
    return out.float(), grads


@needs_cuda_triton
@pytest.mark.parametrize("B,N,M,T,d,h", [(4, 64, 2048, 4, 384, 6), (2, 196, 4802, 2, 768, 12), (3, 37, 70, 1, 48, 3)])
@pytest.mark.parametrize("autocast", [False, True])
def test_triton_head_on_cuda_matches_logits_path(B, N, M, T, d, h, autocast):
    """On the GPU, compiled by Triton for real (ViT-S/4 and ImageNet sizes, and an odd one):
    the kernel path against the PyTorch logits path, float32 and bf16 autocast."""
    torch.manual_seed(0)
    head = CrossAttentionHead(d, T, h).cuda()
    z = torch.randn(B, N, d, device="cuda", requires_grad=True)
    ref, tgt = sample_pairs(B, N, M, device="cuda")
    got, got_g = _head_and_grads(head, z, ref, tgt, "triton", autocast)
    want, want_g = _head_and_grads(head, z, ref, tgt, "logits", autocast)
    tol = 3e-2 if autocast else 1e-4
    assert (got - want).abs().max().item() <= tol * (want.abs().max().item() + 1e-3)
    for g, w in zip(got_g, want_g):
        assert (g - w).abs().max().item() <= tol * (w.abs().max().item() + 1e-6)


@needs_cuda_triton
def test_triton_head_on_cuda_under_torch_compile():
    """attention='auto' picks the kernel on CUDA; torch.compile (inductor) gives the eager output."""
    torch.manual_seed(0)
    head = CrossAttentionHead(64, 4, 4).cuda()
    z = torch.randn(2, 20, 64, device="cuda")
    ref, tgt = sample_pairs(2, 20, 50, device="cuda")
    eager = head(z, ref, tgt)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        compiled = torch.compile(head, fullgraph=True)(z, ref, tgt)
        eager_bf16 = head(z, ref, tgt)
    assert torch.allclose(compiled.float(), eager_bf16.float(), atol=2e-2, rtol=2e-2)
    assert torch.allclose(eager_bf16.float(), eager, atol=5e-2, rtol=5e-2)
