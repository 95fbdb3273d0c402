"""The CPU fast path (coati/models/fast): where it runs, and its lean forward against transformers' own on
every layout it claims to cover."""

from __future__ import annotations

import pytest
import torch

from coati.models import fast
from coati.models.fast import lean
from coati.models.forward import causal_lm_logits, position_ids_from_mask
from coati.models.loading import enable_checkpointing
from coati.models.registry import tiny_config
from coati.models.sampling import sample
from coati.models.value import ValueModel

LAYOUTS = {
    "gpt2": {},
    "gpt2-inverse-layer-scaling": {"scale_attn_by_inverse_layer_idx": True},
    "gptneox": {},
    "gptneox-sequential-residual": {"use_parallel_residual": False},
    "gptneox-full-rotary": {"rotary_pct": 1.0},
    "gptneox-quarter-rotary": {"rotary_pct": 0.25},
}


def build(layout: str, tokenizer, cls=None, seed: int = 0):
    from transformers import AutoModelForCausalLM

    family = layout.split("-")[0]
    config = tiny_config(family, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id,
                         tokenizer.pad_token_id)
    for key, value in LAYOUTS[layout].items():
        setattr(config, key, value)
    if "rotary_pct" in LAYOUTS[layout]:  # transformers 5 reads the rotary share from rope_parameters
        config.rope_parameters = {**config.rope_parameters, "partial_rotary_factor": LAYOUTS[layout]["rotary_pct"]}
    torch.manual_seed(seed)
    return (cls or AutoModelForCausalLM).from_config(config).eval()


