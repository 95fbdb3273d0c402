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


def cache_argument(model: torch.nn.Module) -> str | None:
    """The name under which the (innermost) model's forward takes and returns its KV cache: `cache` since
    transformers 5 renamed it, `past_key_values` before; None if it takes neither."""
    params = forward_params(type(innermost(model)))
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def repeat_cache_rows(cache, repeats: int):
    """A KV cache with each row copied `repeats` times, consecutively (a prompt prefilled once, then answered or
    scored `repeats` times): transformers 5's cache objects are changed in place, transformers 4's tuples of
    (key, value) per layer are returned anew."""
    if isinstance(cache, tuple):
        return tuple(tuple(t.repeat_interleave(repeats, 0) for t in layer) for layer in cache)
    for layer in getattr(cache, "layers", ()):
        if hasattr(layer, "batch_repeat_interleave"):
            layer.batch_repeat_interleave(repeats)
        else:  # transformers' static layer has no such method; its tensors are all it holds per row
            layer.keys = layer.keys.repeat_interleave(repeats, 0)
            layer.values = layer.values.repeat_interleave(repeats, 0)
            layer.batch_size = layer.keys.shape[0]
    if not hasattr(cache, "layers"):
        cache.batch_repeat_interleave(repeats)  # transformers 4's DynamicCache
    return cache


def shares_prompts(model: torch.nn.Module) -> bool:
    """Whether a group's prompt can run once for this model (`answer_logits`, the reward model's scores): on the
    CPU fast path, or through a transformers 5 model (bare, peft- or FSDP-wrapped) that takes a KV cache. Not
    through DDP, whose forward takes no cache and which wraps only the models being trained."""
    from torch.nn.parallel import DistributedDataParallel

    from coati.models.loading import transformers_major

    if isinstance(model, DistributedDataParallel):
        return False
    if fast.plan(model) is not None:
        return True
    return transformers_major() >= 5 and cache_argument(model) is not None


def shared_prompt_outputs(module: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          prompt_len: int, repeats: int, output: str, **prompt_kwargs) -> torch.Tensor:
    """The `output` field (`logits`, `last_hidden_state`) of a transformers model that takes a KV cache
    (`shares_prompts`), at positions P-1..T-1 of N = B * repeats sequences (N, T) whose rows come in groups of
    `repeats` sharing their first P columns: the prompts run once (with prompt_kwargs), their cache rows are
    copied, then every row's remaining tokens run on it. The fast path's twin is `fast.shared_prompt_hidden`."""
    rows, p, name = slice(None, None, repeats), prompt_len, cache_argument(module)
    positions = position_kwargs(module, attention_mask)
    first = module(input_ids=input_ids[rows, :p], attention_mask=attention_mask[rows, :p], use_cache=True,
                   **prompt_kwargs, **{k: v[rows, :p] for k, v in positions.items()})
    last = getattr(first, output)[:, -1:].repeat_interleave(repeats, 0)
    if input_ids.shape[1] == p:
        return last
    rest = module(input_ids=input_ids[:, p:], attention_mask=attention_mask, use_cache=True,
                  **{name: repeat_cache_rows(getattr(first, name), repeats)},
                  **{k: v[:, p:] for k, v in positions.items()})
    return torch.cat([last, getattr(rest, output)], dim=1)


def answer_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                  repeats: int = 1) -> torch.Tensor:
    """(N, A, V) logits that predict the A = T - P answer tokens of sequences (N, T) whose first P columns are the
    (left-padded) prompt: `causal_lm_logits(model, ids, mask, P - 1)[:, :-1]`, to rounding.

    repeats: the rows come in groups of that many answers to one prompt, as a rollout of G answers per prompt
    makes them. Each group's prompt then runs once, and its keys and values are copied to the group's answers,
    where the model allows it (`shares_prompts`); GRPO's reference scores a G-th of the prompt tokens this way.
    """
    if repeats == 1 or not shares_prompts(model):
        return causal_lm_logits(model, input_ids, attention_mask, prompt_len - 1)[:, :-1]
    ids, mask = input_ids[:, :-1], attention_mask[:, :-1]  # the last token predicts nothing scored
    plan = fast.plan(model)
    with fast.linears(model):
        if plan is not None:
            return model.get_output_embeddings()(fast.shared_prompt_hidden(plan, ids, mask, prompt_len, repeats))
        keep = {"logits_to_keep": 1} if "logits_to_keep" in forward_params(type(innermost(model))) else {}
        return shared_prompt_outputs(model, ids, mask, prompt_len, repeats, "logits", **keep)


class AnswerLogProbs(torch.nn.Module):
    """Wraps a (possibly LoRA-wrapped) HF causal LM for preference training (DPO, IPO, SimPO, ORPO).

    forward(input_ids, attention_mask, labels) -> ((B,) summed log-probs of the answer tokens, (B,) their counts),
    where answer tokens are the labels that are not -100 (labels (B, T) aligned with input_ids, as the DPO
    collator makes them; position t's logits score labels[:, t + 1]). Equal to `coati.losses.sequence_logps` of
    the full logits, but the LM head runs only at the positions that predict an answer token: a pair batch is
    mostly prompt and padding, and the head over the whole vocabulary is the widest matmul of the model. Going
    through forward keeps DDP's and FSDP's hooks in play; `.hf` is what gets saved.
    """

    def __init__(self, hf_model: torch.nn.Module, ignore_index: int = -100):
        super().__init__()
        self.hf = hf_model
        self.ignore_index = ignore_index

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hf = innermost(self.hf)
        targets = labels[:, 1:]
        scored = targets != self.ignore_index  # (B, T - 1): position t predicts an answer token
        # positions before the first scored one in any row need no last-layer MLP on the fast path either
        first = int(scored.any(0).float().argmax()) if bool(scored.any()) else 0
        plan = fast.plan(self.hf)  # None off the CPU, or for a peft wrapper (its layers must run as written)
        with fast.linears(self.hf):
            if plan is not None:
                hidden = fast.hidden_states(plan, input_ids, attention_mask, first)
            else:
                first = 0
                backbone = getattr(hf, hf.base_model_prefix)
                hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                                  **position_kwargs(backbone, attention_mask)).last_hidden_state
            rows, cols = scored[:, first:].nonzero(as_tuple=True)
            logits = hf.get_output_embeddings()(hidden[rows, cols]).float()  # (N, V), N answer tokens
        token_logps = torch.log_softmax(logits, dim=-1).gather(
            -1, targets[:, first:][rows, cols].unsqueeze(-1)).squeeze(-1)
        sums = torch.zeros(input_ids.shape[0], dtype=token_logps.dtype, device=token_logps.device)
        return sums.index_add(0, rows, token_logps), scored.sum(dim=-1)
