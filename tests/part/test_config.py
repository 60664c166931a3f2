"""Recipe loading: inheritance, overrides, validation messages, dispatch and the saved round trip."""

from dataclasses import dataclass, field
from typing import Optional

import pytest
import yaml

from part.config import (load_recipe, recipe_differences, recipe_hash, recipe_to_dict,
                         save_resolved)
from part.errors import ConfigError
from part.config.options import Options
from part.config.schema import DataConfig, Recipe


# Small stand-ins for the real option dataclasses (written elsewhere), passed in as resolvers.
@dataclass
class FakePartOptions(Options):
    name: str = "part"
    num_pairs: int = field(default=8, metadata={"min": 1})
    head: str = field(default="cross", metadata={"choices": ["cross", "pairwise_mlp"]})


@dataclass
class FakeMaeOptions(Options):
    name: str = "mae"
    mask_ratio: float = field(default=0.75, metadata={"range": (0.0, 1.0), "half_open": True})


@dataclass
class FakeImageOptions(Options):
    name: str = "image"
    patch_size: int = 4
    scale_range: Optional[tuple[float, float]] = None
    channels_used: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class FakeDataOptions(DataConfig):
    name: str = "digits"


METHODS = {"part": FakePartOptions, "mae": FakeMaeOptions}
MODALITIES = {"image": FakeImageOptions}
DATASETS = {"digits": FakeDataOptions}


def _resolver(table):
    def resolve(name):
        try:
            return table[name]
        except KeyError:
            raise KeyError(f"valid: {', '.join(sorted(table))}") from None
    return resolve


RESOLVERS = {"method": _resolver(METHODS), "modality": _resolver(MODALITIES),
             "dataset": _resolver(DATASETS)}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(path, *overrides):
    return load_recipe(path, list(overrides), resolvers=RESOLVERS)


def error_of(path, *overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, *overrides)
    return str(info.value)


@pytest.fixture
def base_recipe(tmp_path):
    return write(tmp_path / "base.yaml", """
run: {name: base_run, seed: 1, stages: [pretrain, finetune, evaluate]}
data: {name: digits}
modality: {name: image}
method: {name: part, num_pairs: 16, head: cross}
pretrain: {epochs: 5, lr: 1.0e-3, betas: [0.9, 0.95]}
finetune: {epochs: 2}
""")


def test_an_empty_recipe_names_the_missing_sections(tmp_path):
    message = error_of(write(tmp_path / "empty.yaml", ""))
    assert "'data.name' is missing; valid: digits" in message
    assert "'modality.name' is missing; valid: image" in message


def test_defaults_from_a_recipe_naming_only_data_and_modality(tmp_path):
    recipe = load(write(tmp_path / "minimal.yaml", "data: {name: digits}\nmodality: {name: image}\n"))
    assert recipe == Recipe(data=FakeDataOptions(), modality=FakeImageOptions(),
                            method=FakePartOptions())
    assert recipe.run.stages == ["pretrain", "finetune", "evaluate"]
    assert recipe.pretrain.betas == (0.9, 0.999)


def test_inheritance_deep_merges_child_wins_lists_replaced(tmp_path, base_recipe):
    child = write(tmp_path / "sub" / "child.yaml", """
base: ../base.yaml
run: {name: child_run, stages: [finetune]}
pretrain: {epochs: 7}
""")
    recipe = load(child)
    assert recipe.run.name == "child_run" and recipe.run.seed == 1  # merged, child wins
    assert recipe.run.stages == ["finetune"]  # list replaced, not concatenated
    assert recipe.pretrain.epochs == 7 and recipe.pretrain.lr == 1e-3
    assert recipe.pretrain.betas == (0.9, 0.95)
    assert recipe.method == FakePartOptions(num_pairs=16)


