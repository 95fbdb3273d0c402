"""A lean forward pass for GPT-2 and GPT-NeoX, run on the Hugging Face model's own modules and weights; part
of the CPU fast path (called through coati/models/fast/__init__.py, which also keeps it off other devices).

Why: transformers' per-module code (mask building, cache objects, output records, a rotary embedding written as
slices and cats whose backward zero-fills and copies full-size gradients) costs time beside the matmuls, and
its forward computes outputs PPO never reads. This path computes the same function with fewer ops, and skips
the last layer's attention output and MLP at positions before `first` (only their keys and values matter to
later positions) and the LM head there. Decoding, scoring and the PPO update all ran faster on the CPU this
way (see benchmarks/README.md).

What stays Hugging Face's: the modules (`layer.mlp`, `attention.dense`, the norms and embeddings are called as
modules, so LoRA layers, hooks on them and the registry's activation swap apply), the parameters, what is
saved. A model this path does not cover exactly (another family, a rope scaling, cross-attention, dropout
while training, gradient checkpointing, sharded parameters, hooks on the modules it bypasses, a DDP or peft
wrapper, transformers 4) gets None from `plan` and keeps transformers' forward. Callers plan the model inside a
DDP wrapper and run this path within DDP's own forward (`coati.models.fast.logits`; the critic's `ValueModel`
is the module DDP calls). tests/test_lean.py compares both paths' logits, values, scores, gradients and
decoded tokens for every layout covered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Plan:
    """How to run one model: its blocks, the family's block function, its embedding (which also returns the
    rotary function, or None) and its final norm."""

    layers: torch.nn.ModuleList
    layer: Callable
    embed: Callable
    final_norm: torch.nn.Module


def _dropout_free(model: torch.nn.Module) -> bool:
    """No dropout will be drawn: this path applies none (PPO keeps its models in eval mode)."""
    if model.training and getattr(model.config, "attention_dropout", 0):  # GPT-NeoX: inside the attention call
        return False
    return not any(isinstance(m, torch.nn.Dropout) and m.p > 0 and m.training for m in model.modules())


def _plain(model: torch.nn.Module, bypassed: list[torch.nn.Module]) -> bool:
    """Plain parameters, and no forward hooks on the modules whose forward this path does not call (the model,
    its blocks, their attention): FSDP and ColossalAI gather or shard weights in such hooks and in tensor
    subclasses. Hooks on the modules it does call (embeddings, norms, linears, MLPs) run as usual."""
    if any(type(p) is not torch.nn.Parameter for p in model.parameters()):
        return False
    return not any(m._forward_pre_hooks or m._forward_hooks for m in bypassed)


def plan(model: torch.nn.Module) -> Plan | None:
    """A Plan for this (innermost) HF model, or None where transformers' forward must run."""
    from transformers import PreTrainedModel

    from coati.models.loading import transformers_major

    if transformers_major() < 5 or not isinstance(model, PreTrainedModel):  # DDP and peft wrappers included
        return None
    config = model.config
    family = _FAMILIES.get(getattr(config, "model_type", None))
    if family is None or not family.covers(config):
        return None
    base = getattr(model, model.base_model_prefix, None)
    checkpointing = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    if base is None or checkpointing and torch.is_grad_enabled():
        return None
    p = family.plan(base)
    bypassed = [model, base, *p.layers, *(getattr(layer, family.attention) for layer in p.layers)]
    if not _dropout_free(model) or not _plain(model, bypassed):
        return None
    return p


# -- the two families ---------------------------------------------------------------------------------------------
def _rotated(qkv, cos, sin):
    """_RotaryQK's forward (below): a copy of qkv with q and k rotated. Called directly where no gradient is
    needed (decoding, scoring), which saves the Function's overhead on each layer of each decoding step."""
    out = qkv.clone()
    x = qkv[..., :2, :cos.shape[-1]]
    x1, x2 = x.chunk(2, dim=-1)
    out[..., :2, :cos.shape[-1]] = x * cos + torch.cat((-x2, x1), dim=-1) * sin
    return out


class _RotaryQK(torch.autograd.Function):
    """GPT-NeoX's rotary embedding applied to the query and key of a fused (B, T, H, 3, D) projection in one op.

    On the first r dims of q and k: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]; the rest (and v)
    pass through. Written as a Function because autograd through transformers' slices and cats zero-fills and
    copies full-size gradients for every slice; here the backward touches the rotated dims only. rotate_half
    is a signed permutation, so its transpose is [y2, -y1].
    """

    @staticmethod
    def forward(ctx, qkv, cos, sin):  # qkv (B, T, H, 3, D); cos, sin (B, T, 1, 1, r)
        ctx.save_for_backward(cos, sin)
        return _rotated(qkv, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        out = grad.clone()
        g = grad[..., :2, :cos.shape[-1]]
        s1, s2 = (g * sin).chunk(2, dim=-1)
        out[..., :2, :cos.shape[-1]] = g * cos + torch.cat((s2, -s1), dim=-1)
        return out, None, None


class _NeoX:
    attention = "attention"

    @staticmethod
    def covers(config) -> bool:
        rope = getattr(config, "rope_parameters", None) or {}
        return rope.get("rope_type", "default") == "default"

    @staticmethod
    def plan(base) -> Plan:
        rotary = base.rotary_emb

        def embed(ids, pos):
            x = base.emb_dropout(base.embed_in(ids))
            freqs = pos[..., None].float() * rotary.inv_freq.to(device=x.device, dtype=torch.float)
            emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, None]  # (B, T, 1, 1, r)
            cos = (emb.cos() * rotary.attention_scaling).to(x.dtype)
            sin = (emb.sin() * rotary.attention_scaling).to(x.dtype)
            return x, lambda qkv: (_RotaryQK.apply(qkv, cos, sin) if torch.is_grad_enabled() and qkv.requires_grad
                                   else _rotated(qkv, cos, sin))

        return Plan(base.layers, _neox_layer, embed, base.final_layer_norm)


