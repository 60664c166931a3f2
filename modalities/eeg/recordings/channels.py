"""Channel names: loose matching, bipolar derivations, and a model's channels in a recording.

Requested names (:func:`resolve_channels`), for each name, first match wins:

1. ``rename`` ({file name: our name}, e.g. ``{"C4-A1": "C4-M1"}``) is applied to the file's names;
2. the exact (renamed) name;
3. the same name up to case, a leading ``"EEG "`` type prefix and a trailing ``"-REF"``
   (requested ``F3-M2`` matches ``EEG F3-M2``; ``Fpz-Cz`` matches ``EEG Fpz-Cz``), if exactly one
   channel matches;
4. a bipolar derivation ``A-B`` computed as ``A - B`` from two referential channels ``A`` and
   ``B`` (each matched by rules 2-3; e.g. ``F3-M2`` from ``F3`` and ``M2``) when ``A-B`` itself
   is absent.

A finetuned model's channels (:class:`ModelChannels`, used by staging): each model channel is
read from the recording channel a ``--channels`` map names ({model name: recording name}), else
from the one of the same name, else from a file name the training preparation renamed to it
(``--rename`` of the preparation, recorded in the checkpoint's card); one recording channel may
serve several model channels. Errors are one-line :class:`RecordError` / :class:`ChannelError`
messages that say how to map the channels.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from part.modalities.eeg.recordings.signal import EegRecording, RecordError

CHANNEL_HELP = ('pass --channels with names the file uses (comma-separated), or map names with --rename '
                '"OLD=NEW" (e.g. --rename "C4-A1=C4-M1"); a bipolar "A-B" is derived from channels A and B')
CHANNELS_SYNTAX = '--channels "F3-M2=EEG Fpz-Cz,..."'


@dataclass(frozen=True)
class ChannelSource:
    """Where requested channel ``name`` comes from: file channel ``first`` (after rename), minus
    file channel ``second`` for a derivation (else None)."""

    name: str
    first: str
    second: str | None = None


def parse_pairs(text: str | Mapping[str, str] | None, option: str, syntax: str, example: str,
                explain: str = "") -> dict[str, str]:
    """``"A=B,C=D"`` (or a mapping) -> ``{"A": "B", "C": "D"}``: the parser of ``--rename`` and
    ``--channels`` maps. A malformed item is a one-line :class:`RecordError`: ``<option> item 'X'
    is not <syntax>; expected e.g. <option> "<example>"<explain>``."""
    if text is None or isinstance(text, Mapping):
        return {str(k): str(v) for k, v in (text or {}).items()}
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in str(text).split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not key or not value:
            raise RecordError(f"{option} item {item!r} is not {syntax}; expected e.g. {option} \"{example}\"{explain}")
        out[key] = value
    return out


def parse_rename(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"C4-A1=C4-M1,C3-A2=C3-M2"`` (or a mapping) -> ``{"C4-A1": "C4-M1", ...}``."""
    return parse_pairs(text, "--rename", "OLD=NEW", "C4-A1=C4-M1,C3-A2=C3-M2")


