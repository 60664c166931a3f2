"""Scoring files (hypnograms) read into 30-s epochs of stage codes, and the stage spellings.

The readers return *scorings*: the keyword arguments of a
``part.modalities.eeg.sleep.Hypnogram`` (``Hypnogram(**read_scoring(path))`` is
``Hypnogram.from_file(path)``), i.e. a dict with ``stages`` (n,) int8 stage codes (0 W, 1 N1, 2 N2,
3 N3, 4 REM, -1 unscored), ``onsets_s`` (n,) float64 epoch starts in seconds from the file's (or
recording's) start, ascending, ``epoch_s``, ``source`` (the file name), ``unknown`` {label text:
epochs set to -1 because the text was no known spelling}, ``ignored`` {event text: annotations
ignored}, and from some files ``start`` (an EDF header's clock time, naive datetime; the
``# start:`` line of a hypnogram CSV this toolkit wrote) and ``proba`` (n, 5) (the ``p_W..p_REM``
columns of such a CSV). Epochs need not be contiguous (time between them is unscored). NSRR /
Profusion XML: ``hypnogram_xml.py``; PC18 ``.arousal``: ``hypnogram_wfdb.py``.

Spellings (:func:`classify_stage`; the tables are in ``constants.py``; case, ``_`` and repeated
spaces ignored):

- W: ``W``, ``Wake``, ``Awake``, ``0``; N1/N2: ``N1``, ``S1``, ``NREM1``, ``1`` (same for 2); N3:
  ``N3``, ``S3``, ``S4``, ``N4``, ``NREM3``, ``3`` (R&K stages 3 and 4 are both N3); REM: ``R``,
  ``REM``, ``4`` (the 0-4 integer convention of text files) and ``5`` (R&K integer exports, where
  4 is stage 4: a text file holding a ``5`` is read with 4 = N3, 5 = REM).
- Each with the prefixes ``Stage `` or ``Sleep stage `` (Sleep-EDF: ``Sleep stage W/1/2/3/4/R``);
  there ``4`` is always R&K stage 4 (N3).
- Deliberately unscored (-1, not *unknown*): ``?``, ``Sleep stage ?``, ``Movement time``, ``MT``,
  ``M``, ``Unscored``, ``Artifact``, ``-1``, ``6`` and ``9`` (R&K movement / unscored codes), and
  an empty cell.
- Anything else is *unknown*: -1, and counted in ``unknown``.

Annotations (EDF+ files, an MNE Raw's annotations): an annotation is a stage annotation when
its text is a known or unscored spelling, or starts with ``Stage``/``Sleep stage`` (then an
unknown stage, counted). Every other annotation (``Arousal``, ``Lights off``, ...) is an event,
ignored and counted in ``ignored``. In a text/CSV file every row is a stage. A stage annotation
lasts a positive multiple of 30 s (1 ms tolerance) and is expanded to 30-s epochs; stage
annotations must not overlap.

EDF header start times, the alignment of a scoring to a recording and the EDF+ writer:
``hypnogram_edf.py``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from part.modalities.eeg.recordings.constants import (BARE_REM, CLASS_NAMES, EPOCH_S, N3, PREFIXED_SPELLINGS,
                                                      REM, STAGE_PREFIXES, UNLABELLED, UNSCORED_SPELLINGS)
from part.modalities.eeg.recordings.hypnogram_edf import (EDF_SUFFIXES, HypnogramError, edf_size_problem, edf_start,
                                                          known_start)

TOLERANCE_S = 1e-3  # durations and epoch joins are compared within this many seconds
TABLE_SUFFIXES = (".txt", ".csv", ".tsv")
XML_SUFFIXES = (".xml",)  # NSRR and Compumedics Profusion: hypnogram_xml.py
WFDB_SUFFIXES = (".arousal",)  # PC18 stage notes, with the record's .hea: hypnogram_wfdb.py
START_COMMENT = "# start: "  # a hypnogram CSV's first line: the clock time of onset 0 (ISO)
STAGE_COLUMNS = ("stage", "label", "sleep_stage", "hypnogram")  # stage column of a CSV with a header
FORMATS = ("EDF+/BDF+ annotations (.edf, .bdf; e.g. Sleep-EDF *-Hypnogram.edf), or text/CSV with one stage "
           "per 30-s epoch (.txt, .csv, .tsv; one column, or a header with a stage/label/sleep_stage/hypnogram "
           "column and optionally onset_s and duration_s), NSRR or Compumedics Profusion XML (.xml), or a PC18 "
           "WFDB .arousal file (beside its .hea)")

_PLAIN = {**{t: c for c, texts in PREFIXED_SPELLINGS.items() for t in texts}, **dict.fromkeys(BARE_REM, REM)}
_PLAIN.update(dict.fromkeys(UNSCORED_SPELLINGS, UNLABELLED))
_STAGE_TEXT = {**{f"{p}{t}": c for c, texts in PREFIXED_SPELLINGS.items() for t in texts
                  for p in STAGE_PREFIXES}, **_PLAIN}
_STAGE_LIKE = re.compile(r"^(sleep )?stage\b")


def _normalise(text: str) -> str:
    key = " ".join(str(text).replace("_", " ").split()).lower()
    return key.split(".")[0] if re.fullmatch(r"-?\d+\.0*", key) else key


def classify_stage(text: str, rk_integers: bool = False) -> tuple[int, bool]:
    """(stage code, unknown) of a stage label; see the module docstring for the spellings.

    ``unknown`` is True when the text is no known spelling (code -1); deliberately unscored
    labels (``?``, ``Movement time``) give (-1, False). ``rk_integers``: bare ``4`` is R&K stage
    4 (N3) instead of REM.
    """
    key = _normalise(text)
    if rk_integers and key == "4":
        return N3, False
    code = _STAGE_TEXT.get(key)
    return (UNLABELLED, True) if code is None else (code, False)


def stage_code(text: str) -> int:
    """Stage code of a stage label (0 W, 1 N1, 2 N2, 3 N3, 4 REM; -1 unscored or unknown)."""
    return classify_stage(text)[0]


def is_stage_label(text: str) -> bool:
    """True for a known or unscored spelling or a text starting with Stage/Sleep stage."""
    key = _normalise(text)
    return key in _STAGE_TEXT or bool(_STAGE_LIKE.match(key))


def label_counts(labels) -> dict[str, int]:
    """Entries per stage name plus ``unlabelled`` of stage codes / window labels, e.g.
    ``{"W": 120, ..., "unlabelled": 12}`` (the manifest's ``label_counts``)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0].astype(np.int64), minlength=len(CLASS_NAMES))
    return {**{n: int(c) for n, c in zip(CLASS_NAMES, counts)},
            "unlabelled": int(np.count_nonzero(labels == UNLABELLED))}


def stage_runs(onsets_s: np.ndarray, stages: np.ndarray,
               epoch_s: float = EPOCH_S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous epochs of one stage merged: (start_s (r,), end_s (r,), stage (r,) int8) of the
    epochs ``onsets_s`` (n,) s, ``stages`` (n,) codes, each ``epoch_s`` long."""
    onsets, stages = np.asarray(onsets_s, np.float64), np.asarray(stages, np.int8)
    if not stages.size:
        return np.empty(0), np.empty(0), np.empty(0, np.int8)
    joined = np.abs(np.diff(onsets) - epoch_s) <= TOLERANCE_S
    first = np.flatnonzero(np.r_[True, ~joined | (stages[1:] != stages[:-1])])
    last = np.r_[first[1:], stages.size] - 1
    return onsets[first], onsets[last] + epoch_s, stages[first]


def _classify_all(descriptions: Sequence[str], all_stages: bool, rk_integers: bool):
    """Per description: stage code (k,) int8, unknown (k,) bool, is-stage (k,) bool."""
    codes, unknown, stage = [], [], []
    for text in descriptions:
        code, unk = classify_stage(text, rk_integers)
        codes.append(code)
        unknown.append(unk)
        key = _normalise(text)
        stage.append(all_stages or (not unk and key != "") or bool(_STAGE_LIKE.match(key)))
    return np.array(codes, np.int8), np.array(unknown, bool), np.array(stage, bool)


def scoring_from_annotations(onsets_s, durations_s, descriptions: Sequence[str], source: str,
                             epoch_s: float = EPOCH_S, *, all_stages: bool = False, rk_integers: bool = False,
                             values: np.ndarray | None = None) -> dict[str, Any]:
    """Expand stage annotations (onset s, duration s, text) into ``epoch_s`` epochs: a scoring
    (module docstring). ``values`` (k, m): per annotation m numbers repeated on each of its epochs
    (returned as ``proba`` (n, m)).

    Which annotations are stages: see the module docstring (``all_stages``: every one is).
    Raises :class:`HypnogramError` naming ``source``, the onset and the duration for a stage
    annotation that is not a positive multiple of ``epoch_s`` or that overlaps another.
    """
    on = np.asarray(onsets_s, np.float64).reshape(-1)
    dur = np.asarray(durations_s, np.float64).reshape(-1)
    desc = np.array([str(d) for d in descriptions], dtype=object)
    if not on.size == dur.size == desc.size:
        raise ValueError(f"{source}: {on.size} onsets, {dur.size} durations, {desc.size} descriptions")
    codes, unknown, is_stage = _classify_all(desc, all_stages, rk_integers)
    ignored = dict(Counter(desc[~is_stage].tolist()))
    on, dur, desc, codes, unknown = on[is_stage], dur[is_stage], desc[is_stage], codes[is_stage], unknown[is_stage]
    values = None if values is None else np.asarray(values, np.float64)[is_stage]
    n_ep = np.rint(np.nan_to_num(dur / epoch_s, nan=0.0)).astype(np.int64)
    bad = ~np.isfinite(on) | ~(np.abs(dur - n_ep * epoch_s) <= TOLERANCE_S) | (n_ep < 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise HypnogramError(
            f"{source}: stage annotation {desc[i]!r} at onset {on[i]:.3f} s lasts {dur[i]:.3f} s; expected "
            f"{epoch_s:g}-s scoring epochs (a duration that is a positive multiple of {epoch_s:g} s): fix the "
            f"scoring file or export it with {epoch_s:g}-s epochs")
    owner = np.repeat(np.arange(on.size), n_ep)
    within = np.arange(owner.size) - np.repeat(np.cumsum(n_ep) - n_ep, n_ep)
    onsets = on[owner] + within * epoch_s
    order = np.argsort(onsets, kind="stable")
    onsets, owner = onsets[order], owner[order]
    overlap = np.flatnonzero(np.diff(onsets) < epoch_s - TOLERANCE_S)
    if overlap.size:
        a, b = owner[overlap[0]], owner[overlap[0] + 1]
        raise HypnogramError(
            f"{source}: stage annotation {desc[b]!r} at onset {on[b]:.3f} s (duration {dur[b]:.3f} s) overlaps "
            f"{desc[a]!r} at onset {on[a]:.3f} s (duration {dur[a]:.3f} s); expected {epoch_s:g}-s scoring epochs "
            "that do not overlap: remove the duplicate scoring from the file")
    counts = Counter()
    for text, n in zip(desc[unknown].tolist(), n_ep[unknown].tolist()):
        counts[text] += n
    return {"stages": codes[owner], "onsets_s": onsets, "epoch_s": float(epoch_s), "source": str(source),
            "unknown": dict(counts), "ignored": ignored, **({} if values is None else {"proba": values[owner]})}


def _read_edf_annotations(path: Path, epoch_s: float = EPOCH_S) -> dict[str, Any]:
    import mne

    try:
        with open(path, "rb") as f:
            if f.read(8) not in (b"0       ", b"\xffBIOSEMI"):
                raise ValueError("the file does not start with an EDF/BDF header")
        truncated = edf_size_problem(path)
        if truncated:
            raise HypnogramError(f"{path}: {truncated}")
        ann = mne.read_annotations(path)
    except HypnogramError:
        raise
    except Exception as exc:  # mne raises many types on files it cannot parse
        raise HypnogramError(f"{path}: cannot read EDF+ annotations ({type(exc).__name__}: {exc}); "
                             f"expected one of: {FORMATS}") from None
    scoring = scoring_from_annotations(ann.onset, ann.duration, list(ann.description), path.name, epoch_s)
    return {**scoring, "start": known_start(edf_start(path))}


def _table_start(path: Path, text: str):
    """The clock time of a ``# start: <ISO>`` first line (written by ``Hypnogram.to_csv``), else None."""
    from datetime import datetime

    first = text.split("\n", 1)[0].strip()
    if not first.startswith(START_COMMENT.strip()):
        return None
    try:
        return datetime.fromisoformat(first[len(START_COMMENT.strip()):].strip())
    except ValueError:
        raise HypnogramError(f"{path}: its first line {first!r} is no start time; expected "
                             f"'{START_COMMENT}YYYY-MM-DDTHH:MM:SS' (ISO 8601) or no such line") from None


def _table_rows(path: Path) -> tuple[list[list[str]], Any]:
    """The rows of a text/CSV file (comment lines dropped) and its ``# start:`` time (or None)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise HypnogramError(f"{path}: cannot read it as text ({exc}); expected one of: {FORMATS}") from None
    start = _table_start(path, text)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise HypnogramError(f"{path}: the file holds no stage; expected one of: {FORMATS}")
    delimiter = next((d for d in (",", "\t", ";") if d in lines[0]), None)
    return (list(csv.reader(lines, delimiter=delimiter)) if delimiter else [[line] for line in lines]), start


def _column_floats(path: Path, body: list[list[str]], col: int, name: str) -> np.ndarray:
    try:
        return np.array([float(row[col]) for row in body], np.float64)
    except (ValueError, IndexError):
        raise HypnogramError(f"{path}: column {name!r} must hold a number (seconds) on every row; "
                             f"expected one of: {FORMATS}") from None


def _column_key(name: str) -> str:
    """A header name for matching: lower case, spaces/hyphens/underscores as one ``_``, a plural
    stage column singular (``Sleep Stage`` -> ``sleep_stage``, ``Stages`` -> ``stage``)."""
    key = re.sub(r"[\s_-]+", "_", name.strip().lower()).strip("_")
    return key[:-1] if key.endswith("s") and key[:-1] in STAGE_COLUMNS else key


def _one_column_header(path: Path, rows: list[list[str]]) -> bool:
    """Whether the first row of a one-column file is a header: a stage column name, or a text that
    is no stage label while most other rows are stage labels. Raises :class:`HypnogramError` for a
    first row that is neither a stage label nor such a header."""
    first = rows[0][0]
    if _column_key(first) in STAGE_COLUMNS:
        return True
    if is_stage_label(first):
        return False
    rest = [row[0] for row in rows[1:]]
    if rest and 2 * sum(not classify_stage(t)[1] for t in rest) > len(rest):
        return True
    raise HypnogramError(f"{path}: its first row {first!r} is neither a stage label nor a header naming the stage "
                         f"column (one of {list(STAGE_COLUMNS)}), and the other rows are not mostly stage labels; "
                         f"expected one of: {FORMATS}")


def _read_table(path: Path, epoch_s: float) -> dict[str, Any]:
    """A text/CSV hypnogram: one stage per row (see :data:`FORMATS`)."""
    rows, start = _table_rows(path)
    header = [_column_key(c) for c in rows[0]]
    stage_col = next((i for i, c in enumerate(header) if c in STAGE_COLUMNS), None)
    if stage_col is None and len(header) > 1:
        raise HypnogramError(f"{path}: no stage column among {rows[0]}; expected a column named one of "
                             f"{list(STAGE_COLUMNS)} (or a single column of stages)")
    if stage_col is None and _one_column_header(path, rows):
        stage_col = 0
    body = rows if stage_col is None else rows[1:]
    stage_col = stage_col or 0
    short = [i for i, row in enumerate(body) if len(row) != len(rows[0])]
    if short:
        raise HypnogramError(f"{path}: data row {short[0] + 1} has {len(body[short[0]])} fields, the first row "
                             f"{len(rows[0])}; expected the same number of fields on every row")
    texts = [row[stage_col].strip() for row in body]
    onsets = (_column_floats(path, body, header.index("onset_s"), "onset_s") if "onset_s" in header
              else np.arange(len(texts)) * epoch_s)
    durations = (_column_floats(path, body, header.index("duration_s"), "duration_s") if "duration_s" in header
                 else np.full(len(texts), epoch_s))
    rk = any(_normalise(t) == "5" for t in texts)  # R&K integer codes: 4 = stage 4 (N3), 5 = REM
    scoring = scoring_from_annotations(onsets, durations, texts, path.name, epoch_s, all_stages=True, rk_integers=rk,
                                       values=_probability_columns(path, body, header))
    return scoring if start is None else {**scoring, "start": start}


def _probability_columns(path: Path, body: list[list[str]], header: list[str]) -> np.ndarray | None:
    """The ``p_W, ..., p_REM`` columns of a hypnogram CSV (as ``Sleep stage`` hypnograms written by
    this toolkit have them) as (rows, 5) float64, an empty cell NaN; None unless all five are there."""
    names = [f"p_{n.lower()}" for n in CLASS_NAMES]
    if not all(n in header for n in names):
        return None
    columns = [header.index(n) for n in names]
    try:
        return np.array([[float(row[c]) if row[c].strip() else np.nan for c in columns] for row in body], np.float64)
    except ValueError:
        raise HypnogramError(f"{path}: the columns {names} must hold probabilities (numbers, or empty for an "
                             f"epoch without one) on every row; expected one of: {FORMATS}") from None


def read_scoring(path: str | Path, epoch_s: float = EPOCH_S) -> dict[str, Any]:
    """Read a scoring file (a scoring: see the module docstring): EDF+/BDF+ annotations (onsets
    from the file's start, ``start`` its header's clock time) or text/CSV with one stage per
    ``epoch_s`` epoch (onsets ``0, 30, ...`` unless an ``onset_s`` column gives them).

    Raises :class:`HypnogramError` for a missing/unreadable file, an unknown extension, or a file
    holding no stage at all.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EDF_SUFFIXES + TABLE_SUFFIXES + XML_SUFFIXES + WFDB_SUFFIXES:
        raise HypnogramError(f"{path}: unknown hypnogram extension {path.suffix!r}; expected one of: {FORMATS}")
    if not path.is_file():
        raise HypnogramError(f"{path}: hypnogram file not found; expected one of: {FORMATS}")
    if suffix in XML_SUFFIXES + WFDB_SUFFIXES:
        from part.modalities.eeg.recordings.hypnogram_wfdb import read_arousal_scoring
        from part.modalities.eeg.recordings.hypnogram_xml import read_xml_scoring

        scoring = (read_xml_scoring if suffix in XML_SUFFIXES else read_arousal_scoring)(path, epoch_s)
    else:
        scoring = _read_edf_annotations(path, epoch_s) if suffix in EDF_SUFFIXES else _read_table(path, epoch_s)
    if scoring["stages"].size == 0:
        seen = ", ".join(list(scoring["ignored"])[:5]) or "none"
        raise HypnogramError(f"{path}: holds no sleep-stage annotation (annotations seen: {seen}); expected "
                             "stage labels such as 'Sleep stage W' / 'W' / 'N1' / 'R' in 30-s epochs")
    return scoring


def _trim_clipped(onsets: np.ndarray, durations: np.ndarray, stop_s: float, epoch_s: float,
                  tol_s: float, data_before: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Annotations MNE clipped at the data's start (0) or end (``stop_s``) keep their whole
    epochs: end-aligned at the start, start-aligned at the end. Others are returned as given.

    MNE clips an annotation to the data's span (``Raw.set_annotations``, ``Raw.crop``), so a clipped
    one starts exactly at the first sample or ends exactly after the last one. At the start that
    can only have happened when the data does not begin at the recording's origin
    (``data_before``: ``first_samp > 0``, e.g. after a crop); a partial annotation at 0 of data
    starting at its origin was given so and is left for the usual 30-s epoch check. Returns
    (onsets, durations, clipped (k,) bool)."""
    whole = np.floor(durations / epoch_s + 1e-6) * epoch_s
    partial = np.abs(durations - np.rint(durations / epoch_s) * epoch_s) > TOLERANCE_S
    at_start = partial & (onsets <= tol_s) & data_before
    at_end = partial & ~at_start & (onsets + durations >= stop_s - tol_s)
    onsets = np.where(at_start, onsets + durations - whole, onsets)
    return onsets, np.where(at_start | at_end, whole, durations), at_start | at_end


def scoring_from_raw(raw, epoch_s: float = EPOCH_S) -> dict[str, Any] | None:
    """The stage annotations of an MNE Raw as a scoring with onsets in seconds from the Raw's
    first sample; None when it holds no stage annotation.

    A stage annotation MNE clipped at the data's edges keeps its whole epochs (the partial one is
    dropped, i.e. unscored); see :func:`_trim_clipped` for when an annotation counts as clipped.
    """
    ann = raw.annotations
    if len(ann) == 0:
        return None
    fs = float(raw.info["sfreq"])
    onsets = np.asarray(ann.onset, np.float64) - raw.first_time  # MNE keeps onsets on first_samp's clock
    onsets, durations, clipped = _trim_clipped(onsets, np.asarray(ann.duration, np.float64), raw.n_times / fs,
                                               epoch_s, 1.0 / fs, raw.first_samp > 0)
    names = [n for n in (getattr(raw, "filenames", None) or ()) if n]
    source = Path(names[0]).name if names else "the recording's annotations"
    descriptions = np.array(list(ann.description), dtype=object)
    keep = ~clipped | (durations > TOLERANCE_S)  # drop what was only a partial epoch
    scoring = scoring_from_annotations(onsets[keep], durations[keep], list(descriptions[keep]), source, epoch_s)
    return scoring if scoring["stages"].size else None
