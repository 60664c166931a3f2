"""``part-export`` of an EEG run (issue 27 item 6): the encoder loads into a timm
VisionTransformer with img_size (1, T), patch_size (1, P) and in_chans C (inputs reshaped
(B, C, 1, T)), the finetuned classifier's logits equal ours, and the sidecar JSON says how the
inputs were made. A tiny PART run (dim 16, depth 1) on 3 SYNTHETIC PC18 records."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

from part.config import load_recipe
from part.export import main as export_main
from part.inference import load_finetuned
from part.training.runner import run
from tests.conftest import prepare_synthetic_pc18, run_main

ROOT = Path(__file__).resolve().parents[3]

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def eeg_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("eeg_export")
    prep = prepare_synthetic_pc18(base, records=3, n_test=1, n_finetune=1)
    recipe = load_recipe(ROOT / "recipes/eeg_sleep_demo.yaml", [
        f"data.root={prep}", f"run.output_dir={base / 'runs'}", "run.name=tiny", "run.device=cpu",
        "model.dim=16", "model.depth=1", "model.heads=2", "method.num_pairs=16", "pretrain.epochs=1",
        "pretrain.batch_size=32", "pretrain.heldout_items=0", "finetune.epochs=1", "finetune.batch_size=32",
        "evaluate.repeats=1", "data.hypnograms=0"])
    run(recipe)
    return base / "runs" / "tiny"


def _timm_model(sidecar):
    from timm.models.vision_transformer import VisionTransformer
    kwargs = dict(sidecar["timm"]["kwargs"])
    kwargs["img_size"], kwargs["patch_size"] = tuple(kwargs["img_size"]), tuple(kwargs["patch_size"])
    return VisionTransformer(**kwargs)


def test_finetuned_eeg_export_gives_our_logits_and_a_sidecar(eeg_run, tmp_path):
    out = tmp_path / "eeg.pth"
    res = run_main(export_main, [eeg_run, "--from", "finetuned", "--out", out])
    assert res.returncode == 0, res.stderr
    sidecar = json.loads((tmp_path / "eeg.pth.json").read_text())
    ours = load_finetuned(eeg_run, "finetuned.pt")
    m, card = ours.model.modality, ours.card
    C, T, P = m.channels, m.window_samples, m.patch_samples
    kwargs = sidecar["timm"]["kwargs"]
    assert kwargs["img_size"] == [1, T] and kwargs["patch_size"] == [1, P] and kwargs["in_chans"] == C
    assert kwargs["embed_dim"] == 16 and kwargs["depth"] == 1 and kwargs["num_heads"] == 2
    assert kwargs["num_classes"] == 5 and sidecar["class_names"] == ["W", "N1", "N2", "N3", "REM"]
    assert sidecar["timm"]["call"].startswith(f"timm.models.vision_transformer.VisionTransformer(img_size=(1, {T}), "
                                              f"patch_size=(1, {P}), in_chans={C}, num_classes=5")
    prepare = f"x (B, {C}, T) -> x[:, :, :{T}].reshape(B, {C}, 1, {T})"
    assert sidecar["input"] == {"shape": [C, 1, T], "prepare": prepare}
    assert sidecar["channels"] == card["data"]["channels"] and len(sidecar["channels"]) == C
    assert sidecar["sampling_rate"] == 100.0 and sidecar["band_pass"] == card["data"]["filter"]
    assert sidecar["normalisation"] == card["data"]["normalisation"] and sidecar["card"] == card
    assert sidecar["temperature"] == card.get("temperature")  # calibrated probabilities: softmax(logits / T)
    checkpoint = eeg_run / "checkpoints" / "finetuned.pt"
    assert sidecar["source"] == {"run": str(eeg_run), "from": "finetuned", "checkpoint": str(checkpoint),
                                 "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
    model = _timm_model(sidecar).eval()
    model.load_state_dict(torch.load(out), strict=True)
    x = torch.randn(3, C, T)
    with torch.no_grad():
        torch.testing.assert_close(model(x.reshape(3, C, 1, T)), ours.model(x), atol=1e-5, rtol=1e-4)


def test_pretrained_eeg_export_loads_without_a_position_embedding(eeg_run, tmp_path):
    res = run_main(export_main, [eeg_run, "--out", tmp_path / "pre.pth"])
    assert res.returncode == 0, res.stderr
    assert "(build with: timm.models.vision_transformer.VisionTransformer(img_size=(1, " in res.stdout
    sidecar = json.loads((tmp_path / "pre.pth.json").read_text())
    assert sidecar["timm"]["kwargs"]["num_classes"] == 0 and sidecar["timm"]["missing_keys"] == ["pos_embed"]
    assert sidecar["card"]["class_names"] == sidecar["class_names"]  # the run's finetuned card describes the data
    model = _timm_model(sidecar)
    missing, unexpected = model.load_state_dict(torch.load(tmp_path / "pre.pth"), strict=False)
    assert not unexpected and missing == ["pos_embed"]
    encoder = torch.load(eeg_run / "checkpoints" / "pretrain.pt")
    w = encoder["tokenizer"]["weight"]  # (dim, C * P) channel-major -> conv (dim, C, 1, P)
    assert torch.equal(model.patch_embed.proj.weight.flatten(1), w)
