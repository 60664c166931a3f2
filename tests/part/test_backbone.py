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
