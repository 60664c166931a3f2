"""Image modality: shapes, the grid as a reshape, grid indices, (dx, dy[, dw, dh]) targets, bad
options and bad input."""
import math

import pytest
import torch

from part.registry import get_modality
from part.modalities.image.sampling import extract_patches, grid_boxes, sample_boxes


def test_grid_patches_equal_extracted_grid():
    torch.manual_seed(0)
    m = get_modality("image", image_size=12, channels=3, patch_size=4)
    x = torch.randn(2, 3, 12, 12)
    patches, boxes = m.grid(x)
    assert torch.allclose(patches, extract_patches(x, boxes, 4), atol=1e-6)
    assert torch.equal(boxes, grid_boxes(2, 12, 12, 4))


def test_grid_index_is_the_raster_cell_of_the_centre():
    m = get_modality("image", image_size=12, channels=3, patch_size=4)
    assert m.grid_shape == (3, 3) and m.grid_cell == (4, 4)
    _, boxes = m.grid(torch.randn(2, 3, 12, 12))
    assert torch.equal(m.grid_index(boxes), torch.arange(9).expand(2, 9))  # the order of grid()
    # (cx, cy): column from x, row from y; centres outside the image clamp to the border cells
    boxes = torch.tensor([[[5.0, 1.0, 4, 4], [1.0, 5.0, 4, 4], [11.9, 8.0, 2, 2], [-3.0, 40.0, 4, 4]]])
    assert m.grid_index(boxes).tolist() == [[1, 3, 8, 6]]
    boxes = sample_boxes(3, 12, 12, 4, 50, scale_range=(0.5, 2.0), generator=torch.Generator().manual_seed(0))
    expected = (boxes[..., 1] / 4).floor().long() * 3 + (boxes[..., 0] / 4).floor().long()
    assert torch.equal(m.grid_index(boxes), expected)


def test_targets_eq1_eq5_hand_computed():
    ref = torch.tensor([10.0, 20.0, 4.0, 5.0])
    tgt = torch.tensor([18.0, 15.0, 8.0, 2.5])
    m = get_modality("image", image_size=32, channels=3)
    assert m.targets(ref, tgt).tolist() == [2.0, -1.0]
    ratio = get_modality("image", image_size=32, channels=3, scale_range=[0.5, 2.0])
    assert ratio.targets(ref, tgt).tolist() == [2.0, -1.0, 2.0, 0.5]
    log = get_modality("image", image_size=32, channels=3, scale_range=[0.5, 2.0], scale_target="log")
    torch.testing.assert_close(log.targets(ref, tgt), torch.tensor([2.0, -1.0, math.log(2), math.log(0.5)]))


def test_swap_negates_for_equal_sizes_and_log_scale():
    g = torch.Generator().manual_seed(0)
    m = get_modality("image", image_size=32, channels=3)
    _, geom = m.sample(torch.rand(4, 3, 32, 32), g)
    a, b = geom[:, :10], geom[:, 10:20]
    torch.testing.assert_close(m.targets(a, b), -m.targets(b, a))
    log = get_modality("image", image_size=32, channels=3, scale_range=[0.5, 2.0], scale_target="log")
    _, geom = log.sample(torch.rand(4, 3, 32, 32), g)
    a, b = geom[:, :10], geom[:, 10:20]
    torch.testing.assert_close(log.targets(a, b)[..., 2:], -log.targets(b, a)[..., 2:])


def test_modality_sample_shapes_and_target_dim():
    m = get_modality("image", image_size=32, channels=3, patch_size=4, scale_range=[0.5, 2.0])
    assert m.num_patches == 64 and m.target_dim == 4 and m.patch_dim == 48
    p, g = m.sample(torch.rand(5, 3, 32, 32))
    assert p.shape == (5, 64, 48) and g.shape == (5, 64, 4)
    assert m.tokenizer(96)(p).shape == (5, 64, 96)
    assert get_modality("image", image_size=32, channels=3).target_dim == 2


@pytest.mark.parametrize("opts,msg", [
    (dict(patch_size=40), "modality.patch_size"),
    (dict(patch_size=4, num_patches=1), "modality.num_patches"),
    (dict(patch_size=16, scale_range=[0.5, 4.0]), "modality.scale_range"),
    (dict(strategy="spiral"), "modality.strategy"),
    (dict(scale_target="exp"), "modality.scale_target"),
])
def test_bad_options(opts, msg):
    with pytest.raises(ValueError, match=msg):
        get_modality("image", image_size=32, channels=3, **opts)


@pytest.mark.parametrize("x,msg", [
    (torch.rand(3, 32, 32), "rank 4"),
    (torch.rand(2, 1, 32, 32), "3 channels"),
    (torch.rand(2, 3, 16, 16), "32x32"),
    (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
])
def test_bad_input(x, msg):
    m = get_modality("image", image_size=32, channels=3)
    with pytest.raises(ValueError, match=msg):
        m.sample(x)


def test_unknown_modality():
    with pytest.raises(KeyError, match="eeg, image"):
        get_modality("audio")
