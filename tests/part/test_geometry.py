"""part.core.geometry: relative targets of k-dimensional boxes (paper eq. 1 / eq. 5) for k = 1 and
2, the fixed grid as boxes, nearest grid cells, and the modality base class's grid_index."""
import math

import pytest
import torch

from part.core.geometry import grid_boxes, nearest_grid_index, relative_targets, target_dim
from part.core.modality import Modality


def _boxes(shape, k, seed=0, scale=False):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(*shape, k, generator=g) * 100
    sizes = torch.exp(torch.rand(*shape, k, generator=g) * 2 - 1) * 8 if scale else torch.full((*shape, k), 8.0)
    return torch.cat([centres, sizes], -1)


def test_k2_hand_computed_eq1_eq5():
    ref = torch.tensor([10.0, 20.0, 4.0, 5.0])  # cx, cy, w, h
    tgt = torch.tensor([18.0, 15.0, 8.0, 2.5])
    assert relative_targets(ref, tgt).tolist() == [2.0, -1.0]
    assert relative_targets(ref, tgt, with_scale=True).tolist() == [2.0, -1.0, 2.0, 0.5]
    log = relative_targets(ref, tgt, with_scale=True, scale_target="log")
    torch.testing.assert_close(log, torch.tensor([2.0, -1.0, math.log(2), math.log(0.5)]))


def test_k1_hand_computed():
    ref = torch.tensor([[50.0, 100.0], [100.0, 50.0]])  # (centre, length)
    tgt = torch.tensor([[150.0, 100.0], [300.0, 200.0]])
    assert relative_targets(ref, tgt).tolist() == [[1.0], [4.0]]
    assert relative_targets(ref, tgt, True).tolist() == [[1.0, 1.0], [4.0, 4.0]]
    torch.testing.assert_close(relative_targets(ref, tgt, True, "log")[:, 1], torch.tensor([0.0, math.log(4)]))


@pytest.mark.parametrize("k", [1, 2])
def test_shapes_and_target_dim(k):
    a, b = _boxes((3, 7), k, 0), _boxes((3, 7), k, 1)
    assert relative_targets(a, b).shape == (3, 7, target_dim(k, False)) == (3, 7, k)
    assert relative_targets(a, b, True).shape == (3, 7, target_dim(k, True)) == (3, 7, 2 * k)
    assert relative_targets(a[0, 0], b[0, 0], True).shape == (2 * k,)  # any leading shape


@pytest.mark.parametrize("k", [1, 2])
def test_antisymmetry(k):
    a, b = _boxes((4, 10), k, 0), _boxes((4, 10), k, 1)
    torch.testing.assert_close(relative_targets(a, b), -relative_targets(b, a))  # equal sizes
    a, b = _boxes((4, 10), k, 2, scale=True), _boxes((4, 10), k, 3, scale=True)
    fwd, bwd = relative_targets(a, b, True, "log"), relative_targets(b, a, True, "log")
    torch.testing.assert_close(fwd[..., k:], -bwd[..., k:])  # log size ratio: antisymmetric
    ratio = relative_targets(a, b, True, "ratio")[..., k:]
    torch.testing.assert_close(ratio * relative_targets(b, a, True, "ratio")[..., k:], torch.ones_like(ratio))
    # translations are measured in units of the reference size
    torch.testing.assert_close(fwd[..., :k], (b[..., :k] - a[..., :k]) / a[..., k:])


def test_bad_shapes_and_scale_target():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2k\).*\(3,\) and \(3,\)"):
        relative_targets(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"equal length.*\(4,\) and \(2,\)"):
        relative_targets(torch.ones(4), torch.ones(2))
    with pytest.raises(ValueError, match="scale_target='exp'; valid: ratio, log"):
        relative_targets(torch.ones(2), torch.ones(2), True, "exp")


def test_grid_boxes_k1_and_k2():
    g1 = grid_boxes((4,), (100,), batch=2)
    assert g1.shape == (2, 4, 2) and g1.dtype == torch.float32 and g1.is_contiguous()
    assert g1[0].tolist() == [[50.0, 100.0], [150.0, 100.0], [250.0, 100.0], [350.0, 100.0]]
    g2 = grid_boxes((3, 2), (4, 6))  # 3 columns (x) x 2 rows (y), cells 4 wide, 6 high
    assert g2.shape == (1, 6, 4)
    assert g2[0, :, 0].tolist() == [2, 6, 10, 2, 6, 10]  # x fastest (raster order)
    assert g2[0, :, 1].tolist() == [3, 3, 3, 9, 9, 9]
    assert torch.all(g2[0, :, 2] == 4) and torch.all(g2[0, :, 3] == 6)


@pytest.mark.parametrize("grid,cell", [((4,), (100,)), ((3, 2), (4, 6)), ((2, 3, 4), (1.0, 2.0, 0.5))])
def test_nearest_grid_index_inverts_the_grid(grid, cell):
    boxes = grid_boxes(grid, cell, batch=2)
    n = math.prod(grid)
    assert torch.equal(nearest_grid_index(boxes, grid, cell), torch.arange(n).expand(2, n))


def test_nearest_grid_index_floor_and_clamp():
    boxes = torch.tensor([[149.9, 10.0], [150.0, 10.0], [-20.0, 10.0], [1e4, 10.0]])
    assert nearest_grid_index(boxes, (4,), (100,)).tolist() == [1, 1, 0, 3]
    boxes = torch.tensor([[5.0, 1.0, 1, 1], [1.0, 7.0, 1, 1], [99.0, -3.0, 1, 1]])  # (cx, cy, w, h)
    idx = nearest_grid_index(boxes, (3, 2), (4, 6))  # 3 columns, 2 rows
    assert idx.tolist() == [1, 3, 2] and idx.dtype == torch.long


class _Grid2D(Modality):
    """A minimal 2-D modality: 2 rows x 4 columns of 4 x 4 cells (grid_shape in raster order)."""

    name, geometry_dim, grid_shape, grid_cell = "grid2d", 4, (2, 4), (4, 4)
    sample = grid = tokenizer = targets = None


def test_base_grid_index_reads_grid_shape_in_raster_order():
    m = _Grid2D()
    boxes = grid_boxes((4, 2), (4, 4), batch=3)  # the grid in geometry order (cols, rows)
    assert torch.equal(m.grid_index(boxes), torch.arange(8).expand(3, 8))
    boxes = torch.tensor([[13.0, 1.0, 4, 4], [1.0, 5.0, 4, 4]])  # column 3 row 0; column 0 row 1
    assert m.grid_index(boxes).tolist() == [3, 4]
    without = type("NoGrid", (_Grid2D,), {"grid_cell": None})()
    with pytest.raises(NotImplementedError, match="no grid index"):
        without.grid_index(boxes)
