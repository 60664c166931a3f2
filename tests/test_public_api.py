"""The public API (``import part``): names, version, ``PARTLoss`` (math, errors, equality with
the PART method) and the README's "Use PART on your own encoder" snippet, run as written."""
import configparser
import importlib
import importlib.metadata
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import part
from part.core.backbone import ViTEncoder
from part.core.heads import CrossAttentionHead
from part.core.pairs import sample_pairs
from part.registry import build_method, get_method, get_modality

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ["PART", "PARTLoss", "CrossAttentionHead", "PairwiseMLPHead", "MLPHead", "sample_pairs",
            "relative_targets", "ViTEncoder", "get_modality", "get_method", "register_modality",
            "register_method", "register_dataset", "available_modalities", "available_methods",
            "Modality", "DataBundle", "Options", "BoxModality", "BoxOptions"]


# ----------------------------------------------------------------------------- names and version

def test_all_names_resolve():
    assert set(REQUIRED) <= set(part.__all__)
    assert len(part.__all__) == len(set(part.__all__))
    for name in part.__all__:
        assert getattr(part, name) is not None, name
    namespace = {}
    exec("from part import *", namespace)
    assert set(part.__all__) <= set(namespace)
    assert part.PARTLoss is importlib.import_module("part.core.loss").PARTLoss
    assert part.PART is importlib.import_module("part.core.methods.part").PART
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        part.NotAThing  # noqa: B018


def test_import_is_cheap_and_acyclic():
    """``import part`` and ``import part.registry`` import no torch (names load on first use)."""
    code = ("import sys, part, part.registry; assert 'torch' not in sys.modules, 'torch imported'; "
            "part.PARTLoss; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_version(monkeypatch):
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = cfg["metadata"]["version"]
    assert part.__version__ == importlib.metadata.version("part-toolkit") == declared
    # not installed: the setup.cfg value
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert importlib.reload(part).__version__ == "0.1.0" == declared
    finally:
        monkeypatch.undo()
        importlib.reload(part)
    assert part.__version__ == declared


# ----------------------------------------------------------------------------- PARTLoss math

def _boxes(B, N, k, generator):
    centres = torch.rand(B, N, k, generator=generator, dtype=torch.float64) * 20
    sizes = torch.rand(B, N, k, generator=generator, dtype=torch.float64) * 3 + 1
    return torch.cat([centres, sizes], -1)


def _literal_targets(geom, ref, tgt, k, with_scale, scale_target):
    """Eq. 1 / eq. 5 item by item in Python floats."""
    B, M = ref.shape
    out = torch.zeros(B, M, 2 * k if with_scale else k, dtype=torch.float64)
    for b in range(B):
        for m in range(M):
            r, t = geom[b, ref[b, m]].tolist(), geom[b, tgt[b, m]].tolist()
            for a in range(k):
                out[b, m, a] = (t[a] - r[a]) / r[k + a]
                if with_scale:
                    ratio = t[k + a] / r[k + a]
                    out[b, m, k + a] = math.log(ratio) if scale_target == "log" else ratio
    return out


@pytest.mark.parametrize("k,target_dim,scale_target,head", [
    (2, 2, "ratio", "cross_attention"), (2, 4, "ratio", "cross_attention"),
    (2, 4, "log", "pairwise_mlp"), (1, 1, "ratio", "pairwise_mlp"), (1, 2, "log", "cross_attention")])
def test_part_loss_matches_literal_computation(k, target_dim, scale_target, head):
    """loss == mean over pairs and values of (head(z_ref, z_tgt) - target)^2, computed literally:
    the pairs of sample_pairs on the same seed, the head unfactored, the targets item by item."""
    g = torch.Generator().manual_seed(0)
    B, N, d, M = 2, 5, 8, 7
    torch.manual_seed(0)
    criterion = part.PARTLoss(d, target_dim, M, head=head, num_heads=2,
                              scale_target=scale_target).double()
    z, geom = torch.randn(B, N, d, generator=g, dtype=torch.float64), _boxes(B, N, k, g)
    torch.manual_seed(1)
    loss, details = criterion(z, geom, return_details=True)
    torch.manual_seed(1)
    ref, tgt = sample_pairs(B, N, M)
    assert torch.equal(details["ref"], ref) and torch.equal(details["tgt"], tgt)
    h = criterion.head
    if isinstance(h, CrossAttentionHead):
        pred = h.forward_reference(z, ref, tgt)
    else:
        pairs = torch.stack([torch.cat([z[b, ref[b, m]], z[b, tgt[b, m]]]) for b in range(B)
                             for m in range(M)]).view(B, M, 2 * d)
        pred = h.second(h.first(pairs))
    target = _literal_targets(geom, ref, tgt, k, target_dim == 2 * k, scale_target)
    expected = ((pred.float() - target.float()) ** 2).mean()
    assert loss.dtype == torch.float32 and loss.ndim == 0
    torch.testing.assert_close(details["target"], target.float())
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in criterion.parameters())


