"""Contract checks a plugin runs in its own test suite (no pytest needed to import this module).

    from part.testing import check_modality, check_method

    def test_my_modality_keeps_the_contract():
        check_modality("accel")          # the example settings it registered
        check_method("my_method")        # on every installed modality with an example

``check_modality(name_or_class, settings)`` builds the modality from ``settings`` =
``dict(options={...}, input_shape=(B, ...))`` (default: the ``example`` it declared with
``register_modality``) and checks, on seeded random inputs:

- shapes: ``sample`` gives patches (B, N, patch_dim) and geometry (B, N, geometry_dim), ``grid``
  (B, num_grid_patches, ...), the tokenizer maps patches to (B, N, dim), ``targets`` gives
  (..., target_dim) and ``target_names`` has target_dim names;
- geometry inside the input: for boxes (G = 2k: centres, then sizes) every box lies in the
  input's last k axes (geometry order x, y: the last axis first), sizes > 0;
- targets against ``place``: ``place(ref, targets(ref, tgt), tgt) == tgt``;
- the grid: ``grid_index`` of the grid's own geometry is ``arange(num_grid_patches)``;
- determinism: the same ``generator`` seed gives the same patches and geometry;
- training: every registered method that accepts the modality (and declared an ``example``)
  is built on a tiny encoder and trained for a few Adam steps: the loss stays finite and
  gradients reach the tokenizer; the finetuning classifier runs forward and backward.

``check_method(name, modalities=None)`` trains method ``name`` on every installed modality
with an example (or those named) that it accepts. Both raise ``ContractError`` (an
AssertionError, so test runners show it as a failure) naming the plugin, the check and the
values; they return a ``ContractResult`` saying what was trained and what was skipped, and why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from part.registry import (available_methods, available_modalities, build_method, get_method,
                           get_modality, modality_spec)

STEPS = 3  # optimiser steps per (modality, method)


class ContractError(AssertionError):
    """A plugin broke the contract: the message names the plugin, the check and the values."""


@dataclass
class ContractResult:
    """What a check ran: ``trained`` method names (or modality names for ``check_method``) and
    ``skipped`` {name: why}."""

    name: str
    trained: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)


def _fail(who: str, check: str, detail: str) -> None:
    raise ContractError(f"{who}: {check}: {detail}")


def example_settings(name: str) -> Optional[dict]:
    """The ``example`` modality ``name`` declared when it registered (None if it declared none)."""
    return modality_spec(name).example


def _build(name_or_class: Union[str, type], settings: Optional[dict]):
    """(registered name, modality, input x (B, ...) seeded randn) from a registered name or class
    and its settings."""
    if not isinstance(name_or_class, str):  # a class: the name it is registered under
        names = [n for n in available_modalities() if modality_spec(n).cls is name_or_class]
        if not names:
            raise ContractError(f"{getattr(name_or_class, '__name__', name_or_class)!r} is no registered modality "
                                f"class; decorate it with @register_modality(name, options=...) first")
        name_or_class = names[0]
    settings = settings if settings is not None else example_settings(name_or_class)
    if settings is None:
        raise ContractError(f"modality {name_or_class!r}: no settings: pass settings=dict(options=..., "
                            f"input_shape=...) or declare register_modality(..., example=...)")
    modality = get_modality(name_or_class, **settings["options"])
    shape = tuple(settings["input_shape"])
    if len(shape) < 2 or shape[0] < 2:
        raise ContractError(f"modality {getattr(modality, 'name', '?')!r}: input_shape={shape} needs (B >= 2, ...)")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return name_or_class, modality, x


def _check_shapes(who: str, m, x: torch.Tensor, patches, geom) -> None:
    B = x.shape[0]
    want = (B, m.num_patches, m.patch_dim)
    if tuple(patches.shape) != want:
        _fail(who, "sample() patches", f"shape {tuple(patches.shape)}, expected (B, num_patches, patch_dim) = {want}")
    if tuple(geom.shape) != (B, m.num_patches, m.geometry_dim):
        _fail(who, "sample() geometry", f"shape {tuple(geom.shape)}, expected (B, num_patches, geometry_dim) = "
                                        f"{(B, m.num_patches, m.geometry_dim)}")
    gp, gg = m.grid(x)
    if gp.shape[:2] != (B, m.num_grid_patches) or gg.shape != (B, m.num_grid_patches, m.geometry_dim):
        _fail(who, "grid()", f"patches {tuple(gp.shape)}, geometry {tuple(gg.shape)}; expected (B, "
                             f"num_grid_patches={m.num_grid_patches}, ...)")
    tokens = m.tokenizer(8)(patches)
    if tuple(tokens.shape) != (B, m.num_patches, 8):
        _fail(who, "tokenizer(8)", f"gave {tuple(tokens.shape)}, expected {(B, m.num_patches, 8)}")
    t = m.targets(geom[:, :1].expand_as(geom), geom)
    if tuple(t.shape) != (B, m.num_patches, m.target_dim):
        _fail(who, "targets()", f"shape {tuple(t.shape)}, expected (..., target_dim={m.target_dim})")
    if len(m.target_names) != m.target_dim:
        _fail(who, "target_names", f"{m.target_names} has {len(m.target_names)} names, target_dim={m.target_dim}")


def _check_geometry(who: str, m, x: torch.Tensor, geom: torch.Tensor) -> None:
    """Boxes (G = 2k) lie inside the input's last k axes (x is the last axis)."""
    if m.geometry_dim % 2:
        return  # not the box convention: the modality documents its own geometry
    k = m.geometry_dim // 2
    extent = torch.tensor([float(n) for n in reversed(x.shape[-k:])])
    centre, size = geom[..., :k].float().cpu(), geom[..., k:].float().cpu()
    tol = 1e-4 * extent
    if not (size > 0).all():
        _fail(who, "geometry", f"box sizes must be > 0, got min {size.min().item()}")
    lo, hi = centre - size / 2, centre + size / 2
    if (lo < -tol).any() or (hi > extent + tol).any():
        _fail(who, "geometry inside the input", f"boxes span [{lo.min().item():.3f}, {hi.max().item():.3f}] "
                                                f"but the input's extent (geometry order) is {extent.tolist()}")