def _neox_layer(layer, x, attend, rope, first):
    """One GPTNeoXLayer on x (B, T, hidden); returns positions first..T-1. attend(q, k, v, scale) -> (B, Tq, hidden)."""
    att = layer.attention
    b, t, _ = x.shape
    qkv = rope(att.query_key_value(layer.input_layernorm(x)).view(b, t, -1, 3, att.head_size))
    q, k, v = qkv.transpose(1, 2).unbind(dim=3)  # (B, H, T, D) each
    o = att.dense(attend(q[:, :, first:], k, v, att.scaling))
    x = x[:, first:]
    if layer.use_parallel_residual:
        return layer.mlp(layer.post_attention_layernorm(x)) + o + x
    x = o + x
    return layer.mlp(layer.post_attention_layernorm(x)) + x


class _GPT2:
    attention = "attn"

    @staticmethod
    def covers(config) -> bool:
        return not getattr(config, "add_cross_attention", False)

    @staticmethod
    def plan(base) -> Plan:
        def embed(ids, pos):
            return base.drop(base.wte(ids) + base.wpe(pos)), None

        return Plan(base.h, _gpt2_layer, embed, base.ln_f)


def _gpt2_layer(layer, x, attend, rope, first):
    """One GPT2Block, as _neox_layer (GPT-2 has absolute positions, added at the embedding: rope is None)."""
    att = layer.attn
    b, t, _ = x.shape
    q, k, v = (s.view(b, t, -1, att.head_dim).transpose(1, 2)
               for s in att.c_attn(layer.ln_1(x)).split(att.split_size, dim=2))
    o = att.resid_dropout(att.c_proj(attend(q[:, :, first:], k, v, att.scaling)))
    x = o + x[:, first:]
    return x + layer.mlp(layer.ln_2(x))


_FAMILIES = {"gpt_neox": _NeoX, "gpt2": _GPT2}


# -- the forward pass ---------------------------------------------------------------------------------------------
class KVCache:
    """Preallocated keys and values, (B, H, L, D) per layer, filled left to right."""

    def __init__(self):
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def write(self, i: int, k: torch.Tensor, v: torch.Tensor, start: int, length: int):
        if i == len(self.layers):
            shape = (*k.shape[:2], length, k.shape[-1])
            self.layers.append((k.new_zeros(shape), v.new_zeros(shape)))
        keys, values = self.layers[i]
        keys[:, :, start:start + k.shape[2]] = k
        values[:, :, start:start + v.shape[2]] = v
        return keys, values

    def repeat_rows(self, repeats: int) -> None:
        """Each row of every layer copied `repeats` times, consecutively: a prompt prefilled once becomes the
        cache of the `repeats` answers sampled or scored after it."""
        self.layers = [(k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in self.layers]


def attention_mask_4d(key_mask: torch.Tensor, q_start: int, q_len: int) -> torch.Tensor:
    """(B, S) real-token mask of the keys -> (B, 1, q_len, S) bool: query i (slot q_start + i) sees key j when j is
    a real token at or before it. A query always sees its own slot, so a padding query's row is never empty
    (an empty row gives NaN in softmax, and NaN times a zero gradient is still NaN)."""
    s = key_mask.shape[1]
    slots = torch.arange(s, device=key_mask.device)
    q_slots = torch.arange(q_start, q_start + q_len, device=key_mask.device)
    causal = slots[None, :] <= q_slots[:, None]  # (q, S)
    allowed = causal[None] & key_mask.bool()[:, None, :]
    allowed |= slots[None, None, :] == q_slots[None, :, None]
    return allowed[:, None]


def forward(p: Plan, input_ids: torch.Tensor, position_ids: torch.Tensor, key_mask: torch.Tensor,
            first: int = 0, cache: KVCache | None = None, start: int = 0, cache_len: int = 0) -> torch.Tensor:
    """Hidden states after the final norm for positions first..T-1 of input_ids (B, T): (B, T - first, hidden).

    key_mask: (B, S) real-token mask of the key slots, S >= start + T (the first start + T are read). With a
    cache, input_ids fill slots start..start+T-1 of a cache cache_len long and attend to every slot before.
    """
    x, rope = p.embed(input_ids, position_ids)
    t = input_ids.shape[1]
    keys = key_mask[:, :start + t]
    # No padding and no cache: causal attention needs no mask (sdpa's is_causal). Otherwise one mask for all
    # layers; the last layer's queries start at `first`, so it reads the mask's rows from there.
    mask = attention_mask_4d(keys, start, t) if cache is not None or not bool(keys.all()) else None
    last = len(p.layers) - 1
    for i, layer in enumerate(p.layers):
        cut = first if i == last else 0

        def attend(q, k, v, scale, i=i, cut=cut):
            if cache is not None:
                k, v = cache.write(i, k, v, start, cache_len)
                k, v = k[:, :, :start + t], v[:, :, :start + t]
            m = mask
            if m is None and cut:
                m = attention_mask_4d(keys, start, t)
            if m is not None:
                m = m[:, :, cut:]
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale, is_causal=m is None and t > 1)
            return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)

        x = p.layer(layer, x, attend, rope, cut)
    return p.final_norm(x)
