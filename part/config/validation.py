"""Recipe validation: a merged recipe mapping -> the schema's typed dataclasses.

``recipe_from_dict`` walks the schema (``part.config.schema``), converts each value to its field's type
(int, float, bool, str, Optional, list, tuple, Literal, nested dataclasses), builds each
section's options dataclass (which checks its own rules, ``part.config.options``) and resolves
dispatched sections (``metadata={"dispatch": "method"}``) through ``resolvers[section](name)``.
Every problem is collected and reported in one
``ConfigError``: the full dotted key, the value, what is allowed, "did you mean" for unknown keys,
and the file or override that set the key. ``part.config`` reads the files that feed it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import types
from typing import Any, Callable, Literal, Mapping, Union, get_args, get_origin, get_type_hints

from part.config.options import OptionsError, show_value
from part.errors import ConfigError

Resolver = Callable[[str], type]


class _Invalid(Exception):
    """A single value failed conversion; ``path`` is set when it is deeper than the field."""

    def __init__(self, message: str, path: str | None = None, value: Any = None,
                 problem: str = "has the wrong type"):
        super().__init__(message)
        self.message, self.path, self.value, self.problem = message, path, value, problem


def join_path(prefix: str, key: Any) -> str:
    """``prefix.key`` (just ``key`` at the top level)."""
    return f"{prefix}.{key}" if prefix else str(key)


# ----------------------------------------------------------------------------- schema walking

@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict:
    return get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass in ``tp`` or ``Optional[tp]``, if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def _schema_paths(cls: type, prefix: str = "") -> list[str]:
    """All dotted key paths a dataclass accepts (dispatched sections: only their ``name``)."""
    paths = []
    for f in dataclasses.fields(cls):
        path = join_path(prefix, f.name)
        paths.append(path)
        if "dispatch" in f.metadata:
            paths.append(join_path(path, "name"))
        elif (sub := _dataclass_of(_hints(cls)[f.name])) is not None:
            paths.extend(_schema_paths(sub, path))
    return paths


def dispatch_paths(cls: type, prefix: str = "") -> dict[str, str | None]:
    """Dotted path -> default name, for each dispatched section (``metadata["dispatch"]``)."""
    found = {}
    for f in dataclasses.fields(cls):
        if "dispatch" in f.metadata:
            found[join_path(prefix, f.name)] = f.metadata.get("default_name")
        elif (sub := _dataclass_of(_hints(cls)[f.name])) is not None:
            found.update(dispatch_paths(sub, join_path(prefix, f.name)))
    return found


def _describe_type(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(show_value(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe_type(a) for a in args)
    if origin is list:
        return f"a list of {_describe_type(args[0]) if args else 'values'}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe_type(args[0])}"
        return f"a list of {len(args)} values [{', '.join(_describe_type(a) for a in args)}]"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


# ----------------------------------------------------------------------------- conversion

def _arity(fn: Callable) -> int:
    """How many positional arguments ``fn`` takes (0 when it cannot be inspected)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


