"""The image plugin's registrations, imported by the core through the ``part.modalities`` entry
point: the modality ``image`` (``modality.py``; sampling math in ``sampling.py``) and the datasets
``digits``, ``cifar10``, ``cifar100``, ``imagefolder`` (``datasets.py``, transforms in
``transforms.py``)."""
from part.modalities.image.modality import ImageModality, ImageOptions
from part.modalities.image.datasets import ImageDataOptions, load_data

__all__ = ["ImageModality", "ImageOptions", "ImageDataOptions", "load_data"]
