"""The run directory `<run.output_dir>/<run.name>`: its lock, its bookkeeping files, and the
check that it holds this recipe's run.

- `.lock`: an OS file lock (``fcntl.flock``) held for the whole run by the process that writes
  (rank 0 under DDP); a second start fails at once naming the PID that holds it. The OS drops
  the lock when that process dies, so a killed run never blocks its directory.
- `state.json`: the stages already finished (written atomically).
- `metrics.jsonl`: one JSON object per line, appended; a torn last line (a kill during the
  append) is dropped with a warning when the run resumes.
- `config.yaml`: the resolved recipe. ``run.resume=force`` continues a run whose optimisation
  keys changed; the change is recorded in the `# history:` lines at the top of config.yaml.
"""
from __future__ import annotations

import dataclasses

import json
import tempfile
import time
from pathlib import Path

from part.atomic import atomic_write_json, atomic_write_text
from part.dirlock import DirLock
from part.config import load_recipe, recipe_differences, recipe_hash, save_resolved
from part.config.schema import READ_ONLY_STAGES, STAGES
from part.errors import ConfigError, DataError

# Sections a user may change on a run with run.resume=force: how the stages optimise, not
# what is trained or on what data (changing those would mix two experiments in one directory).
FORCE_CHANGEABLE = ("pretrain.", "finetune.", "evaluate.", "run.stages", "run.precision")
HISTORY_PREFIX = "# history: "


def check_writable(directory: Path, key: str) -> None:
    """Create ``directory`` (and parents) and prove a file can be written there, or raise a
    one-line ConfigError naming ``key`` (e.g. ``run.output_dir``) and the OS's reason."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}='{directory}' is not writable ({exc.strerror or exc}); choose a "
                          f"writable location (or fix its permissions) and run again") from None


class RunDirLock(DirLock):
    """Exclusive lock on ``run_dir/.lock`` for the lifetime of the object (``part.dirlock.DirLock``)."""

    def __init__(self, run_dir: Path):
        super().__init__(run_dir, "run directory", "another run",
                         "wait for it to finish or stop it, or choose another run.name")


# ----------------------------------------------------------------------------- bookkeeping

def read_json_file(path: Path, fix: str) -> dict:
    """A JSON object from ``path``, or a one-line DataError naming the file and ``fix``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is unreadable ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(data, dict):
        raise DataError(f"'{path}' holds a {type(data).__name__}, expected a JSON object; {fix}")
    return data


def finished_stages(run_dir: Path) -> list[str]:
    """The stages recorded as finished in ``state.json`` ([] without one)."""
    path = run_dir / "state.json"
    if not path.exists():
        return []
    state = read_json_file(path, "delete it and rerun: finished stages then run again")
    done = state.get("done", [])
    if not isinstance(done, list):
        raise DataError(f"'{path}': 'done' must be a list of stage names; delete the file and rerun")
    return done


def mark_finished(run_dir: Path, what: str) -> None:
    done = finished_stages(run_dir)
    if what not in done:
        atomic_write_json(run_dir / "state.json", {"done": done + [what]})


def unmark_finished(run_dir: Path, prefixes: tuple[str, ...]) -> list[str]:
    """Forget finished stages starting with any of ``prefixes``; returns those forgotten."""
    done = finished_stages(run_dir)
    keep = [d for d in done if not d.startswith(prefixes)]
    if keep != done:
        atomic_write_json(run_dir / "state.json", {"done": keep})
    return [d for d in done if d not in keep]


def read_metrics(path: Path) -> list[dict]:
    """The rows of ``metrics.jsonl``. A torn LAST line (a kill during the append) is dropped
    with a warning; a bad line elsewhere is a DataError naming the file and line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                print(f"warning: dropped a torn last line of '{path}' (line {number}, written "
                      f"when the run was killed)", flush=True)
                continue
            raise DataError(f"'{path}' line {number} is not JSON; delete that line (or the file, "
                            f"losing the logged history) and rerun") from None
    return rows


def truncate_metrics(path: Path, stage: str, step: int, extra: dict | None = None) -> None:
    """Drop the rows of ``stage`` past ``step`` (logged after the checkpoint a run resumes from;
    every row of the stage for ``step`` 0, a stage that restarts) and any torn line, atomically.
    ``extra``: the stage's extra state (``{"repeat": k}`` of a finetune repeat): only rows that
    carry the same values are dropped, so one repeat never removes another's."""
    if not path.exists():
        return
    extra = extra or {}

    def drop(r: dict) -> bool:
        return (r.get("stage") == stage and r.get("step", 0) > step
                and all(r.get(k, 0 if k == "repeat" else None) == v for k, v in extra.items()))
    keep = [r for r in read_metrics(path) if not drop(r)]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


