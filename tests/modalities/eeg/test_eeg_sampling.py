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
