"""Sampling continuations of left-padded prompts with a KV cache, and the rules a token is drawn by.

The forward passes themselves live in coati/models/forward.py (and, on the CPU, coati/models/fast); this
module adds the decoding loop, the logits warping and the draw.
"""

from __future__ import annotations

import torch

from coati.errors import NonFiniteError
from coati.models import fast
from coati.models.forward import (
    cache_argument,
    forward_params,
    position_ids_from_mask,
    repeat_cache_rows,
    takes_position_ids,
)
from coati.models.unwrap import innermost


def warp_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """(B, V) logits -> (B, V) scores to sample from: divided by the temperature, then everything outside the top k
    and outside the smallest set whose probability reaches top_p set to -inf (at least one token always stays).
    top_k=0 and top_p=1.0 switch those off. The same rules, in the same order, as transformers' warpers."""
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ascending, order = torch.sort(logits, dim=-1)
        drop = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[:, -1] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def draw(probs: torch.Tensor) -> torch.Tensor:
    """(B, V) probabilities -> (B,) one token per row, token j with probability probs[:, j] / the row's sum.

    One uniform number per row against the cumulative distribution: the first token whose running sum reaches it.
    `torch.multinomial` spends one exponential draw per vocabulary entry instead, which costs more the larger
    the vocabulary (see benchmarks/README.md). A token of probability 0 (cut by top-k/top-p, or barred) is
    never drawn: its running sum equals its predecessor's, so it is never the first to reach a threshold
    above 0.
    """
    cdf = probs.cumsum(-1)
    total = cdf[:, -1:]
    threshold = (1 - torch.rand_like(total)) * total  # uniform on (0, total]
    return torch.searchsorted(cdf, threshold).squeeze(-1)


def check_finite(logits: torch.Tensor, step: int) -> None:
    """Raise NonFiniteError if next-token logits hold NaN or +inf (-inf is a legitimate "never").

    Diverged weights or an fp16 overflow: drawing from NaN would feed arbitrary ids to the next step.
    """
    if not bool((logits < float("inf")).all()):
        raise NonFiniteError(f"the model's next-token logits are not finite at decoding step {step}; its weights "
                             "have diverged or overflowed: use fp32 or bf16, lower the learning rate, or resume "
                             "from an earlier checkpoint")


class _FiniteLogits:
    """A `generate` logits processor that applies check_finite at every step. Custom processors run before
    the sampling warpers, so it sees the model's logits with only the pad / EOS bans applied."""

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        check_finite(scores, input_ids.shape[1] - self.prompt_len + 1)
        return scores


def _decode_plan(model: torch.nn.Module):
    """A function that runs coati's decoding loop's forwards for this model, or None where the loop cannot drive
    it (transformers 4, the ColossalAI pin, keeps `generate`).

    The function is `start(total) -> (step, repeat_rows)` for a cache `total` slots long: `step(ids, at,
    position_ids, mask)` feeds ids (R, T) into slots at..at+T-1 and returns the next-token logits (R, V), mask
    (R, total) marking the real key slots of those R rows; `repeat_rows(g)` copies each row of the cache g times,
    consecutively (a prompt prefilled once for its g answers). GPT-2 and GPT-NeoX on the CPU run on the fast path
    (coati/models/fast); other models on transformers' model with a static cache (transformers 5 renamed
    `past_key_values` to `cache` and later let the cache track its own write position, with no `cache_position`
    argument; both spellings are followed).
    """
    from coati.models.loading import transformers_major

    if transformers_major() < 5:
        return None
    inner = innermost(model)  # peft injects LoRA layers into this module, FSDP2 hooks it in place
    plan = fast.plan(inner)
    if plan is not None:
        return fast.decoder(plan, inner)

    params = forward_params(type(inner))
    name = cache_argument(inner)
    if name is None or "logits_to_keep" not in params:
        return None
    from transformers import StaticCache

    takes_positions = takes_position_ids(inner)  # BLOOM (ALiBi) takes none

    def start_hf(total):
        cache = StaticCache(config=inner.config, max_cache_len=total)

        def step(ids, at, position_ids, mask):
            kwargs = {name: cache, **({"position_ids": position_ids} if takes_positions else {})}
            if "cache_position" in params:
                kwargs["cache_position"] = torch.arange(at, at + ids.shape[1], device=ids.device)
            return inner(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1, **kwargs).logits[:, -1]
        return step, lambda g: repeat_cache_rows(cache, g)
    return start_hf


