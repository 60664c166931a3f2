"""The EEG plugin's registrations, imported by the core through the ``part.modalities`` entry point.

Registers the modality ``eeg`` (``modality.py``; sampling math in ``sampling.py``), the datasets
``pc18`` and ``sleep_edf`` (prepared sleep recordings, ``datasets.py``; the prepared format's
reader and constants in ``prepared.py``) with their sleep-staging report hook (``report.py``), and
the tools ``stager`` (``staging.py``: :class:`~modalities.eeg.staging.Stager`, ``part.Stager``)
and ``stage_cli`` (``staging_cli.py``, ``python -m part.stage``), registered by reference so that
they are imported only when used.
"""
from modalities.eeg.modality import EEGModality, EEGOptions
from modalities.eeg.datasets import SleepDataOptions, load_data
from part.registry import register_tool

register_tool("stager", "modalities.eeg.staging:Stager")
register_tool("stage_cli", "modalities.eeg.staging_cli:main")

__all__ = ["EEGModality", "EEGOptions", "SleepDataOptions", "load_data"]
