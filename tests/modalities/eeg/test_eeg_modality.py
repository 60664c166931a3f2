"""EEG modality: 1-s windows at continuous start times described by (centre, length), the 1-s
grid, grid indices, dt targets, bad input, and PART learning relative time offsets on EEG-like
signals."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from part.core.backbone import ViTEncoder
from part.registry import build_method, get_method, get_modality, modality_spec
from part.modalities.eeg.modality import EEGModality, EEGOptions
from part.modalities.eeg.recordings.constants import PC18_WINDOW_SHAPE
from part.modalities.eeg.sampling import extract_fixed_windows, extract_windows, sample_windows, window_geometry


def eeg(channels, window_samples, patch_samples=100, **options):
    """EEGModality for data of `channels` x `window_samples` with the given options."""
    return EEGModality(EEGOptions(patch_samples=patch_samples, **options), channels=channels,
                       window_samples=window_samples)


C, T, P = 6, 3000, 100


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry_defaults_are_the_papers_setup():
    m = get_modality("eeg")  # channels / window_samples default to the prepared data's 6 x 3000
    assert PC18_WINDOW_SHAPE == (6, 3000)
    assert modality_spec("eeg").options is EEGOptions and EEGOptions().name == "eeg"
    assert (m.channels, m.window_samples, m.patch_samples, m.num_patches) == (6, 3000, 100, 40)
    assert m.grid_shape == (30,) and m.grid_cell == (100,) and m.num_grid_patches == 30
    assert (m.patch_dim, m.target_dim, m.geometry_dim, m.sample_rate) == (600, 1, 2, 100.0)
    m2 = get_modality("eeg", channels=None, window_samples=None, patch_samples=50, num_patches=7)
    assert (m2.channels, m2.window_samples, m2.num_patches, m2.grid_shape) == (6, 3000, 7, (60,))
    assert get_modality("eeg", channels=2, window_samples=400).patch_dim == 200  # recipe wins


def test_sample_shapes_bounds_and_continuous_centres():
    m = eeg(C, T, P, num_patches=40)
    x = torch.randn(8, C, T)
    patches, geom = m.sample(x, _gen())
    assert patches.shape == (8, 40, C * P) and geom.shape == (8, 40, 2)
    centre, length = geom.unbind(-1)
    assert torch.all(length == P) and torch.all(centre - length / 2 >= 0) and torch.all(centre + length / 2 <= T)
    frac = centre - centre.floor()
    assert (frac > 0.01).float().mean() > 0.9  # sub-sample positions, not snapped to samples
    assert centre.std() > 0.2 * T  # spread over the whole window
    p2, g2 = m.sample(x, _gen())
    assert torch.equal(g2, geom) and torch.equal(p2, patches)  # the generator decides


@pytest.mark.parametrize("scale", [None, (0.5, 2.0)])
def test_sample_extracts_at_the_drawn_starts_and_returns_centres(scale):
    """sample = sample_windows (starts) -> extraction from the starts -> centre geometry."""
    x = torch.randn(4, C, T)
    m = eeg(C, T, P, num_patches=40, scale_range=scale)
    patches, geom = m.sample(x, _gen(5))
    start, size = sample_windows(4, T, P, 40, "random", scale, generator=_gen(5))
    assert torch.equal(geom, window_geometry(start, size)) and torch.equal(geom[..., 0], start + size / 2)
    fixed = extract_fixed_windows(x, start, P) if scale is None else extract_windows(x, start, size, P)
    assert torch.equal(patches, fixed)
    # the geometry describes the patches: the windows it spans give the same values
    back = extract_windows(x, geom[..., 0] - geom[..., 1] / 2, geom[..., 1], P)
    torch.testing.assert_close(patches, back, rtol=0, atol=2e-3)
    small = eeg(C, P, P, num_patches=3)  # window = one patch: every start is 0
    p, g = small.sample(x[..., :P])
    assert torch.all(g[..., 0] == P / 2) and torch.equal(p, x[:, None, :, :P].expand(4, 3, C, P).reshape(4, 3, -1))


def test_grid_is_a_reshape():
    m = eeg(C, T, P)
    x = torch.randn(2, C, T)
    patches, geom = m.grid(x)
    assert patches.shape == (2, 30, C * P)
    assert torch.equal(patches, x.view(2, C, 30, P).permute(0, 2, 1, 3).reshape(2, 30, C * P))
    assert torch.equal(geom[0, :, 0], (torch.arange(30.) + 0.5) * P) and torch.all(geom[..., 1] == P)
    # grid geometry through extract_windows gives the same patches (one convention)
    assert torch.equal(extract_windows(x, geom[..., 0] - geom[..., 1] / 2, geom[..., 1], P), patches)


def test_grid_index_is_the_cell_of_the_centre():
    m = eeg(C, T, P)
    assert m.grid_cell == (P,)
    _, geom = m.grid(torch.randn(2, C, T))
    assert torch.equal(m.grid_index(geom), torch.arange(30).expand(2, 30))
    # a window whose centre lies in cell k maps to k; centres outside the signal clamp
    g = torch.tensor([[[199.0, 100.0], [201.0, 100.0], [3000.0, 100.0], [-5.0, 20.0]]])
    assert m.grid_index(g).tolist() == [[1, 2, 29, 0]]
    _, geom = m.sample(torch.randn(2, C, T), _gen(4))
    assert torch.equal(m.grid_index(geom), (geom[..., 0] / P).floor().long())
    assert m.grid_index(geom).dtype == torch.long


def test_grid_strategy_and_stratified():
    x = torch.randn(2, C, T)
    grid = eeg(C, T, P, strategy="grid")
    assert grid.num_patches == 30 and torch.equal(grid.sample(x)[0], grid.grid(x)[0])
    strat = eeg(C, T, P, strategy="stratified")
    _, geom = strat.sample(x, _gen(1))
    assert geom.shape == (2, 30, 2)
    centre, length = geom.unbind(-1)
    assert torch.all(centre - length / 2 >= 0) and torch.all(centre + length / 2 <= T)
    assert torch.all((centre - (torch.arange(30.) + 0.5) * P).abs() <= P / 2)
    assert torch.equal(strat.grid_index(geom), torch.arange(30).expand(2, 30))  # one per cell


def test_targets_hand_computed_and_swap_negates():
    m = eeg(C, T, P)
    ref = torch.tensor([[50., 100.], [300.5, 100.], [1050., 100.], [100., 50.]])
    tgt = torch.tensor([[150., 100.], [50., 100.], [1050., 100.], [300., 200.]])
    dt = m.targets(ref, tgt)
    assert dt.shape == (4, 1)
    torch.testing.assert_close(dt[:, 0], torch.tensor([1.0, -2.505, 0.0, 4.0]))
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
    centre, length = geom.unbind(-1)
    assert torch.all(length >= 50 - 1e-3) and torch.all(length <= 200 + 1e-3)
    assert torch.all(centre - length / 2 >= -1e-3) and torch.all(centre + length / 2 <= T + 1e-3)
    assert length.std() > 10
    a, b = geom[:, :6], geom[:, 6:]
    t = m.targets(a, b)
    assert t.shape == (4, 6, 2)
    torch.testing.assert_close(t[..., 0], (b[..., 0] - a[..., 0]) / a[..., 1])
    # the same dt as from the starts: (s_t - s_r + (len_t - len_r) / 2) / len_r
    sa, sb = a[..., 0] - a[..., 1] / 2, b[..., 0] - b[..., 1] / 2
    torch.testing.assert_close(t[..., 0], (sb - sa + (b[..., 1] - a[..., 1]) / 2) / a[..., 1])
    ratio = b[..., 1] / a[..., 1]
    if scale_target == "log":
        torch.testing.assert_close(t[..., 1], ratio.log())
        torch.testing.assert_close(t[..., 1], -m.targets(b, a)[..., 1])  # log: antisymmetric
    else:
        torch.testing.assert_close(t[..., 1], ratio)


def test_bad_options_name_the_key():
    with pytest.raises(ValueError, match=r"'modality\.patch_samples' = 4000 must be <= the window length 3000: "
                                         r"a patch cannot be larger than the input; lower modality\.patch_samples"):
        eeg(C, T, patch_samples=4000)
    with pytest.raises(ValueError, match=r"modality\.num_patches"):
        eeg(C, T, P, num_patches=1)
    with pytest.raises(ValueError, match=r"'modality\.patch_samples' = 100 leaves fewer than 2 grid patches in the "
                                         r"window length 150 \(pairs need two\)"):
        eeg(C, 150, P, strategy="grid")
    with pytest.raises(ValueError, match=r"'modality\.strategy' = 'nope' is out of range; "
                                         r"allowed: one of 'random', 'grid', 'stratified'"):
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