def batch(seed: int = 1, b: int = 3, t: int = 12):
    """Left-padded ids and mask: row 0 has 4 pads, row 2 has 1, row 1 none."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 400, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :1] = 0
    return ids, mask


def hf_logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_logits_and_gradients_equal_transformers(layout, tokenizer):
    model = build(layout, tokenizer)
    ids, mask = batch()
    real = mask.bool()
    assert lean.plan(model) is not None
    ref = hf_logits(model, ids, mask)
    ref[real].square().mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    out = causal_lm_logits(model, ids, mask)  # takes the lean path
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)
    out[real].square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], atol=1e-6, rtol=1e-4, msg=name)

    # From column 7 on: the last layer's MLP runs on those positions only, with the same result.
    with torch.no_grad():
        torch.testing.assert_close(causal_lm_logits(model, ids, mask, 7), ref[:, 7:].detach(), atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("layout", ["gpt2", "gptneox"])
def test_bf16_logits_equal_transformers(layout, tokenizer):
    """GPU runs train in bf16: the rotary tables are cast as transformers casts them, so the roundings agree."""
    model = build(layout, tokenizer).to(torch.bfloat16)
    ids, mask = batch()
    with torch.no_grad():
        out, ref = causal_lm_logits(model, ids, mask), hf_logits(model, ids, mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out[mask.bool()], ref[mask.bool()], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("layout", ["gpt2", "gptneox", "gptneox-sequential-residual"])
def test_cached_steps_equal_one_full_forward(layout, tokenizer):
    model = build(layout, tokenizer)
    ids, mask = batch(t=10)
    plan = lean.plan(model)
    pos = position_ids_from_mask(mask)
    cache, hidden = lean.KVCache(), []
    with torch.no_grad():
        hidden.append(lean.forward(plan, ids[:, :6], pos[:, :6], mask, cache=cache, start=0, cache_len=10))
        for j in range(6, 10):
            hidden.append(lean.forward(plan, ids[:, j:j + 1], pos[:, j:j + 1], mask, cache=cache, start=j,
                                       cache_len=10))
        logits = model.lm_head(torch.cat(hidden, dim=1))
        ref = hf_logits(model, ids, mask)
    torch.testing.assert_close(logits[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["gpt2", "gptneox"])
def test_values_and_scores_equal_transformers(layout, tokenizer, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    hf = build(layout, tokenizer, AutoModelForSequenceClassification)
    hf.config.pad_token_id = tokenizer.pad_token_id
    model = ValueModel(hf)
    ids, mask = batch()
    mask[1, -2:] = 0  # a right-padded row too: its score is read two columns from the end
    with torch.no_grad():
        values, scores = model(ids, mask, per_token=True, first=5), model(ids, mask)
        monkeypatch.setattr(fast, "plan", lambda model, device=None: None)
        ref_values, ref_scores = model(ids, mask, per_token=True), model(ids, mask)
    assert values.shape == (3, 7)
    real = mask[:, 5:].bool()  # padding positions hold no value anyone reads
    torch.testing.assert_close(values[real], ref_values[:, 5:][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores, ref_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "gptneox"])
def test_greedy_decoding_equals_transformers_forward(family, tokenizer, monkeypatch):
    model = build(family, tokenizer)
    ids, mask = batch(t=8)
    out, log_probs = sample(model, ids, mask, tokenizer, max_new_tokens=6, do_sample=False, return_log_probs=True)
    monkeypatch.setattr(fast, "plan", lambda model, device=None: None)  # the loop on transformers' forward
    ref, ref_log_probs = sample(model, ids, mask, tokenizer, max_new_tokens=6, do_sample=False,
                                return_log_probs=True)
    assert torch.equal(out, ref)
    torch.testing.assert_close(log_probs, ref_log_probs, atol=1e-5, rtol=1e-5)


def test_rotary_function_gradient():
    qkv = torch.randn(2, 3, 2, 3, 8, dtype=torch.double, requires_grad=True)
    cos, sin = torch.randn(2, 3, 1, 1, 4, dtype=torch.double), torch.randn(2, 3, 1, 1, 4, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda x: lean._RotaryQK.apply(x, cos, sin), (qkv,))
    out = lean._RotaryQK.apply(qkv, cos, sin)
    assert torch.equal(out[..., 2, :], qkv[..., 2, :])  # v passes through
    assert torch.equal(out[..., 4:], qkv[..., 4:])  # so do the dims past the rotary ones


def test_models_it_cannot_run_exactly_keep_transformers_forward(tokenizer):
    model = build("gptneox", tokenizer)
    assert lean.plan(model) is not None
    assert lean.plan(torch.nn.ModuleDict({"m": model})) is None  # a wrapper (DDP, peft) must run its forward

    dropping = build("gpt2", tokenizer)
    dropping.config.resid_pdrop = 0.1
    dropping.transformer.h[0].mlp.dropout.p = 0.1
    assert lean.plan(dropping) is not None  # eval mode: dropout is off
    assert lean.plan(dropping.train()) is None

    enable_checkpointing(model)  # as --grad_checkpoint does
    model.train()
    assert lean.plan(model) is None
    with torch.no_grad():  # no backward, nothing to recompute
        assert lean.plan(model) is not None

    attention_dropout = build("gptneox", tokenizer)
    attention_dropout.config.attention_dropout = 0.1  # applied inside sdpa, not by a Dropout module
    assert lean.plan(attention_dropout) is not None
    assert lean.plan(attention_dropout.train()) is None

    hooked = build("gptneox", tokenizer)
    hooked.gpt_neox.layers[0].register_forward_pre_hook(lambda m, a: None)  # how FSDP gathers a layer
    assert lean.plan(hooked) is None

    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer), tokenizer.bos_token_id,
                                                         tokenizer.eos_token_id, tokenizer.pad_token_id))
    assert lean.plan(llama) is None


def test_a_ddp_actor_runs_the_lean_forward_through_ddps_own_forward(tokenizer, tmp_path, monkeypatch):
    """DDP readies its gradient all-reduce in its forward, so the lean pass runs inside that call (one rank of
    gloo here; tests/test_strategies.py checks two ranks against one process)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    ids, mask = batch()
    plain = build("gptneox", tokenizer)
    ref = causal_lm_logits(plain, ids, mask, 5)
    ref.square().mean().backward()

    calls = {"ddp": 0, "lean": 0}
    ddp_forward, lean_forward = DistributedDataParallel.forward, lean.forward

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(DistributedDataParallel, "forward", count("ddp", ddp_forward))
    monkeypatch.setattr(lean, "forward", count("lean", lean_forward))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        model = build("gptneox", tokenizer)
        ddp = DistributedDataParallel(model)
        logits = causal_lm_logits(ddp, ids, mask, 5)
        logits.square().mean().backward()
    finally:
        dist.destroy_process_group()
    assert calls == {"ddp": 1, "lean": 1}
    assert "forward" not in model.__dict__  # the class's forward is back
    assert logits.equal(ref)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_the_fast_path_runs_on_the_cpu_only(tokenizer):
    """Decided from the model and a device, allocating nothing there: on CUDA (or any device but the CPU)
    transformers' forward runs, with its SDPA / flash attention kernels."""
    model = build("gptneox", tokenizer)
    assert isinstance(fast.plan(model), lean.Plan)  # the device of its parameters: the CPU
    assert isinstance(fast.plan(model, torch.device("cpu")), lean.Plan)
    for device in (torch.device("cuda"), torch.device("cuda", 1), torch.device("meta")):
        assert fast.plan(model, device) is None, device

    on_meta = build("gpt2", tokenizer).to("meta")
    assert fast.plan(on_meta) is None  # its parameters are on the meta device
    assert isinstance(fast.plan(on_meta, torch.device("cpu")), lean.Plan)  # its structure alone allows it
    wrapper = torch.nn.ModuleDict({"m": model})
    assert fast.plan(wrapper, torch.device("cpu")) is None  # a wrapper (peft) must run its forward