def parse_channels(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"C4-M1,F4-M1"`` (or a sequence) -> ``("C4-M1", "F4-M1")``; names must be distinct."""
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names or len(set(names)) != len(names):
        raise RecordError(f"--channels {text!r}: expected distinct, comma-separated names, e.g. \"C4-M1,F4-M1\"")
    return tuple(names)


DASHES = str.maketrans({d: "-" for d in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"})


def plain_dashes(name: str) -> str:
    """``name`` with every dash (hyphen ‐, figure/en/em dashes – —, minus sign −, ...) as ASCII
    "-" and no spaces around a dash (``"Fpz – Cz"`` -> ``"Fpz-Cz"``)."""
    return "-".join(part.strip() for part in name.translate(DASHES).split("-"))


def _normal(name: str) -> str:
    """Name for loose matching: dashes and spaces normalised (:func:`plain_dashes`, runs of spaces
    as one), case-folded, no leading "EEG " type prefix, no trailing "-REF"."""
    key = " ".join(plain_dashes(name).split()).casefold()
    key = key[4:] if key.startswith("eeg ") else key
    return key[:-4] if key.endswith("-ref") and len(key) > 4 else key


def _match(name: str, present: Sequence[str]) -> str | None:
    """The channel of ``present`` that ``name`` denotes (exact, else unique loose match)."""
    if name in present:
        return name
    loose = [p for p in present if _normal(p) == _normal(name)]
    if len(loose) > 1:
        raise RecordError(
            f"requested channel {name!r} matches several channels {loose}; pick one with --rename "
            f'"{loose[0]}={name}"'
        )
    return loose[0] if loose else None


def resolve_channels(
    present: Sequence[str], channels: Sequence[str], rename: Mapping[str, str] | None = None
) -> list[ChannelSource]:
    """Map each requested channel to file channels (rules in the module docstring).

    ``present`` are the file's names; the result names channels after ``rename``. Raises
    :class:`RecordError` (without the file name; :func:`read_recording` adds it) for an absent
    channel, listing the channels present.
    """
    renamed = [(rename or {}).get(p, p) for p in present]
    out = []
    for name in channels:
        found = _match(name, renamed)
        if found is not None:
            out.append(ChannelSource(name, found))
            continue
        pieces = plain_dashes(name).split("-")
        for cut in range(1, len(pieces)):
            first, second = _match("-".join(pieces[:cut]), renamed), _match("-".join(pieces[cut:]), renamed)
            if first is not None and second is not None:
                out.append(ChannelSource(name, first, second))
                break
        else:
            shown = renamed if not rename else [f"{p} (renamed {r})" if p != r else p for p, r in zip(present, renamed)]
            raise RecordError(f"no channel {name!r} (nor two channels to derive it from); channels present: "
                              f"{shown}; {CHANNEL_HELP}")
    return out


def needed_channels(sources: Sequence[ChannelSource]) -> list[str]:
    """The distinct file channels (renamed names) the sources read (a derivation reads two), in
    order of first use."""
    return list(dict.fromkeys(n for s in sources for n in (s.first, s.second) if n is not None))


class ChannelError(RecordError):
    """The recording lacks channels the model needs; the message says how to map them."""


def parse_channel_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz"`` (or a mapping) -> {model channel: recording channel}."""
    return parse_pairs(text, "--channels", "MODEL=RECORDING", "F3-M2=EEG Fpz-Cz,C3-M2=EEG Pz-Oz",
                                  " (the model's name, then the recording's)")


@dataclass(frozen=True)
class Selection:
    """``targets``: the distinct recording channels read; ``rows``: for each model channel, its
    row in ``targets``; ``sources``: the :class:`ChannelSource` of each target (derivations)."""

    targets: tuple[str, ...]
    rows: tuple[int, ...]
    sources: tuple


class ModelChannels:
    """A model's channels (``channels``, in order) and the file names its training preparation
    renamed to them (``rename``, {file name: model channel}), matched to recordings."""

    def __init__(self, channels: Sequence[str], rename: Mapping[str, str] | None = None):
        self.channels, self.rename = tuple(channels), dict(rename or {})

    def _default_name(self, channel: str, present: Sequence[str]) -> str:
        """The recording channel read for a model channel without --channels entry: its own
        name, else a file name the training preparation renamed to it (the card's ``rename``)."""
        try:
            if _resolve(present, channel) is not None:
                return channel
        except RecordError:  # matches several channels: _select reports it
            return channel
        for file_name in (f for f, ours in self.rename.items() if ours == channel):
            try:
                if _resolve(present, file_name) is not None:
                    return file_name
            except RecordError:
                continue
        return channel

    def check_map(self, channels: str | Mapping[str, str] | None, where: str | None = None) -> dict[str, str]:
        """``channels`` parsed (:func:`parse_channel_map`) and checked on the model's side: a
        ChannelError naming the model's channels when it maps a channel the model does not have
        (the same mistake for every recording; the CLI checks it once, before staging any)."""
        mapping = parse_channel_map(channels)
        unknown = [m for m in mapping if m not in self.channels]
        if unknown:
            flipped = [m for m in unknown if mapping[m] in self.channels]
            hint = (f" ({', '.join(f'{m}={mapping[m]}' for m in flipped)} looks reversed: the model's channel comes "
                    "first)") if flipped else ""
            raise ChannelError(f"{where + ': ' if where else ''}--channels maps {unknown}, which the model does not "
                               f"have{hint}; the model's channels are {list(self.channels)}: write MODEL=RECORDING "
                               f"with a model channel first, e.g. --channels \"{self.channels[0]}=<recording "
                               f"channel>\"")
        return mapping

    def _present(self, name: str, present: Sequence[str]) -> bool:
        """Whether ``name`` is found in ``present`` (exactly, loosely or derived) as one channel."""
        try:
            return _resolve(present, name) is not None
        except RecordError:  # matches several channels
            return False

    def select(self, present: Sequence[str], channels: Any, where: str) -> Selection:
        """Which recording channels give each model channel; ChannelError when some are absent."""
        mapping = self.check_map(channels, where)
        if not present:
            raise ChannelError(f"{where} holds no signals (an annotations-only EDF, e.g. a hypnogram? pass it with "
                               "--hypnogram)")
        wanted = [mapping.get(m) or self._default_name(m, present) for m in self.channels]
        targets = tuple(dict.fromkeys(wanted))
        found, missing = [], []
        for t in targets:
            try:
                source = _resolve(present, t)
            except RecordError as exc:  # a name matching several channels: a mapping to paste
                reason = str(exc).split("; pick one")[0]
                candidates = [n for n in present if _normal(n) == _normal(t)] or list(present)
                pairs = ",".join(f"{m}={candidates[0]}" for m, w in zip(self.channels, wanted) if w == t)
                raise ChannelError(f"{where}: {reason}; name the one to use, e.g. --channels \"{pairs}\" "
                                   f"(MODEL=RECORDING; or another of {candidates})") from None
            (missing if source is None else found).append(t if source is None else source)
        if missing:
            raise ChannelError(f"{where}: {self._missing_help(present, mapping, wanted, missing, found)}")
        return Selection(targets, tuple(targets.index(w) for w in wanted), tuple(found))

    def _missing_help(self, present: Sequence[str], mapping: Mapping[str, str], wanted: Sequence[str],
                      missing: Sequence[str], found: Sequence) -> str:
        """What is missing and how to fix it: a suggestion mapping only the model channels that are
        absent under their own (or the card's renamed) names, or "omit --channels" when every model
        channel is present under its own name and only a --channels entry names an absent channel."""
        absent = [m for m, w in zip(self.channels, wanted) if w in missing]
        own = {m: self._present(self._default_name(m, present), present) for m in self.channels}
        wrong = [m for m in absent if m in mapping and own[m]]  # mapped away from a channel that is present
        if all(own.values()):
            names = ", ".join(repr(mapping[m]) for m in wrong)
            return (f"{names} {'is' if len(wrong) == 1 else 'are'} not in the recording (channels: {list(present)}); "
                    "the model's channels are all present under their own names: omit --channels")
        need = [m for m in absent if not own[m]]
        used = needed_channels([*found, *(_resolve(present, self._default_name(m, present))
                                                     for m in self.channels if own[m])])
        text = (f"the recording has no channel {list(missing)} (nor channels to derive them from); "
                f"{_channel_help(self.channels, present, need, used)}")
        if wrong:
            text += (f"; {', '.join(repr(m) for m in wrong)} {'is' if len(wrong) == 1 else 'are'} present under "
                     f"{'its' if len(wrong) == 1 else 'their'} own name: drop "
                     f"{', '.join(f'{m}={mapping[m]}' for m in wrong)} from --channels")
        return text


def _resolve(present: Sequence[str], name: str):
    """mne_reader's ChannelSource of ``name`` among ``present`` (exact, loose, derived) or None;
    RecordError when the name matches several channels."""
    try:
        return resolve_channels(list(present), [name])[0]
    except RecordError as exc:
        if "matches several" in str(exc):
            raise
        return None


_NOT_EEG = re.compile(r"EOG|EMG|ECG|EKG|RESP|FLOW|SAO2|SPO2|ABD|CHEST|THOR|TEMP|EVENT|MARKER|CHIN|LEG|PLETH|"
                      r"PULSE|SNORE|POSITION|LIGHT|NASAL|ORAL|HR\b|LOC|ROC|E1|E2", re.IGNORECASE)


def eeg_like(name: str) -> bool:
    """Whether a recording channel name looks like EEG: it says ``EEG``, or names no other
    signal type (EOG, EMG, ECG, respiration, SaO2, temperature, event marker, ...)."""
    return "EEG" in name.upper() or not _NOT_EEG.search(name)


def _channel_help(model: Sequence[str], present: Sequence[str], need: Sequence[str], used: Sequence[str]) -> str:
    """The channels expected and present, and a --channels suggestion for the model channels
    ``need`` (those absent), paired with EEG channels of the recording (``eeg_like``: never EOG,
    EMG, respiration, ...) not ``used`` by the others, else any EEG channel, else a placeholder."""
    eeg = [p for p in present if eeg_like(p)]
    spare = [p for p in eeg if p not in used] or eeg or ["<EEG channel>"]
    pairs = ",".join(f"{m}={spare[i % len(spare)]}" for i, m in enumerate(need))
    return (f"the model expects the channels {list(model)} (in this order) and the recording has "
            f"{list(present)}: map each missing model channel to a recording channel with --channels "
            f"\"{pairs}\" (syntax {CHANNELS_SYNTAX}, MODEL=RECORDING; "
            f"Python: Stager.predict_file(path, channels={{'{need[0]}': '...'}}))")


def expand(recording: EegRecording, selection: Selection, channels: Sequence[str]) -> EegRecording:
    """The recording with one row per model channel (a target may serve several), named as the model's."""
    rows = list(selection.rows)
    if rows == list(range(len(selection.targets))):
        return replace(recording, channels=tuple(channels))
    return replace(recording, channels=tuple(channels), digital=recording.digital[rows],
                   gain=np.asarray(recording.gain)[rows], baseline=np.asarray(recording.baseline)[rows],
                   uv_per_unit=np.asarray(recording.uv_per_unit)[rows])
