"""Sleep recordings without torch: what data preparation and staging share.

- ``constants.py``: the sleep constants, declared once (stage classes, epoch length, rates,
  PC18 electrodes, stage spellings);
- ``signal.py``: band-pass fused with resampling, z-scored windows (:class:`EegRecording`);
- ``channels.py``: channel names matched loosely, bipolar derivations, a model's montage;
- ``wfdb_reader.py`` (PhysioNet WFDB), ``mne_reader.py`` (any MNE-readable PSG): readers;
- ``hypnogram_io.py`` (stage spellings, EDF+/CSV/annotation scorings -> 30-s epochs) and
  ``hypnogram_edf.py`` (EDF header start times, alignment, EDF+ writer): hypnogram files;
- ``windows.py``: a recording and its 30-s grid -> normalised windows and labels;
- ``prepared.py``: the prepared format on disk (manifest, splits, memory-mapped records).

Nothing here imports torch or the ``sleep`` layer (``tests/modalities/eeg/test_layers.py``).
"""
