import pytest
import timm
import torch

from part.core.backbone import SIZES, ViTEncoder, build_encoder, random_position_drop, resolve_size, timm_state_dict


def test_named_sizes():
    assert SIZES["tiny"] == (192, 12, 3) and SIZES["small"] == (384, 12, 6) and SIZES["base"] == (768, 12, 12)
    enc = build_encoder("eeg")
    n_params = sum(p.numel() for p in enc.parameters())
    # + tokenizer 600*256 + 256 and a 31-position embedding: about 12.9M in total
    total = n_params + 600 * 256 + 256 + 31 * 256 + 5 * 257
    assert 12.5e6 < total < 13.1e6, total


def test_no_position_embedding_means_permutation_equivariant():
    torch.manual_seed(0)
    enc = ViTEncoder(32, 2, 4).eval()
    x = torch.randn(2, 6, 32)
    perm = torch.randperm(6)
    out, out_p = enc(x), enc(x[:, perm])
    assert torch.allclose(out[:, 1:][:, perm], out_p[:, 1:], atol=1e-5)
    assert torch.allclose(out[:, 0], out_p[:, 0], atol=1e-5)


def test_position_embedding_breaks_symmetry_and_drop():
    torch.manual_seed(0)
    enc = ViTEncoder(32, 2, 4).eval()
    enc.add_position_embedding(6)
    assert enc.pos_embed.shape == (1, 7, 32) and enc.pos_embed.requires_grad
    x = torch.randn(2, 6, 32)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])
    assert not torch.allclose(enc(x)[:, 1:][:, perm], enc(x[:, perm])[:, 1:], atol=1e-4)
    # explicit positions equal to the default raster order give the same output
    pos = torch.arange(6).expand(2, 6)
    assert torch.allclose(enc(x), enc(x, positions=pos), atol=1e-6)
    drop = random_position_drop(2, 6, 0.5)
    assert drop.sum(1).tolist() == [3, 3]
    assert random_position_drop(2, 6, 0.0) is None


def test_custom_size_needs_all_dims():
    assert resolve_size("small", dim=128) == (128, 12, 6)
    with pytest.raises(ValueError, match="model.dim"):
        resolve_size("custom", dim=64)
    with pytest.raises(ValueError, match="valid: tiny"):
        resolve_size("huge")


@pytest.mark.parametrize("size,timm_name", [("tiny", "vit_tiny_patch16_224"), ("small", "vit_small_patch16_224")])
def test_weights_load_into_timm(size, timm_name):
    enc = build_encoder(size)
    enc.add_position_embedding(64)
    ref = timm.create_model(timm_name, img_size=32, patch_size=4, num_classes=0, pretrained=False)
    ours = enc.state_dict()
    theirs = ref.state_dict()
    def block_keys(sd):
        return sorted(k for k in sd if k.startswith(("blocks.", "norm.")))
    assert block_keys(ours) == block_keys(theirs)
    for k in ours:
        assert ours[k].shape == theirs[k].shape, k
    w = torch.randn(enc.dim, 3, 4, 4)
    b = torch.randn(enc.dim)
    ref.load_state_dict(timm_state_dict(enc, w, b), strict=True)
    assert torch.equal(ref.blocks[3].attn.qkv.weight, enc.blocks[3].attn.qkv.weight)


def test_blocks_compute_what_timms_compute_bit_for_bit():
    """Our Block (part/core/blocks.py, no timm import) against timm's vision_transformer.Block:
    the same parameter names, the same outputs and gradients in eval and in training with
    stochastic depth (same RNG draws), and the same truncated-normal initialisation."""
    from functools import partial

    import torch
    from timm.layers import trunc_normal_ as timm_trunc_normal
    from timm.models.vision_transformer import Block as TimmBlock

    from part.core.blocks import Block, trunc_normal_
    ours = Block(64, 4, 4.0, qkv_bias=True, drop_path=0.3)
    theirs = TimmBlock(64, 4, 4.0, qkv_bias=True, drop_path=0.3, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 31, 64)
    for training in (False, True):
        ours.train(training)
        theirs.train(training)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.manual_seed(3)
        a = ours(xa)
        torch.manual_seed(3)
        b = theirs(xb)
        assert torch.equal(a, b), training
        a.square().sum().backward()
        b.square().sum().backward()
        assert torch.equal(xa.grad, xb.grad)
    mask = torch.rand(5, 1, 1, 31) > 0.3  # MP3's key mask
    mask[..., 0] = True
    ours.eval()
    theirs.eval()
    assert torch.equal(ours(x, attn_mask=mask), theirs(x, attn_mask=mask))
    torch.manual_seed(0)
    w1 = trunc_normal_(torch.empty(100, 10), std=0.02)
    torch.manual_seed(0)
    assert torch.equal(w1, timm_trunc_normal(torch.empty(100, 10), std=0.02))


def test_training_and_staging_modules_do_not_import_timm():
    import subprocess
    import sys
    code = ("import sys; import part.core.backbone, part.core.methods.common, part.training.stages, "
            "part.modalities.eeg.sleep.staging, part.modalities.eeg.plugin; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('timm', 'torchvision')); assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
