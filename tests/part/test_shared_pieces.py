"""Rules written once (issue 27 item 7): the device rule, the model assembly, the timm key map,
the window grid and its labelling, the EEG constants."""
import numpy as np
import pytest
import torch

from part.config.loader import load_recipe
from part.core.assemble import build_pretext_method
from part.core.backbone import ViTEncoder, timm_state_dict
from part.errors import ConfigError
from part.inference import resolve_device
from part.modalities.eeg.recordings import constants
from part.modalities.eeg.recordings.windows import WindowConfig, label_runs, tile_starts
from part.registry import build_method, get_modality


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_one_device_rule_names_the_option_it_came_from():
    with pytest.raises(ConfigError, match=r"^run\.device 'cuda' asked for, but no CUDA device is visible; "
                                          r"use run\.device 'cpu'$"):
        resolve_device("cuda", key="run.device")
    with pytest.raises(ConfigError, match=r"^device 'gpu' is not a device; expected cpu, cuda, cuda:N or auto$"):
        resolve_device("gpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_assembly_gives_the_weights_of_the_hand_built_model():
    """Construction order modality, encoder, tokenizer, head: the same seed, the same weights."""
    from pathlib import Path
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "digits_demo.yaml",
                         ["model.dim=16", "model.depth=1", "model.heads=2", "method.num_pairs=4"])
    info = {"image_size": 8, "channels": 1}
    torch.manual_seed(0)
    method, modality, encoder = build_pretext_method(recipe, info)
    assert encoder is method.encoder and modality is method.modality
    torch.manual_seed(0)
    by_hand_modality = get_modality("image", image_size=8, channels=1, patch_size=recipe.modality.patch_size)
    encoder = ViTEncoder(16, 1, 2)
    by_hand = build_method("part", by_hand_modality, encoder, by_hand_modality.tokenizer(16), recipe.method)
    got, want = method.state_dict(), by_hand.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_timm_key_map_takes_an_encoder_or_its_state_dict():
    encoder = ViTEncoder(8, 1, 2)
    weight, bias = torch.randn(8, 1, 2, 2), torch.randn(8)
    from_module = timm_state_dict(encoder, weight, bias)
    from_dict = timm_state_dict(encoder.state_dict(), weight, bias)
    assert from_module.keys() == from_dict.keys() and "patch_embed.proj.weight" in from_dict
    assert from_dict["patch_embed.proj.weight"] is weight and "blocks.0.attn.qkv.weight" in from_dict


def test_window_grid_and_labels_by_runs():
    assert tile_starts(7, 100, 30).tolist() == [7, 37, 67]
    assert tile_starts(90, 100, 30).size == 0
    # runs [0, 60) W, [60, 75) N2, [75, 200) REM: windows of 30 from 7 -> W, -1 (a change), REM
    labels = label_runs(np.array([7, 37, 67, 97]), 30, np.array([0, 60, 75]), np.array([60, 75, 200]),
                        np.array([0, 2, 4], np.int8))
    assert labels.tolist() == [0, -1, -1, 4]


def test_eeg_constants_are_the_defaults_everywhere():
    c = WindowConfig()
    assert (c.window_s, c.target_fs, c.flat_std_uv, c.eps) == (constants.EPOCH_S, constants.TARGET_FS,
                                                               constants.FLAT_STD_UV, constants.NORM_EPS_UV)
    assert (constants.EPOCH_S, constants.TARGET_FS, constants.FLAT_STD_UV) == (30.0, 100.0, 0.1)
    from part.data_prep.prepare import PrepConfig
    from part.modalities.eeg.modality import EEGOptions
    from part.modalities.eeg.sleep.scoring_check import LAG_STEP_S
    p = PrepConfig()
    assert (p.window_s, p.target_fs, p.flat_std_uv, p.eps) == (c.window_s, c.target_fs, c.flat_std_uv, c.eps)
    assert EEGOptions().sample_rate == constants.TARGET_FS and LAG_STEP_S == constants.EPOCH_S