@pytest.mark.parametrize("family", ["gpt2", "gptneox"])
def test_on_the_cpu_every_caller_takes_the_fast_path_and_forced_off_gives_the_same_outputs(family, tokenizer,
                                                                                           monkeypatch):
    """Decoding, the actor's logits and the critic's values and scores each run the lean forward (counted by
    the ids each call is given); with the decision forced off, none does and the outputs agree."""
    from transformers import AutoModelForSequenceClassification

    actor = build(family, tokenizer)
    scorer = build(family, tokenizer, AutoModelForSequenceClassification)
    scorer.config.pad_token_id = tokenizer.pad_token_id
    critic = ValueModel(scorer)
    ids, mask = batch(t=8)
    calls, lean_forward = [], lean.forward

    def counted(p, input_ids, *args, **kwargs):
        calls.append(tuple(input_ids.shape))
        return lean_forward(p, input_ids, *args, **kwargs)

    monkeypatch.setattr(lean, "forward", counted)

    def run():
        with torch.no_grad():
            # EOS barred for all 4 tokens: the prefill and 3 one-token steps, whatever the weights
            seqs, log_probs = sample(actor, ids, mask, tokenizer, max_new_tokens=4, min_new_tokens=4,
                                     do_sample=False, return_log_probs=True)
            full = torch.cat([mask, torch.ones_like(seqs[:, 8:])], dim=1)
            logits = causal_lm_logits(actor, seqs, full, 7)
            values = critic(seqs, full, per_token=True, first=7)
            scores = critic(seqs, full)
        return seqs, log_probs, logits, values, scores

    ours = run()
    assert calls == [(3, 8), (3, 1), (3, 1), (3, 1), (3, 12), (3, 12), (3, 12)]
    calls.clear()
    monkeypatch.setattr(fast, "plan", lambda model, device=None: None)
    theirs = run()
    assert calls == []
    assert ours[0].shape == (3, 12) and ours[0].equal(theirs[0])
    assert ours[2].shape[:2] == ours[3].shape == (3, 5) and ours[4].shape == (3,)
    for a, b in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
