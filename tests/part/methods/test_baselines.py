"""The grid baselines (MAE, MP3, DropPos) and the supervised stub, on images and 1-D signals.

Per method and modality: forward/backward with shapes; pretext targets on hand-built batches
(MP3/DropPos: the position labels are the true grid indices; MAE: the loss covers exactly the
masked patches); option errors; the loss decreases on real CIFAR-10 images and synthetic signals.
"""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SHARED_DATA
from part.registry import get_modality
from part.core.backbone import ViTEncoder
from part.errors import ConfigError
from part.registry import build_method, get_method
from part.core.methods.common import num_kept, sincos_position_embedding
from part.core.methods.droppos import position_loss, smoothed_position_targets
from part.core.methods.mae import masked_patch_mse
from part.core.modality import Modality

CIFAR = SHARED_DATA / "cifar10_subset"
DIM = 32
TINY_DECODER = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}
BASELINES = ("mae", "mp3", "droppos")


class Windows1D(Modality):
    """Stand-in 1-D modality: (B, C, T) signals; grid = T // w contiguous windows of w samples."""

    name, target_dim, geometry_dim = "windows1d", 1, 2

    def __init__(self, channels: int = 2, length: int = 48, window: int = 4):
        self.channels, self.length, self.window = channels, length, window
        self.num_grid_patches = self.num_patches = length // window
        self.grid_shape = (self.num_grid_patches,)
        self.patch_dim = channels * window

    def _cut(self, x, starts):  # starts (B, N) long -> (B, N, C * w), channel-major
        idx = starts.unsqueeze(-1) + torch.arange(self.window, device=x.device)      # (B, N, w)
        B, N, w = idx.shape
        taken = torch.gather(x, 2, idx.reshape(B, 1, N * w).expand(-1, self.channels, -1))
        return taken.view(B, self.channels, N, w).transpose(1, 2).reshape(B, N, -1)

    def _geom(self, starts):
        return torch.stack([starts.float(), torch.full_like(starts, self.window).float()], -1)

    def grid(self, x):
        starts = (torch.arange(self.num_grid_patches, device=x.device) * self.window).expand(x.shape[0], -1)
        return self._cut(x, starts), self._geom(starts)

    def sample(self, x, generator=None):
        starts = torch.randint(0, self.length - self.window + 1, (x.shape[0], self.num_patches),
                               generator=generator).to(x.device)
        return self._cut(x, starts), self._geom(starts)

    def tokenizer(self, dim):
        return nn.Linear(self.patch_dim, dim)

    def targets(self, geom_ref, geom_tgt):
        return (geom_tgt[..., :1] - geom_ref[..., :1]) / geom_ref[..., 1:2]


def _eeg():
    return get_modality("eeg", channels=2, window_samples=240, patch_samples=8)  # 30 windows


MODALITIES = {
    "image": lambda: get_modality("image", image_size=8, channels=1, patch_size=2),
    "windows1d": Windows1D,
    "eeg": _eeg,
}


def _input(modality, batch=3):
    if isinstance(modality, Windows1D):
        return torch.randn(batch, modality.channels, modality.length)
    if modality.name == "eeg":
        return torch.randn(batch, modality.channels, modality.num_grid_patches * modality.patch_samples)
    return torch.rand(batch, modality.channels, modality.height, modality.width)


def _build(name, modality, dim=DIM, **options):
    defaults = {} if name == "mp3" else dict(TINY_DECODER)
    opts = get_method(name).options(**{**defaults, **options})
    enc = ViTEncoder(dim, 2, 4)
    return build_method(name, modality, enc, modality.tokenizer(dim), opts)


def _constant_patches(modality, batch=2):
    """A batch whose grid patch k holds the value k everywhere (so content names the cell)."""
    n = modality.num_grid_patches
    if isinstance(modality, Windows1D) or modality.name == "eeg":
        w = modality.window if isinstance(modality, Windows1D) else modality.patch_samples
        x = torch.arange(n, dtype=torch.float32).repeat_interleave(w)
        return x.expand(batch, modality.channels, -1).contiguous()
    rows, cols = modality.grid_shape
    P = modality.patch_size
    cells = torch.arange(n, dtype=torch.float32).view(rows, cols)
    img = cells.repeat_interleave(P, 0).repeat_interleave(P, 1)
    return img.expand(batch, modality.channels, -1, -1).contiguous()


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("kind", list(MODALITIES))
@pytest.mark.parametrize("name", BASELINES)
def test_forward_backward_shapes(name, kind):
    torch.manual_seed(0)
    modality = MODALITIES[kind]()
    method = _build(name, modality)
    x = _input(modality)
    B, N, F = x.shape[0], modality.num_grid_patches, modality.patch_dim
    K = num_kept(N, 0.75)
    out = method.outputs(x)
    if name == "mae":
        assert out["pred"].shape == out["target"].shape == (B, N, F)
        assert out["masked"].shape == (B, N) and out["keep"].shape == (B, K)
    elif name == "mp3":
        assert out["logits"].shape == (B, N, N) and out["labels"].shape == (B, N)
    else:
        assert out["logits"].shape == (B, K, N) and out["labels"].shape == (B, K)
        assert out["weight"].shape == (B, K) and out["pos"].shape == (B, K, DIM)
    result = method(x)
    assert result["loss"].ndim == 0 and torch.isfinite(result["loss"])
    assert all(v.ndim == 0 for v in result.values())
    result["loss"].backward()
    no_grad = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert method.encoder.cls_token.grad.abs().sum() > 0 and method.tokenizer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BASELINES)
