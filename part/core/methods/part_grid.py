"""PART-grid (paper Table 4): PART's relative objective on the fixed grid of patches.

Same head, pairs and loss as `part`; only the sampling differs (every grid patch, no off-grid
positions and no sampling-induced masking), so the comparison is apples to apples.
"""
from __future__ import annotations

from dataclasses import dataclass

from part.core.methods.part import PART, PARTOptions
from part.registry import register_method


@dataclass
class PARTGridOptions(PARTOptions):
    name: str = "part_grid"


@register_method("part_grid", options=PARTGridOptions, example=dict(num_pairs=16))
def build(modality, encoder, tokenizer, options: PARTGridOptions) -> PART:
    return PART(modality, encoder, tokenizer, options, on_grid=True)
