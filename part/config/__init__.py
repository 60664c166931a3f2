"""Recipes: YAML loading with inheritance and overrides (`loader`), the schema (`schema`), and
the conversion of a mapping into validated options dataclasses (`validation`)."""
from part.config.loader import (VOLATILE_KEYS, load_recipe, recipe_differences, recipe_from_dict,
                                recipe_hash, recipe_to_dict, save_resolved)

__all__ = ["load_recipe", "recipe_from_dict", "recipe_to_dict", "save_resolved", "recipe_hash",
           "recipe_differences", "VOLATILE_KEYS"]
