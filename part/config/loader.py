"""Recipe loading: YAML files -> inheritance -> command-line overrides -> validated dataclasses.

A recipe is a YAML mapping of sections (see ``part.config.schema``). Loading does, in order:

1. read the file (missing, unreadable, not YAML or not a mapping -> ``ConfigError`` naming it);
2. resolve ``base: other.yaml`` (or a list of files), relative to the recipe's directory (a bare
   name without such a file: the shipped recipe of that name, ``part.config.recipes``),
   recursively, with cycle detection; the child is deep-merged over its base (mappings merge,
   the child wins, lists are replaced). A dispatched section (``modality``, ``method``) whose
   ``name`` differs from the base's replaces the base's section instead of merging into it;
3. apply ``dotted.key=value`` overrides in order (each value parsed as YAML, then typed by the
   schema; an override of a dispatched ``name`` is applied first and, when it changes the name,
   starts that section afresh);
4. convert into the schema's dataclasses, validating every key: unknown keys (with "did you
   mean"), types and the range rules in each field's metadata. All problems are reported together
   in one ``ConfigError``, each with the file or override that set the key.

Dispatched sections are generic: a field with ``metadata={"dispatch": "method"}`` takes its
options dataclass from ``resolvers["method"](name)``, which raises ``KeyError`` (its message
listing the valid names) for an unknown name.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from part.atomic import atomic_write_text
from part.config.recipes import shipped_recipe
from part.errors import ConfigError
from part.config.validation import (Resolver, default_schema, dispatch_paths, join_path,
                                    recipe_from_dict, show_value)

__all__ = ["load_recipe", "recipe_from_dict", "recipe_to_dict", "save_resolved", "recipe_hash",
           "recipe_differences", "VOLATILE_KEYS", "volatile_keys"]

def volatile_keys(recipe: Any) -> list[str]:
    """Dotted keys that do not change what a run computes (``metadata["volatile"]``), found by
    walking a recipe's dataclasses (plugins' sections included); ``recipe_hash`` leaves them out,
    so a run can be resumed with another device, more workers or a different log interval."""
    keys = []
    for f in dataclasses.fields(recipe):
        value = getattr(recipe, f.name, None)
        if f.metadata.get("volatile"):
            keys.append(f.name)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            keys.extend(f"{f.name}.{k}" for k in volatile_keys(value))
    return keys


# The core sections' volatile keys: what ``recipe_hash`` leaves out of a plain dict.
VOLATILE_KEYS = tuple(volatile_keys(default_schema()()))


# ----------------------------------------------------------------------------- files and merging

def _read_mapping(path: Path, named_by: Path | None) -> dict:
    where = f" (named by 'base:' in '{named_by}')" if named_by else ""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"recipe file '{path}'{where} {what}; check the path. The recipes shipped "
                          f"with the toolkit run from any directory by their bare name (e.g. `part-train "
                          f"digits_demo`); `part-train --list` lists them.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read recipe file '{path}'{where}: {exc}; "
                          f"check that it is a readable UTF-8 text file.") from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"recipe file '{path}'{where} is not valid YAML: {detail}. "
                          f"Fix the syntax at the line shown.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe file '{path}'{where} must hold a YAML mapping of sections "
                          f"(run:, data:, model:, ...) but holds a {type(data).__name__}: "
                          f"{show_value(data)[:80]}; check that this is a recipe file.")
    return data


def _all_paths(tree: Mapping, prefix: str = "") -> Iterable[str]:
    """Every dotted path in a nested mapping, sections included."""
    for key, value in tree.items():
        path = join_path(prefix, key)
        yield path
        if isinstance(value, Mapping):
            yield from _all_paths(value, path)


def _deep_merge(base: dict, child: Mapping, dispatched: Mapping[str, str | None],
                prefix: str = "") -> dict:
    """Child over base: mappings merge recursively, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in child.items():
        path, old = join_path(prefix, key), merged.get(key)
        switches = (path in dispatched and isinstance(old, Mapping) and isinstance(value, Mapping)
                    and "name" in value and old.get("name", dispatched[path]) != value["name"])
        if isinstance(value, Mapping) and isinstance(old, Mapping) and not switches:
            merged[key] = _deep_merge(old, value, dispatched, path)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_tree(path: Path, dispatched: Mapping[str, str | None], chain: tuple = (),
               named_by: Path | None = None) -> tuple[dict, dict]:
    """The merged mapping of ``path`` and its bases, and the file that set each dotted path."""
    identity = path.resolve()
    if identity in chain:
        cycle = " -> ".join(str(p) for p in (*chain, identity))
        raise ConfigError(f"recipe inheritance cycle: {cycle}; remove one of these 'base:' keys.")
    data = _read_mapping(path, named_by)
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"'base' in recipe '{path}' must be a file name or a list of file "
                          f"names (relative to the recipe's folder, or shipped recipes' names), got "
                          f"{show_value(bases)}.")
    merged, origins = {}, {}
    for base in bases:
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        if not base_path.exists():  # a bare name: the shipped recipe of that name
            base_path = shipped_recipe(base) or base_path
        tree, tree_origins = _load_tree(base_path, dispatched, (*chain, identity), path)
        merged = _deep_merge(merged, tree, dispatched)
        origins.update(tree_origins)
    merged = _deep_merge(merged, data, dispatched)
    origins.update({p: f"'{path}'" for p in _all_paths(data)})
    return merged, origins