def _check_place_grid_seed(who: str, m, x: torch.Tensor, geom: torch.Tensor) -> None:
    ref, tgt = geom[:, :1].expand_as(geom), geom
    back = m.place(ref, m.targets(ref, tgt), tgt)
    if not torch.allclose(back.float(), tgt.float(), rtol=1e-4, atol=1e-3):
        err = (back.float() - tgt.float()).abs().max().item()
        _fail(who, "place(ref, targets(ref, tgt), tgt) == tgt", f"off by up to {err:.4g}")
    _, grid_geom = m.grid(x)
    index = m.grid_index(grid_geom)
    want = torch.arange(m.num_grid_patches).expand(x.shape[0], -1)
    if not torch.equal(index.cpu(), want):
        _fail(who, "grid_index(grid geometry) == arange(num_grid_patches)", f"got {index[0].tolist()}")
    a = m.sample(x, torch.Generator().manual_seed(7))
    b = m.sample(x, torch.Generator().manual_seed(7))
    same = all(torch.allclose(u, v, rtol=0, atol=0, equal_nan=True) for u, v in zip(a, b))
    if not same:
        _fail(who, "determinism", "sample(x, generator seeded 7) twice gave different patches or geometry")


def _train(who: str, m, x: torch.Tensor, method: str) -> None:
    """A few Adam steps of ``method`` on a tiny encoder: finite losses, gradients at the tokenizer."""
    from part.core.backbone import ViTEncoder
    from part.core.classifier import PatchClassifier

    torch.manual_seed(0)
    spec = get_method(method)
    encoder, tokenizer = ViTEncoder(32, 1, 4), m.tokenizer(32)
    model = build_method(method, m, encoder, tokenizer, spec.options(**spec.example))
    params = list({id(p): p for p in [*model.parameters(), *tokenizer.parameters()]}.values())
    opt = torch.optim.Adam(params, lr=1e-3)
    B = x.shape[0]
    for step in range(STEPS):
        opt.zero_grad()
        if spec.pretrain_data is None:
            out = model(x)
        else:  # samples of k windows (B, k, ...) and a target per sample
            k = model.windows
            xs = x.unsqueeze(1).expand(-1, k, *x.shape[1:]) + 0.1 * torch.randn(B, k, *x.shape[1:])
            out = model(xs, (torch.arange(B) % 2).float())
        loss = out["loss"]
        if loss.ndim != 0 or not math.isfinite(loss.item()):
            _fail(who, f"method {method!r} step {step}", f"loss must be a finite scalar, got {loss}")
        loss.backward()
        grad = tokenizer.weight.grad if hasattr(tokenizer, "weight") else next(tokenizer.parameters()).grad
        if grad is None or not grad.abs().sum() > 0:
            _fail(who, f"method {method!r} step {step}", "no gradient reaches the tokenizer")
        opt.step()
    classifier = PatchClassifier(m, tokenizer, encoder, num_classes=3)
    logits = classifier(x)
    if tuple(logits.shape) != (B, 3):
        _fail(who, "PatchClassifier", f"logits {tuple(logits.shape)}, expected {(B, 3)}")
    torch.nn.functional.cross_entropy(logits, torch.arange(B) % 3).backward()


