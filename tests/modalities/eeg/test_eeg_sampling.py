"""EEG sampling helpers: windows at continuous starts, the 1-s grid as (centre, length) boxes, and
the two extractors (exact samples at integer starts, linear interpolation in between)."""
from __future__ import annotations

import pytest
import torch

from part.modalities.eeg.sampling import (extract_fixed_windows, extract_windows, grid_geometry,
                                     sample_windows, window_geometry)

C, T, P = 6, 3000, 100


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


EXTRACTORS = {"general": lambda x, start: extract_windows(x, start, torch.full_like(start, P), P),
              "fixed": lambda x, start: extract_fixed_windows(x, start, P)}


@pytest.mark.parametrize("path", EXTRACTORS)
def test_integer_starts_return_exactly_the_samples(path):
    x = torch.randn(3, C, T)
    starts = torch.tensor([[0., 1., 2900.], [17., 1234., 2899.], [5., 5., 100.]])
    out = EXTRACTORS[path](x, starts).view(3, 3, C, P)
    for b in range(3):
        for n in range(3):
            s = int(starts[b, n])
            assert torch.equal(out[b, n], x[b, :, s:s + P])


@pytest.mark.parametrize("path", EXTRACTORS)
def test_half_sample_start_interpolates_a_ramp(path):
    ramp = torch.arange(T, dtype=torch.float32)
    x = torch.stack([ramp * (c + 1) + 7 * c for c in range(C)]).unsqueeze(0)  # (1, C, T)
    starts = torch.tensor([[10.5, 2899.25, 2900.0]])
    out = EXTRACTORS[path](x, starts).view(3, C, P)
    k = torch.arange(P, dtype=torch.float32)
    for n, s in enumerate((10.5, 2899.25, 2900.0)):
        expected = torch.stack([(s + k) * (c + 1) + 7 * c for c in range(C)])
        torch.testing.assert_close(out[n], expected, rtol=0, atol=1e-3)


def test_long_window_is_resampled_to_p_values():
    # a window of 2P samples at an even start, resampled to P: means of sample pairs of a ramp
    ramp = torch.arange(T, dtype=torch.float32).expand(1, C, T)
    out = extract_windows(ramp, torch.tensor([[10.]]), torch.tensor([[200.]]), P).view(C, P)
    torch.testing.assert_close(out[0], 10 + 2 * torch.arange(P, dtype=torch.float32) + 0.5)


def test_random_windows_inside_the_signal_at_continuous_starts():
    start, size = sample_windows(8, T, P, 40, generator=_gen())
    assert start.shape == size.shape == (8, 40) and start.dtype == torch.float32
    assert torch.all(size == P) and torch.all(start >= 0) and torch.all(start + size <= T)
    assert (start - start.floor() > 0.01).float().mean() > 0.9  # sub-sample starts
    assert start.std() > 0.2 * T  # spread over the whole window
    again = sample_windows(8, T, P, 40, generator=_gen())
    assert torch.equal(again[0], start)  # the generator decides
    both = extract_windows(torch.randn(2, C, T), start[:2], size[:2], P)
    assert both.shape == (2, 40, C * P)


def test_scaled_windows_log_uniform_inside_the_signal():
    start, size = sample_windows(4, T, P, 200, scale_range=(0.5, 2.0), generator=_gen(3))
    assert torch.all(size >= 50 - 1e-3) and torch.all(size <= 200 + 1e-3) and size.std() > 10
    assert torch.all(start >= 0) and torch.all(start + size <= T + 1e-3)
    assert abs(size.log().mean().item() - torch.tensor(float(P)).log().item()) < 0.1


def test_grid_and_stratified_windows():
    start, size = sample_windows(2, T, P, 99, strategy="grid")
    assert torch.equal(start, (torch.arange(30.) * P).expand(2, 30)) and torch.all(size == P)
    start, size = sample_windows(2, T, P, 99, strategy="stratified", generator=_gen(1))
    assert start.shape == (2, 30) and torch.all(start >= 0) and torch.all(start + size <= T)
    assert torch.all((start - torch.arange(30.) * P).abs() <= P / 2)
    with pytest.raises(ValueError, match=r"^unknown modality\.strategy='spiral'; valid: random, grid, stratified$"):
        sample_windows(2, T, P, 4, strategy="spiral")


