"""EEG modality: 1-s windows at continuous start times, the 1-s grid, dt targets, bad input, and
PART learning relative time offsets on EEG-like signals."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from part.registry import get_modality, modality_spec
from modalities.eeg.modality import EEGModality, EEGOptions, extract_fixed_windows, extract_windows
from part.core.backbone import ViTEncoder


def eeg(channels, window_samples, patch_samples=100, **options):
    """EEGModality for data of `channels` x `window_samples` with the given options."""
    return EEGModality(EEGOptions(patch_samples=patch_samples, **options), channels=channels,
                       window_samples=window_samples)
from part.registry import build_method, get_method

C, T, P = 6, 3000, 100


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry_defaults_are_the_papers_setup():
    m = get_modality("eeg")  # channels / window_samples default to the data's 6 x 3000
    assert modality_spec("eeg").options is EEGOptions and EEGOptions().name == "eeg"
    assert (m.channels, m.window_samples, m.patch_samples, m.num_patches) == (6, 3000, 100, 40)
    assert m.grid_shape == (30,) and m.num_grid_patches == 30
    assert (m.patch_dim, m.target_dim, m.geometry_dim, m.sample_rate) == (600, 1, 2, 100.0)
    m2 = get_modality("eeg", channels=None, window_samples=None, patch_samples=50, num_patches=7)
    assert (m2.channels, m2.window_samples, m2.num_patches, m2.grid_shape) == (6, 3000, 7, (60,))
    assert get_modality("eeg", channels=2, window_samples=400).patch_dim == 200  # recipe wins


def test_sample_shapes_bounds_and_continuous_starts():
    m = eeg(C, T, P, num_patches=40)
    x = torch.randn(8, C, T)
    patches, geom = m.sample(x, _gen())
    assert patches.shape == (8, 40, C * P) and geom.shape == (8, 40, 2)
    start, length = geom.unbind(-1)
    assert torch.all(length == P) and torch.all(start >= 0) and torch.all(start + length <= T)
    frac = start - start.floor()
    assert (frac > 0.01).float().mean() > 0.9  # sub-sample starts, not snapped to samples
    assert start.std() > 0.2 * T  # spread over the whole window
    p2, g2 = m.sample(x, _gen())
    assert torch.equal(g2, geom) and torch.equal(p2, patches)  # the generator decides


EXTRACTORS = {"general": lambda x, geom: extract_windows(x, geom, P),
              "fixed": lambda x, geom: extract_fixed_windows(x, geom[..., 0], P)}


@pytest.mark.parametrize("path", EXTRACTORS)
def test_integer_starts_return_exactly_the_samples(path):
    x = torch.randn(3, C, T)
    starts = torch.tensor([[0., 1., 2900.], [17., 1234., 2899.], [5., 5., 100.]])
    geom = torch.stack([starts, torch.full_like(starts, P)], -1)
    out = EXTRACTORS[path](x, geom).view(3, 3, C, P)
    for b in range(3):
        for n in range(3):
            s = int(starts[b, n])
            assert torch.equal(out[b, n], x[b, :, s:s + P])


@pytest.mark.parametrize("path", EXTRACTORS)
def test_half_sample_start_interpolates_a_ramp(path):
    ramp = torch.arange(T, dtype=torch.float32)
    x = torch.stack([ramp * (c + 1) + 7 * c for c in range(C)]).unsqueeze(0)  # (1, C, T)
    geom = torch.tensor([[[10.5, P], [2899.25, P], [2900.0, P]]])
    out = EXTRACTORS[path](x, geom).view(3, C, P)
    k = torch.arange(P, dtype=torch.float32)
    for n, s in enumerate((10.5, 2899.25, 2900.0)):
        expected = torch.stack([(s + k) * (c + 1) + 7 * c for c in range(C)])
        torch.testing.assert_close(out[n], expected, rtol=0, atol=1e-3)


def test_both_extractors_agree_and_sample_uses_them():
    x = torch.randn(4, C, T)
    m = eeg(C, T, P, num_patches=40)
    patches, geom = m.sample(x, _gen(5))
    torch.testing.assert_close(patches, extract_windows(x, geom, P), rtol=0, atol=2e-3)
    torch.testing.assert_close(patches, extract_fixed_windows(x, geom[..., 0], P))
    small = eeg(C, P, P, num_patches=3)  # window = one patch: every start is 0
    p, g = small.sample(x[..., :P])
    assert torch.all(g[..., 0] == 0) and torch.equal(p, x[:, None, :, :P].expand(4, 3, C, P).reshape(4, 3, -1))


def test_grid_is_a_reshape():
    m = eeg(C, T, P)
    x = torch.randn(2, C, T)
    patches, geom = m.grid(x)
    assert patches.shape == (2, 30, C * P)
    assert torch.equal(patches, x.view(2, C, 30, P).permute(0, 2, 1, 3).reshape(2, 30, C * P))
    assert torch.equal(geom[0, :, 0], torch.arange(30.) * P) and torch.all(geom[..., 1] == P)
    assert torch.equal(m.grid_index(geom), torch.arange(30).expand(2, 30))
    # grid geometry through extract_windows gives the same patches (one convention)
    assert torch.equal(extract_windows(x, geom, P), patches)
    # a window whose centre lies in cell k maps to k; centres past the end clamp
    g = torch.tensor([[[149.0, 100.0], [151.0, 100.0], [2950.0, 100.0]]])
    assert m.grid_index(g).tolist() == [[1, 2, 29]]


def test_grid_strategy_and_stratified():
    x = torch.randn(2, C, T)
    grid = eeg(C, T, P, strategy="grid")
    assert grid.num_patches == 30 and torch.equal(grid.sample(x)[0], grid.grid(x)[0])
    strat = eeg(C, T, P, strategy="stratified")
    _, geom = strat.sample(x, _gen(1))
    assert geom.shape == (2, 30, 2)
    assert torch.all(geom[..., 0] >= 0) and torch.all(geom[..., 0] + geom[..., 1] <= T)
    assert torch.all((geom[..., 0] - torch.arange(30.) * P).abs() <= P / 2)


def test_targets_hand_computed_and_swap_negates():
    m = eeg(C, T, P)
    ref = torch.tensor([[0., 100.], [250.5, 100.], [1000., 100.]])
    tgt = torch.tensor([[100., 100.], [0., 100.], [1000., 100.]])
    dt = m.targets(ref, tgt)
    assert dt.shape == (3, 1)
    torch.testing.assert_close(dt[:, 0], torch.tensor([1.0, -2.505, 0.0]))
    _, geom = m.sample(torch.randn(2, C, T), _gen(2))
    a, b = geom[:, :20], geom[:, 20:]
    torch.testing.assert_close(m.targets(a, b), -m.targets(b, a))  # equal lengths: antisymmetric
    torch.testing.assert_close(m.targets(a, b)[..., 0], (b[..., 0] - a[..., 0]) / P)


@pytest.mark.parametrize("scale_target", ["ratio", "log"])
def test_scale_variant(scale_target):
    m = eeg(C, T, P, num_patches=12, scale_range=(0.5, 2.0), scale_target=scale_target)
    assert m.target_dim == 2
    x = torch.randn(4, C, T)
    patches, geom = m.sample(x, _gen(3))
    assert patches.shape == (4, 12, C * P)  # every length resampled to P values
    start, length = geom.unbind(-1)
    assert torch.all(length >= 50 - 1e-3) and torch.all(length <= 200 + 1e-3)
    assert torch.all(start >= 0) and torch.all(start + length <= T + 1e-3)
    assert length.std() > 10
    a, b = geom[:, :6], geom[:, 6:]
    t = m.targets(a, b)
    assert t.shape == (4, 6, 2)
    ca, cb = a[..., 0] + a[..., 1] / 2, b[..., 0] + b[..., 1] / 2  # centres
    torch.testing.assert_close(t[..., 0], (cb - ca) / a[..., 1])
    ratio = b[..., 1] / a[..., 1]
    if scale_target == "log":
        torch.testing.assert_close(t[..., 1], ratio.log())
        torch.testing.assert_close(t[..., 1], -m.targets(b, a)[..., 1])  # log: antisymmetric
    else:
        torch.testing.assert_close(t[..., 1], ratio)
    # a window of 2P samples at an even start, resampled to P: means of sample pairs of a ramp
    ramp = torch.arange(T, dtype=torch.float32).expand(1, C, T)
    out = extract_windows(ramp, torch.tensor([[[10., 200.]]]), P).view(C, P)
    torch.testing.assert_close(out[0], 10 + 2 * torch.arange(P, dtype=torch.float32) + 0.5)


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match=r"'modality\.patch_samples' = 4000 must be in \[1, window_samples=3000\]"):
        eeg(C, T, patch_samples=4000)
    with pytest.raises(ValueError, match=r"modality\.num_patches"):
        eeg(C, T, P, num_patches=1)
    with pytest.raises(ValueError, match=r"patch_samples.*>= 2"):
        eeg(C, 150, P, strategy="grid")
    with pytest.raises(ValueError, match=r"'modality\.strategy' = 'nope' is out of range; allowed: one of 'random', 'grid', 'stratified'"):
        eeg(C, T, P, strategy="nope")
    with pytest.raises(ValueError, match=r"modality\.scale_range"):
        eeg(C, T, P, scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match=r"modality\.scale_range"):
        eeg(C, T, 1000, scale_range=(0.5, 4.0))
    with pytest.raises(ValueError, match=r"modality\.scale_target"):
        eeg(C, T, P, scale_target="diff")
    with pytest.raises(ValueError, match=r"modality\.channels"):
        EEGOptions(channels=0)
    with pytest.raises(ValueError, match=r"modality\.sample_rate"):
        eeg(C, T, P, sample_rate=0)


def test_bad_input_raises_clear_errors():
    m = eeg(C, T, P)
    with pytest.raises(ValueError, match="rank 3"):
        m.sample(torch.randn(C, T))
    with pytest.raises(ValueError, match="channels"):
        m.sample(torch.randn(2, 5, T))
    with pytest.raises(ValueError, match=r"3000 samples.*modality\.window_samples"):
        m.grid(torch.randn(2, C, 2999))
    x = torch.randn(2, C, T)
    x[1, 3, 17] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m.sample(x)
    with pytest.raises(ValueError, match="float"):
        m.sample(torch.zeros(2, C, T, dtype=torch.long))


def eeg_like(n: int, seed: int = 0, channels: int = 2, length: int = 400) -> torch.Tensor:
    """Random sums of sinusoids (1-15 Hz at 100 Hz) plus a rising linear trend with a random
    offset and slope: the level difference of two windows tells their time offset, the slope
    inside a window its scale. (n, channels, length)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32) / 100.0
    freq = torch.rand(n, channels, 3, 1, generator=g) * 14 + 1
    phase = torch.rand(n, channels, 3, 1, generator=g) * 2 * math.pi
    amp = torch.rand(n, channels, 3, 1, generator=g) * 0.5
    waves = (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(2)
    slope = torch.rand(n, 1, 1, generator=g) + 0.5
    offset = torch.randn(n, 1, 1, generator=g)
    return waves + slope * (t / t[-1] * 4 - 2) + offset + 0.05 * torch.randn(n, channels, length, generator=g)


def _part(modality, heads="cross_attention"):
    enc = ViTEncoder(32, 2, 4)
    opts = get_method("part").options(num_pairs=64, head=heads)
    return build_method("part", modality, enc, modality.tokenizer(32), opts)


@pytest.mark.parametrize("scale", [None, (0.5, 2.0)])
def test_part_forward_backward_shapes(scale):
    torch.manual_seed(0)
    m = eeg(2, 400, 20, num_patches=10, scale_range=scale)
    model = _part(m)
    x = eeg_like(3)
    patches, geom = m.sample(x)
    assert model.tokenizer(patches).shape == (3, 10, 32)
    out = model(x)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.tokenizer.weight.grad is not None and model.tokenizer.weight.grad.abs().sum() > 0


def test_part_loss_decreases_on_eeg_like_signals():
    """40 AdamW steps of PART (dt targets) on EEG-like windows lower the loss clearly."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    m = eeg(2, 400, 20, num_patches=16)
    model = _part(m)
    data = eeg_like(512, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        idx = torch.randint(0, len(data), (32,))
        loss = model(data[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.5 * first, (first, last)
