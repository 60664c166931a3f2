"""Image modality plugin (2-D). Importing it registers the modality ``image`` (``modality.py``;
sampling math in ``sampling.py``) and its datasets ``digits``, ``cifar10``, ``cifar100``,
``imagefolder`` (``datasets.py``, transforms in ``transforms.py``). Found by the core through the
``part.modalities`` entry point."""
from modalities.image.modality import ImageModality, ImageOptions
from modalities.image.datasets import ImageDataOptions, load_data

__all__ = ["ImageModality", "ImageOptions", "ImageDataOptions", "load_data"]
