"""Forward passes over padded sequences, without sampling.

PPO sequences are left-padded prompts followed by responses. Models with absolute positions (GPT-2, OPT)
would see a padded prompt at other positions than an unpadded one, so position ids are derived from the
attention mask here, exactly as `generate` derives them; BLOOM (ALiBi) takes no position ids.
"""

from __future__ import annotations

import functools
import inspect

import torch

from coati.models import fast
from coati.models.unwrap import innermost


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, T) positions counting real tokens from 0; padding gets 1 (never attended)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


@functools.cache
def forward_params(cls: type) -> frozenset:
    """The argument names of a module class's forward."""
    return frozenset(inspect.signature(cls.forward).parameters)


def takes_position_ids(model: torch.nn.Module) -> bool:
    inner = innermost(model)
    base = getattr(inner, inner.base_model_prefix, inner) if hasattr(inner, "base_model_prefix") else inner
    return "position_ids" in forward_params(type(base))


def position_kwargs(model: torch.nn.Module, attention_mask: torch.Tensor) -> dict:
    """{"position_ids": ...} when the model takes them, else {}."""
    return {"position_ids": position_ids_from_mask(attention_mask)} if takes_position_ids(model) else {}


def causal_lm_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     first: int = 0) -> torch.Tensor:
    """(B, T - first, V) logits of positions first..T-1, with padding-aware positions; called through the
    wrapper so DDP/FSDP hooks run.

    PPO reads only the logits that predict the response (first = prompt length - 1): the LM head then runs on
    those positions alone, and on the CPU fast path (GPT-2, GPT-NeoX: coati/models/fast) so does the last
    layer's MLP.
    """
    plan = fast.plan(model)  # None for a peft wrapper, whose forward must run as written, and off the CPU
    with fast.linears(model):
        if plan is not None:
            return fast.logits(model, plan, input_ids, attention_mask, first)
        kwargs = position_kwargs(model, attention_mask)
        keep = input_ids.shape[1] - first
        if first > 0 and "logits_to_keep" in forward_params(type(innermost(model))):
            kwargs["logits_to_keep"] = keep
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits
    return logits[:, -keep:]
