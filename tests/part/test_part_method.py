import numpy as np
import pytest
import torch

from part.registry import get_modality
from part.core.backbone import ViTEncoder
from part.registry import build_method, get_method


def _method(name="part", head="cross_attention", **mod):
    m = get_modality("image", image_size=8, channels=1, patch_size=2, **mod)
    enc = ViTEncoder(32, 2, 4)
    opts = get_method(name).options(num_pairs=64, head=head)
    return build_method(name, m, enc, m.tokenizer(32), opts), m


@pytest.mark.parametrize("name", ["part", "part_grid"])
@pytest.mark.parametrize("head", ["cross_attention", "pairwise_mlp", "mlp"])
def test_forward_backward(name, head):
    model, _ = _method(name, head)
    out = model(torch.rand(3, 1, 8, 8))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.tokenizer.weight.grad is not None and model.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_part_grid_targets_are_grid_multiples():
    model, m = _method("part_grid")
    _, geom = m.grid(torch.rand(2, 1, 8, 8))
    t = m.targets(geom[:, :1], geom)
    assert torch.equal(t, t.round())  # on-grid: integer offsets in patch units


def test_part_loss_decreases_on_real_digits():
    """50 AdamW steps of PART on scikit-learn's digits (real 8x8 scans) lower the loss."""
    from sklearn.datasets import load_digits
    torch.manual_seed(0)
    torch.set_num_threads(1)  # 2 threads: same losses, but 30x slower on a busy 2-core machine
    x = torch.tensor(load_digits().images[:512], dtype=torch.float32).unsqueeze(1) / 16.0
    model, _ = _method("part", scale_range=None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(50):
        idx = torch.randint(0, len(x), (64,))
        loss = model(x[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.8 * first, (first, last)
