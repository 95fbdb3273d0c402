"""Forward passes over left-padded sequences, and sampling with the KV cache.

PPO sequences are left-padded prompts followed by responses. Models with absolute positions (GPT-2, OPT)
would see a padded prompt at other positions than an unpadded one, so position ids are derived from the
attention mask here, exactly as `generate` derives them; BLOOM (ALiBi) takes no position ids.
"""

from __future__ import annotations

import functools
import inspect

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, T) positions counting real tokens from 0; padding gets 1 (never attended)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def _innermost(model: torch.nn.Module) -> torch.nn.Module:
    while True:
        if hasattr(model, "module"):  # DDP
            model = model.module
        elif hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        elif hasattr(model, "hf"):  # coati ValueModel
            model = model.hf
        else:
            return model


@functools.cache
def _accepts_position_ids(cls: type) -> bool:
    return "position_ids" in inspect.signature(cls.forward).parameters


def position_kwargs(model: torch.nn.Module, attention_mask: torch.Tensor) -> dict:
    """{"position_ids": ...} when the model takes them, else {}."""
    inner = _innermost(model)
    base = getattr(inner, inner.base_model_prefix, inner) if hasattr(inner, "base_model_prefix") else inner
    if _accepts_position_ids(type(base)):
        return {"position_ids": position_ids_from_mask(attention_mask)}
    return {}


def causal_lm_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits with padding-aware positions; called through the wrapper so DDP/FSDP hooks run."""
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                 **position_kwargs(model, attention_mask)).logits


@torch.no_grad()
def sample(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer,
           max_new_tokens: int, do_sample: bool = True, top_k: int = 50, top_p: float = 1.0,
           temperature: float = 1.0, **extra) -> torch.Tensor:
    """Sample continuations of left-padded prompts with the KV cache. Returns (B, P + A) ids."""
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, use_cache=True, **extra)
    if tokenizer.pad_token_id != tokenizer.eos_token_id:
        # A sampled pad token would read as padding and punch a hole in the response.
        kwargs["suppress_tokens"] = [tokenizer.pad_token_id]
    if do_sample:
        kwargs.update(top_k=top_k, top_p=top_p, temperature=temperature)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
