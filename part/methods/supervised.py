"""Supervised baseline: no pretraining ("Supervised w/ Pos Embed", paper Table 3).

The finetune stage trains the encoder from random initialisation, with the harness's learnable
position embedding and linear head, on the same labelled data, budget and evaluation as the
pretrained methods. There is no pretext objective, so `build` refuses to make one.
"""
from __future__ import annotations

from dataclasses import dataclass

from part.errors import ConfigError

PRETRAINS = False
POSITION_EMBEDDING = False  # no pretraining stage (finetuning uses one, as for every method)


@dataclass
class SupervisedOptions:
    """The recipe's `method` section for the supervised baseline (no options)."""

    name: str = "supervised"


OPTIONS = SupervisedOptions


def build(modality, encoder, tokenizer, options: SupervisedOptions):
    raise ConfigError("method.name='supervised' has no pretraining stage, so there is no pretext "
                      "model to build; the finetune stage trains it from random initialisation. "
                      "Remove 'pretrain' from run.stages or pick a pretext method "
                      "(part, part_grid, mae, mp3, droppos).")