def _why_not(method: str, modality_name: str) -> Optional[str]:
    """Why ``method`` is not trained on ``modality_name`` in the contract, or None."""
    spec = get_method(method)
    if not spec.pretrains:
        return "no pretraining stage"
    if spec.example is None:
        return "the method declares no example options (register_method(..., example=...))"
    return spec.check_modality(modality_name)


def check_modality(name_or_class: Union[str, type], settings: Optional[dict] = None,
                   methods: Optional[Sequence[str]] = None) -> ContractResult:
    """Run the modality contract (module docstring). ``methods``: those to train (default: every
    registered method that accepts the modality). The caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _check_modality(name_or_class, settings, methods)


def _check_modality(name_or_class, settings, methods) -> ContractResult:
    name, m, x = _build(name_or_class, settings)
    who = f"modality {name!r}"
    with torch.no_grad():
        patches, geom = m.sample(x, torch.Generator().manual_seed(0))
        _check_shapes(who, m, x, patches, geom)
        _check_geometry(who, m, x, geom)
        _check_place_grid_seed(who, m, x, geom)
    result = ContractResult(name)
    for method in (available_methods() if methods is None else methods):
        why = _why_not(method, name)
        if why:
            result.skipped[method] = why
            continue
        _train(who, m, x, method)
        result.trained.append(method)
    return result


def check_method(name: str, modalities: Optional[Sequence[str]] = None) -> ContractResult:
    """Train method ``name`` for a few steps on every installed modality with an example (or
    those named) that it accepts; see the module docstring. The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        return _check_method(name, modalities)


def _check_method(name, modalities) -> ContractResult:
    result = ContractResult(name)
    for modality in (available_modalities() if modalities is None else modalities):
        settings = example_settings(modality)
        why = "the modality declares no example settings" if settings is None else _why_not(name, modality)
        if why:
            result.skipped[modality] = why
            continue
        _, m, x = _build(modality, settings)
        _train(f"method {name!r} on modality {modality!r}", m, x, name)
        result.trained.append(modality)
    return result


def contract_cases() -> list[tuple[str, Any]]:
    """(modality name, its example or None) for every installed modality: the core suite's
    parametrisation (a modality without an example is skipped there, with the reason)."""
    return [(n, example_settings(n)) for n in available_modalities()]
