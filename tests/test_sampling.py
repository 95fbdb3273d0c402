"""coati's decoding loop: the same tokens as transformers' generate, its rules for EOS / pad / min_new_tokens,
and top-k / top-p / temperature as transformers applies them."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES

from coati.errors import NonFiniteError
from coati.models import fast, sampling
from coati.models.forward import causal_lm_logits
from coati.models.sampling import _decode_plan, draw, sample, warp_logits

PROMPTS = ["안녕하세요 오늘은", "주말에 어디", "공부는 어떻게 해요? 정말 궁금해요 알려주세요"]


def left_padded(tokenizer, texts):
    ids = [tokenizer(t)["input_ids"] for t in texts]
    p = max(map(len, ids))
    input_ids = torch.tensor([[tokenizer.pad_token_id] * (p - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (p - len(x)) + [1] * len(x) for x in ids])
    return input_ids, mask


def load(tiny_models, tokenizer, family):
    from coati.models.loading import load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models(family)
    return load_causal_lm(path, resolve_family(family, path), tokenizer).eval()


def generate_greedy(model, tokenizer, ids, mask, n: int) -> torch.Tensor:
    """transformers' own greedy decoding under the same rules (pad suppressed, stop at EOS): the reference."""
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                          suppress_tokens=[tokenizer.pad_token_id])


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_generate_under_left_padding(tiny_models, tokenizer, family):
    model = load(tiny_models, tokenizer, family)
    assert _decode_plan(model) is not None  # transformers 5: coati's loop, not generate, runs here
    ids, mask = left_padded(tokenizer, PROMPTS)
    ours = sample(model, ids, mask, tokenizer, 12, do_sample=False)
    assert ours.tolist() == generate_greedy(model, tokenizer, ids, mask, 12).tolist()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sampled_log_probs_equal_a_fresh_forward(tiny_models, tokenizer, family):
    model = load(tiny_models, tokenizer, family)
    ids, mask = left_padded(tokenizer, PROMPTS)
    torch.manual_seed(0)
    seqs, lp = sample(model, ids, mask, tokenizer, 10, top_k=20, top_p=0.9, temperature=0.7, min_new_tokens=10,
                      return_log_probs=True)
    p = ids.shape[1]
    assert seqs.shape == (3, p + 10) and lp.shape == (3, 10)
    assert seqs[:, :p].tolist() == ids.tolist()
    attn = torch.cat([mask, torch.ones_like(seqs[:, p:])], dim=1)
    with torch.no_grad():  # raw log-probs (before temperature / top-k / top-p) of the sampled tokens
        fresh = causal_lm_logits(model, seqs, attn, p - 1)[:, :-1].log_softmax(-1)
    torch.testing.assert_close(fresh.gather(-1, seqs[:, p:, None]).squeeze(-1), lp, atol=1e-5, rtol=1e-5)


