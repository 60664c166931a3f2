"""Image modality plugin (2-D): see `modality.py`; sampling math in `sampling.py`."""
from modalities.image.modality import ImageModality, ImageOptions

OPTIONS = ImageOptions


def build(image_size: int, channels: int, **options) -> ImageModality:
    """ImageModality from recipe options; image_size/channels come from the data unless set."""
    options.pop("name", None)
    image_size = options.pop("image_size", None) or image_size
    channels = options.pop("channels", None) or channels
    return ImageModality(image_size, channels, **options)


def load_data(data_cfg, seed: int = 0, repeat: int = 0):
    from modalities.image.data import load_data as _load
    return _load(data_cfg, seed, repeat)
