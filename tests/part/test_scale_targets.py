"""Scale targets need sizes that vary (issue 27 item 5): ``PARTLoss`` and the PART method refuse
target_dim = 2k on boxes of one size, naming ``scale_range``, instead of training on a constant
size ratio of 1.0 (which halves the reported loss and looks like progress). No plugin needed:
geometry is built by hand and the modality is a stand-in with the attributes PART reads."""
from types import SimpleNamespace

import pytest
import torch

from part.core.backbone import ViTEncoder
from part.core.geometry import relative_targets
from part.core.loss import PARTLoss
from part.core.methods.part import PART, PARTOptions
from part.errors import ConfigError


def boxes_1d(B=2, N=6, lengths=None):
    """(B, N, 2) = (centre, length) in samples; lengths None: all 8."""
    centres = torch.linspace(10, 90, N).expand(B, N)
    lengths = torch.full((B, N), 8.0) if lengths is None else lengths
    return torch.stack([centres, lengths], -1)


def test_scale_target_on_one_length_is_refused_naming_scale_range():
    loss = PARTLoss(dim=8, target_dim=2, num_pairs=4, num_heads=2)
    with pytest.raises(ValueError) as info:
        loss(torch.randn(2, 6, 8), boxes_1d())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("PARTLoss: target_dim=2 asks for scale targets (size ratios) but every patch "
                              "of the batch has the same size [8.0]")
    assert "use target_dim=1 (translations only)" in message and "scale_range" in message


def test_scale_target_on_varying_lengths_matches_relative_targets():
    lengths = torch.tensor([[4.0, 8, 16, 8, 4, 12], [8, 8, 8, 8, 8, 9]])
    geom = boxes_1d(lengths=lengths)
    loss = PARTLoss(dim=8, target_dim=2, num_pairs=5, num_heads=2)
    value, d = loss(torch.randn(2, 6, 8), geom, return_details=True)
    ref = torch.gather(geom, 1, d["ref"][..., None].expand(-1, -1, 2))
    tgt = torch.gather(geom, 1, d["tgt"][..., None].expand(-1, -1, 2))
    want = torch.stack([(tgt[..., 0] - ref[..., 0]) / ref[..., 1], tgt[..., 1] / ref[..., 1]], -1)
    assert torch.allclose(d["target"], want) and torch.allclose(d["target"], relative_targets(ref, tgt, True))
    assert torch.isclose(value, ((d["pred"] - want) ** 2).mean())


def test_translation_target_on_one_length_is_fine_and_a_2d_box_of_one_size_too():
    assert torch.isfinite(PARTLoss(dim=8, target_dim=1, num_pairs=4, num_heads=2)(torch.randn(2, 6, 8), boxes_1d()))
    square = torch.cat([boxes_1d(), boxes_1d()], -1)[..., [0, 2, 1, 3]]  # cx, cy, w, h all 8
    assert torch.isfinite(PARTLoss(dim=8, target_dim=2, num_pairs=4, num_heads=2)(torch.randn(2, 6, 8), square))
    with pytest.raises(ValueError, match=r"target_dim=4 asks for scale targets .* same size \[8.0, 8.0\]"):
        PARTLoss(dim=8, target_dim=4, num_pairs=4, num_heads=2)(torch.randn(2, 6, 8), square)


def stand_in(target_dim, scale_range=None, lengths=None):
    """The modality attributes PART reads, 1-D boxes of ``lengths`` (None: all 8)."""
    geom = boxes_1d(lengths=lengths)
    return SimpleNamespace(name="stand_in", num_patches=6, num_grid_patches=6, target_dim=target_dim,
                           geometry_dim=2, translation_dim=1, scale_range=scale_range,
                           targets=lambda r, t: relative_targets(r, t, target_dim == 2),
                           sample=lambda x, generator=None: (x, geom), grid=lambda x: (x, geom))


def test_the_part_method_refuses_scale_targets_without_scale_range():
    encoder, tokenizer = ViTEncoder(16, 1, 2), torch.nn.Linear(4, 16)
    with pytest.raises(ConfigError, match=r"^method 'part': modality 'stand_in' has target_dim=2 \(scale targets\) "
                                          r"but no scale_range, so its patch sizes never vary.*set "
                                          r"modality.scale_range \(e.g. \[0.5, 2.0\]\)"):
        PART(stand_in(2), encoder, tokenizer, PARTOptions(num_pairs=4))
    with pytest.raises(ConfigError, match=r"^method 'part_grid': the fixed grid's patches all have one size"):
        PART(stand_in(2, (0.5, 2.0)), encoder, tokenizer, PARTOptions(num_pairs=4), on_grid=True)
    # a modality claiming scale_range whose sampler still draws one length: refused at the first batch
    fixed = PART(stand_in(2, (0.5, 2.0)), encoder, tokenizer, PARTOptions(num_pairs=4))
    with pytest.raises(ValueError, match="same size .*scale_range"):
        fixed(torch.randn(2, 6, 4))
    varied = PART(stand_in(2, (0.5, 2.0), torch.tensor([[4.0, 8, 16, 8, 4, 12]] * 2)), encoder, tokenizer,
                  PARTOptions(num_pairs=4))
    assert torch.isfinite(varied(torch.randn(2, 6, 4))["loss"])
    assert torch.isfinite(PART(stand_in(1), encoder, tokenizer, PARTOptions(num_pairs=4))(torch.randn(2, 6, 4))["loss"])