def test_lora_actor_decodes_like_generate(tiny_models, tokenizer):
    from coati.models.loading import apply_lora

    model = apply_lora(load(tiny_models, tokenizer, "gptneox"), rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # LoRA's B starts at zero; make the adapter change the outputs
        for name, prm in model.named_parameters():
            if "lora_B" in name:
                prm.normal_(0, 0.5)
    assert _decode_plan(model) is not None
    ids, mask = left_padded(tokenizer, PROMPTS)
    ours = sample(model.eval(), ids, mask, tokenizer, 8, do_sample=False)
    assert ours.tolist() == generate_greedy(model, tokenizer, ids, mask, 8).tolist()


def favour(model, token: int):
    """Make `token` the overwhelming choice of the model's raw distribution at every position."""
    def hook(module, inputs, logits):
        logits = logits.clone()
        logits[..., token] += 1e4
        return logits

    model.get_output_embeddings().register_forward_hook(hook)
    return model


def test_eos_waits_for_min_new_tokens_then_the_batch_stops(tiny_models, tokenizer):
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    model = favour(load(tiny_models, tokenizer, "opt"), eos)
    ids, mask = left_padded(tokenizer, PROMPTS)
    seqs, lp = sample(model, ids, mask, tokenizer, 6, min_new_tokens=2, return_log_probs=True)
    # EOS is barred for two steps, then taken at once by every row, and decoding ends there
    assert seqs.shape == (3, ids.shape[1] + 3) and lp.shape == (3, 3)
    resp = seqs[:, ids.shape[1]:]
    assert (resp[:, 2] == eos).all() and (resp[:, :2] != eos).all() and (resp[:, :2] != pad).all()
    assert (lp[:, 2] > -1e-3).all()  # EOS had all the probability mass


def test_a_stopped_row_is_filled_with_pad_while_others_go_on(tiny_models, tokenizer):
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    model = load(tiny_models, tokenizer, "gpt2")
    ids, mask = left_padded(tokenizer, PROMPTS)

    def first_row_ends(module, inputs, logits):  # the first row says EOS at once; the others never do
        logits = logits.clone()
        logits[0, :, eos] += 1e4
        logits[1:, :, eos] -= 1e4
        return logits

    model.get_output_embeddings().register_forward_hook(first_row_ends)
    seqs = sample(model, ids, mask, tokenizer, 5, do_sample=False)
    resp = seqs[:, ids.shape[1]:].tolist()
    assert resp[0][0] == eos and resp[0][1:] == [pad] * (len(resp[0]) - 1)
    assert all(len(r) == 5 and pad not in r and eos not in r for r in resp[1:])


def test_pad_is_never_sampled(tiny_models, tokenizer):
    model = favour(load(tiny_models, tokenizer, "llama"), tokenizer.pad_token_id)
    ids, mask = left_padded(tokenizer, PROMPTS)
    torch.manual_seed(0)
    seqs = sample(model, ids, mask, tokenizer, 8, min_new_tokens=8, top_k=0)
    assert seqs.shape[1] == ids.shape[1] + 8
    assert tokenizer.pad_token_id not in seqs[:, ids.shape[1]:].flatten().tolist()


def test_draw_follows_the_distribution_and_never_draws_a_zero():
    # zeros first, in the middle and last (where an off-by-one in the search would land); a row that does not sum
    # to 1 is read as proportional
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    rows = torch.stack([probs, probs * 3]).repeat(20000, 1)
    torch.manual_seed(0)
    drawn = draw(rows)
    assert drawn.shape == (40000,) and drawn.dtype == torch.long
    for half in (drawn[0::2], drawn[1::2]):
        freq = torch.bincount(half, minlength=6).double() / half.numel()
        assert freq[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]
        torch.testing.assert_close(freq, probs.double(), atol=0.01, rtol=0)  # >= 2.9 standard errors at 20,000
    one_hot = torch.zeros(3, 7)
    one_hot[0, 0], one_hot[1, 6], one_hot[2, 3] = 1.0, 1.0, 1e-30  # a lone survivor at either end, or tiny
    assert draw(one_hot.repeat(100, 1)).view(100, 3).unique(dim=0).tolist() == [[0, 6, 3]]


@pytest.mark.parametrize("path", ["coati loop", "generate"])
def test_non_finite_logits_stop_decoding_with_one_clear_error(tiny_models, tokenizer, monkeypatch, path):
    """Both decoding paths: coati's loop and `generate`, which transformers 4 (the ColossalAI pin) uses (there,
    both cases run generate)."""
    if path == "generate":
        monkeypatch.setattr(sampling, "_decode_plan", lambda model: None)
    model = load(tiny_models, tokenizer, "gpt2")
    ids, mask = left_padded(tokenizer, PROMPTS)
    calls = []

    def nan_from_the_third_forward(module, args, output):  # the prefill gives step 1's logits, each forward one more
        calls.append(1)
        if len(calls) >= 3:
            return output.index_fill(-1, torch.tensor([5]), float("nan"))

    model.get_output_embeddings().register_forward_hook(nan_from_the_third_forward)
    with pytest.raises(NonFiniteError, match="not finite at decoding step 3;.*fp32 or bf16"):
        sample(model, ids, mask, tokenizer, 6, min_new_tokens=6)  # no early EOS: a third forward always comes
    assert len(calls) == 3  # stopped there: no fourth forward


@pytest.mark.parametrize("top_k,top_p,temperature", [(0, 1.0, 1.0), (5, 1.0, 1.0), (0, 0.7, 1.0), (7, 0.5, 0.8),
                                                      (0, 0.01, 1.3), (100, 0.95, 1.0)])
def test_warping_matches_transformers(top_k, top_p, temperature):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 3
    expected = logits.clone()
    if temperature != 1.0:
        expected = TemperatureLogitsWarper(temperature)(None, expected)
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    assert torch.equal(warp_logits(logits, top_k, top_p, temperature), expected)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(warp_logits(probs.log(), top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(warp_logits(probs.log(), top_p=0.81))
    assert kept.tolist() == [[True, True, True, False]]
    assert torch.isfinite(warp_logits(probs.log(), top_k=1)).tolist() == [[True, False, False, False]]


class GatherInForward(torch.nn.Module):
    """Stands in for ColossalAI Gemini's wrapper: the inner model's parameters hold no data except during this
    module's forward, which puts them back for the call and empties them after (Gemini gathers its parameter
    chunks in its forward and frees them when it returns). Counts its calls."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module, self.calls = module, 0
        self._data = {name: p.data for name, p in module.named_parameters()}
        self._empty()

    def _empty(self) -> None:
        for p in self.module.parameters():
            p.data = torch.empty(0, dtype=p.dtype)

    def forward(self, *args, **kwargs):
        self.calls += 1
        for name, p in self.module.named_parameters():
            p.data = self._data[name]
        try:
            return self.module(*args, **kwargs)
        finally:
            self._empty()


class GatheringStrategy:
    """The parts of a Strategy the experience maker uses, answering as ColossalAIStrategy does for Gemini."""

    device = torch.device("cpu")

    def rollout_mode(self):
        return torch.no_grad()

    def rollout_model(self, model):
        return model  # the wrapper itself

    def generation_kwargs(self) -> dict:
        return {"call_wrapper": True, "synced_gpus": False}


@pytest.mark.parametrize("family", ["gpt2", "gptneox", "llama"])
def test_call_wrapper_decodes_through_the_wrappers_forward_at_every_step(tiny_models, tokenizer, family):
    """Gemini's case: weights exist only inside the wrapper's forward. With call_wrapper the loop calls the
    wrapper once per generated token and gives the tokens of the plain model; without it, sampling reaches the
    emptied inner modules and fails."""
    from coati.models.loading import transformers_major

    model = load(tiny_models, tokenizer, family)
    ids, mask = left_padded(tokenizer, PROMPTS)
    plain = sample(model, ids, mask, tokenizer, 9, do_sample=False, min_new_tokens=9, return_log_probs=True)
    wrapped = GatherInForward(load(tiny_models, tokenizer, family))
    seqs, lp = sample(wrapped, ids, mask, tokenizer, 9, do_sample=False, min_new_tokens=9, return_log_probs=True,
                      call_wrapper=True)
    assert seqs.tolist() == plain[0].tolist()
    torch.testing.assert_close(lp, plain[1], atol=1e-5, rtol=1e-5)
    assert wrapped.calls == 9  # the prefill, then one call per token after the first
    assert all(p.numel() == 0 for p in wrapped.module.parameters())  # emptied again after the last call
    with pytest.raises(Exception):  # noqa: B017 (fast path, HF forward or generate: each fails on empty weights)
        sample(wrapped, ids, mask, tokenizer, 3, do_sample=False)
    if transformers_major() >= 5:  # where both paths draw with coati's sampler, sampled tokens agree too
        torch.manual_seed(1)
        drawn = sample(model, ids, mask, tokenizer, 8, top_k=20, temperature=0.8)
        torch.manual_seed(1)
        assert sample(wrapped, ids, mask, tokenizer, 8, top_k=20, temperature=0.8,
                      call_wrapper=True).tolist() == drawn.tolist()


def test_experience_maker_samples_through_the_strategys_rollout_model(tiny_models, tokenizer):
    """The maker asks the strategy which module to sample from and how (rollout_model, generation_kwargs): under
    a Gemini-like strategy it samples through the wrapper, to the samples of the plain actor."""
    from test_ppo import prompt_batch, rollout_models

    from coati.experience.maker import ExperienceMaker
    from coati.strategies.base import Strategy

    naive = Strategy()
    actor, initial, critic, rm = rollout_models(tiny_models("gptneox"), "gptneox", tokenizer)
    _, batch = prompt_batch(tokenizer)
    kwargs = dict(critic=critic, reward_model=rm, initial_model=initial, tokenizer=tokenizer,
                  gen_kwargs={"max_new_tokens": 6, "do_sample": False})
    plain = ExperienceMaker(strategy=naive, actor=actor, **kwargs).make(batch, 0.1)
    wrapped = GatherInForward(rollout_models(tiny_models("gptneox"), "gptneox", tokenizer)[0])
    through = ExperienceMaker(strategy=GatheringStrategy(), actor=wrapped, **kwargs).make(batch, 0.1)
    assert wrapped.calls > 0
    assert [s.response.tolist() for s in through] == [s.response.tolist() for s in plain]
    for a, b in zip(through, plain):
        torch.testing.assert_close(a.log_probs, b.log_probs, atol=1e-5, rtol=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-6)


def rows_fed(model) -> list[tuple[int, int]]:
    """The (rows, length) of every input_ids the model embeds from now on (a hook on its input embedding, which
    the fast path and transformers' forward both call)."""
    seen: list[tuple[int, int]] = []
    model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    return seen


PATHS = [(family, "fast") for family in ("gpt2", "gptneox")] + [(family, "transformers") for family in FAMILIES]


@pytest.mark.parametrize("family,path", PATHS)
def test_repeats_prefill_each_prompt_once_and_sample_as_the_prompts_repeated(tiny_models, tokenizer, family, path,
                                                                              monkeypatch):
    """GRPO's G answers per prompt: with repeats=G each prompt is prefilled once and its cache rows copied; the
    tokens drawn, and their log-probs, are those of the prompts given G times each."""
    if path == "transformers":
        monkeypatch.setattr(fast, "plan", lambda model, device=None: None)
    model = load(tiny_models, tokenizer, family)
    ids, mask = left_padded(tokenizer, PROMPTS)
    p, seen = ids.shape[1], rows_fed(model)
    torch.manual_seed(3)
    seqs, lp = sample(model, ids.repeat_interleave(4, 0), mask.repeat_interleave(4, 0), tokenizer, 6, top_k=0,
                      min_new_tokens=6, return_log_probs=True)
    assert seen == [(12, p)] + [(12, 1)] * 5
    seen.clear()
    torch.manual_seed(3)
    shared, shared_lp = sample(model, ids, mask, tokenizer, 6, top_k=0, min_new_tokens=6, return_log_probs=True,
                               repeats=4)
    assert seen == [(3, p)] + [(12, 1)] * 5
    assert shared.tolist() == seqs.tolist()
    assert len({tuple(r) for r in shared[:4, p:].tolist()}) > 1  # a group's answers are drawn apart
    torch.testing.assert_close(shared_lp, lp, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_repeats_through_a_gathering_wrapper(tiny_models, tokenizer, family):
    """Gemini's path (the wrapper called at every step): the prefill's cache, returned by the wrapper, is copied to
    each prompt's answers, giving the answers of the prompts repeated."""
    model = load(tiny_models, tokenizer, family)
    ids, mask = left_padded(tokenizer, PROMPTS)
    plain = sample(model, ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0), tokenizer, 5, do_sample=False,
                   min_new_tokens=5, return_log_probs=True)
    wrapped = GatherInForward(load(tiny_models, tokenizer, family))
    seen = rows_fed(wrapped.module)
    seqs, lp = sample(wrapped, ids, mask, tokenizer, 5, do_sample=False, min_new_tokens=5, return_log_probs=True,
                      call_wrapper=True, repeats=2)
    assert seen == [(3, ids.shape[1])] + [(6, 1)] * 4  # the prompts once, then both answers of each
    assert seqs.tolist() == plain[0].tolist() and wrapped.calls == 5
    torch.testing.assert_close(lp, plain[1], atol=1e-5, rtol=1e-5)

