"""Where the Hugging Face model sits inside coati's wrappers.

A model reaches the library wrapped in up to three layers, from the outside: DDP or ColossalAI's wrapper
(`.module`), coati's ValueModel (`.hf`) and peft (`get_base_model()`); FSDP2 changes the model in place.
Code that needs the HF model itself (its config, its `forward` signature, the weights to tie) and code that
saves it both ask here, so a new wrapper is taught in one place.
"""

from __future__ import annotations

from torch import nn


def innermost(model: nn.Module) -> nn.Module:
    """The HF `PreTrainedModel` inside every wrapper: the module peft injects its LoRA layers into and whose
    `forward` takes the tokens. A module that is none of the wrappers is returned as it is."""
    while True:
        if hasattr(model, "module"):  # DDP, ColossalAI
            model = model.module
        elif hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        elif hasattr(model, "hf"):  # coati's ValueModel
            model = model.hf
        else:
            return model


def savable(model: nn.Module) -> nn.Module:
    """The module to `save_pretrained`, given the model without its DDP / FSDP / ColossalAI wrapper: the
    model itself, or the `.hf` model a ValueModel holds. A peft wrapper stays: saving merges or writes the
    adapter."""
    return model if hasattr(model, "save_pretrained") else model.hf


def peft_wrapper(model: nn.Module) -> nn.Module | None:
    """The peft model inside DDP / ColossalAI's wrapper and coati's ValueModel or AnswerLogProbs, or None when
    the model has no adapters: what `disable_adapter()` is called on to run the base weights alone."""
    while True:
        if hasattr(model, "disable_adapter") and hasattr(model, "get_base_model"):
            return model
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "hf"):
            model = model.hf
        else:
            return None
