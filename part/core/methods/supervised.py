"""Supervised baseline: no pretraining ("Supervised w/ Pos Embed", paper Table 3).

The finetune stage trains the encoder from random initialisation, with the harness's learnable
position embedding and linear head, on the same labelled data, budget and evaluation as the
pretrained methods. There is no pretext objective: it registers no builder, and the pretrain
stage is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

from part.config.options import Options
from part.registry import register_method


@dataclass
class SupervisedOptions(Options):
    """The recipe's `method` section for the supervised baseline (no options)."""

    section = "method"

    name: str = "supervised"


# No pretraining stage (finetuning adds a position embedding, as for every method).
register_method("supervised", options=SupervisedOptions, build=None, pretrains=False, example=dict())
