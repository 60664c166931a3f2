"""EEG / 1-D time-series plugin (PhysioNet 2018, Sleep-EDF and any MNE-readable PSG), in three layers:

- the PART modality (torch): ``modality.py`` (sampling math in ``sampling.py``), ``datasets.py``
  (prepared recordings), ``analysis.py`` (``part-analyze`` pictures), ``plugin.py`` (the
  ``part.modalities`` entry point: importing it registers the modality and the datasets);
- ``recordings/`` (no torch): signal pipeline, channels, WFDB and MNE readers, hypnogram files,
  windows, the prepared format and the sleep constants: what preparation and staging share;
- ``sleep/``: the :class:`Hypnogram`, the :class:`Stager`, ``part-stage``, sleep statistics,
  plots, the evaluation report's hypnograms and ``make demo``.

``from part.modalities.eeg import Stager, Hypnogram`` (imported on first use, so importing this
package or ``recordings/`` registers nothing and does not import torch).
"""
from __future__ import annotations

__all__ = ["Hypnogram", "Stager"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from part.modalities.eeg import sleep  # sleep/__init__ imports each name on first use

    return getattr(sleep, name)
