"""Scorings in the two XML layouts of the NSRR cohorts (SHHS, MESA, CFS, ...), read into a scoring
(``hypnogram_io`` module docstring).

- NSRR XML: ``PSGAnnotation/ScoredEvents/ScoredEvent``, each with ``EventType``, ``EventConcept``,
  ``Start`` and ``Duration`` (seconds from the recording's start). The stage events have
  ``EventType`` ``Stages|Stages`` and ``EventConcept`` ``Wake|0``, ``Stage 1 sleep|1``, ``Stage 2
  sleep|2``, ``Stage 3 sleep|3``, ``Stage 4 sleep|4`` (R&K 4: N3), ``REM sleep|5``, ``Movement|6``
  / ``Unscored|9`` (unscored); each lasts a multiple of 30 s. Other events are ignored (counted).
  The ``Recording Start Time`` event's ``ClockTime`` holds a time of day without a date, so no
  ``start`` is read: the scoring is on the recording's clock (onset 0 = the recording's start).
- Compumedics Profusion XML: ``CMPStudyConfig`` with ``EpochLength`` (s) and
  ``SleepStages/SleepStage``, one integer per epoch from the recording's start: 0 W, 1 N1, 2 N2,
  3 N3, 4 N3 (R&K 4), 5 REM, anything else unscored.
"""
from __future__ import annotations

from collections import Counter
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from part.modalities.eeg.recordings.constants import EPOCH_S
from part.modalities.eeg.recordings.hypnogram_edf import HypnogramError
from part.modalities.eeg.recordings.hypnogram_io import scoring_from_annotations

NSRR_STAGE_TYPE = "stages|stages"
LAYOUTS = "NSRR XML (PSGAnnotation/ScoredEvents/ScoredEvent) or Compumedics Profusion XML (CMPStudyConfig)"


def _text(element: ET.Element | None, tag: str) -> str:
    found = None if element is None else element.find(tag)
    return "" if found is None or found.text is None else found.text.strip()


def _numbers(path: Path, texts: list[str], what: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in texts], np.float64)
    except ValueError:
        bad = next(t for t in texts if not _is_number(t))
        raise HypnogramError(f"{path}: {what} {bad!r} is no number; expected seconds in every {what}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _nsrr(path: Path, root: ET.Element, epoch_s: float) -> dict[str, Any]:
    """Stage events of an NSRR ``PSGAnnotation`` (module docstring) as a scoring."""
    events = root.findall("./ScoredEvents/ScoredEvent")
    is_stage = [_text(e, "EventType").lower().replace(" ", "") == NSRR_STAGE_TYPE for e in events]
    stages = [e for e, s in zip(events, is_stage) if s]
    others = [_text(e, "EventConcept") or _text(e, "EventType") for e, s in zip(events, is_stage) if not s]
    concepts = [_text(e, "EventConcept") for e in stages]
    codes = [c.rsplit("|", 1)[-1].strip() if "|" in c else c for c in concepts]  # "Stage 2 sleep|2" -> "2"
    onsets = _numbers(path, [_text(e, "Start") for e in stages], "Start")
    durations = _numbers(path, [_text(e, "Duration") for e in stages], "Duration")
    scoring = scoring_from_annotations(onsets, durations, codes, path.name, epoch_s, all_stages=True,
                                       rk_integers=True)
    return {**scoring, "ignored": dict(Counter(scoring["ignored"]) + Counter(others))}


def _profusion(path: Path, root: ET.Element, epoch_s: float) -> dict[str, Any]:
    """The per-epoch integers of a Profusion ``CMPStudyConfig`` (module docstring) as a scoring."""
    length_text = _text(root, "EpochLength")
    if not _is_number(length_text) or float(length_text) <= 0:
        raise HypnogramError(f"{path}: EpochLength {length_text!r} is no positive number of seconds; expected "
                             "CMPStudyConfig/EpochLength such as 30")
    length = float(length_text)
    codes = [(s.text or "").strip() for s in root.findall("./SleepStages/SleepStage")]
    known = {"0", "1", "2", "3", "4", "5"}
    texts = [c if c in known else "9" for c in codes]  # other integers: unscored
    onsets = length * np.arange(len(texts))
    return scoring_from_annotations(onsets, np.full(len(texts), length), texts, path.name, epoch_s,
                                    all_stages=True, rk_integers=True)


def read_xml_scoring(path: str | Path, epoch_s: float = EPOCH_S) -> dict[str, Any]:
    """An NSRR or Profusion XML scoring (module docstring), onsets from the recording's start.
    Raises ``HypnogramError`` naming the file for XML that does not parse or has another layout."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise HypnogramError(f"{path}: cannot read it as XML ({exc}); expected {LAYOUTS}") from None
    if root.tag == "PSGAnnotation":
        return _nsrr(path, root, epoch_s)
    if root.tag == "CMPStudyConfig":
        return _profusion(path, root, epoch_s)
    raise HypnogramError(f"{path}: XML root <{root.tag}> is no scoring layout known here; expected {LAYOUTS}")
