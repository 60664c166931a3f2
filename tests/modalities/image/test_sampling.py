import math

import pytest
import torch

from part.registry import get_modality
from modalities.image.sampling import extract_patches, grid_boxes, relative_targets, sample_boxes


def test_random_boxes_inside_image_fixed_size():
    g = torch.Generator().manual_seed(0)
    b = sample_boxes(8, 32, 24, 4, 50, generator=g)
    assert b.shape == (8, 50, 4)
    cx, cy, w, h = b.unbind(-1)
    assert (w == 4).all() and (h == 4).all()
    assert (cx - w / 2 >= 0).all() and (cx + w / 2 <= 24).all()
    assert (cy - h / 2 >= 0).all() and (cy + h / 2 <= 32).all()
    assert (cx != cx.round()).any()  # continuous, off-grid


def test_scale_boxes_log_uniform_range():
    g = torch.Generator().manual_seed(0)
    b = sample_boxes(64, 32, 32, 4, 64, scale_range=(0.5, 2.0), generator=g)
    w, h = b[..., 2], b[..., 3]
    assert w.min() >= 2 - 1e-5 and w.max() <= 8 + 1e-5
    assert not torch.allclose(w, h)  # independent
    assert abs(w.log().mean().item() - math.log(4)) < 0.05  # log-uniform centred on log P
    assert (b[..., 0] - w / 2 >= -1e-5).all() and (b[..., 0] + w / 2 <= 32 + 1e-5).all()


def test_grid_and_stratified():
    gb = grid_boxes(2, 8, 12, 4)
    assert gb.shape == (2, 6, 4)
    assert gb[0, :, 0].tolist() == [2, 6, 10, 2, 6, 10] and gb[0, :, 1].tolist() == [2, 2, 2, 6, 6, 6]
    s = sample_boxes(3, 8, 12, 4, 99, strategy="stratified", generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 6, 4)
    assert ((s[..., :2] - gb[:1, :, :2]).abs() <= 2 + 1e-6).all()
    assert (s[..., 0] >= 2).all() and (s[..., 0] <= 10).all()


def test_aligned_box_returns_exact_crop():
    # pixel values as in an 8-bit image; exact up to float32 rounding of the grid coordinates
    torch.manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 16, 20)).float()
    boxes = torch.tensor([[[2 + 2.0, 5 + 2.0, 4, 4], [16 + 2.0, 12 + 2.0, 4, 4]],
                          [[0 + 2.0, 0 + 2.0, 4, 4], [9 + 2.0, 3 + 2.0, 4, 4]]])
    p = extract_patches(img, boxes, 4).view(2, 2, 3, 4, 4)
    torch.testing.assert_close(p[0, 0], img[0, :, 5:9, 2:6], atol=1e-4, rtol=0)
    torch.testing.assert_close(p[0, 1], img[0, :, 12:16, 16:20], atol=1e-4, rtol=0)
    torch.testing.assert_close(p[1, 0], img[1, :, 0:4, 0:4], atol=1e-4, rtol=0)
    torch.testing.assert_close(p[1, 1], img[1, :, 3:7, 9:13], atol=1e-4, rtol=0)
    assert torch.equal(p.round(), torch.stack([torch.stack([img[0, :, 5:9, 2:6], img[0, :, 12:16, 16:20]]),
                                               torch.stack([img[1, :, 0:4, 0:4], img[1, :, 3:7, 9:13]])]))


def test_large_box_is_bilinear_downsample():
    img = torch.arange(64.0).view(1, 1, 8, 8)  # linear ramp: bilinear sampling is exact
    box = torch.tensor([[[4.0, 4.0, 8.0, 8.0]]])
    p = extract_patches(img, box, 4).view(4, 4)
    # sample k at x = 1 + 2k pixel units -> value at pixel index 0.5 + 2k (ramp)
    expect = torch.tensor([0.5, 2.5, 4.5, 6.5])
    torch.testing.assert_close(p[0], expect + 0.5 * 8, atol=1e-5, rtol=0)


def test_grid_patches_equal_extracted_grid():
    torch.manual_seed(0)
    m = get_modality("image", image_size=12, channels=3, patch_size=4)
    x = torch.randn(2, 3, 12, 12)
    patches, boxes = m.grid(x)
    assert torch.allclose(patches, extract_patches(x, boxes, 4), atol=1e-6)


def test_targets_eq1_eq5_hand_computed():
    ref = torch.tensor([10.0, 20.0, 4.0, 5.0])
    tgt = torch.tensor([18.0, 15.0, 8.0, 2.5])
    assert relative_targets(ref, tgt).tolist() == [2.0, -1.0]
    assert relative_targets(ref, tgt, with_scale=True).tolist() == [2.0, -1.0, 2.0, 0.5]
    lg = relative_targets(ref, tgt, with_scale=True, scale_target="log")
    torch.testing.assert_close(lg, torch.tensor([2.0, -1.0, math.log(2), math.log(0.5)]))


def test_swap_negates_for_equal_sizes_and_log_scale():
    g = torch.Generator().manual_seed(0)
    a = sample_boxes(4, 32, 32, 4, 10, generator=g)
    b = sample_boxes(4, 32, 32, 4, 10, generator=g)
    torch.testing.assert_close(relative_targets(a, b), -relative_targets(b, a))
    a = sample_boxes(4, 32, 32, 4, 10, scale_range=(0.5, 2), generator=g)
    b = sample_boxes(4, 32, 32, 4, 10, scale_range=(0.5, 2), generator=g)
    fwd = relative_targets(a, b, True, "log")
    bwd = relative_targets(b, a, True, "log")
    torch.testing.assert_close(fwd[..., 2:], -bwd[..., 2:])


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


def test_matches_torch_grid_sample_on_random_boxes():
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(3)
    B, N, P, H, W = 4, 20, 4, 24, 32
    img = torch.randn(B, 3, H, W, generator=g)
    boxes = sample_boxes(B, H, W, P, N, scale_range=(0.5, 2.0), generator=g)
    cx, cy, w, h = boxes.unbind(-1)
    lin = (torch.arange(P) + 0.5) / P - 0.5
    gx = (cx[..., None] + lin * w[..., None]) / W * 2 - 1
    gy = (cy[..., None] + lin * h[..., None]) / H * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), -1)
    ref = F.grid_sample(img, grid.view(B, N * P, P, 2), align_corners=False, padding_mode="border")
    ref = ref.view(B, 3, N, P, P).transpose(1, 2).reshape(B, N, -1)
    torch.testing.assert_close(extract_patches(img, boxes, P), ref, atol=1e-4, rtol=0)
