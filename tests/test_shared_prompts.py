"""A rollout of G answers per prompt runs each prompt once where it is scored: the reference's log-probs
(`answer_logits`) and the reward model's scores run the prompt, copy its KV cache rows to the group's answers,
and equal one forward over every row. (Decoding's shared prefill is in tests/test_sampling.py.)"""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_ppo import prompt_batch, rollout_models
from test_sampling import PATHS, PROMPTS, left_padded, load, rows_fed

from coati.models import fast
from coati.models.forward import answer_logits, causal_lm_logits
from coati.models.loading import adapters_disabled, apply_lora
from coati.models.sampling import sample


def grouped_rollout(model, tokenizer, g: int = 3, n: int = 5):
    """(seqs, attention mask, prompt length) of g sampled answers of n tokens to each of PROMPTS; the last
    row's answer is cut after 2 tokens (pad after it, masked), as an answer that met EOS."""
    ids, mask = left_padded(tokenizer, PROMPTS)
    seqs = sample(model, ids, mask, tokenizer, n, min_new_tokens=n, repeats=g)
    answer_mask = torch.ones(seqs.shape[0], n, dtype=mask.dtype)
    answer_mask[-1, 2:] = 0
    seqs[-1, ids.shape[1] + 2:] = tokenizer.pad_token_id
    return seqs, torch.cat([mask.repeat_interleave(g, 0), answer_mask], dim=1), ids.shape[1]


@pytest.mark.parametrize("family,path", PATHS + [("gptneox", "lora")])
def test_reference_logits_run_a_groups_prompt_once(tiny_models, tokenizer, family, path, monkeypatch):
    """Each prompt runs once, then the answers on its copied cache; the logits equal one forward over every row
    at every real answer position (the LoRA actor with its adapters off, the reference under LoRA, included)."""
    if path == "transformers":
        monkeypatch.setattr(fast, "plan", lambda model, device=None: None)
    model = load(tiny_models, tokenizer, family)
    if path == "lora":
        model = apply_lora(model, rank=4, alpha=8, dropout=0.0).eval()
    seqs, attn, p = grouped_rollout(model, tokenizer)
    seen = rows_fed(model)
    with torch.no_grad(), adapters_disabled(model) if path == "lora" else contextlib.nullcontext():
        ours = answer_logits(model, seqs, attn, p, repeats=3)
        assert seen == [(3, p), (9, 4)]  # the prompts once, then each row's answer but its last token
        full = causal_lm_logits(model, seqs, attn, p - 1)[:, :-1]
        assert answer_logits(model, seqs, attn, p).shape == full.shape  # repeats=1: the one full forward
    assert ours.shape == (9, 5, model.get_output_embeddings().weight.shape[0])
    real = attn[:, p - 1:-1].bool()  # positions whose token is real predict the next one
    torch.testing.assert_close(ours[real], full[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family,path", PATHS)
def test_reward_scores_run_a_groups_prompt_once(tiny_models, tokenizer, family, path, monkeypatch):
    """The reward model reads each row's last real token (the cut row's included) after the shared prompt: the
    same scores as one forward over every row."""
    if path == "transformers":
        monkeypatch.setattr(fast, "plan", lambda model, device=None: None)
    actor, _, _, rm = rollout_models(tiny_models(family), family, tokenizer)
    seqs, attn, p = grouped_rollout(actor, tokenizer)
    seen = rows_fed(rm.hf)
    with torch.no_grad():
        ours = rm(seqs, attn, prompt_len=p, repeats=3)
        assert seen == [(3, p), (9, 5)]
        full = rm(seqs, attn)
    assert ours.shape == (9,) and bool((ours[:-1] != ours[-1]).all())
    torch.testing.assert_close(ours, full, atol=1e-5, rtol=1e-5)


def test_a_grpo_rollout_scores_as_one_forward_per_row(tiny_models, tokenizer):
    """The experience maker with G = 3: every sample's reference log-probs and reward-model score equal those of
    a full forward over its own prompt and answer."""
    from coati.experience.maker import ExperienceMaker
    from coati.strategies.base import Strategy

    actor, initial, _, rm = rollout_models(tiny_models("gptneox"), "gptneox", tokenizer)
    with torch.no_grad():  # a reference apart from the actor, so the KL is not 0
        for prm in initial.parameters():
            prm.add_(torch.randn_like(prm) * 0.02)
    maker = ExperienceMaker(strategy=Strategy(), actor=actor, reward_model=rm, initial_model=initial,
                            tokenizer=tokenizer, gen_kwargs={"max_new_tokens": 6}, algo="grpo", num_generations=3)
    _, batch = prompt_batch(tokenizer)
    torch.manual_seed(0)
    samples = maker.make(batch, kl_coef=0.0)
    assert len(samples) == 12
    for s in samples:
        seq = torch.cat([s.prompt, s.response])[None]
        with torch.no_grad():
            logits = causal_lm_logits(initial, seq, torch.ones_like(seq), len(s.prompt) - 1)[:, :-1]
            score = float(rm(seq, torch.ones_like(seq)))
        ref = logits.log_softmax(-1).gather(-1, s.response[None, :, None])[0, :, 0]
        torch.testing.assert_close(s.ref_log_probs, ref, atol=1e-5, rtol=1e-5)
        assert s.score == pytest.approx(score, abs=1e-5)
    assert any(not torch.equal(s.ref_log_probs, s.log_probs) for s in samples)
