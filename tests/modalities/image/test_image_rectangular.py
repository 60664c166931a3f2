"""Rectangular images (H != W) with rectangular patches (ph, pw): a 24 x 40 input, 4 x 8 patches."""
from pathlib import Path

import pytest
import torch

from part.config.options import OptionsError
from part.modalities.image.modality import ImageModality, ImageOptions
from part.registry import get_modality

H, W, PH, PW = 24, 40, 4, 8


@pytest.fixture(scope="module")
def rect():
    return get_modality("image", image_size=[H, W], channels=2, patch_size=[PH, PW], num_patches=9)


def test_sizes_and_grid_come_from_both_sides(rect):
    assert (rect.height, rect.width, rect.patch_size) == (H, W, (PH, PW))
    assert rect.grid_shape == (6, 5) and rect.grid_cell == (PW, PH)
    assert rect.num_grid_patches == 30 and rect.patch_dim == 2 * PH * PW
    assert rect.target_names == ("dx", "dy") and rect.num_patches == 9


def test_sample_shapes_and_every_box_inside(rect):
    x = torch.randn(3, 2, H, W)
    patches, boxes = rect.sample(x, torch.Generator().manual_seed(0))
    assert patches.shape == (3, 9, 2 * PH * PW) and boxes.shape == (3, 9, 4)
    cx, cy, w, h = boxes.unbind(-1)
    assert torch.all(w == PW) and torch.all(h == PH)
    assert torch.all(cx - w / 2 >= 0) and torch.all(cx + w / 2 <= W)
    assert torch.all(cy - h / 2 >= 0) and torch.all(cy + h / 2 <= H)
    assert cx.max() > W / 2 + 8  # x positions use the full width, not min(H, W)


