"""Subject splits and subject metadata of a prepared PC18 dataset.

Splits are drawn over SUBJECTS (a record's ``subject`` key, default the record name): all records
of a subject always land in the same split (Sleep-EDF: both nights of ``SC4ss``). In PC18 one
record is one subject, so subject ids are record names. Labelled subjects (at least one labelled
window in one of their records), sorted, are shuffled with ``seed``: ``test`` takes ``n_test`` of
them (with all their records), ``finetune`` the next ``n_finetune`` (their labelled records);
``pretrain`` is every prepared record whose subject is not in ``test``, labelled or not
(finetune records included).
When there are fewer labelled subjects than ``n_test + n_finetune`` the sizes clamp (finetune at
most half of them, test the rest) with a warning.
The finetune POOL is every labelled subject outside ``test`` (``finetune_pool`` in splits.json):
``finetune`` is the first draw of it; label-efficiency sweeps (``data.finetune_subjects``,
``part-label-efficiency``) draw up to ``finetune_pool`` subjects from it, never from ``test``. So
``--n-test`` alone decides how large the largest point can be.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from part.errors import DataError

METADATA_COLUMNS = ("Record", "Age", "Sex")


@dataclass(frozen=True)
class SplitSettings:
    n_test: int = 200
    n_finetune: int = 10
    seed: int = 0


def make_splits(records: dict[str, dict], settings: SplitSettings) -> tuple[dict, list[str]]:
    """Splits of the prepared ``records`` ({name: info with ``labelled_windows`` and optionally
    ``subject``}).

    Returns ``(splits, warnings)``; ``splits`` is the content of ``splits.json``:
    ``{"seed", "test", "finetune", "pretrain", "subjects", "finetune_pool", "requested", "warnings"}``
    (``subjects``: {record: subject}; ``finetune_pool``: the number of labelled subjects outside test).
    """
    names = sorted(records)
    subject = {n: str(records[n].get("subject") or n) for n in names}
    labelled = sorted({subject[n] for n in names if records[n]["labelled_windows"] > 0})
    order = np.random.default_rng(settings.seed).permutation(len(labelled))
    shuffled = [labelled[i] for i in order]
    n_finetune, n_test, warnings = settings.n_finetune, settings.n_test, []
    if len(labelled) < n_test + n_finetune:
        unit = "records" if all(subject[n] == n for n in names) else "subjects"
        n_finetune = min(n_finetune, -(-len(labelled) // 2))
        n_test = min(n_test, len(labelled) - n_finetune)
        warnings.append(
            f"only {len(labelled)} labelled {unit} for --n-test {settings.n_test} + --n-finetune "
            f"{settings.n_finetune}: using test {n_test}, finetune {n_finetune}"
        )
    test = set(shuffled[:n_test])
    finetune = set(shuffled[n_test : n_test + n_finetune])
    splits = {
        "seed": settings.seed,
        "test": [n for n in names if subject[n] in test],
        "finetune": [n for n in names if subject[n] in finetune and records[n]["labelled_windows"] > 0],
        "pretrain": [n for n in names if subject[n] not in test],
        "subjects": subject,
        "finetune_pool": len(labelled) - len(test),
        "requested": {"n_test": settings.n_test, "n_finetune": settings.n_finetune},
        "warnings": warnings,
    }
    return splits, warnings


def _age(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def read_metadata(path: Path) -> dict[str, dict]:
    """``{record: {"age": int | None, "sex": str | None}}`` from a CSV with columns Record, Age,
    Sex (the layout of ``sleep_records.csv``: one row per file; a record's first row wins)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(
            f"cannot read metadata CSV {path}: {exc}; expected a CSV with columns "
            f"{', '.join(METADATA_COLUMNS)}"
        ) from None
    missing = sorted(set(METADATA_COLUMNS) - set(rows[0] if rows else {}))
    if missing:
        raise DataError(
            f"metadata CSV {path} lacks columns {missing}; expected columns "
            f"{', '.join(METADATA_COLUMNS)} (as in sleep_records.csv)"
        )
    out: dict[str, dict] = {}
    for row in rows:
        meta = {"age": _age(row["Age"].strip()), "sex": row["Sex"].strip() or None}
        out.setdefault(row["Record"].strip(), meta)
    return out
