"""EEG / 1-D time-series modality plugin: sampling and targets in `modality.py`, datasets
(prepared PhysioNet 2018 windows, `data.name: pc18`) in `data.py` and `dataset.py`."""
from modalities.eeg.modality import EEGModality, EEGOptions
from modalities.eeg.data import load_data

OPTIONS = EEGOptions


def build(channels: int = 6, window_samples: int = 3000, **options) -> EEGModality:
    """EEGModality from recipe options; channels / window_samples come from the data
    (`DataBundle.input_info`) unless the recipe sets them (a recipe value wins)."""
    options.pop("name", None)
    channels = options.pop("channels", None) or channels
    window_samples = options.pop("window_samples", None) or window_samples
    return EEGModality(channels, window_samples, **options)


__all__ = ["EEGModality", "EEGOptions", "OPTIONS", "build", "load_data"]