def test_grid_is_raster_order_and_exact_crops(rect):
    x = torch.randn(1, 2, H, W)
    patches, boxes = rect.grid(x)
    assert patches.shape == (1, 30, 2 * PH * PW)
    # cell 7 = row 1, column 2 (5 columns per row): centre (2.5 * 8, 1.5 * 4), the crop x[.., 4:8, 16:24]
    assert boxes[0, 7].tolist() == [20.0, 6.0, PW, PH]
    assert torch.equal(patches[0, 7], x[0, :, 4:8, 16:24].reshape(-1))
    centres = boxes[0, :, :2]
    assert torch.equal(centres[:, 0], ((torch.arange(30) % 5 + 0.5) * PW).float())
    assert torch.equal(centres[:, 1], ((torch.arange(30) // 5 + 0.5) * PH).float())
    assert torch.equal(rect.grid_index(boxes), torch.arange(30).unsqueeze(0))


def test_an_aligned_off_grid_box_returns_its_pixels(rect):
    """extract: a (pw, ph) box at integer corner (x0, y0) gives x[.., y0:y0+ph, x0:x0+pw]."""
    x = torch.randn(1, 2, H, W)
    boxes = torch.tensor([[[13 + PW / 2, 5 + PH / 2, PW, PH]]])
    patch = rect.extract(x, boxes, None)
    assert torch.equal(patch[0, 0], x[0, :, 5:5 + PH, 13:13 + PW].reshape(-1))


def test_targets_divide_by_the_reference_width_and_height(rect):
    ref = torch.tensor([10.0, 6.0, 8.0, 4.0])
    tgt = torch.tensor([30.0, 2.0, 8.0, 4.0])
    assert rect.targets(ref, tgt).tolist() == [(30 - 10) / 8, (2 - 6) / 4]
    scaled = get_modality("image", image_size=[H, W], channels=1, patch_size=[PH, PW],
                          scale_range=(0.5, 2.0))
    _, boxes = scaled.sample(torch.randn(2, 1, H, W), torch.Generator().manual_seed(1))
    w, h = boxes[..., 2], boxes[..., 3]
    assert torch.all((w >= PW / 2 - 1e-4) & (w <= 2 * PW + 1e-4) & (h >= PH / 2 - 1e-4) & (h <= 2 * PH + 1e-4))
    assert scaled.targets(ref, torch.tensor([10.0, 6.0, 4.0, 8.0])).tolist() == [0.0, 0.0, 0.5, 2.0]


def test_ints_keep_their_square_meaning():
    square = ImageModality(ImageOptions(patch_size=4), image_size=12, channels=1)
    assert (square.height, square.width, square.patch_size, square.grid_shape) == (12, 12, 4, (3, 3))


def test_a_patch_taller_than_the_image_names_both_sizes():
    with pytest.raises(OptionsError, match=r"'modality\.patch_size' = 4x48 must be <= the image size 24x40"):
        get_modality("image", image_size=[H, W], channels=1, patch_size=[4, 48])
    with pytest.raises(OptionsError, match=r"'modality\.scale_range' = \[0\.5, 6\.0\]: patch_size \* 6\.0 "
                                           r"must be <= the image size 24x40"):
        get_modality("image", image_size=[H, W], channels=1, patch_size=[PH, PW], scale_range=(0.5, 6.0))


def test_the_recipe_loader_accepts_lists(tmp_path):
    from part.config.loader import load_recipe
    recipe = load_recipe(Path(__file__).resolve().parents[3] / "recipes" / "digits_demo.yaml",
                         ["modality.image_size=[24, 40]", "modality.patch_size=[4, 8]"])
    assert list(recipe.modality.image_size) == [24, 40] and list(recipe.modality.patch_size) == [4, 8]


def test_a_spectrogram_modality_is_a_thin_subclass():
    """Time x frequency inputs on the SDK: the options, the input's name and sizes, nothing else;
    PART trains on it (one step, the loss finite and with gradients)."""
    from dataclasses import dataclass
    import math
    import part
    from part.core.backbone import ViTEncoder
    from part.registry import build_method, get_method

    @dataclass
    class SpectrogramOptions(part.BoxOptions):
        name: str = "spectrogram"
        patch_size: tuple = (4, 8)

    class Spectrogram(part.BoxModality):
        name, input_name, size_option, unit = "spectrogram", "spectrogram (B, C, F, T)", "bins", "bins"
        translation_names, scale_names = ("dt", "df"), ("dlen_t", "dlen_f")

        def __init__(self, options=None, bins=(H, W), channels=1):
            self.setup(options or SpectrogramOptions(), channels, bins, options.patch_size if options else (4, 8))

    m = Spectrogram(SpectrogramOptions(num_patches=10))
    assert (m.grid_shape, m.target_names, m.patch_dim) == ((6, 5), ("dt", "df"), 32)
    torch.manual_seed(0)
    model = build_method("part", m, ViTEncoder(16, 1, 2), m.tokenizer(16), get_method("part").options(num_pairs=8))
    loss = model(torch.randn(2, 1, H, W))["loss"]
    loss.backward()
    assert math.isfinite(loss.item()) and model.tokenizer.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"spectrogram \(B, C, F, T\): expected 24x40 bins after the channels"):
        m.sample(torch.randn(2, 1, H, W + 1))


def test_a_size_list_of_the_wrong_length_names_the_key():
    with pytest.raises(OptionsError, match=r"^invalid modality options: 'modality\.image_size' = \[24, 40, 3\] must "
                                           r"be one integer or a list of 2 \(one per axis, rows first\)$"):
        get_modality("image", image_size=[24, 40, 3], channels=1)
    with pytest.raises(OptionsError, match=r"'modality\.patch_size' = \[4\] must be one integer or a list of 2"):
        get_modality("image", image_size=[24, 40], channels=1, patch_size=[4])


def test_rectangular_patches_export_to_timm_with_equal_logits():
    """A classifier on 8 x 16 images with 2 x 4 patches, under timm's key names (the export's
    key map and patch-embedding reshape), equals timm's VisionTransformer(img_size=(8, 16),
    patch_size=(2, 4)) on the same inputs."""
    timm = pytest.importorskip("timm")
    from part.core.backbone import ViTEncoder, timm_state_dict
    from part.core.classifier import PatchClassifier

    torch.manual_seed(0)
    m = get_modality("image", image_size=[8, 16], channels=3, patch_size=[2, 4])
    ours = PatchClassifier(m, m.tokenizer(32), ViTEncoder(32, 2, 4), 5).eval()
    sd = ours.state_dict()
    encoder = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    weight = ImageModality.timm_patch_embed(m.options, sd["tokenizer.weight"])
    timm_sd = {**timm_state_dict(encoder, weight, sd["tokenizer.bias"]),
               **{k: v for k, v in sd.items() if k.startswith("head.")}}
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=(8, 16), patch_size=(2, 4), in_chans=3, embed_dim=32, depth=2, num_heads=4, num_classes=5)
    missing, unexpected = model.load_state_dict(timm_sd, strict=False)
    assert not missing and not unexpected
    x = torch.rand(2, 3, 8, 16)
    torch.testing.assert_close(model.eval()(x), ours(x), atol=1e-5, rtol=1e-4)


def test_analysis_pastes_rectangular_patches_pixel_for_pixel():
    """part-analyze's canvas: a 2 x 4 patch at its aligned box shows its own pixels (1 canvas pixel
    per image pixel)."""
    import numpy as np
    from part.modalities.image.analysis import paste
    patch = np.arange(8.0).reshape(1, 8)                     # C = 1, (ph, pw) = (2, 4)
    box = np.array([[3.0 + 2.0, 1.0 + 1.0, 4.0, 2.0]])       # x0 = 3, y0 = 1
    values, covered = paste(patch, box, 1, (0, 0, 10, 6), 1, patch=(2, 4))
    assert values.shape == (6, 10, 1) and covered.sum() == 8
    assert np.array_equal(values[1:3, 3:7, 0], np.arange(8.0).reshape(2, 4))