def _wrapper_plan(model: torch.nn.Module):
    """The decoding loop's `start(total) -> (step, repeat_rows)` (see `_decode_plan`) that calls `model` itself,
    wrapper and all, at every step, on any transformers version.

    For wrappers that hold the weights only inside their own forward: ColossalAI's Gemini gathers the parameter
    chunks in its wrapper's forward and frees them after, so the inner modules are empty between calls, and
    neither the CPU fast path, nor packed weights, nor the inner model's forward may be used. The cache is
    whatever the model returns (a Cache object, or transformers 4's tuples), fed back the next step; the mask
    is cut to the keys written so far."""
    inner = innermost(model)
    params = forward_params(type(inner))
    name = cache_argument(inner) or "past_key_values"
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    takes_positions = takes_position_ids(inner)

    def start(total):
        state = {name: None}

        def step(ids, at, position_ids, mask):
            kwargs = {**state, **extra, **({"position_ids": position_ids} if takes_positions else {})}
            out = model(input_ids=ids, attention_mask=mask[:, : at + ids.shape[1]], use_cache=True, **kwargs)
            state[name] = getattr(out, name)
            return out.logits[:, -1]

        def repeat_rows(g):
            state[name] = repeat_cache_rows(state[name], g)
        return step, repeat_rows
    return start


