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


@functools.cache
def _accepts_logits_to_keep(cls: type) -> bool:
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


def causal_lm_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     first: int = 0) -> torch.Tensor:
    """(B, T - first, V) logits of positions first..T-1, with padding-aware positions; called through the
    wrapper so DDP/FSDP hooks run.

    PPO reads only the logits that predict the response (first = prompt length - 1): where the model takes
    `logits_to_keep`, the LM head then runs on those positions alone, not on the prompt's.
    """
    kwargs = position_kwargs(model, attention_mask)
    keep = input_ids.shape[1] - first
    if first > 0 and _accepts_logits_to_keep(type(_innermost(model))):
        kwargs["logits_to_keep"] = keep
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits
    return logits[:, -keep:]


@torch.no_grad()
def sample(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer,
           max_new_tokens: int, do_sample: bool = True, top_k: int = 50, top_p: float = 1.0,
           temperature: float = 1.0, return_log_probs: bool = False, **extra):
    """Sample continuations of left-padded prompts with the KV cache. Returns (B, P + A) ids.

    return_log_probs: also return the (B, A) log-probabilities of the sampled tokens under the model's raw
    distribution (before temperature, top-k and top-p), read off the logits of the decoding steps themselves;
    they equal a fresh forward pass over the sequences to rounding (1e-6), so PPO needs no extra actor forward.
    """
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, use_cache=True, **extra)
    if return_log_probs:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    if tokenizer.pad_token_id != tokenizer.eos_token_id:
        # A sampled pad token would read as padding and punch a hole in the response.
        kwargs["suppress_tokens"] = [tokenizer.pad_token_id]
    if do_sample:
        kwargs.update(top_k=top_k, top_p=top_p, temperature=temperature)
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    if not return_log_probs:
        return out
    actions = out.sequences[:, input_ids.shape[1]:]
    logits = torch.stack(out.logits, dim=1)  # (B, A, V): raw, before any logits processor
    return out.sequences, torch.log_softmax(logits.float(), dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