def test_encoder_keeps_no_pretraining_position_embedding(name):
    method = _build(name, MODALITIES["image"]())
    assert method.encoder.pos_embed is None
    assert not any("pos_embed" in k for k in method.encoder.state_dict())
    with pytest.raises(ValueError, match="without a position embedding"):
        modality = MODALITIES["image"]()
        enc = ViTEncoder(DIM, 1, 4, num_positions=modality.num_grid_patches)
        build_method(name, modality, enc, modality.tokenizer(DIM), get_method(name).options())


def test_registry_flags_and_supervised_stub():
    assert [get_method(n).position_embedding for n in BASELINES] == [True, False, True]
    assert all(get_method(n).pretrains for n in BASELINES) and not get_method("supervised").pretrains
    from dataclasses import fields
    assert [f.name for f in fields(get_method("supervised").options)] == ["name"]
    modality = MODALITIES["image"]()
    with pytest.raises(ConfigError, match="run.stages"):
        build_method("supervised", modality, ViTEncoder(DIM, 1, 4), modality.tokenizer(DIM),
                     get_method("supervised").options())


# ----------------------------------------------------------------------------- MAE targets

@pytest.mark.parametrize("kind", list(MODALITIES))
def test_mae_loss_covers_exactly_the_masked_patches(kind):
    torch.manual_seed(1)
    modality = MODALITIES[kind]()
    method = _build("mae", modality)
    x = _input(modality, batch=4)
    out = method.outputs(x)
    N, K = modality.num_grid_patches, num_kept(modality.num_grid_patches, 0.75)
    masked, keep = out["masked"], out["keep"]
    assert (masked.sum(1) == N - K).all() and not masked.gather(1, keep).any()
    pred = out["pred"].detach().requires_grad_(True)
    loss = masked_patch_mse(pred, out["target"], masked)
    (grad,) = torch.autograd.grad(loss, pred)
    assert torch.equal(grad.abs().sum(-1) > 0, masked)  # the loss sees masked patches only
    visible_changed, masked_changed = out["target"].clone(), out["target"].clone()
    visible_changed[~masked] += 5.0
    masked_changed[0, masked[0].nonzero()[0, 0]] += 5.0
    assert masked_patch_mse(pred, visible_changed, masked) == loss
    assert masked_patch_mse(pred, masked_changed, masked) > loss + 1e-3
    torch.manual_seed(7)
    forward_loss = method(x)["loss"]
    torch.manual_seed(7)
    again = method.outputs(x)
    assert torch.allclose(forward_loss, masked_patch_mse(again["pred"], again["target"], again["masked"]))


