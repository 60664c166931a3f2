"""Image sampling helpers: boxes inside the image, the fixed grid, bilinear crops."""
import math

import torch

from part.modalities.image.sampling import extract_patches, grid_boxes, sample_boxes


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


def test_grid_boxes_raster_order_rows_major_x_fastest():
    """The grid from part.core.geometry equals the explicit (rows, cols) meshgrid, bit for bit."""
    for batch, height, width, P in [(2, 8, 12, 4), (1, 32, 32, 4), (3, 33, 17, 5), (1, 224, 224, 16)]:
        rows, cols = height // P, width // P
        cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * P, (torch.arange(cols) + 0.5) * P, indexing="ij")
        size = torch.full_like(cx, float(P))
        expected = torch.stack([cx, cy, size, size], -1).reshape(1, -1, 4).float().expand(batch, -1, -1)
        got = grid_boxes(batch, height, width, P)
        assert got.dtype == torch.float32 and got.is_contiguous() and torch.equal(got, expected)
