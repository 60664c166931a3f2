"""The EEG field's own self-supervised methods, beside PART (Banville et al., "Uncovering the
structure of clinical EEG signals with self-supervised learning", J. Neural Eng. 18(4), 2021):

- ``relative_positioning`` and ``temporal_shuffling`` (``temporal_context.py``): is this pair of
  windows close in time or far apart; is this triplet in order;
- ``cpc`` (``cpc.py``): contrastive predictive coding over runs of consecutive windows.

They train on samples of several windows drawn from the pretraining windows' place in their
recordings (``context_sampling.py``) and embed each window with the toolkit's encoder
(``embedding.py``), so the finetune stage treats them exactly as PART. Registered through the
``part.methods`` entry points for the ``eeg`` modality only.
"""