def test_mae_encoder_sees_only_visible_tokens_and_normalised_targets():
    modality = MODALITIES["image"]()
    method = _build("mae", modality)
    seen = []
    method.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape))
    out = method.outputs(_input(modality, batch=2))
    assert seen == [torch.Size([2, num_kept(16, 0.75), DIM])]
    t = out["target"]
    assert torch.allclose(t.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(t.std(-1), torch.ones(2, 16), atol=1e-3)
    raw = _build("mae", modality, norm_pix_loss=False)
    x = _input(modality, batch=2)
    assert torch.equal(raw.outputs(x)["target"], modality.grid(x)[0])


def test_sincos_embedding_layout():
    pe = sincos_position_embedding((2, 3), 8)
    assert pe.shape == (6, 8)
    assert torch.equal(pe[0, :4], pe[3, :4]) and not torch.equal(pe[0, 4:], pe[3, 4:])  # cols, rows
    assert torch.equal(pe[0, 4:], pe[1, 4:]) and not torch.equal(pe[0, :4], pe[1, :4])
    assert len(set(map(tuple, pe.tolist()))) == 6 and sincos_position_embedding((5,), 6).shape == (5, 6)
    with pytest.raises(ValueError, match="model.dim=6 must be divisible by 4"):
        sincos_position_embedding((2, 3), 6)


# ----------------------------------------------------------------------------- MP3 targets

@pytest.mark.parametrize("kind", list(MODALITIES))
def test_mp3_labels_are_grid_indices_and_masked_patches_are_not_keys(kind):
    modality = MODALITIES[kind]()
    method = _build("mp3", modality).eval()
    x = _constant_patches(modality)
    torch.manual_seed(3)
    out = method.outputs(x)
    patches, _ = modality.grid(x)
    assert torch.equal(out["labels"], patches[..., 0].long())  # label = the cell the content names
    masked = out["masked"]
    N = modality.num_grid_patches
    assert (masked.sum(1) == N - num_kept(N, 0.75)).all()
    b, i = 0, masked[0].nonzero()[0, 0].item()
    j = (~masked[0]).nonzero()[0, 0].item()
    for cell, is_key in ((i, False), (j, True)):
        changed = x.clone()
        if isinstance(modality, Windows1D) or modality.name == "eeg":
            w = modality.window if isinstance(modality, Windows1D) else modality.patch_samples
            changed[b, :, cell * w:(cell + 1) * w] += 3.0
        else:
            P, cols = modality.patch_size, modality.grid_shape[1]
            r, c = divmod(cell, cols)
            changed[b, :, r * P:(r + 1) * P, c * P:(c + 1) * P] += 3.0
        torch.manual_seed(3)
        new = method.outputs(changed)["features"]
        diff = (new[b] - out["features"][b]).abs().sum(-1) > 1e-5
        others = torch.ones(N, dtype=torch.bool)
        others[cell] = False
        assert diff[cell]  # its own token changes
        assert diff[others].any() == is_key  # others change only if the patch is a key


# ----------------------------------------------------------------------------- DropPos targets

@pytest.mark.parametrize("kind", list(MODALITIES))
def test_droppos_labels_are_true_indices_of_kept_patches(kind):
    modality = MODALITIES[kind]()
    method = _build("droppos", modality)
    x = _constant_patches(modality)
    with torch.no_grad():  # token = mean patch value = the cell index, position part zeroed
        method.tokenizer.weight.zero_()
        method.tokenizer.weight[0] = 1.0 / modality.patch_dim
        method.tokenizer.bias.zero_()
        method.mask_pos_token.zero_()
    method.pos_embed = torch.zeros_like(method.pos_embed)
    seen = []
    method.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0][..., 0]))
    out = method.outputs(x)  # the last encoder call encodes the kept tokens (the first, with
    assert torch.allclose(seen[-1], out["labels"].float())  # attn_guide, all N for the weights)
    N = modality.num_grid_patches
    K = num_kept(N, 0.75)
    assert out["labels"].shape == (2, K) and len(set(out["labels"][0].tolist())) == K


@pytest.mark.parametrize("ratio", [0.75, 0.2])
def test_droppos_position_embedding_dropped_for_the_loss_tokens(ratio):
    modality = Windows1D(length=120)  # 30 windows, as the EEG grid
    method = _build("droppos", modality, position_mask_ratio=ratio)
    out = method.outputs(_input(modality))
    K = num_kept(30, 0.75)
    weight, pos, labels = out["weight"], out["pos"], out["labels"]
    assert (weight.sum(1) == K - num_kept(K, ratio)).all()
    token = method.mask_pos_token[0, 0]
    assert torch.equal(pos[weight], token.expand(int(weight.sum()), -1))
    assert torch.equal(pos[~weight], method.pos_embed[labels[~weight]])
    logits = out["logits"].detach().requires_grad_(True)
    loss = position_loss(logits, labels, weight, method.sq_dist, 0.0)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(grad.abs().sum(-1) > 0, weight)  # loss only where the position was dropped
    hard = nn.functional.cross_entropy(out["logits"][weight].float(), labels[weight])
    assert torch.allclose(loss, hard)


def test_droppos_smoothing_and_annealing():
    modality = MODALITIES["image"]()  # 4 x 4 grid
    method = _build("droppos", modality, smoothing_sigma=2.0)
    assert method.progress == 1.0 and method.sigma == 0.0
    method.progress = 0.0
    assert method.sigma == 2.0
    method.progress = 0.75
    assert method.sigma == pytest.approx(0.5)
    with pytest.raises(ValueError, match="progress"):
        method.progress = 1.5
    labels = torch.tensor([[5, 0]])
    t = smoothed_position_targets(labels, method.sq_dist, 1.0)
    assert torch.allclose(t.sum(-1), torch.ones(1, 2))
    assert t[0, 0].argmax() == 5 and t[0, 1].argmax() == 0
    assert t[0, 0, 6] > t[0, 0, 7] > t[0, 0, 15] > 0  # (1,2) nearer than (1,3), (3,3)
    assert torch.isclose(t[0, 0, 4], t[0, 0, 1]) and torch.isclose(t[0, 0, 6], t[0, 0, 9])
    assert torch.equal(smoothed_position_targets(labels, method.sq_dist, 0.0),
                       nn.functional.one_hot(labels, 16).float())
    grid1d = _build("droppos", Windows1D(), smoothing_sigma=1.0).sq_dist
    assert grid1d[0, 3] == 9.0 and grid1d.shape == (12, 12)