class _Builder:
    """Converts a merged mapping into dataclasses, collecting every problem it finds."""

    def __init__(self, resolvers: Mapping[str, Resolver], origins: Mapping[str, str],
                 raw_overrides: Mapping[str, str], root: type):
        self.resolvers, self.origins, self.raw = resolvers, origins, raw_overrides
        self.root_paths = _schema_paths(root)
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        parts = path.split(".")
        for n in range(len(parts), 0, -1):  # the longest prefix someone set
            origin = self.origins.get(".".join(parts[:n]))
            if origin:
                message += f" (set in {origin})"
                break
        self.errors.append(message)

    def unknown_key(self, cls: type, prefix: str, key: Any) -> None:
        path = join_path(prefix, key)
        level = _schema_paths(cls, prefix)
        match = difflib.get_close_matches(path, level, n=1) or difflib.get_close_matches(
            path, self.root_paths, n=1)
        if match:
            hint = f"did you mean '{match[0]}'?"
        else:
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            hint = f"valid keys{f' in {prefix!r}' if prefix else ''}: {valid}"
        self.error(path, f"unknown key '{path}'; {hint}")

    def build(self, cls: type, data: Any, prefix: str = "") -> Any:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            self.error(prefix, f"'{prefix}' must be a section (a mapping of keys), "
                               f"got {show_value(data)}")
            return None
        n_errors = len(self.errors)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in data:
            if key not in fields:
                self.unknown_key(cls, prefix, key)
        kwargs = {}
        for name, f in fields.items():
            path = join_path(prefix, name)
            if "dispatch" in f.metadata:
                kwargs[name] = self.dispatched(f.metadata, data.get(name), path, data)
            elif name in data:
                kwargs[name] = self.field(_hints(cls)[name], data[name], path)
        if len(self.errors) != n_errors:
            return None
        try:
            return cls(**kwargs)
        except OptionsError as exc:  # the options' own rules (ranges, choices, between fields)
            for key, message in exc.problems:
                path = join_path(prefix, key)
                self.error(path, f"'{path}' {message}")
            return None

    def dispatched(self, meta: Mapping, data: Any, path: str, parent: Mapping | None = None) -> Any:
        """The options of a dispatched section. The dataset resolver also gets the sibling
        ``modality.name`` (datasets are registered per modality)."""
        section = meta["dispatch"]
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            self.error(path, f"'{path}' must be a section with a 'name' key, "
                             f"got {show_value(data)}")
            return None
        name = data.get("name", meta.get("default_name"))
        if name is None and section in self.resolvers:
            try:
                self.resolvers[section]("")
            except KeyError as exc:
                text = str(exc.args[0]) if exc.args else "no list of valid names given"
                listed = text.partition("; ")[2] or text
                self.error(join_path(path, "name"), f"'{path}.name' is missing; {listed}")
                return None
        if not isinstance(name, str):
            self.error(join_path(path, "name"),
                       f"'{path}.name' must name a {section}, got {show_value(name)}")
            return None
        if section not in self.resolvers:
            raise TypeError(f"load_recipe needs resolvers[{section!r}] to read section '{path}'")
        try:
            options_cls = self.resolve(section, name, parent)
        except KeyError as exc:
            text = str(exc.args[0]) if exc.args else "no list of valid names given"
            detail = text.partition("; ")[2] or text
            self.error(join_path(path, "name"),
                       f"unknown {section} '{name}' at '{path}.name'; {detail}")
            return None
        return self.build(options_cls, {**data, "name": name}, path)

    def resolve(self, section: str, name: str, parent: Mapping | None) -> type:
        """``resolvers[section](name)``; a dataset resolver that takes two arguments also gets the
        recipe's ``modality.name`` (datasets are registered per modality)."""
        resolver = self.resolvers[section]
        modality = (parent or {}).get("modality")
        modality = modality.get("name") if isinstance(modality, Mapping) else None
        if section == "dataset" and isinstance(modality, str) and _arity(resolver) >= 2:
            return resolver(name, modality)
        return resolver(name)

    def field(self, tp: Any, value: Any, path: str) -> Any:
        try:
            value = self.convert(tp, value, path)
        except _Invalid as exc:
            where, shown = (exc.path, exc.value) if exc.path else (path, value)
            self.error(where, f"'{where}' = {show_value(shown)} {exc.problem}: {exc.message}")
            return None
        return value

    def convert(self, tp: Any, value: Any, path: str) -> Any:
        """``value`` as type ``tp``; raises ``_Invalid`` naming the expected type."""
        origin, args = get_origin(tp), get_args(tp)
        expected = f"expected {_describe_type(tp)}"
        raw = self.raw.get(path)
        if tp is Any:
            return value
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, path)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            for option in (a for a in args if a is not type(None)):
                try:
                    return self.convert(option, value, path)
                except _Invalid:
                    pass
            raise _Invalid(expected)
        if origin is Literal:
            for candidate in (value, raw):
                if any(candidate == a and type(candidate) is type(a) for a in args):
                    return candidate
            raise _Invalid(expected, problem="is not allowed")
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise _Invalid(expected + ", written like [a, b]")
            if origin is list or (len(args) == 2 and args[1] is Ellipsis):
                element_types = [args[0] if args else Any] * len(value)
            elif len(value) != len(args):
                raise _Invalid(f"{expected}, got {len(value)} values")
            else:
                element_types = list(args)
            converted = []
            for index, (element_tp, item) in enumerate(zip(element_types, value)):
                try:
                    converted.append(self.convert(element_tp, item, f"{path}[{index}]"))
                except _Invalid as exc:
                    if exc.path:
                        raise
                    raise _Invalid(exc.message, f"{path}[{index}]", item, exc.problem) from None
            return converted if origin is list else tuple(converted)
        return _convert_scalar(tp, value, raw, expected)


def _convert_scalar(tp: type, value: Any, raw: str | None, expected: str) -> Any:
    """bool, int, float, str. Numbers may be strings ('5e-4' is a string in YAML 1.1)."""
    if tp is bool and isinstance(value, bool):
        return value
    if tp in (int, float) and not isinstance(value, bool):
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise _Invalid(expected) from None
            if not math.isfinite(number):
                raise _Invalid(expected)
        if isinstance(number, float) and tp is float:
            return number
        if isinstance(number, int):
            return float(number) if tp is float else number
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            return int(number)
    if tp is str:
        if isinstance(value, str):
            return value
        if raw is not None and not isinstance(value, (dict, list)):
            return raw  # an override such as run.name=2024 means the text
        raise _Invalid(expected + " (quote it in YAML, e.g. '...')")
    if tp not in (bool, int, float):
        raise TypeError(f"unsupported schema type {tp!r}")
    raise _Invalid(expected)


def default_schema() -> type:
    """``part.config.schema.Recipe`` (imported late so that this module stays schema-agnostic)."""
    from part.config.schema import Recipe
    return Recipe


def recipe_from_dict(data: Mapping, resolvers: Mapping[str, Resolver] | None = None,
                     schema: type | None = None, source: str = "<dict>",
                     origins: Mapping[str, str] | None = None,
                     raw_overrides: Mapping[str, str] | None = None) -> Any:
    """Validate a merged recipe mapping into the schema's dataclasses (``ConfigError`` if bad)."""
    schema = schema or default_schema()
    if resolvers is None:
        from part.registry import resolvers as registered  # the plugins' options dataclasses
        resolvers = registered()
    builder = _Builder(resolvers, origins or {}, raw_overrides or {}, schema)
    recipe = builder.build(schema, data)
    if builder.errors:
        count = len(builder.errors)
        listed = builder.errors[0] if count == 1 else " ".join(
            f"({i}) {e};" for i, e in enumerate(builder.errors, 1)).rstrip(";")
        raise ConfigError(f"invalid recipe {source}: {listed}. Fix the recipe or the override "
                          f"and run again{'' if count == 1 else f' ({count} problems)'}.")
    return recipe
