"""The built-in modalities keep the ``part.testing`` contract beyond their registered examples:
scale-varied boxes (``scale_range``, trained with PART's scale targets) and the sampling
strategies, on tiny inputs."""
import pytest

from part.testing import check_modality

IMAGE = dict(image_size=16, channels=3, patch_size=4)
EEG = dict(channels=2, window_samples=240, patch_samples=8, num_patches=12)


@pytest.mark.parametrize("name,options,shape", [
    ("image", dict(IMAGE, scale_range=[0.5, 2.0]), (2, 3, 16, 16)),
    ("image", dict(IMAGE, scale_range=[0.5, 2.0], scale_target="log"), (2, 3, 16, 16)),
    ("image", dict(IMAGE, strategy="stratified"), (2, 3, 16, 16)),
    ("eeg", dict(EEG, scale_range=[0.5, 2.0]), (2, 2, 240)),
    ("eeg", dict(EEG, strategy="stratified"), (2, 2, 240)),
], ids=["image-scale", "image-scale-log", "image-stratified", "eeg-scale", "eeg-stratified"])
def test_option_variants_keep_the_contract(name, options, shape):
    result = check_modality(name, dict(options=options, input_shape=shape), methods=["part"])
    assert result.trained == ["part"]
