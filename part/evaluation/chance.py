"""Held-out pretext loss next to its chance level, and the near-chance warning.

``method_chance`` runs a method's ``pretext_chance`` hook (``part.core.chance``; contract in
docs/architecture.md) on the held-out batch with a seeded generator, without touching the
global RNG streams. ``heldout_loss`` is the method's own loss on held-out inputs (eval mode,
seeded, RNG forked) for methods without relative-target errors. ``near_chance`` says whether a
loss stayed within ``TOLERANCE`` (2 %) of chance (or above it); ``chance_warning`` is the one
warning line of a run whose held-out loss never got further below chance than that.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

TOLERANCE = 0.02  # a held-out loss >= (1 - TOLERANCE) x chance counts as "at chance"


def cuda_devices(x: torch.Tensor) -> list:
    """[x's CUDA device index] for ``torch.random.fork_rng(devices=...)``; [] on the CPU."""
    if x.device.type != "cuda":
        return []
    return [x.device.index if x.device.index is not None else torch.cuda.current_device()]


def method_chance(method, x: Optional[torch.Tensor], batch_size: Optional[int], seed: int) -> Optional[dict]:
    """``method.pretext_chance(x, batch_size, generator)`` with a generator seeded by ``seed`` on
    x's device (global RNG restored), or None when the method has no hook."""
    hook = getattr(method, "pretext_chance", None)
    if not callable(hook):
        return None
    device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
    with torch.no_grad(), torch.random.fork_rng(devices=cuda_devices(x) if x is not None else []):
        generator = torch.Generator(device=device).manual_seed(int(seed))
        return hook(x, batch_size=batch_size, generator=generator)


def heldout_loss(method, inputs: Sequence[torch.Tensor], seed: int, chunk: int = 64) -> tuple[float, int]:
    """(mean of ``method(*inputs)["loss"]`` over chunks of held-out ``inputs`` (each (B, ...)),
    items used): eval mode under no_grad, the global RNG seeded with ``seed`` inside ``fork_rng``
    (the same masks / draws every call; training's streams untouched). Full chunks only when
    B >= chunk (a loss with in-batch negatives, CPC's, then sees ``chunk`` candidates, as its
    chance level assumes); chunks weighted by size."""
    was_training = method.training
    method.eval()
    n = inputs[0].shape[0]
    used = n - n % chunk if n >= chunk else n
    total = 0.0
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda_devices(inputs[0])):
            torch.manual_seed(int(seed))
            for start in range(0, used, chunk):
                part = [t[start:start + chunk] for t in inputs]
                total += float(method(*part)["loss"]) * part[0].shape[0]
    finally:
        method.train(was_training)
    return total / max(used, 1), used


def near_chance(loss: Optional[float], chance: Optional[Mapping], tolerance: float = TOLERANCE) -> Optional[bool]:
    """Whether ``loss`` >= (1 - tolerance) x chance value (None when either is unknown)."""
    if loss is None or not isinstance(chance, Mapping) or chance.get("value") in (None, 0):
        return None
    return bool(loss >= (1.0 - tolerance) * float(chance["value"]))


def chance_text(loss: Optional[float], chance: Optional[Mapping]) -> str:
    """'mse 135.7 (chance 136.6)' for console lines and tables; '' when there is no chance."""
    if not isinstance(chance, Mapping) or loss is None:
        return ""
    return f"{chance.get('metric', 'loss')} {loss:.4g} (chance {float(chance['value']):.4g})"


def chance_warning(records: Sequence[Mapping], stage: str = "pretrain") -> Optional[str]:
    """One warning line when the best held-out loss of the epoch records (``{"heldout":
    {"loss"}, "chance": {...}}``) stayed within 2 % of chance, else None."""
    rows = [r for r in records if isinstance(r.get("heldout"), Mapping)
            and r["heldout"].get("loss") is not None and isinstance(r.get("chance"), Mapping)]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["heldout"]["loss"])
    chance = best["chance"]
    if not near_chance(best["heldout"]["loss"], chance):
        return None
    return (f"[{stage}] WARNING: the held-out pretext loss stayed within {TOLERANCE:.0%} of chance over "
            f"{len(rows)} epochs (best {chance_text(best['heldout']['loss'], chance)}: {chance.get('how')}); "
            f"the pretext learnt nothing measurable on this data")
