"""EEG / 1-D time-series modality plugin: sampling and targets in `modality.py`, datasets
(prepared PhysioNet 2018 windows, `data.name: pc18`) in `data.py` and `dataset.py`."""
from modalities.eeg.modality import EEGModality, EEGOptions
from modalities.eeg.data import load_data

OPTIONS = EEGOptions


def build(channels=None, window_samples=None, **options) -> EEGModality:
    """EEGModality from keyword options (the recipe's `modality` section merged over the data's
    `DataBundle.input_info`; a value set in the recipe wins). channels / window_samples left at
    None fall back to PhysioNet 2018's 6 channels x 3000 samples (30 s at 100 Hz)."""
    options.pop("name", None)
    return EEGModality(6 if channels is None else channels,
                       3000 if window_samples is None else window_samples, **options)


__all__ = ["EEGModality", "EEGOptions", "OPTIONS", "build", "load_data"]