def test_part_loss_is_zero_for_a_perfect_head():
    """A head that returns the true targets gives loss 0 (the loss compares the right pairs)."""
    class Oracle(torch.nn.Module):
        def forward(self, z, ref, tgt):  # z carries the geometry itself
            return part.relative_targets(torch.gather(z, 1, ref[..., None].expand(-1, -1, 4)),
                                         torch.gather(z, 1, tgt[..., None].expand(-1, -1, 4)))
    geom = _boxes(3, 6, 2, torch.Generator().manual_seed(2)).float()
    criterion = part.PARTLoss(4, 2, 50, head=Oracle(), exclude_self_pairs=True)
    loss, details = criterion(geom.clone(), geom, return_details=True)
    assert loss.item() == 0.0
    assert (details["ref"] != details["tgt"]).all()


def test_part_loss_custom_target_fn_and_generator():
    calls = []

    def target_fn(a, b):
        calls.append((a.shape, b.shape))
        return (b[..., :1] - a[..., :1]) * 2
    criterion = part.PARTLoss(8, 1, 5, head="pairwise_mlp", target_fn=target_fn)
    z, geom = torch.randn(2, 4, 8), torch.rand(2, 4, 3)  # any geometry width with a target_fn
    l1 = criterion(z, geom, generator=torch.Generator().manual_seed(3))
    l2 = criterion(z, geom, generator=torch.Generator().manual_seed(3))
    assert torch.equal(l1, l2) and calls[0] == ((2, 5, 3), (2, 5, 3))
    mlp = part.PARTLoss(8, 2, 5, head="mlp", num_patches=4)
    assert torch.isfinite(mlp(z, torch.rand(2, 4, 4) + 1))


def test_part_loss_errors_name_the_values():
    z, geom = torch.randn(2, 6, 16), torch.rand(2, 6, 4) + 1
    with pytest.raises(ValueError, match=r"target_dim=3 does not fit geometry of G=4 .*2 "
                                         r"\(translations\) or 4 \(translations and scales\)"):
        part.PARTLoss(16, 3, 8, num_heads=2)(z, geom)
    with pytest.raises(ValueError, match=r"target_dim=1 does not fit geometry of G=3"):
        part.PARTLoss(16, 1, 8, num_heads=2)(z, torch.rand(2, 6, 3))
    with pytest.raises(ValueError, match=r"z has width 16 .* but dim=32"):
        part.PARTLoss(32, 2, 8)(z, geom)
    with pytest.raises(ValueError, match=r"\(2, 7, 16\) and geometry \(2, 6, 4\) must agree.*CLS"):
        part.PARTLoss(16, 2, 8, num_heads=2)(torch.randn(2, 7, 16), geom)
    with pytest.raises(ValueError, match=r"geometry must be \(B, N, G\), got \(6, 4\)"):
        part.PARTLoss(16, 2, 8, num_heads=2)(z, geom[0])
    with pytest.raises(ValueError, match="target_fn returned 1 values per pair .* target_dim=2"):
        part.PARTLoss(16, 2, 8, num_heads=2, target_fn=lambda a, b: a[..., :1])(z, geom)
    with pytest.raises(ValueError, match=r"head='conv'; valid: cross_attention, pairwise_mlp, mlp"):
        part.PARTLoss(16, 2, 8, head="conv")
    with pytest.raises(ValueError, match="needs num_patches=N"):
        part.PARTLoss(16, 2, 8, head="mlp")
    with pytest.raises(ValueError, match="head_hidden=32 applies to head 'pairwise_mlp' only"):
        part.PARTLoss(16, 2, 8, head_hidden=32)
    with pytest.raises(ValueError, match=r"scale_target='exp'; valid: ratio, log"):
        part.PARTLoss(16, 4, 8, scale_target="exp")
    with pytest.raises(ValueError, match=r"num_pairs=0 must be an integer >= 1"):
        part.PARTLoss(16, 2, 0)
    with pytest.raises(ValueError, match=r"must be divisible"):
        part.PARTLoss(16, 2, 8, num_heads=3)