def test_inheritance_is_recursive_and_cycles_are_reported(tmp_path, base_recipe):
    write(tmp_path / "middle.yaml", "base: base.yaml\nfinetune: {epochs: 3}\n")
    top = write(tmp_path / "top.yaml", "base: middle.yaml\nrun: {seed: 9}\n")
    recipe = load(top)
    assert (recipe.run.seed, recipe.finetune.epochs, recipe.pretrain.epochs) == (9, 3, 5)

    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    message = error_of(tmp_path / "a.yaml")
    assert "cycle" in message and "a.yaml" in message and "b.yaml" in message


def test_child_with_another_method_replaces_the_base_method_section(tmp_path, base_recipe):
    child = write(tmp_path / "mae.yaml", "base: base.yaml\nmethod: {name: mae}\n")
    assert load(child).method == FakeMaeOptions()  # part's num_pairs is not carried over


def test_bad_files_name_the_path(tmp_path, base_recipe):
    missing = tmp_path / "nope.yaml"
    assert str(missing) in error_of(missing) and "does not exist" in error_of(missing)
    broken = write(tmp_path / "broken.yaml", "run: {name: [unclosed\n")
    assert str(broken) in error_of(broken) and "not valid YAML" in error_of(broken)
    scalar = write(tmp_path / "scalar.yaml", "just a string\n")
    assert str(scalar) in error_of(scalar) and "mapping" in error_of(scalar)
    orphan = write(tmp_path / "orphan.yaml", "base: missing_base.yaml\n")
    message = error_of(orphan)
    assert "missing_base.yaml" in message and str(orphan) in message


def test_overrides_are_typed_by_the_schema(base_recipe):
    recipe = load(base_recipe, "pretrain.epochs=3", "run.device=cpu", "modality.scale_range=[0.5,2.0]",
                  "model.dim=null", "model.depth=6", "run.compile=true", "finetune.lr=1e-3",
                  "run.name=2024", "finetune.grad_clip=null", "modality.channels_used=[1]",
                  "data.root=/tmp/data")
    assert recipe.pretrain.epochs == 3 and isinstance(recipe.pretrain.epochs, int)
    assert recipe.run.device == "cpu" and recipe.run.compile is True
    assert recipe.modality.scale_range == (0.5, 2.0)
    assert recipe.model.dim is None and recipe.model.depth == 6
    assert recipe.finetune.lr == pytest.approx(1e-3) and isinstance(recipe.finetune.lr, float)
    assert recipe.run.name == "2024"  # the text, although YAML reads 2024 as a number
    assert recipe.finetune.grad_clip is None and recipe.modality.channels_used == [1]
    assert recipe.data.root == "/tmp/data"


def test_override_switching_method_starts_from_its_defaults(base_recipe):
    recipe = load(base_recipe, "method.mask_ratio=0.5", "method.name=mae")
    assert recipe.method == FakeMaeOptions(mask_ratio=0.5)


def test_unknown_keys_give_full_path_and_closest_key(tmp_path, base_recipe):
    message = error_of(base_recipe, "pretrain.epoch=3")
    assert "unknown key 'pretrain.epoch'" in message and "did you mean 'pretrain.epochs'?" in message
    assert "override 'pretrain.epoch=3'" in message
    in_file = write(tmp_path / "typo.yaml", "base: base.yaml\nfinetune: {batch_sise: 8}\n")
    message = error_of(in_file)
    assert "'finetune.batch_sise'" in message and "'finetune.batch_size'" in message
    assert str(in_file) in message
    assert "did you mean 'method.head'?" in error_of(base_recipe, "method.hed=mlp")
    assert "did you mean 'pretrain'?" in error_of(base_recipe, "pretrian.epochs=1")


def test_wrong_types_name_key_value_and_expected_type(base_recipe):
    message = error_of(base_recipe, "pretrain.epochs=abc")
    assert "'pretrain.epochs' = 'abc'" in message and "an integer" in message
    message = error_of(base_recipe, "pretrain.epochs=2.5")
    assert "'pretrain.epochs' = 2.5" in message
    message = error_of(base_recipe, "run.compile=maybe")
    assert "'run.compile'" in message and "true or false" in message
    message = error_of(base_recipe, "run.device=gpu")
    assert "'gpu'" in message and "'auto', 'cpu', 'cuda'" in message
    message = error_of(base_recipe, "pretrain.betas=[0.9]")
    assert "'pretrain.betas'" in message and "list of 2 values" in message
    message = error_of(base_recipe, "modality.channels_used=[1,x]")
    assert "'modality.channels_used[1]' = 'x'" in message