def test_droppos_learnable_position_embedding_option():
    method = _build("droppos", MODALITIES["image"](), pos_embed="learnable")
    assert isinstance(method.pos_embed, nn.Parameter) and method.pos_embed.shape == (16, DIM)
    method(_input(MODALITIES["image"]()))["loss"].backward()
    assert method.pos_embed.grad is not None


# ----------------------------------------------------------------------------- bad options

@pytest.mark.parametrize("name,key,value", [
    ("mae", "mask_ratio", 1.0), ("mae", "mask_ratio", -0.1), ("mp3", "mask_ratio", 1.2),
    ("droppos", "mask_ratio", 1.0), ("droppos", "position_mask_ratio", 1.0),
])
def test_ratio_outside_unit_interval_is_rejected(name, key, value):
    with pytest.raises(ValueError, match=rf"'method\.{key}' = {value} is out of range; allowed: in \[0\.0, 1\.0\)"):
        _build(name, MODALITIES["image"](), **{key: value})


def test_degenerate_counts_and_decoder_options_are_rejected():
    image = MODALITIES["image"]()  # 16 patches
    with pytest.raises(ValueError, match="method.mask_ratio=0.0 keeps 16 of the 16"):
        _build("mae", image, mask_ratio=0.0)
    with pytest.raises(ValueError, match="method.mask_ratio=0.99 leaves no context"):
        _build("mp3", image, mask_ratio=0.99)
    with pytest.raises(ValueError, match="method.position_mask_ratio=0.0 drops no position"):
        _build("droppos", image, position_mask_ratio=0.0)
    with pytest.raises(ValueError, match="'method.decoder_dim' = 18 must be divisible by decoder_heads=4"):
        _build("mae", image, decoder_dim=18, decoder_heads=4)
    with pytest.raises(ValueError, match="method.decoder_dim=18 must be divisible by 4"):
        _build("mae", image, decoder_dim=18, decoder_heads=2)
    with pytest.raises(ValueError, match="'method.smoothing_sigma' = -1.0 is out of range; allowed: >= 0"):
        _build("droppos", image, smoothing_sigma=-1.0)
    assert _build("mp3", image, mask_ratio=0.0)(_input(image))["loss"] > 0  # no masking is valid


# ----------------------------------------------------------------------------- loss decreases

def _cifar_images(per_class=24):
    if not CIFAR.is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR}")
    from PIL import Image
    files = [f for d in sorted((CIFAR / "train").iterdir()) for f in sorted(d.glob("*.jpg"))[:per_class]]
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) for f in files])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 255.0


def _train(method, data, steps, lr=3e-3, batch=64):
    """AdamW steps on random batches; mean loss of the first 10 and of the last 20 steps."""
    opt = torch.optim.AdamW(method.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = method(data[torch.randint(0, len(data), (batch,))])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.mean(losses[:10]), np.mean(losses[-20:])


# DropPos with its default 75% drop learns too slowly for a 200-step tiny model to show it; the
# decrease tests drop 25% (the pretext and loss are the same; the defaults are tested above).
EASIER = {"mae": {}, "mp3": {}, "droppos": {"mask_ratio": 0.25}}
# MAE on the chirps sits on a plateau for its first ~200 steps (torch 2.14: 0.939 -> 0.886 after
# 200 steps, 0.939 -> 0.632 after 400), so its decrease is checked after 400.
EEG_STEPS = {"mae": 400}


@pytest.mark.parametrize("name", BASELINES)
def test_loss_decreases_on_real_cifar_images(name):
    """240 real CIFAR-10 images (24 per class), 32 x 32, patch 8: 16 grid patches."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    images = _cifar_images()
    modality = get_modality("image", image_size=32, channels=3, patch_size=8)
    first, last = _train(_build(name, modality, **EASIER[name]), images, 200)
    assert last < 0.95 * first, (first, last)


@pytest.mark.parametrize("name", BASELINES)
def test_loss_decreases_on_synthetic_eeg(name):
    """Chirps (3 to 12 cycles per window, random phase) + noise: position shows in the content."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    modality = MODALITIES["eeg"]()
    t = torch.linspace(0, 1, modality.window_samples)
    phase = torch.rand(256, modality.channels, 1) * 6.28
    noise = 0.1 * torch.randn(256, modality.channels, t.numel())
    data = torch.sin(2 * np.pi * (3 + 4.5 * t) * t + phase) + noise
    first, last = _train(_build(name, modality, **EASIER[name]), data, EEG_STEPS.get(name, 200))
    assert last < 0.9 * first, (first, last)