# ----------------------------------------------------------------------------- PART == PARTLoss

@pytest.mark.parametrize("head", ["cross_attention", "pairwise_mlp"])
def test_part_method_equals_part_loss_on_the_same_seed(head):
    """The PART method's loss is PARTLoss on the encoder's patch tokens, bit for bit (here with
    the generic targets, which the image modality's equal)."""
    m = get_modality("image", image_size=8, channels=1, patch_size=2)
    torch.manual_seed(0)
    enc = ViTEncoder(32, 1, 4)
    model = build_method("part", m, enc, m.tokenizer(32), get_method("part").options(num_pairs=32, head=head))
    criterion = part.PARTLoss(32, m.target_dim, 32, head=head, num_heads=4)
    criterion.load_state_dict({k.removeprefix("criterion."): v
                               for k, v in model.criterion.state_dict().items()})
    x = torch.rand(3, 1, 8, 8)
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    patches, geometry = m.sample(x)
    loss, details = criterion(enc(model.tokenizer(patches))[:, 1:], geometry, return_details=True)
    assert torch.equal(out["loss"], loss)
    pred, target = details["pred"], details["target"]
    assert torch.equal(out["l2_error"], (pred - target).norm(dim=-1).mean().detach())


def test_part_method_checkpoint_keys_are_unchanged():
    """The head's keys stay ``head.*`` (checkpoints from before PARTLoss load, strictly)."""
    m = get_modality("image", image_size=8, channels=1, patch_size=2)
    model = build_method("part", m, ViTEncoder(32, 1, 4), m.tokenizer(32),
                         get_method("part").options(num_pairs=8))
    keys = list(model.state_dict())
    assert any(k.startswith("head.") for k in keys) and not any("criterion" in k for k in keys)
    assert model.head is model.criterion.head
    old = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(old)  # strict
    assert torch.equal(model.state_dict()["head.out.weight"], old["head.out.weight"])
    wrapped = torch.nn.ModuleDict({"pretext": model})  # nested: prefixes are kept
    assert "pretext.head.out.weight" in wrapped.state_dict()
    wrapped.load_state_dict(wrapped.state_dict())


# ----------------------------------------------------------------------------- README snippet

def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- own-encoder-snippet:start -->\s*```python\n(.*?)```\s*"
                      r"<!-- own-encoder-snippet:end -->", text, re.S)
    assert found, "README.md lost its 'own-encoder-snippet' markers"
    return found.group(1)


def test_readme_snippet_is_short():
    lines = readme_snippet().strip().splitlines()
    assert len(lines) < 15, len(lines)


def test_readme_own_encoder_snippet_runs_and_learns(capsys):
    """The snippet as written, fed a loader that repeats one fixed batch (images whose content
    tells the position: coordinate ramps): the loss is finite and a few steps lower it."""
    torch.manual_seed(0)
    ramp = torch.linspace(-1, 1, 32)
    yy, xx = torch.meshgrid(ramp, ramp, indexing="ij")
    batch = torch.stack([xx, yy, xx * yy]).expand(8, -1, -1, -1).contiguous()
    namespace = {"__name__": "readme_snippet", "loader": [(batch, None)] * 8}
    exec(compile(readme_snippet(), "README.md#own-encoder", "exec"), namespace)
    losses = [float(v) for v in re.findall(r"PART loss ([-\d.naif]+)", capsys.readouterr().out)]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), losses
    assert torch.isfinite(namespace["loss"]) and namespace["loss"].ndim == 0
    assert namespace["vit"].pos_embed is None  # PART pretrains without a position embedding
    assert sum(losses[-2:]) < 0.5 * sum(losses[:2]), losses


