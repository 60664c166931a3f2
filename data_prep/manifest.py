"""The prepared directory's ``manifest.json``: its content, and the check that a rerun into an
existing output uses the same parameters. Keys are documented in ``data_prep/pc18_prepare.py``;
the pipeline that writes it is ``data_prep/prepare.py`` (``config`` there is a ``PrepConfig``,
``run`` a ``RunSettings``)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from part.modalities.eeg.recordings.constants import CLASS_NAMES, UNLABELLED

from part.modalities.eeg.recordings.prepared import FORMAT_VERSION
from part.errors import DataError


def check_existing_output(out: Path, config, overwrite: bool) -> bool:
    """Refuse an output prepared with other parameters unless ``overwrite``; return the previous
    manifest's ``synthetic`` flag (False with ``overwrite``: every record is redone, so the flag
    comes from the new records only)."""
    path = out / "manifest.json"
    if not path.exists():
        return False
    try:
        old = json.loads(path.read_text())
        old_hash, old_params = old["params_hash"], old.get("params", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if overwrite:
            return False
        raise DataError(
            f"cannot read the existing {path} ({exc}); use --overwrite to replace that output, or "
            "another --out"
        ) from None
    new_params = config.params()
    if old_hash != config.params_hash() and not overwrite:
        keys = sorted(set(old_params) | set(new_params))
        changed = {k: [old_params.get(k), new_params.get(k)] for k in keys if old_params.get(k) != new_params.get(k)}
        raise DataError(
            f"{out} holds records prepared with other parameters (hash {old_hash}, this run "
            f"{config.params_hash()}; changed [old, new]: {json.dumps(changed)}); use --overwrite "
            f"to redo every record with the new parameters, or another --out"
        )
    return not overwrite and bool(old.get("synthetic", False))


def with_metadata(infos: dict[str, dict], meta: dict[str, dict], subjects: dict[str, str]) -> dict[str, dict]:
    """Record infos sorted by name, with subject (this run's ``subjects``, default: the record), age
    and sex added."""
    empty = {"age": None, "sex": None}
    return {n: {**infos[n], "subject": subjects.get(n) or n, **meta.get(n, empty)} for n in sorted(infos)}


def build_manifest(run, config, records: dict, failed: dict, status: str, synthetic: bool) -> dict:
    """The content of ``manifest.json`` (keys in ``data_prep/pc18_prepare.py``'s docstring)."""
    counts = {k: sum(r["label_counts"][k] for r in records.values()) for k in (*CLASS_NAMES, "unlabelled")}
    unknown = sum((Counter(r.get("unknown_stages") or {}) for r in records.values()), Counter())
    windows = sum(r["n_windows"] for r in records.values())
    return {
        "format_version": FORMAT_VERSION,
        "dataset": run.dataset,
        "status": status,
        "synthetic": synthetic,
        "params": config.params(),
        "params_hash": config.params_hash(),
        "sampling_rate": config.target_fs,
        "window_s": config.window_s,
        "window_samples": int(round(config.window_s * config.target_fs)),
        "channels": list(config.channels),
        "dtype": config.dtype,
        "label_names": list(CLASS_NAMES),
        "label_codes": {**{n: i for i, n in enumerate(CLASS_NAMES)}, "unlabelled": UNLABELLED},
        **run.extra,
        "filter": config.filter.describe(),
        "resampling": f"scipy.signal.resample_poly to {config.target_fs} Hz (polyphase, rational up/down; "
        "its anti-aliasing FIR is the band-pass low-pass in 'filter')",
        "normalisation": {
            "method": "per window and channel: (x - mean) / (std + eps), uV before",
            "eps": config.eps,
            "flat_std_uv": config.flat_std_uv,
        },
        "source": str(run.src),
        "metadata": str(run.metadata) if run.metadata else None,
        "files": {"signal": "records/{record}.npy", "labels": "records/{record}.labels.npy"},
        "totals": {"records": len(records), "failed": len(failed), "windows": windows, "label_counts": counts,
                   "unknown_stages": dict(sorted(unknown.items()))},
        "records": records,
        "failed": failed,
    }