def test_geometry_is_centre_and_length():
    g = grid_geometry(2, T, P)
    assert g.shape == (2, 30, 2) and g.dtype == torch.float32
    assert torch.equal(g[0, :, 0], (torch.arange(30.) + 0.5) * P) and torch.all(g[..., 1] == P)
    assert grid_geometry(1, 250, P).shape == (1, 2, 2)  # the tail shorter than P is not a cell
    start, size = torch.tensor([[0., 10.5]]), torch.tensor([[100., 40.]])
    assert window_geometry(start, size).tolist() == [[[50.0, 100.0], [30.5, 40.0]]]


def _previous_extract_windows(x, start, size, patch_samples):
    """extract_windows as it was before the CUDA gather (one torch.gather along time, then a
    transpose copy), kept here as the reference the new gathers must match bit for bit."""
    B, C, T = x.shape
    N, P = start.shape[1], patch_samples
    k = torch.arange(P, device=x.device, dtype=torch.float32) + 0.5
    pos = start[..., None].float() + k * (size[..., None].float() / P) - 0.5
    lo = pos.floor()
    frac = (pos - lo).to(x.dtype)
    lo = lo.long()
    taps = torch.stack([lo.clamp(0, T - 1), (lo + 1).clamp(0, T - 1)], 0)
    idx = taps.permute(1, 0, 2, 3).reshape(B, 1, 2 * N * P).expand(B, C, -1)
    both = torch.gather(x, 2, idx).view(B, C, 2, N, P)
    out = torch.lerp(both[:, :, 0], both[:, :, 1], frac.unsqueeze(1))
    return out.transpose(1, 2).reshape(B, N, C * P)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("strategy,scale", [("random", (0.5, 2.0)), ("random", None), ("stratified", (0.5, 2.0))])
def test_cuda_gather_equals_previous_sampler_bit_for_bit(strategy, scale, dtype):
    """The broadcast-index gather (the CUDA path), run on the CPU, against the previous sampler:
    same seed, same windows, identical patches (also beyond the ends, where taps clamp)."""
    x = torch.randn(5, C, T, generator=_gen(7)).to(dtype)
    start, size = sample_windows(5, T, P, 40, strategy, scale, generator=_gen(8))
    start[0, :2] = torch.tensor([0.0, T - size[0, 1].item()])  # both ends of the signal
    want = _previous_extract_windows(x, start, size, P)
    fast = extract_windows(x, start, size, P, broadcast=True)
    assert fast.shape == (5, 40 if strategy == "random" else T // P, C * P) and fast.dtype == dtype
    assert torch.equal(fast, want)
    assert torch.equal(extract_windows(x, start, size, P, broadcast=False), want)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device: the CUDA sampler's host-sync check needs one")
@pytest.mark.parametrize("scale", [None, (0.5, 2.0)])
def test_cuda_sampler_never_syncs_and_matches_cpu(scale):
    """modality.sample on CUDA under sync debug mode 'error' (any host sync raises), and the
    extractor on CUDA equals the same extractor on the CPU for the same windows."""
    from part.modalities import get_modality

    modality = get_modality("eeg", channels=C, window_samples=T, scale_range=scale)
    x = torch.randn(8, C, T, device="cuda")
    modality.sample(x)  # first call: CUDA context and kernels loaded
    start, size = sample_windows(8, T, P, 40, "random", scale, device="cuda")
    extract = (lambda x, s, n: extract_fixed_windows(x, s, P)) if scale is None else \
        (lambda x, s, n: extract_windows(x, s, n, P))
    torch.cuda.set_sync_debug_mode("error")
    try:
        modality.sample(x)
        patches = extract(x, start, size)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(patches.cpu(), extract(x.cpu(), start.cpu(), size.cpu()), rtol=0, atol=1e-6)
