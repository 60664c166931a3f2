"""``part.testing``: each contract check fails, with a message naming the check, on a modality
that breaks it. The broken modalities are subclasses of an installed modality (whichever the
registry lists first with an example), so this file names no plugin."""
import subprocess
import sys

import pytest
import torch

import part.registry as registry
from part.registry import available_modalities, modality_spec, register_modality
from part.testing import ContractError, check_method, check_modality, contract_cases

BASE = next(n for n, e in contract_cases() if e is not None)


def _broken(monkeypatch, name, **overrides):
    """Register ``name``: the BASE modality's class with ``overrides`` and BASE's example."""
    monkeypatch.setattr(registry, "_MODALITIES", dict(registry._MODALITIES))
    spec = modality_spec(BASE)
    cls = type(f"Broken_{name}", (spec.cls,), {"__module__": f"broken_{name}", **overrides})
    register_modality(name, options=spec.options, example=spec.example)(cls)
    return cls


def test_a_healthy_modality_passes_and_reports_what_it_trained():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    result = check_modality(BASE)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched
    assert result.trained and "part" in result.trained
    assert all(isinstance(why, str) and why for why in result.skipped.values())


@pytest.mark.parametrize("name,overrides,message", [
    ("bad_grid_index", dict(grid_index=lambda self, g: torch.zeros(g.shape[:-1], dtype=torch.long)),
     r"grid_index\(grid geometry\) == arange\(num_grid_patches\)"),
    ("bad_place", dict(place=lambda self, r, t, g: g + 1.0),
     r"place\(ref, targets\(ref, tgt\), tgt\) == tgt: off by up to 1"),
    ("bad_seed", dict(sample=lambda self, x, generator=None: type(self).__mro__[1].sample(self, x, None)),
     r"determinism: sample\(x, generator seeded 7\) twice"),
])
def test_each_check_catches_its_breakage(monkeypatch, name, overrides, message):
    _broken(monkeypatch, name, **overrides)
    with pytest.raises(ContractError, match=f"modality {name!r}: {message}"):
        check_modality(name, methods=[])


def test_geometry_outside_the_input_is_caught(monkeypatch):
    def sample(self, x, generator=None):
        patches, geom = type(self).__mro__[1].sample(self, x, generator)
        k = geom.shape[-1] // 2
        return patches, torch.cat([geom[..., :k] + x.shape[-1], geom[..., k:]], -1)
    _broken(monkeypatch, "shifted", sample=sample)
    with pytest.raises(ContractError, match="modality 'shifted': geometry inside the input: boxes span"):
        check_modality("shifted", methods=[])


def test_wrong_patch_shape_is_caught(monkeypatch):
    def sample(self, x, generator=None):
        patches, geom = type(self).__mro__[1].sample(self, x, generator)
        return torch.cat([patches, patches[..., :1]], -1), geom
    _broken(monkeypatch, "wide", sample=sample)
    with pytest.raises(ContractError, match=r"modality 'wide': sample\(\) patches: shape \(2, (\d+), (\d+)\), "
                                            r"expected \(B, num_patches, patch_dim\) = \(2, \1, \d+\)"):
        check_modality("wide", methods=[])


def test_missing_settings_and_unregistered_classes_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(registry, "_MODALITIES", dict(registry._MODALITIES))
    spec = modality_spec(BASE)
    register_modality("no_example", options=spec.options)(type("NoExample", (spec.cls,), {"__module__": "x"}))
    with pytest.raises(ContractError, match=r"modality 'no_example': no settings: pass settings=dict"):
        check_modality("no_example")
    assert check_modality("no_example", settings=spec.example, methods=[]).name == "no_example"
    assert check_modality(spec.cls, methods=[]).name == BASE  # a class: its registered name
    with pytest.raises(ContractError, match="'Unregistered' is no registered modality class"):
        check_modality(type("Unregistered", (), {}))
    assert check_method("part", modalities=["no_example"]).skipped == {
        "no_example": "the modality declares no example settings"}


def test_a_loss_that_is_not_finite_fails_the_training_check(monkeypatch):
    def sample(self, x, generator=None):
        patches, geom = type(self).__mro__[1].sample(self, x, generator)
        return patches * float("nan"), geom
    _broken(monkeypatch, "nan_patches", sample=sample)
    with pytest.raises(ContractError, match=r"modality 'nan_patches': method 'part' step 0: loss must be a "
                                            r"finite scalar"):
        check_modality("nan_patches", methods=["part"])


def test_part_testing_imports_without_pytest():
    code = ("import sys; sys.modules['pytest'] = None; sys.modules['_pytest'] = None; "
            "import part.testing; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    assert available_modalities()  # the registry is intact after the monkeypatched tests