def _apply_overrides(tree: dict, overrides: Iterable[str], dispatched: Mapping[str, str | None],
                     origins: dict) -> dict[str, str]:
    """Set each ``dotted.key=value`` in ``tree``; return the raw text of each override by path."""
    parsed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override '{item}' is not of the form dotted.key=value "
                              f"(for example pretrain.epochs=3 or run.device=cpu).")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"the value of override '{item}' is not valid YAML "
                              f"({' '.join(str(exc).split())}); quote it or fix the "
                              f"brackets.") from exc
        parsed.append((parts, text.strip(), value, item))
    # a dispatched ``name`` first, so that 'method.num_pairs=8 method.name=x' keeps num_pairs
    parsed.sort(key=lambda p: not (p[0][-1] == "name" and ".".join(p[0][:-1]) in dispatched))
    raw = {}
    for parts, text, value, item in parsed:
        node = tree
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}
            elif not isinstance(node[part], dict):
                section = ".".join(parts[: depth + 1])
                raise ConfigError(f"override '{item}': '{section}' is a value "
                                  f"({show_value(node[part])}), not a section, so it has no keys.")
            node = node[part]
        section, leaf = ".".join(parts[:-1]), parts[-1]
        if (leaf == "name" and section in dispatched
                and node.get("name", dispatched[section]) != value):
            node.clear()  # another method/modality: start from its own defaults
        node[leaf] = value
        origins[".".join(parts)] = f"override '{item}'"
        raw[".".join(parts)] = text
    return raw


# ----------------------------------------------------------------------------- public API

def load_recipe(path: str | Path, overrides: Iterable[str] = (),
                resolvers: Mapping[str, Resolver] | None = None, schema: type | None = None) -> Any:
    """Read ``path``, resolve ``base:``, apply ``overrides`` and validate (see the module doc)."""
    schema = schema or default_schema()
    dispatched = dispatch_paths(schema)
    tree, origins = _load_tree(Path(path), dispatched)
    raw = _apply_overrides(tree, overrides, dispatched, origins)
    return recipe_from_dict(tree, resolvers, schema, f"'{path}'", origins, raw)


def recipe_to_dict(recipe: Any) -> Any:
    """A recipe (or any part of it) as plain dicts/lists/scalars, in schema order."""
    if dataclasses.is_dataclass(recipe) and not isinstance(recipe, type):
        return {f.name: recipe_to_dict(getattr(recipe, f.name)) for f in dataclasses.fields(recipe)}
    if isinstance(recipe, (list, tuple)):
        return [recipe_to_dict(v) for v in recipe]
    if isinstance(recipe, Mapping):
        return {k: recipe_to_dict(v) for k, v in recipe.items()}
    return recipe


class _RecipeDumper(yaml.SafeDumper):
    """Block-style sections, flow-style lists (``betas: [0.9, 0.999]``)."""


_RecipeDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                         flow_style=True))


def save_resolved(recipe: Any, path: str | Path, header_lines: Iterable[str] = ()) -> Path:
    """Write the fully resolved recipe as YAML, atomically; ``load_recipe`` reads it back equal.
    ``header_lines``: extra comment lines (each starting with '#') kept at the top."""
    body = yaml.dump(recipe_to_dict(recipe), Dumper=_RecipeDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True)
    header = ("# Fully resolved recipe (every key, no 'base:'). Repeat this run with:\n"
              "#   python -m part.train <this file>\n"
              + "".join(line.rstrip("\n") + "\n" for line in header_lines))
    return atomic_write_text(path, header + body)


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = join_path(prefix, key)
        flat.update(_flatten(value, path) if isinstance(value, Mapping) else {path: value})
    return flat


def _selected(recipe: Any, keys: Iterable[str] | None, exclude: Iterable[str]) -> dict[str, Any]:
    """Leaf values by dotted path, within ``keys`` (prefixes; None: all), minus ``exclude``."""
    def under(path: str, prefixes: Iterable[str]) -> bool:
        return any(path == p or path.startswith(p + ".") for p in prefixes)
    flat = _flatten(recipe_to_dict(recipe))
    keys, exclude = (None if keys is None else list(keys)), list(exclude)
    return {k: v for k, v in flat.items()
            if (keys is None or under(k, keys)) and not under(k, exclude)}


def _volatile(recipe: Any) -> list[str]:
    if dataclasses.is_dataclass(recipe) and not isinstance(recipe, type):
        return sorted(set(VOLATILE_KEYS) | set(volatile_keys(recipe)))
    return list(VOLATILE_KEYS)


def recipe_hash(recipe_dict: Any, keys: Iterable[str] | None = None,
                exclude: Iterable[str] | None = None) -> str:
    """A short stable hash of a recipe (dict or dataclass) for "same recipe?" checks.

    ``keys``: dotted prefixes to include (None: everything); ``exclude``: dotted prefixes left
    out (by default the volatile keys: ``volatile_keys`` of a dataclass recipe, else
    ``VOLATILE_KEYS``).
    """
    exclude = _volatile(recipe_dict) if exclude is None else exclude
    blob = json.dumps(_selected(recipe_dict, keys, exclude), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def recipe_differences(old: Any, new: Any, keys: Iterable[str] | None = None,
                       exclude: Iterable[str] | None = None) -> list[str]:
    """``'key: old -> new'`` for each leaf that differs, for error messages about a run dir."""
    exclude = sorted(set(_volatile(old)) | set(_volatile(new))) if exclude is None else exclude
    a, b = _selected(old, keys, exclude), _selected(new, keys, exclude)
    missing = object()
    return [f"{k}: {show_value(a.get(k)) if k in a else '(absent)'} -> "
            f"{show_value(b.get(k)) if k in b else '(absent)'}"
            for k in sorted(a.keys() | b.keys()) if a.get(k, missing) != b.get(k, missing)]
