"""The recipes shipped inside the installed package (``part/recipes/*.yaml``, a link to the
repository's ``recipes/``): listed by ``part-train --list``, named bare on the command line
(``part-train eeg_sleep_demo``) and in ``base:`` (``base: eeg_sleep.yaml`` finds the shipped one
when no file of that name sits beside the recipe). No heavy import: ``--help`` stays fast."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from part.errors import ConfigError


def shipped_recipe(name: str) -> Path | None:
    """The shipped recipe ``name`` (``eeg_sleep_demo`` or ``eeg_sleep_demo.yaml``), or None."""
    if len(Path(name).parts) != 1:
        return None
    shipped = resources.files("part") / "recipes" / (name if Path(name).suffix else f"{name}.yaml")
    return Path(str(shipped)) if shipped.is_file() else None


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the installed package (``part/recipes/*.yaml``)."""
    folder = resources.files("part") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def find_recipe(name: str) -> Path:
    """A recipe path: ``name`` if it exists or names a folder, else the shipped recipe of that
    name (``eeg_sleep_demo`` or ``eeg_sleep_demo.yaml``)."""
    path = Path(name)
    if path.exists() or len(path.parts) > 1:
        return path
    shipped = shipped_recipe(name)
    if shipped is not None:
        return shipped
    if path.suffix:
        return path  # the loader names the missing file
    raise ConfigError(f"recipe '{name}' is neither a file nor a recipe shipped with the toolkit; "
                      f"shipped: {', '.join(shipped_recipes())} (or pass a path to a YAML file)")
