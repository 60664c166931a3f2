"""Numbers stay identical across the modality-SDK refactor (issue 27 item 1).

Values recorded from the code before the refactor (main at 18bec72, torch CPU, one thread):
for image and EEG under each sampling strategy (random, stratified, grid, scale_range), the
off-grid patches, their geometry, the relative targets and the fixed grid (as position-weighted
float64 checksums and a few raw values at full float precision), and three SGD steps of PART's
loss on a tiny encoder. The refactored code must reproduce every value exactly (==, no tolerance).
Synthetic inputs (seeded Gaussian noise); the losses are pretext MSEs, no chance level applies.
Run ``python tests/part/test_numbers_identical.py`` to print the values of the code at hand.
"""
import pytest
import torch

from part.core.backbone import ViTEncoder
from part.registry import build_method, get_method, get_modality

IMAGE = dict(image_size=12, channels=3, patch_size=4)
EEG = dict(channels=2, window_samples=240, patch_samples=16, num_patches=12)
CASES = {
    "image-random": ("image", dict(IMAGE, num_patches=7)),
    "image-stratified": ("image", dict(IMAGE, strategy="stratified")),
    "image-grid": ("image", dict(IMAGE, strategy="grid")),
    "image-scale": ("image", dict(IMAGE, num_patches=7, scale_range=(0.5, 2.0))),
    "eeg-random": ("eeg", dict(EEG)),
    "eeg-stratified": ("eeg", dict(EEG, strategy="stratified")),
    "eeg-grid": ("eeg", dict(EEG, strategy="grid")),
    "eeg-scale": ("eeg", dict(EEG, scale_range=(0.5, 2.0), scale_target="log")),
}
SHAPES = {"image": (2, 3, 12, 12), "eeg": (2, 2, 240)}


def _checksum(t: torch.Tensor) -> float:
    """A float64 sum weighted by position (catches permutations as well as values)."""
    flat = t.detach().double().reshape(-1)
    return float((flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum())


def fingerprint(case: str) -> dict:
    """Checksums and raw values of sample / grid / targets, and three PART losses."""
    torch.set_num_threads(1)
    name, options = CASES[case]
    modality = get_modality(name, **options)
    x = torch.randn(*SHAPES[name], generator=torch.Generator().manual_seed(1))
    patches, geom = modality.sample(x, torch.Generator().manual_seed(2))
    targets = modality.targets(geom[:, :, None], geom[:, None, :])
    grid_patches, grid_geom = modality.grid(x)
    torch.manual_seed(3)
    encoder = ViTEncoder(16, 1, 2)
    tokenizer = modality.tokenizer(16)
    model = build_method("part", modality, encoder, tokenizer, get_method("part").options(num_pairs=8))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = model(x)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return {"patches": _checksum(patches), "geometry": _checksum(geom), "targets": _checksum(targets),
            "grid": _checksum(grid_patches) + _checksum(grid_geom),
            "values": [patches[1, -1, -1].item(), geom[1, -1].tolist(), targets[0, 1, -1].tolist()],
            "losses": losses}


# printed by this file's __main__ on the pre-refactor code
RECORDED = {'image-random': {'patches': 14193.699379816651,
                             'geometry': 7874.301305294037,
                             'targets': -24.70921039581299,
                             'grid': 34906.82573386759,
                             'values': [0.11195974797010422,
                                        [9.270788192749023, 3.7602128982543945, 4.0, 4.0],
                                        [0.1230396032333374, -1.3941558599472046]],
                             'losses': [0.6721429824829102, 0.6747966408729553, 0.606435239315033]},
            'image-stratified': {'patches': 4217.5266386495205,
                                 'geometry': 13540.538181781769,
                                 'targets': -6234.410528182983,
                                 'grid': 34906.82573386759,
                                 'values': [0.7873119711875916,
                                            [10.0, 9.083220481872559, 4.0, 4.0],
                                            [0.8628857135772705, 1.7050342559814453]],
                                 'losses': [1.4262248277664185, 1.2980176210403442, 1.0730222463607788]},
            'image-grid': {'patches': 21070.82573386759,
                           'geometry': 13836.0,
                           'targets': -6912.0,
                           'grid': 34906.82573386759,
                           'values': [-1.1821123361587524, [10.0, 10.0, 4.0, 4.0], [1.0, 2.0]],
                           'losses': [0.9324307441711426, 1.3421155214309692, 1.8480043411254883]},
            'image-scale': {'patches': -1732.6537897021044,
                            'geometry': 8092.322134971619,
                            'targets': 44290.62203214783,
                            'grid': 34906.82573386759,
                            'values': [0.05873962491750717,
                                       [3.7068326473236084, 5.7932891845703125, 7.050360679626465, 2.713308811187744],
                                       [0.6768458485603333,
                                        -0.14410464465618134,
                                        1.089026927947998,
                                        0.3804672360420227]],
                            'losses': [1.3365963697433472, 0.9258328080177307, 1.0266318321228027]},
            'eeg-random': {'patches': -2840.3413233442698,
                           'geometry': 80890.95643234253,
                           'targets': 6094.323498249054,
                           'grid': 144058.04130375374,
                           'values': [-0.8579138517379761, [199.44265747070312, 16.0], [2.1310253143310547]],
                           'losses': [23.1719970703125, 29.390064239501953, 26.97673988342285]},
            'eeg-stratified': {'patches': -8528.058499043225,
                               'geometry': 140255.25092029572,
                               'targets': -116512.19308328629,
                               'grid': 144058.04130375374,
                               'values': [0.5468753576278687, [228.1133270263672, 16.0], [13.118987083435059]],
                               'losses': [49.778316497802734, 33.02760314941406, 36.32134246826172]},
            'eeg-grid': {'patches': 3258.0413037537364,
                         'geometry': 140800.0,
                         'targets': -117600.0,
                         'grid': 144058.04130375374,
                         'values': [0.6997790336608887, [232.0, 16.0], [13.0]],
                         'losses': [29.497285842895508, 43.16088104248047, 52.842994689941406]},
            'eeg-scale': {'patches': 8580.359611921362,
                          'geometry': 78286.43114852905,
                          'targets': -26827.118199694436,
                          'grid': 144058.04130375374,
                          'values': [0.8191377520561218,
                                     [124.73046112060547, 26.160341262817383],
                                     [-5.968818187713623, 0.211016446352005]],
                          'losses': [30.56854248046875, 16.196439743041992, 4.699028015136719]}}


def test_recorded_cases_cover_every_strategy():
    assert set(RECORDED) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_gives_the_recorded_patches_geometry_targets_and_losses(case):
    assert fingerprint(case) == RECORDED[case]


if __name__ == "__main__":
    for case in CASES:
        print(f"    {case!r}: {fingerprint(case)!r},")
