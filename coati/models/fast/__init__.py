"""coati's CPU fast path, behind one entry point: the rest of coati/models calls only the names below.

Two parts, used where they were measured faster, the CPU (see benchmarks/README.md):
- `lean.py`, a forward pass for GPT-2 and GPT-NeoX over the HF model's own modules and weights: the same
  function as transformers' (tests/test_lean.py), with fewer ops, skipping work PPO never reads;
- `onednn.py`, no-grad linear layers on oneDNN, with weights packed once while a model decodes (results differ
  from MKL's in the last bits, as between any two BLAS libraries).

Off the CPU (CUDA, or any other device) `plan` answers None and callers run Hugging Face's forward, whose SDPA
and flash attention kernels are the fast path there; `linears` leaves weights that are not on the CPU alone.
A caller asks `plan` once, then hands the answer to `hidden_states`, `logits`, `shared_prompt_hidden` or
`decoder`, and wraps no-grad forwards in `linears`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from coati.models.fast import lean, onednn


def _without_ddp(model: torch.nn.Module) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def plan(model: torch.nn.Module, device: torch.device | None = None) -> lean.Plan | None:
    """How the fast path runs `model` (an HF model, or DDP around one) on `device`, by default the device of
    its parameters; None where Hugging Face's forward must run: off the CPU, or a model the lean forward does
    not compute exactly (another family, a peft wrapper, sharded parameters, dropout while training: see
    `lean.plan`). Decided from the model's structure and the device alone: nothing is allocated."""
    inner = _without_ddp(model)
    if device is None:
        first = next(inner.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    if torch.device(device).type != "cpu":
        return None
    return lean.plan(inner)


def hidden_states(p: lean.Plan, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  first: int = 0) -> torch.Tensor:
    """(B, T - first, hidden) states after the final norm at positions first..T-1 of input_ids (B, T), padded
    on either side: positions count real tokens, as `coati.models.forward.position_ids_from_mask` does."""
    from coati.models.forward import position_ids_from_mask

    return lean.forward(p, input_ids, position_ids_from_mask(attention_mask), attention_mask, first)


def logits(model: torch.nn.Module, p: lean.Plan, input_ids: torch.Tensor, attention_mask: torch.Tensor,
           first: int = 0) -> torch.Tensor:
    """(B, T - first, V) logits at positions first..T-1 of the causal LM `model` (or DDP around it), planned
    as p: the LM head and the last layer's MLP run on those positions only."""
    inner = _without_ddp(model)

    def fast_logits(input_ids, attention_mask):
        return inner.get_output_embeddings()(hidden_states(p, input_ids, attention_mask, first))

    if inner is model:
        return fast_logits(input_ids, attention_mask)
    # DDP's forward must run (it readies the gradient all-reduce of the backward); it calls the module, whose
    # forward is the fast pass for this one call.
    inner.forward = fast_logits
    try:
        return model(input_ids, attention_mask)
    finally:
        del inner.forward  # the class's forward again


def decoder(p: lean.Plan, model: torch.nn.Module) -> Callable:
    """The decoding loop's `start(total) -> (step, repeat_rows)` (see `coati.models.sampling`) for the causal LM
    `model` planned as p, on a preallocated KV cache of the fast path's own."""
    head = model.get_output_embeddings()

    def start(total):
        cache = lean.KVCache()

        def step(ids, at, position_ids, mask):
            hidden = lean.forward(p, ids, position_ids, mask, first=ids.shape[1] - 1, cache=cache, start=at,
                                  cache_len=total)
            return head(hidden)[:, -1]
        return step, cache.repeat_rows
    return start


def shared_prompt_hidden(p: lean.Plan, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int,
                         repeats: int) -> torch.Tensor:
    """(N, T - P + 1, hidden) final states at positions P-1..T-1 of N = B * repeats sequences (N, T) whose rows
    come in groups of `repeats` sharing their first P columns (a prompt's answers): each prompt runs once, and
    its keys and values are copied to the group's answers."""
    from coati.models.forward import position_ids_from_mask

    positions = position_ids_from_mask(attention_mask)
    cache, t, rows = lean.KVCache(), input_ids.shape[1], slice(None, None, repeats)
    last = lean.forward(p, input_ids[rows, :prompt_len], positions[rows, :prompt_len], attention_mask[rows],
                        first=prompt_len - 1, cache=cache, cache_len=t).repeat_interleave(repeats, 0)
    if t == prompt_len:
        return last
    cache.repeat_rows(repeats)
    rest = lean.forward(p, input_ids[:, prompt_len:], positions[:, prompt_len:], attention_mask, cache=cache,
                        start=prompt_len, cache_len=t)
    return torch.cat([last, rest], dim=1)


def linears(model: torch.nn.Module, pack_rows: int | None = None):
    """A context in which the model's plain fp32 CPU linear layers run on oneDNN under no_grad; with grad
    on, or for weights elsewhere, it changes nothing. pack_rows: the weights stay fixed in the block
    (decoding), so each is packed once, for matmuls of about that many rows (see `onednn.onednn_linears`)."""
    return onednn.onednn_linears(model, pack_rows)