def test_out_of_range_values_name_what_is_allowed(base_recipe):
    cases = {
        "pretrain.batch_size=0": ">= 1",
        "pretrain.lr=0": "> 0",
        "model.drop_path=1.0": "in [0.0, 1.0)",
        "finetune.layer_decay=0": "in (0.0, 1.0]",
        "model.size=huge": "one of 'tiny', 'small', 'base', 'eeg', 'custom'",
        "run.stages=[pretrain,train]": "one of 'pretrain', 'finetune', 'evaluate'",
        "pretrain.betas=[0.9,1.5]": "in [0.0, 1.0)",
        "method.num_pairs=0": ">= 1",
        "evaluate.repeats=0": ">= 1",
    }
    for override, allowed in cases.items():
        message = error_of(base_recipe, override)
        key = override.split("=")[0]
        assert "out of range" in message and allowed in message, message
        assert key.split("[")[0] in message, message
    assert "repeats [pretrain]" in error_of(base_recipe, "run.stages=[pretrain,pretrain]")
    assert load(base_recipe, "finetune.layer_decay=1.0").finetune.layer_decay == 1.0


def test_all_problems_are_reported_together(base_recipe):
    message = error_of(base_recipe, "pretrain.epoch=3", "run.seed=-1", "model.mlp_ratio=x")
    assert "(3 problems)" in message
    assert "pretrain.epoch" in message and "run.seed" in message and "model.mlp_ratio" in message


def test_unknown_dispatched_name_lists_valid_names(base_recipe):
    message = error_of(base_recipe, "method.name=magic")
    assert "unknown method 'magic'" in message and "valid: mae, part" in message


def test_malformed_overrides(base_recipe):
    assert "dotted.key=value" in error_of(base_recipe, "pretrain.epochs")
    assert "dotted.key=value" in error_of(base_recipe, "pretrain..epochs=3")
    assert "'run.name' is a value" in error_of(base_recipe, "run.name.first=3")


def test_saved_recipe_loads_back_equal(tmp_path, base_recipe):
    recipe = load(base_recipe, "modality.scale_range=[0.5,2.0]", "run.name=007", "data.root=~/x y")
    out = save_resolved(recipe, tmp_path / "run" / "config.yaml")
    assert sorted(p.name for p in out.parent.iterdir()) == ["config.yaml"]  # no temp files left
    saved = yaml.safe_load(out.read_text())
    assert "base" not in saved and saved == recipe_to_dict(recipe)
    again = load(out)
    assert again == recipe
    assert again.run.name == "007" and again.modality.scale_range == (0.5, 2.0)


def test_recipe_hash_and_differences(base_recipe):
    recipe = load(base_recipe)
    same_work = load(base_recipe, "run.device=cpu", "run.num_workers=2")
    other = load(base_recipe, "pretrain.epochs=6")
    assert recipe_hash(recipe) == recipe_hash(recipe_to_dict(same_work))
    assert recipe_hash(recipe) != recipe_hash(other)
    assert recipe_hash(recipe, keys=["finetune"]) == recipe_hash(other, keys=["finetune"])
    assert recipe_differences(recipe, other) == ["pretrain.epochs: 5 -> 6"]
    assert recipe_differences(recipe, same_work) == []


def test_ordered_rule_refuses_a_reversed_range():
    @dataclass
    class RangeOptions(Options):
        section = "modality"
        scale_range: Optional[tuple[float, float]] = field(default=None, metadata={"ordered": True})

    assert RangeOptions(scale_range=(0.5, 2.0)).scale_range == (0.5, 2.0)
    assert RangeOptions().scale_range is None
    with pytest.raises(ConfigError, match=r"'modality\.scale_range' = \[2\.0, 0\.5\] must be in increasing order"):
        RangeOptions(scale_range=(2.0, 0.5))