@torch.no_grad()
def _decode(start, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            eos: int, pad: int, max_new_tokens: int, min_new_tokens: int, do_sample: bool, top_k: int,
            top_p: float, temperature: float, synced_gpus: bool,
            repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill, then one forward per token into a preallocated KV cache. Returns (N, P + A) ids and the (N, A)
    log-probabilities of the chosen tokens under the raw distribution, N = B * repeats: each prompt is prefilled
    once and answered `repeats` times.

    Why not `generate`: for the small batches of a rollout, each decoding step is a handful of small matmuls,
    and generate's per-step bookkeeping (processor and stopping-criteria objects, a cache that grows by
    concatenation, model-input preparation) is a visible share of it; this loop does only what PPO needs
    (see benchmarks/README.md).
    """
    p = input_ids.shape[1]
    n = input_ids.shape[0] * repeats
    # The mask spans the whole cache from the start (responses are all real tokens until a row stops, and
    # rows that stopped are cut by the action mask later); slots not yet written are hidden by causality.
    mask = torch.cat([attention_mask.repeat_interleave(repeats, 0), attention_mask.new_ones(n, max_new_tokens)],
                     dim=1)
    positions = position_ids_from_mask(attention_mask)
    next_pos = (positions[:, -1:] + 1).repeat_interleave(repeats, 0)  # left padding: the last prompt token is real
    step, repeat_rows = start(p + max_new_tokens)
    logits = step(input_ids, 0, positions, mask[::repeats])  # each prompt prefilled once
    if repeats > 1:  # then its cache rows and next-token logits copied to its answers
        repeat_rows(repeats)
        logits = logits.repeat_interleave(repeats, 0)
    alive = torch.ones(n, dtype=torch.bool, device=input_ids.device)
    tokens, log_probs = [], []
    for t in range(max_new_tokens):
        logits = logits.float()
        check_finite(logits, t + 1)
        scores = logits.clone()
        if pad != eos:
            scores[:, pad] = float("-inf")  # a sampled pad would read as padding and punch a hole in the response
        if t < min_new_tokens:
            scores[:, eos] = float("-inf")
        if do_sample:
            nxt = draw(warp_logits(scores, top_k, top_p, temperature).softmax(-1))
        else:
            nxt = scores.argmax(-1)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad))
        tokens.append(nxt)
        log_probs.append(torch.log_softmax(logits, dim=-1).gather(-1, nxt[:, None]).squeeze(-1))
        alive &= nxt != eos
        going = alive.any()
        if synced_gpus and torch.distributed.is_initialized():
            # FSDP/Gemini gather each layer collectively: every rank steps until the last one is done
            going = going.to(torch.int32)
            torch.distributed.all_reduce(going, op=torch.distributed.ReduceOp.MAX)
        if t == max_new_tokens - 1 or not bool(going):
            break
        logits = step(nxt[:, None], p + t, next_pos + t, mask)
    return torch.cat([input_ids.repeat_interleave(repeats, 0), torch.stack(tokens, dim=1)], dim=1), \
        torch.stack(log_probs, dim=1)


@torch.no_grad()
def sample(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer,
           max_new_tokens: int, do_sample: bool = True, top_k: int = 50, top_p: float = 1.0,
           temperature: float = 1.0, return_log_probs: bool = False, min_new_tokens: int = 0,
           synced_gpus: bool = False, call_wrapper: bool = False, repeats: int = 1):
    """Sample continuations of left-padded prompts with the KV cache. Returns (B, P + A) ids.

    repeats: answer each prompt that many times (GRPO's group): (B * repeats, P + A) ids, a prompt's answers
    consecutive, as if the prompts had been given repeated; each prompt is prefilled once and its KV cache rows
    copied to its answers.

    Tokens come from the model's own distribution shaped only by temperature, top-k and top-p; the pad token is
    never sampled, EOS not before min_new_tokens, and a row that has stopped is filled with pad. A checkpoint's
    generation_config (repetition penalty and the like) is not applied: PPO's ratios are between the policy's
    own probabilities.

    return_log_probs: also return the (B, A) log-probabilities of the sampled tokens under the model's raw
    distribution (before temperature, top-k and top-p), read off the logits of the decoding steps themselves;
    they equal a fresh forward pass over the sequences to rounding (1e-6), so PPO needs no extra actor forward.

    call_wrapper: call `model` (a strategy's wrapper) at every decoding step, on either transformers stack, and
    never its inner modules directly (`_wrapper_plan`); a strategy asks for it through `generation_kwargs`.
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if call_wrapper:
        seqs, log_probs = _decode(_wrapper_plan(model), input_ids, attention_mask, eos, pad, max_new_tokens,
                                  min_new_tokens, do_sample, top_k, top_p, temperature, synced_gpus, repeats)
        return (seqs, log_probs) if return_log_probs else seqs
    plan = _decode_plan(model)
    # The weights stay fixed while decoding: on the CPU they are packed once for all the steps.
    packed = fast.linears(model, pack_rows=input_ids.shape[0] * repeats)
    if plan is not None:
        with packed:
            seqs, log_probs = _decode(plan, input_ids, attention_mask, eos, pad, max_new_tokens,
                                      min_new_tokens, do_sample, top_k, top_p, temperature, synced_gpus, repeats)
        return (seqs, log_probs) if return_log_probs else seqs

    # transformers 4 (the ColossalAI stack): generate, told the same rules, on the prompts repeated
    from transformers import LogitsProcessorList

    input_ids, attention_mask = input_ids.repeat_interleave(repeats, 0), attention_mask.repeat_interleave(repeats, 0)

    kwargs = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                  eos_token_id=eos, pad_token_id=pad, use_cache=True, synced_gpus=synced_gpus,
                  logits_processor=LogitsProcessorList([_FiniteLogits(input_ids.shape[1])]))
    if return_log_probs:
        kwargs.update(output_logits=True, return_dict_in_generate=True)
    if pad != eos:
        kwargs["suppress_tokens"] = [pad]
    if do_sample:
        kwargs.update(top_k=top_k, top_p=top_p, temperature=temperature)
    with packed:
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    if not return_log_probs:
        return out
    actions = out.sequences[:, input_ids.shape[1]:]
    logits = torch.stack(out.logits, dim=1)  # (B, A, V): raw, before any logits processor
    return out.sequences, torch.log_softmax(logits.float(), dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
