"""Registries of modalities, pretext methods and datasets, filled by plugins.

A plugin registers itself with a decorator when its module is imported::

    @register_modality("eeg", options=EEGOptions,
                       example=dict(options=dict(channels=2, window_samples=240), input_shape=(2, 2, 240)))
    class EEGModality(Modality): ...

    @register_method("part", options=PARTOptions, example=dict(num_pairs=16))
    class PART(nn.Module): ...                      # called as PART(modality, encoder, tokenizer, options)

    @register_dataset("eeg", "pc18", options=SleepDataOptions)
    def load_pc18(options, seed, repeat) -> DataBundle: ...

The core never imports a plugin: it finds them through Python entry points, groups
``part.modalities`` and ``part.methods`` (each entry point names a module to import; importing it
registers what it defines). The built-in plugins declare theirs in this project's setup.cfg; a
separate package adds a modality or method by declaring its own, with no edit here. Plugins are
imported once, on the first lookup.

``example``: the tiny settings a plugin declares for the contract checks of ``part.testing``
(which the toolkit's own suite runs for every installed plugin): a modality's
``dict(options={...}, input_shape=(B, ...))`` (``options``: keywords of ``get_modality``, data
information such as ``channels`` included; B >= 2), a method's options keywords
(``dict(num_pairs=16)``). A plugin without one is skipped by those checks, with the reason.

Datasets belong to a modality: they are registered and looked up by ``(modality, name)``, so two
modalities may each have a dataset of the same name.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
import warnings
from typing import Any, Callable, Optional

from part.errors import ConfigError

ENTRY_POINT_GROUPS = ("part.modalities", "part.methods")


@dataclass(frozen=True)
class ModalitySpec:
    """A registered modality: ``cls(options, **data_info)`` builds it; ``options`` is its recipe
    section's dataclass; ``source`` the module that registered it; ``example`` its tiny settings
    for ``part.testing`` (``dict(options=..., input_shape=...)``, or None)."""

    name: str
    cls: type
    options: type
    source: str
    example: Optional[dict] = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered pretext method: ``build(modality, encoder, tokenizer, options) -> nn.Module``
    whose forward(x) returns a dict with a scalar ``loss``. ``pretrains=False`` marks a method
    without a pretraining stage (the supervised baseline; ``build`` is then None).
    ``position_embedding``: whether its pretraining uses position embeddings (for tables).
    ``modalities``: the modalities it works on (None: any), with ``needs`` saying why (for the
    refusal). ``pretrain_data(dataset, options, seed) -> Dataset``: the samples it trains on,
    made from the pretraining dataset (e.g. pairs of windows and their labels); its items are
    ``(inputs, target)`` and the method's forward is called as ``forward(inputs, target)``.
    ``example``: tiny options keywords for the contract checks of ``part.testing``."""

    name: str
    build: Optional[Callable]
    options: type
    pretrains: bool
    position_embedding: bool
    source: str
    modalities: Optional[tuple] = None
    needs: str = ""
    pretrain_data: Optional[Callable] = None
    example: Optional[dict] = None  # tiny options keywords for part.testing

    def check_modality(self, modality: str) -> Optional[str]:
        """Why this method cannot train on ``modality`` (one line), or None."""
        if self.modalities is None or modality in self.modalities:
            return None
        why = f" ({self.needs})" if self.needs else ""
        return (f"method {self.name!r} works on the modalit{'y' if len(self.modalities) == 1 else 'ies'} "
                f"{', '.join(repr(m) for m in self.modalities)} only{why}, not on {modality!r}")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data source of a modality: ``load(options, seed, repeat) -> DataBundle``;
    ``options`` is the dataclass of the recipe's ``data`` section for it."""

    name: str
    modality: str
    load: Callable
    options: type
    source: str


_MODALITIES: dict[str, ModalitySpec] = {}
_METHODS: dict[str, MethodSpec] = {}
_DATASETS: dict[tuple[str, str], DatasetSpec] = {}  # (modality, name) -> spec
_loaded = False


def _source(obj: Any) -> str:
    return getattr(obj, "__module__", None) or "<unknown module>"


def _package(module: str) -> str:
    """The distribution (pip package) that provides a module, for messages; else the module."""
    try:
        from importlib.metadata import packages_distributions
        top = module.split(".")[0]
        dists = packages_distributions().get(top)
        if dists:
            return f"package '{dists[0]}' (module {module})"
    except Exception:  # metadata lookups must never hide the real error
        pass
    return f"module {module}"


