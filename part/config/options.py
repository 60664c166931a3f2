"""Options dataclasses that check themselves: the one place where option values are validated.

Every section of a recipe (``run``, ``data``, ``model``, ...) and every plugin's options (a
modality's, a method's, a dataset's) is a dataclass deriving from ``Options``. Building one, from
a recipe or from Python, checks it:

- the rules in each field's ``metadata``: ``min`` / ``max`` (inclusive), ``gt`` (strictly
  greater), ``range`` = (lo, hi) with ``bounds`` one of ``"[]"`` (default), ``"[)"``, ``"(]"``,
  ``"()"`` (``half_open=True`` is ``"[)"``), ``choices``, ``unique`` (a list repeats nothing),
  ``ordered`` (a list or tuple in increasing order, e.g. a [lo, hi] range).
  Bounds and choices apply element-wise to lists and tuples and are skipped for ``None``;
- the cross-field rules of its ``check()`` method, which yields ``(field, message)`` problems.

All problems are raised together as one ``OptionsError`` (a ``ConfigError``) whose ``problems``
the recipe loader re-words with the full dotted key and the file or override that set it.
Constructors that receive an options object never check it again.
"""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from typing import (Any, ClassVar, Iterable, Iterator, Literal, Mapping, get_args, get_origin,
                    get_type_hints)

import yaml

from part.errors import ConfigError


def show_value(value: Any) -> str:
    """A value as the user would write it in YAML (strings quoted)."""
    if isinstance(value, str):
        return repr(value)
    try:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    except yaml.YAMLError:
        return repr(value)


def describe_allowed(meta: Mapping) -> str:
    """The metadata rules in words, e.g. ">= 1" or "in [0.0, 1.0)"."""
    rules = []
    if "choices" in meta:
        rules.append("one of " + ", ".join(show_value(c) for c in meta["choices"]))
    if "min" in meta:
        rules.append(f">= {meta['min']}")
    if "gt" in meta:
        rules.append(f"> {meta['gt']}")
    if "max" in meta:
        rules.append(f"<= {meta['max']}")
    if "range" in meta:
        lo, hi = meta["range"]
        bounds = "[)" if meta.get("half_open") else meta.get("bounds", "[]")
        rules.append(f"in {bounds[0]}{lo}, {hi}{bounds[1]}")
    return " and ".join(rules)


def violates(meta: Mapping, item: Any) -> bool:
    """Whether one value breaks the metadata rules (non-numbers only meet ``choices``)."""
    if "choices" in meta and item not in meta["choices"]:
        return True
    if not isinstance(item, (int, float)) or isinstance(item, bool):
        return False
    if ("min" in meta and item < meta["min"]) or ("max" in meta and item > meta["max"]):
        return True
    if "gt" in meta and not item > meta["gt"]:
        return True
    if "range" in meta:
        lo, hi = meta["range"]
        bounds = "[)" if meta.get("half_open") else meta.get("bounds", "[]")
        above = item >= lo if bounds[0] == "[" else item > lo
        below = item <= hi if bounds[1] == "]" else item < hi
        return not (above and below)
    return False


def field_problems(name: str, meta: Mapping, value: Any) -> Iterator[tuple[str, str]]:
    """``(key, message)`` for each metadata rule ``value`` breaks; key is ``name`` or ``name[i]``."""
    if value is None:
        return
    items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
    for index, item in items:
        if violates(meta, item):
            key = name if index is None else f"{name}[{index}]"
            yield key, f"= {show_value(item)} is out of range; allowed: {describe_allowed(meta)}"
    if meta.get("ordered") and isinstance(value, (list, tuple)) and list(value) != sorted(value):
        yield name, f"= {show_value(list(value))} must be in increasing order (e.g. [lo, hi], lo <= hi)"
    if meta.get("unique") and isinstance(value, list):
        repeated = [v for v, n in Counter(value).items() if n > 1]
        if repeated:
            yield name, (f"= {show_value(value)} repeats {show_value(repeated)}; each entry may "
                         f"appear once")


@functools.lru_cache(maxsize=None)
def _literal_choices(cls: type) -> dict[str, tuple]:
    """Field name -> allowed values, for the fields typed ``Literal[...]``."""
    return {name: get_args(tp) for name, tp in get_type_hints(cls).items()
            if get_origin(tp) is Literal}


class OptionsError(ConfigError):
    """Invalid options: ``problems`` is a list of ``(key, message)``, key relative to the
    options object (``"patch_samples"``, ``"betas[1]"``); the message starts with ``= value``
    or states a rule between fields."""

    def __init__(self, owner: str, problems: list[tuple[str, str]], section: str = ""):
        self.owner, self.problems = owner, problems
        listed = "; ".join(f"'{section + '.' if section else ''}{key}' {message}"
                           for key, message in problems)
        super().__init__(f"invalid {owner}: {listed}")


@dataclasses.dataclass
class Options:
    """Base of every options dataclass (see the module doc). Subclasses are dataclasses whose
    fields carry rule metadata; they may override ``check()`` for rules between fields.
    ``section`` names the recipe section the options fill (``"method"``), for messages."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        problems, literals = [], _literal_choices(type(self))
        for f in dataclasses.fields(self):
            meta = f.metadata
            if f.name in literals and "choices" not in meta:
                meta = {**meta, "choices": literals[f.name]}
            problems.extend(field_problems(f.name, meta, getattr(self, f.name)))
        if not problems:  # cross-field rules may assume each field is in range
            problems.extend(self.check())
        if problems:
            raise OptionsError(f"{type(self).__name__}", problems, self.section)

    def check(self) -> Iterable[tuple[str, str]]:
        """Rules between fields: yield ``(field, message)`` for each one broken."""
        return ()