def one_d_snippet() -> str:
    found = re.search(r"<!-- one-d-snippet:start -->\s*```python\n(.*?)```\s*<!-- one-d-snippet:end -->",
                      (ROOT / "README.md").read_text(), re.S)
    assert found, "README.md lost its 'one-d-snippet' markers"
    return found.group(1)


def test_readme_one_d_snippet_runs_and_learns(capsys):
    """The 1-D snippet as written, fed one fixed batch whose content tells the time (ramps): the
    loss is finite, a few steps lower it, and the targets are dt alone (B, M, 1)."""
    torch.manual_seed(0)
    t = torch.linspace(-1, 1, 480)
    batch = torch.stack([t, t.square()]).expand(8, -1, -1).contiguous()
    namespace = {"__name__": "readme_one_d", "loader": [(batch, None)] * 12}
    exec(compile(one_d_snippet(), "README.md#one-d", "exec"), namespace)
    losses = [float(v) for v in re.findall(r"PART loss ([-\d.naif]+)", capsys.readouterr().out)]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    criterion, encoder, modality = namespace["criterion"], namespace["encoder"], namespace["modality"]
    patches, geometry = modality.sample(batch)
    _, details = criterion(encoder(patches), geometry, return_details=True)
    assert geometry.shape == (8, 24, 2) and details["target"].shape == (8, 128, 1)


def test_readme_one_d_scale_target_needs_scale_range():
    """The README's claim: target_dim=2 on windows of one length is refused naming scale_range;
    with scale_range the same loss trains on (dt, dlen)."""
    fixed = part.get_modality("eeg", channels=2, window_samples=480, patch_samples=16, num_patches=24)
    x = torch.randn(2, 2, 480)
    patches, geometry = fixed.sample(x)
    z = torch.randn(2, 24, 16)
    with pytest.raises(ValueError, match=r"^PARTLoss: target_dim=2 asks for scale targets .* every patch of the "
                                         r"batch has the same size \[16.0\].* use target_dim=1 .*scale_range"):
        part.PARTLoss(dim=16, target_dim=2, num_pairs=8, num_heads=2)(z, geometry)
    varied = part.get_modality("eeg", channels=2, window_samples=480, patch_samples=16, num_patches=24,
                               scale_range=[0.5, 2.0])
    _, geometry = varied.sample(x)
    loss, details = part.PARTLoss(dim=16, target_dim=2, num_pairs=8, num_heads=2)(z, geometry, return_details=True)
    assert torch.isfinite(loss) and details["target"].shape == (2, 8, 2)
    assert not torch.allclose(details["target"][..., 1], torch.ones(2, 8))  # dlen varies


def test_console_scripts_resolve_and_show_help(capsys):
    """Every console script of setup.cfg is installed and names a callable `main(argv)` that
    answers --help (exit 0) without importing anything it cannot find."""
    import configparser
    from importlib import import_module
    from importlib.metadata import entry_points

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    declared = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    installed = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("part-")}
    assert installed == declared, "reinstall the package (pip install -e .): console scripts differ from setup.cfg"
    for name, target in declared.items():
        module, attr = target.split(":")
        main = getattr(import_module(module), attr)
        with pytest.raises(SystemExit) as exc:
            main(["--help"])
        assert exc.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


HEAVY = ("torch", "sklearn", "timm", "torchvision", "mne", "matplotlib")


def test_console_scripts_answer_help_without_heavy_imports():
    """``--help`` of every installed console script starts at once: the real entry point, run in
    a fresh process, imports none of torch, scikit-learn, timm, torchvision, MNE or matplotlib
    (benchmarks/startup_bench.py measures the time)."""
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("part-")}
    assert len(scripts) >= 9
    code = ("import sys; from importlib import import_module; module, attr = sys.argv[1].split(':'); "
            "main = getattr(import_module(module), attr)\n"
            "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "assert not heavy, f'--help imported {heavy}'")
    for name, target in scripts.items():
        result = subprocess.run([sys.executable, "-c", code, target], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr[-1500:]}"
        assert "usage:" in result.stdout, name
