"""Runs the Triton pair-attention kernel under Triton's CPU interpreter for
tests/part/test_pair_attention.py, in its own process: TRITON_INTERPRET must be set before
Triton is imported, and must not reach the other tests.

    TRITON_INTERPRET=1 python tests/part/pair_attention_child.py CASES.pt RESULTS.pt

CASES.pt holds the inputs the test drew (the test computes the references itself); this writes the
kernel's outputs and gradients, nothing else."""
import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before starting this script"
from part.core.heads import CrossAttentionHead  # noqa: E402
from part.core.pair_attention import pair_attention  # noqa: E402


def run_op(case):
    """Output and gradients (s_ref, s_tgt, v) of the op for the upstream gradient case['w']."""
    leaves = [case[k].clone().requires_grad_() for k in ("s_ref", "s_tgt", "v")]
    out = pair_attention(*leaves, case["ref"], case["tgt"])
    grads = torch.autograd.grad(out.float().mul(case["w"]).sum(), leaves)
    return {"out": out.detach(), "grads": [g.detach() for g in grads]}


def run_head(case, compiled=False):
    """The head with attention='triton' (optionally torch.compile'd with the aot_eager backend,
    which traces the custom op through its fake kernel and autograd rule)."""
    head = CrossAttentionHead(case["dim"], case["target_dim"], case["num_heads"], attention="triton")
    head.load_state_dict(case["state"])
    z = case["z"].clone().requires_grad_()
    fn = torch.compile(head, backend="aot_eager", fullgraph=True) if compiled else head
    out = fn(z, case["ref"], case["tgt"])
    grads = torch.autograd.grad(out.square().sum(), [z, *head.parameters()])
    return {"out": out.detach(), "grads": [g.detach() for g in grads]}


def main(cases_path, results_path):
    cases = torch.load(cases_path)
    results = {name: (run_head(c, c.get("compiled", False)) if c["kind"] == "head" else run_op(c))
               for name, c in cases.items()}
    op = cases["odd"]
    torch.library.opcheck(torch.ops.part.pair_attention.default,
                          (op["s_ref"], op["s_tgt"], op["v"], op["ref"], op["tgt"]))
    results["opcheck"] = "passed"
    torch.save(results, results_path)


if __name__ == "__main__":
    main(*sys.argv[1:3])
