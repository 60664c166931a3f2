"""EEG / 1-D time-series modality plugin (PhysioNet 2018, Sleep-EDF and any MNE-readable PSG).

Importing ``modalities.eeg.plugin`` (the ``part.modalities`` entry point) registers the modality,
the datasets and the tools; importing this package or its signal modules (``signal.py``,
``wfdb_reader.py``, ``mne_reader.py``, ``hypnogram.py``, ``windows.py``) registers nothing and
does not import torch, so data preparation stays light.
"""
