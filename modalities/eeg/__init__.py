"""EEG / 1-D time-series modality plugin. Importing it registers the modality ``eeg``
(``modality.py``; sampling math in ``sampling.py``) and the dataset ``pc18`` (prepared sleep
recordings, ``datasets.py``; the prepared format's reader and constants in ``prepared.py``) with
its sleep-staging report hook (``report.py``). Found by the core through the ``part.modalities``
entry point."""
from modalities.eeg.modality import EEGModality, EEGOptions
from modalities.eeg.datasets import SleepDataOptions, load_data

__all__ = ["EEGModality", "EEGOptions", "SleepDataOptions", "load_data"]
