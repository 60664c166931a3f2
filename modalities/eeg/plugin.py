"""The EEG plugin's registrations, imported by the core through the ``part.modalities`` entry point.

Registers the modality ``eeg`` (``modality.py``; sampling math in ``sampling.py``) and the datasets
``pc18`` and ``sleep_edf`` (prepared sleep recordings, ``datasets.py``; the prepared format's
reader in ``recordings/prepared.py``) with their sleep-staging report hook (``sleep/report.py``).
Staging (``Stager``, ``part-stage``) is not a registration: import it from ``part.modalities.eeg``.
"""
from part.modalities.eeg.datasets import SleepDataOptions, load_data
from part.modalities.eeg.modality import EEGModality, EEGOptions

__all__ = ["EEGModality", "EEGOptions", "SleepDataOptions", "load_data"]