def _add(table: dict, kind: str, name: str, spec, key: Any = None) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_{kind}: the name must be a non-empty string, got {name!r}")
    key = name if key is None else key
    old = table.get(key)
    if old is not None and old.source != spec.source:
        what = f"{kind} {name!r}" + (f" of modality {key[0]!r}" if isinstance(key, tuple) else "")
        raise ConfigError(f"two plugins register the {what}: {_package(old.source)} and "
                          f"{_package(spec.source)}; uninstall one of them or rename its {kind}")
    table[key] = spec


def _check_example(kind: str, name: str, example: Optional[dict], keys: Optional[set]) -> None:
    """A declared example must be a dict (a modality's with exactly ``options`` and ``input_shape``)."""
    if example is None:
        return
    if not isinstance(example, dict) or (keys is not None and set(example) != keys):
        want = f"a dict with the keys {sorted(keys)}" if keys else "a dict of options keywords"
        raise ValueError(f"register_{kind}({name!r}, example=...): expected {want}, got {example!r}")


def register_modality(name: str, *, options: type,
                      example: Optional[dict] = None) -> Callable[[type], type]:
    """Class decorator: register a ``part.core.modality.Modality`` subclass under ``name``.
    ``example``: its tiny settings for ``part.testing``, ``dict(options={...get_modality keywords},
    input_shape=(B, ...))``."""
    _check_example("modality", name, example, {"options", "input_shape"})

    def decorate(cls: type) -> type:
        _add(_MODALITIES, "modality", name, ModalitySpec(name, cls, options, _source(cls), example))
        return cls
    return decorate


def register_method(name: str, *, options: type, build: Optional[Callable] = None,
                    pretrains: bool = True, position_embedding: bool = False,
                    modalities: Optional[tuple] = None, needs: str = "",
                    pretrain_data: Optional[Callable] = None, example: Optional[dict] = None):
    """Register a pretext method. As a decorator on its builder (a class or a function taking
    ``(modality, encoder, tokenizer, options)``), or called with ``build=`` (or ``build=None``
    with ``pretrains=False`` for a method without pretraining). ``modalities``, ``needs``,
    ``pretrain_data`` and ``example``: see :class:`MethodSpec`."""
    _check_example("method", name, example, None)

    def decorate(builder: Optional[Callable]):
        source = _source(builder) if builder is not None else _source(options)
        _add(_METHODS, "method", name,
             MethodSpec(name, builder, options, pretrains, position_embedding, source,
                        None if modalities is None else tuple(modalities), needs, pretrain_data,
                        example))
        return builder
    if build is not None or not pretrains:
        decorate(build)
        return build
    return decorate


def register_dataset(modality: str, name: str, *, options: type) -> Callable:
    """Function decorator: register ``load(options, seed, repeat) -> DataBundle`` as the data
    source ``name`` (the recipe's ``data.name``) of ``modality``."""
    if not isinstance(modality, str) or not modality:
        raise ValueError(f"register_dataset: the modality must be a non-empty string, got {modality!r}")

    def decorate(load: Callable) -> Callable:
        _add(_DATASETS, "dataset", name, DatasetSpec(name, modality, load, options, _source(load)),
             key=(modality, name))
        return load
    return decorate


# ----------------------------------------------------------------------------- discovery

