"""DropPos' attentive reconstruction (``attn_guide``): the per-token loss weights come from the
[CLS]-patch cosine affinity of a full, gradient-free encoder pass (softmax with temperature tau),
gathered at the visible patches and renormalised; the targets themselves are unchanged."""
import math

import pytest
import torch
from torch import nn

from part.core.backbone import ViTEncoder
from part.core.methods.common import num_kept
from part.core.methods.droppos import (DropPosOptions, attentive_weights, feature_similarity,
                                       position_loss, smoothed_position_targets)
from part.registry import build_method, get_method, get_modality

TINY = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}


def _droppos(**options):
    modality = get_modality("image", image_size=8, channels=1, patch_size=2)  # 4 x 4 grid
    encoder = ViTEncoder(32, 1, 4, drop_path=0.5)
    opts = get_method("droppos").options(**TINY, **options)
    return build_method("droppos", modality, encoder, modality.tokenizer(32), opts), modality


def test_defaults_follow_the_official_recipe():
    options = DropPosOptions()
    assert options.attn_guide is True and options.attn_guide_tau == 0.1
    with pytest.raises(ValueError, match="attn_guide_tau"):
        DropPosOptions(attn_guide_tau=0.0)


def test_feature_similarity_on_hand_built_features():
    """[CLS] = (1, 0); patches along it, orthogonal, opposite and along it again (longer)."""
    features = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [2.0, 0.0]]])
    tau = 0.1
    weights = feature_similarity(features, tau)
    cos = torch.tensor([1.0, 0.0, -1.0, 1.0])
    assert torch.allclose(weights[0], torch.softmax(cos / tau, 0))
    assert torch.allclose(weights.sum(-1), torch.ones(1))
    assert weights[0, 0] == weights[0, 3] > weights[0, 1] > weights[0, 2]  # cosine, not length
    assert math.isclose(weights[0, 0] / weights[0, 1], math.exp(1 / tau), rel_tol=1e-4)
    flat = feature_similarity(features, 100.0)  # a high temperature flattens the weights
    assert flat[0].max() - flat[0].min() < weights[0].max() - weights[0].min()


def test_attentive_weights_are_gathered_and_renormalised():
    similarity = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    keep = torch.tensor([[3, 0]])
    assert torch.allclose(attentive_weights(similarity, keep), torch.tensor([[0.8, 0.2]]))


def test_position_loss_is_the_attn_weighted_mean_over_dropped_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16, requires_grad=True)
    labels = torch.randint(0, 16, (2, 5))
    dropped = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    attn = torch.tensor([[0.1, 0.5, 0.2, 0.0, 0.2], [0.3, 0.3, 0.1, 0.2, 0.1]])
    sq = torch.rand(16, 16)
    sq = sq + sq.T
    ce = -(smoothed_position_targets(labels, sq, 1.0) * logits.log_softmax(-1)).sum(-1)
    w = dropped.float() * attn
    expected = (ce * w).sum() / w.sum()
    loss = position_loss(logits, labels, dropped, sq, 1.0, attn)
    assert torch.allclose(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(grad.abs().sum(-1) > 0, w > 0)  # no loss where not dropped or attn is 0
    plain = position_loss(logits, labels, dropped, sq, 1.0)  # attn_guide off: as before
    assert torch.allclose(plain, ce[dropped].mean())
    uniform = position_loss(logits, labels, dropped, sq, 1.0, torch.full((2, 5), 0.2))
    assert torch.allclose(uniform, plain)


def test_attn_comes_from_a_full_gradient_free_pass_and_leaves_the_rest_unchanged():
    method, modality = _droppos()
    x = torch.randn(3, 1, 8, 8)
    calls = []
    method.encoder.register_forward_hook(lambda mod, args, out: calls.append((args[0], out, mod.training)))
    method.train()
    torch.manual_seed(1)
    out = method.outputs(x)
    (full_in, full_out, full_training), (part_in, _, part_training) = calls
    N, K = modality.num_grid_patches, num_kept(modality.num_grid_patches, 0.75)
    patches, _ = modality.grid(x)
    assert full_in.shape == (3, N, 32) and part_in.shape == (3, K, 32)
    assert torch.allclose(full_in, method.tokenizer(patches) + method.pos_embed)  # every true position
    assert not full_training and part_training and method.encoder.training  # no drop path, restored
    expected = attentive_weights(feature_similarity(full_out, 0.1), out["labels"])
    assert torch.allclose(out["attn"], expected) and not out["attn"].requires_grad
    assert torch.allclose(out["attn"].sum(-1), torch.ones(3))

    off, _ = _droppos(attn_guide=False)
    off.load_state_dict(method.state_dict())
    torch.manual_seed(1)
    plain = off.outputs(x)  # the same draws: the similarity pass takes no random numbers
    assert plain["attn"] is None
    assert torch.equal(plain["labels"], out["labels"]) and torch.equal(plain["weight"], out["weight"])
    method.progress = off.progress = 0.0  # smoothing on: the targets are the same either way
    torch.manual_seed(2)
    loss_on = method(x)["loss"]
    torch.manual_seed(2)
    loss_off = off(x)["loss"]
    assert torch.isfinite(loss_on) and not torch.allclose(loss_on, loss_off)
    loss_on.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in method.parameters())


def test_learnable_position_embedding_with_attn_guide():
    method, _ = _droppos(pos_embed="learnable")
    method(torch.randn(2, 1, 8, 8))["loss"].backward()
    assert isinstance(method.pos_embed, nn.Parameter) and method.pos_embed.grad is not None
