"""Every shipped recipe validates; the ImageFolder path trains end to end on real JPEGs."""
import json
from pathlib import Path

import pytest

from part.config import load_recipe
from part.registry import get_method
from conftest import SHARED_DATA, requires_shared, run_main

ROOT = Path(__file__).resolve().parents[2]
SUBSET = SHARED_DATA / "cifar10_subset"
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe):
    r = load_recipe(recipe, ())
    assert r.run.name and r.method.name and r.modality.name


def test_paper_numbers_in_cifar_recipe():
    r = load_recipe(ROOT / "recipes" / "cifar100_vits.yaml", ())
    assert (r.model.size, r.modality.patch_size, r.method.num_pairs) == ("small", 4, 2048)
    assert (r.pretrain.epochs, r.finetune.epochs, r.finetune.lr) == (1000, 400, 5e-4)
    s = load_recipe(ROOT / "recipes" / "cifar100_vits_scale.yaml", ())
    assert s.modality.scale_range == (0.5, 2.0) and s.pretrain.epochs == 1000  # inherited
    b = load_recipe(ROOT / "recipes" / "imagenet_vitb.yaml", ())
    assert (b.model.size, b.modality.patch_size, b.method.num_pairs, b.pretrain.batch_size) == ("base", 16, 4802, 1024)


def test_methods_without_pretraining_get_no_layer_decay():
    """Layer decay is a finetuning device for pretrained encoders: a from-scratch baseline would
    train its tokenizer / position embedding at lr x decay^(depth + 1)."""
    scratch = [r for r in (load_recipe(p, ()) for p in RECIPES) if not get_method(r.method.name).pretrains]
    assert {r.run.name for r in scratch} >= {"cifar100_vits_supervised", "eeg_sleep_supervised",
                                             "eeg_sleep_demo_supervised"}
    for r in scratch:
        assert r.finetune.layer_decay is None, r.run.name
    assert load_recipe(ROOT / "recipes" / "cifar100_vits.yaml", ()).finetune.layer_decay == 0.75


def test_deit_recipes_use_mixup_cutmix_and_label_smoothing():
    """Recipes finetuning with DeiT's augmentation use DeiT's Mixup 0.8, CutMix 1.0 and label
    smoothing 0.1; the digits demo and the EEG recipes keep hard labels."""
    deit = []
    for path in RECIPES:
        r = load_recipe(path, ())
        if getattr(r.data, "finetune_augment", None) == "deit":
            deit.append(path.name)
            assert (r.data.mixup, r.data.cutmix, r.finetune.label_smoothing) == (0.8, 1.0, 0.1), path.name
        else:
            assert getattr(r.data, "mixup", 0.0) == 0.0 and getattr(r.data, "cutmix", 0.0) == 0.0, path.name
    assert "cifar100_vits.yaml" in deit and "cifar100_vits_supervised.yaml" in deit
    assert "imagenet_vitb.yaml" in deit and "digits_demo.yaml" not in deit


@requires_shared("cifar10_subset/train")
def test_imagefolder_run_on_real_jpegs(tmp_path):
    from part.train import main
    args = [ROOT / "recipes" / "digits_demo.yaml",
            f"run.output_dir={tmp_path}", "run.device=cpu", "data.name=imagefolder", f"data.root={SUBSET}",
            "modality.patch_size=8", "modality.num_patches=16", "model.dim=32", "model.depth=2", "model.heads=4",
            "method.num_pairs=32", "data.limit_train=128", "data.limit_test=100", "pretrain.epochs=1",
            "finetune.epochs=1", "pretrain.batch_size=64", "finetune.batch_size=64",
            "data.finetune_augment=deit", "data.pretrain_augment=pretrain"]
    res = run_main(main, args)  # `python -m part.train ...`, in this process
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "digits_demo" / "report" / "report.json").read_text())
    assert len(report["confusion"]) == 10 and sum(map(sum, report["confusion"])) == 100


def test_base_may_name_a_shipped_recipe_by_its_bare_name(tmp_path):
    """``base: eeg_sleep_demo`` (or ``.yaml``) with no such file beside the recipe inherits the shipped
    recipe; a file of that name beside it wins."""
    from part.config import load_recipe
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: eeg_sleep_demo\nrun: {name: mine}\npretrain: {epochs: 2}\n")
    recipe = load_recipe(mine, ())
    shipped = load_recipe(ROOT / "recipes" / "eeg_sleep_demo.yaml", ())
    assert recipe.run.name == "mine" and recipe.pretrain.epochs == 2
    assert recipe.model == shipped.model and recipe.method == shipped.method and recipe.data == shipped.data
    (tmp_path / "eeg_sleep_demo.yaml").write_text("base: eeg_sleep_demo\nrun: {seed: 7}\n")  # shipped + a change
    (tmp_path / "mine2.yaml").write_text("base: eeg_sleep_demo.yaml\n")
    assert load_recipe(tmp_path / "mine2.yaml", ()).run.seed == 7