def load_plugins() -> None:
    """Import every plugin declared under the entry-point groups (once). A plugin that fails to
    import raises a ConfigError naming its package and the error."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for group in ENTRY_POINT_GROUPS:
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                ep.load()
            except Exception as exc:
                _loaded = False
                dist = getattr(getattr(ep, "dist", None), "name", None)
                where = f"package '{dist}'" if dist else f"module {ep.value}"
                raise ConfigError(f"the PART plugin '{ep.name}' (entry point group '{group}', "
                                  f"{ep.value}) from {where} failed to import: "
                                  f"{type(exc).__name__}: {exc}. Fix or uninstall that "
                                  f"package.") from exc


def _lookup(table: dict, kind: str, name: str):
    load_plugins()
    if name not in table:
        valid = ", ".join(sorted(table)) or "none registered"
        raise KeyError(f"unknown {kind} {name!r}; registered: {valid} (plugins add more through "
                       f"the 'part.modalities' / 'part.methods' entry points)")
    return table[name]


def modality_spec(name: str) -> ModalitySpec:
    return _lookup(_MODALITIES, "modality", name)


def method_spec(name: str) -> MethodSpec:
    return _lookup(_METHODS, "method", name)


def dataset_spec(modality: str, name: Optional[str] = None) -> DatasetSpec:
    """The dataset ``name`` of ``modality``. KeyError listing the modality's datasets (and the
    modalities that do have ``name``) when there is none.

    The one-argument form ``dataset_spec(name)`` is deprecated (FutureWarning; removed in 0.3):
    it finds ``name`` when exactly one modality has it."""
    load_plugins()
    if name is None:
        warnings.warn("dataset_spec(name) is deprecated and will be removed in part 0.3: datasets "
                      "belong to a modality; call dataset_spec(modality, name)", FutureWarning,
                      stacklevel=2)
        return _dataset_by_name(modality)
    if (modality, name) in _DATASETS:
        return _DATASETS[(modality, name)]
    owners = dataset_modalities(name)
    elsewhere = f"; {name!r} is a dataset of {', '.join(map(repr, owners))}" if owners else ""
    raise KeyError(f"unknown dataset {name!r} of modality {modality!r}; registered: "
                   f"{', '.join(available_datasets(modality)) or 'none registered'}{elsewhere} "
                   f"(plugins add more through the 'part.modalities' / 'part.methods' entry points)")


def dataset_modalities(name: str) -> list[str]:
    """The modalities that register a dataset called ``name`` (sorted; [] when none)."""
    load_plugins()
    return sorted(m for m, n in _DATASETS if n == name)


def _dataset_by_name(name: str) -> DatasetSpec:
    """The dataset ``name`` when exactly one modality registers it (KeyError otherwise)."""
    found = [s for (m, n), s in sorted(_DATASETS.items()) if n == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise KeyError(f"dataset {name!r} is registered by several modalities "
                       f"({', '.join(repr(s.modality) for s in found)}); name the modality too "
                       f"(modality.name in a recipe)")
    valid = ", ".join(sorted({n for _, n in _DATASETS})) or "none registered"
    raise KeyError(f"unknown dataset {name!r}; registered: {valid} (plugins add more through the "
                   f"'part.modalities' / 'part.methods' entry points)")


def available_modalities() -> list[str]:
    load_plugins()
    return sorted(_MODALITIES)


def available_methods() -> list[str]:
    load_plugins()
    return sorted(_METHODS)


def available_datasets(modality: Optional[str] = None) -> list[str]:
    load_plugins()
    return sorted({n for (m, n) in _DATASETS if modality is None or m == modality})


def get_modality(name: str, options: Any = None, **kwargs):
    """Build modality ``name``: from an options object, or from keyword options (fields of its
    options dataclass; any other keyword is data information such as ``channels``)."""
    spec = modality_spec(name)
    if options is None:
        fields = set(spec.options.__dataclass_fields__)
        options = spec.options(**{k: v for k, v in kwargs.items() if k in fields and k != "name"})
        kwargs = {k: v for k, v in kwargs.items() if k not in fields}
    return spec.cls(options, **kwargs)


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (its ``build``, ``options``, ``pretrains``)."""
    return method_spec(name)


def _dataset_options(name: str, modality: Optional[str] = None) -> type:
    """The options dataclass of dataset ``name`` of ``modality`` (None or a modality without it:
    the only modality that has ``name``; a mismatch is reported by ``Recipe.check``)."""
    load_plugins()
    if modality is not None and (modality, name) in _DATASETS:
        return _DATASETS[(modality, name)].options
    return _dataset_by_name(name).options


def resolvers() -> dict[str, Callable[..., type]]:
    """Section -> (name -> options dataclass), for the recipe loader's dispatched sections. The
    dataset resolver also takes the recipe's modality name (datasets are per modality)."""
    return {"modality": lambda n: modality_spec(n).options,
            "method": lambda n: method_spec(n).options,
            "dataset": _dataset_options}


def build_method(name: str, modality, encoder, tokenizer, options: Any = None):
    """The pretext model of method ``name`` (options default to its options dataclass's)."""
    spec = method_spec(name)
    if spec.build is None:
        raise ConfigError(f"method {name!r} has no pretraining stage, so there is no pretext model "
                          f"to build; the finetune stage trains it from random initialisation. "
                          f"Remove 'pretrain' from run.stages or pick a pretext method "
                          f"({', '.join(n for n in available_methods() if _METHODS[n].pretrains)}).")
    refusal = spec.check_modality(getattr(modality, "name", ""))
    if refusal:
        raise ConfigError(refusal)
    return spec.build(modality, encoder, tokenizer, options if options is not None else spec.options())
