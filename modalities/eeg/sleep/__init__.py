"""Sleep staging with a finetuned EEG run: the :class:`Hypnogram` (stages, probabilities, start
time; statistics, plot, CSV/EDF+, agreement), the :class:`Stager`, the ``part-stage`` command line
(``cli.py``), sleep statistics (``stats.py``), hypnogram plots (``plots.py``), the evaluation
report's hypnograms (``report.py``) and ``make demo`` (``demo.py``).

``from part.modalities.eeg.sleep import Hypnogram, Stager`` (imported on first use: ``Hypnogram``
needs numpy only, ``Stager`` torch).
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {"Hypnogram": "part.modalities.eeg.sleep.hypnogram", "Stager": "part.modalities.eeg.sleep.staging",
            "sleep_statistics": "part.modalities.eeg.sleep.stats"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