# ----------------------------------------------------------------------------- same recipe?

MAX_SHOWN = 12  # differing keys named in the refusal; the rest are counted


def _has_started(run_dir: Path) -> bool:
    return (run_dir / "metrics.jsonl").exists() or any((run_dir / "checkpoints").glob("*.pt"))


def kept_stages(recipe, old):
    """``recipe`` with ``old``'s ``run.stages`` when it asks for some of them only
    (``run.stages=[evaluate]`` on a finished run: the same run, the same config.yaml), plus the
    read-only stages it adds (``run.stages=[linear_probe, knn]`` on a finished pretraining run:
    still the same run), else ``recipe`` itself."""
    wanted, had = recipe.run.stages, old.run.stages
    added = [s for s in wanted if s not in had]
    if wanted != had and all(s in READ_ONLY_STAGES for s in added):
        stages = [s for s in STAGES if s in had or s in added]
        return dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, stages=stages))
    return recipe


def _same_run(old, recorded) -> bool:
    """Whether ``recorded`` is ``old``'s recipe, up to read-only stages added to run.stages."""
    if recipe_hash(old) == recipe_hash(recorded):
        return True
    added = [s for s in recorded.run.stages if s not in old.run.stages]
    if not added or not all(s in READ_ONLY_STAGES for s in added):
        return False
    same_stages = dataclasses.replace(recorded, run=dataclasses.replace(recorded.run, stages=list(old.run.stages)))
    return recipe_hash(old) == recipe_hash(same_stages)


def check_run_dir(recipe, run_dir: Path) -> tuple[list, object]:
    """Refuse a run directory holding another recipe's run (or any run, with resume=never).

    Returns ``(changes, recorded)``: with ``run.resume=force``, the differences in optimisation
    keys (``FORCE_CHANGEABLE``) it accepts (``'key: old -> new'``, else []), for the caller to
    record; ``recorded`` is the recipe to write to config.yaml: ``recipe``, or, when it asks
    for some of the run's stages only (the same run), ``recipe`` with the run's stages
    (:func:`kept_stages`)."""
    config = run_dir / "config.yaml"
    if not config.exists() or not _has_started(run_dir):
        return [], recipe  # nothing trained there yet (e.g. an earlier attempt stopped on bad data)
    if recipe.run.resume == "never":
        raise ConfigError(f"run directory '{run_dir}' already holds a run and run.resume=never; "
                          f"choose another run.name or run.output_dir, or delete that directory")
    try:
        old = load_recipe(config, ())
    except ConfigError as exc:
        raise ConfigError(f"the run directory's '{config}' cannot be read as a recipe ({exc}); "
                          f"it was written by another version or damaged. Choose another "
                          f"run.name, or delete the directory to start over") from None
    recorded = kept_stages(recipe, old)
    if _same_run(old, recorded):
        return [], recorded
    diff = recipe_differences(old, recipe)
    fixed = [d for d in diff if not d.startswith(FORCE_CHANGEABLE)]
    if recipe.run.resume == "force" and not fixed:
        return diff, recipe
    listed = fixed + [d for d in diff if d not in fixed]  # what refuses the run first
    shown = "; ".join(listed[:MAX_SHOWN]) + (f"; and {len(listed) - MAX_SHOWN} more differing keys"
                                             if len(listed) > MAX_SHOWN else "")
    hint = ("run.resume=force continues it with changed optimisation keys (pretrain.*, "
            "finetune.*, evaluate.*, run.stages), not with these"
            if fixed and recipe.run.resume == "force" else
            "to continue it with changed optimisation keys (lr, epochs, batch size, ...) add "
            "run.resume=force")
    raise ConfigError(f"run directory '{run_dir}' holds a run of a different recipe ({shown}); "
                      f"nothing was changed there. Choose another run.name, delete the directory "
                      f"to start over, or {hint}")


def write_config(recipe, run_dir: Path, changes: list[str]) -> None:
    """Write config.yaml (atomically), keeping its `# history:` lines and adding one for a
    forced continuation with ``changes``."""
    path = run_dir / "config.yaml"
    history = []
    if path.exists():
        history = [line for line in path.read_text(encoding="utf-8").splitlines()
                   if line.startswith(HISTORY_PREFIX)]
    if changes:
        history.append(f"{HISTORY_PREFIX}{time.strftime('%Y-%m-%d %H:%M:%S')} run.resume=force: "
                       + "; ".join(changes))
    save_resolved(recipe, path, header_lines=history)
