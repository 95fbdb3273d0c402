"""DPO stage pieces: preference losses (dpo, ipo, simpo, orpo), answer log-probs, the pair dataset and collator."""

from __future__ import annotations

import math

import pytest
import torch

from coati.dataset.dpo import DPOCollator, DPODataset
from coati.dataset.preference import Pair
from coati.dataset.templates import build_prompt
from coati.errors import UserError
from coati.losses import (
    PREFERENCE_LOSSES,
    _log1mexp,
    pair_accuracy,
    pair_distance,
    pair_sequence_logps,
    preference_loss,
    sequence_logps,
    token_nll_sum,
)


def close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


# --- DPO -----------------------------------------------------------------------------------------


def test_dpo_hand_values_rewards_and_gradient():
    # pair 0: h = (-1 - -1.5) - (-2 - -1.5) = 0.5 + 0.5 = 1,  beta h = 0.5
    # pair 1: h = (-3 - -2) - (-1 - -2)     = -1 - 1 = -2,   beta h = -1
    pc = t(-1.0, -3.0).requires_grad_()
    pr = t(-2.0, -1.0)
    rc, rr = t(-1.5, -2.0), t(-1.5, -2.0)
    losses, cr, rj = preference_loss(pc, pr, rc, rr, loss_type="dpo", beta=0.5)
    # -log sigmoid(z) = log(1 + e^-z)
    close(losses, [math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(1.0))])
    close(cr, [0.5 * 0.5, 0.5 * -1.0])
    close(rj, [0.5 * -0.5, 0.5 * 1.0])
    assert not cr.requires_grad and not rj.requires_grad
    close(pair_accuracy(cr, rj), 0.5)  # pair 0 right (0.25 > -0.25), pair 1 wrong
    close(pair_distance(cr, rj), (0.5 - 1.0) / 2)
    # d/d(pc) of log(1 + e^-(beta h)) = -beta / (1 + e^(beta h))
    losses.sum().backward()
    close(pc.grad, [-0.5 / (1 + math.exp(0.5)), -0.5 / (1 + math.exp(-1.0))])


def test_dpo_label_smoothing_is_conservative_dpo():
    pc, pr, rc, rr = t(-1.0), t(-2.0), t(-1.5), t(-1.5)  # beta h = 0.5 as above
    losses, _, _ = preference_loss(pc, pr, rc, rr, loss_type="dpo", beta=0.5, label_smoothing=0.1)
    # 0.9 * -log sigmoid(0.5) + 0.1 * -log sigmoid(-0.5)
    close(losses, [0.9 * math.log(1 + math.exp(-0.5)) + 0.1 * math.log(1 + math.exp(0.5))])
    # with the smoothing the loss no longer goes to 0 for a huge margin: it grows for the flipped label
    huge, _, _ = preference_loss(t(0.0), t(-1000.0), t(0.0), t(0.0), loss_type="dpo", beta=0.1,
                                 label_smoothing=0.1)
    close(huge, [0.1 * 100.0], atol=1e-4)


# --- IPO -----------------------------------------------------------------------------------------


def test_ipo_averages_log_ratios_over_answer_tokens():
    # chosen ratio -2 - -3 = 1 over 2 tokens -> 0.5; rejected ratio -4 - -3 = -1 over 4 tokens -> -0.25
    # h' = 0.75, beta 0.5 -> target 1 / (2 * 0.5) = 1 -> (0.75 - 1)^2 = 0.0625 (summed h = 2 would give 1)
    pc = t(-2.0).requires_grad_()
    losses, cr, rj = preference_loss(pc, t(-4.0), t(-3.0), t(-3.0), loss_type="ipo", beta=0.5,
                                     chosen_lengths=torch.tensor([2]), rejected_lengths=torch.tensor([4]))
    close(losses, [0.0625])
    # rewards stay the summed log-ratios, as for dpo
    close(cr, [0.5 * 1.0])
    close(rj, [0.5 * -1.0])
    # d/d(pc) = 2 (h' - 1) / |c| = 2 * -0.25 / 2
    losses.sum().backward()
    close(pc.grad, [-0.25])


# --- SimPO ---------------------------------------------------------------------------------------


def test_simpo_length_normalised_with_margin_and_no_reference():
    # pair 0: chosen -3 over 3 tokens -> -1, rejected -8 over 4 -> -2: z = 2 * 1 - 0.5 = 1.5
    # pair 1: chosen -1 over 1 -> -1, rejected -1.2 over 1 -> -1.2: z = 2 * 0.2 - 0.5 = -0.1
    pc, pr = t(-3.0, -1.0), t(-8.0, -1.2)
    lens = dict(chosen_lengths=torch.tensor([3, 1]), rejected_lengths=torch.tensor([4, 1]))
    losses, cr, rj = preference_loss(pc, pr, loss_type="simpo", beta=2.0, simpo_gamma=0.5, **lens)
    close(losses, [math.log(1 + math.exp(-1.5)), math.log(1 + math.exp(0.1))])
    # pair 1 ranks right, yet the margin gamma keeps its loss above log 2
    assert losses[1].item() > math.log(2.0)
    close(cr, [2.0 * -1.0, 2.0 * -1.0])
    close(rj, [2.0 * -2.0, 2.0 * -1.2])
    close(pair_accuracy(cr, rj), 1.0)
    # the summed log-probs would give z = 2 * 5 - 0.5 = 9.5 for pair 0: the lengths matter
    assert abs(losses[0].item() - math.log(1 + math.exp(-9.5))) > 0.1
    smoothed, _, _ = preference_loss(pc[:1], pr[:1], loss_type="simpo", beta=2.0, simpo_gamma=0.5,
                                     label_smoothing=0.2, chosen_lengths=torch.tensor([3]),
                                     rejected_lengths=torch.tensor([4]))
    close(smoothed, [0.8 * math.log(1 + math.exp(-1.5)) + 0.2 * math.log(1 + math.exp(1.5))])


# --- ORPO ----------------------------------------------------------------------------------------


def test_orpo_nll_plus_weighted_log_odds_ratio():
    # pair 0: chosen mean log-prob ln 0.5 -> odds 1, log odds 0; rejected ln 0.2 -> odds 0.25
    #         log odds ratio ln 4, -log sigmoid(ln 4) = -log(4/5) = log 1.25; NLL -ln 0.5 = ln 2
    # pair 1: chosen ln 0.9 -> odds 9; rejected ln 0.5 -> odds 1; ratio ln 9, -log(9/10); NLL -ln 0.9
    pc = t(2 * math.log(0.5), math.log(0.9))
    pr = t(3 * math.log(0.2), 5 * math.log(0.5))
    lens = dict(chosen_lengths=torch.tensor([2, 1]), rejected_lengths=torch.tensor([3, 5]))
    losses, cr, rj = preference_loss(pc, pr, loss_type="orpo", beta=0.1, **lens)
    close(losses, [math.log(2.0) + 0.1 * math.log(1.25), -math.log(0.9) + 0.1 * math.log(10 / 9)])
    close(cr, [0.1 * math.log(0.5), 0.1 * math.log(0.9)])
    close(rj, [0.1 * math.log(0.2), 0.1 * math.log(0.5)])
    # the odds term alone (beta scales it): remove the NLL by comparing two betas
    l2, _, _ = preference_loss(pc, pr, loss_type="orpo", beta=0.3, **lens)
    close(l2 - losses, [0.2 * math.log(1.25), 0.2 * math.log(10 / 9)])


def test_log1mexp_accurate_at_both_ends():
    x = t(-1e-8, -0.5, -math.log(2.0), -50.0)
    # 1 - e^-1e-8 = 1e-8 to 16 digits; 1 - e^-50 = 1 - 1.9e-22 -> log = -1.9287e-22
    close(_log1mexp(x), [math.log(1e-8), math.log(1 - math.exp(-0.5)), math.log(0.5), -math.exp(-50.0)],
          atol=1e-6)
    assert _log1mexp(t(-50.0)).item() < 0  # not rounded to 0
    # the branch not taken must not leak nan into the gradient: log1p(-exp(-1e-30)) alone would be -inf
    x = t(-1e-30, -100.0).requires_grad_()
    _log1mexp(x).sum().backward()
    # d/dx log(1 - e^x) = -e^x / (1 - e^x): -1 / 1e-30 and about -e^-100
    assert torch.isfinite(x.grad).all()
    close(x.grad[1:], [-math.exp(-100.0)])
    assert x.grad[0].item() < -1e29


# --- SFT term, errors, extremes ------------------------------------------------------------------


def test_sft_coef_adds_mean_token_nll_of_chosen():
    pc, pr, rc, rr = t(-1.0), t(-2.0), t(-1.5), t(-1.5)
    lens = dict(chosen_lengths=torch.tensor([4]), rejected_lengths=torch.tensor([2]))
    plain, _, _ = preference_loss(pc, pr, rc, rr, loss_type="dpo", beta=0.5, **lens)
    with_sft, _, _ = preference_loss(pc, pr, rc, rr, loss_type="dpo", beta=0.5, sft_coef=0.5, **lens)
    # chosen mean token NLL = 1 / 4; times 0.5
    close(with_sft - plain, [0.125])
    close(with_sft, [math.log(1 + math.exp(-0.5)) + 0.125])
    # on ORPO it comes on top of ORPO's own NLL: 0.25 * -ln 0.5
    lens = dict(chosen_lengths=torch.tensor([2]), rejected_lengths=torch.tensor([3]))
    orpo_pc, orpo_pr = t(2 * math.log(0.5)), t(3 * math.log(0.2))
    base, _, _ = preference_loss(orpo_pc, orpo_pr, loss_type="orpo", beta=0.1, **lens)
    extra, _, _ = preference_loss(orpo_pc, orpo_pr, loss_type="orpo", beta=0.1, sft_coef=0.25, **lens)
    close(extra - base, [0.25 * math.log(2.0)])


def test_preference_loss_rejects_bad_arguments():
    x = t(-1.0)
    n = torch.tensor([1])
    with pytest.raises(ValueError, match=r"unknown preference loss 'kto'.*dpo, ipo, simpo, orpo"):
        preference_loss(x, x, x, x, loss_type="kto", beta=0.1)
    with pytest.raises(ValueError, match="dpo needs the reference model's log-probs"):
        preference_loss(x, x, loss_type="dpo", beta=0.1)
    with pytest.raises(ValueError, match="ipo needs chosen_lengths and rejected_lengths"):
        preference_loss(x, x, x, x, loss_type="ipo", beta=0.1)
    with pytest.raises(ValueError, match="dpo with sft_coef needs chosen_lengths"):
        preference_loss(x, x, x, x, loss_type="dpo", beta=0.1, sft_coef=1.0)
    with pytest.raises(ValueError, match="label_smoothing applies to dpo and simpo only, not orpo"):
        preference_loss(x, x, loss_type="orpo", beta=0.1, label_smoothing=0.1, chosen_lengths=n, rejected_lengths=n)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\), got 0.5"):
        preference_loss(x, x, x, x, loss_type="dpo", beta=0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="beta must be > 0, got 0"):
        preference_loss(x, x, x, x, loss_type="dpo", beta=0)


@pytest.mark.parametrize("loss_type", PREFERENCE_LOSSES)
def test_extreme_inputs_give_finite_losses_and_gradients(loss_type):
    # certain answers (log-prob 0, where ORPO's log(1 - p) is -inf), hopeless ones, tiny and huge margins
    pc = t(0.0, -1e4, -1e-9, 0.0, -3e4).requires_grad_()
    pr = t(-1e4, 0.0, -1e-9, 0.0, -1.0).requires_grad_()
    ref = t(-5.0, -5.0, 0.0, 0.0, 0.0)
    lens = dict(chosen_lengths=torch.tensor([1, 1, 1, 1000, 1]), rejected_lengths=torch.tensor([1, 1, 1, 1, 0]))
    losses, cr, rj = preference_loss(pc, pr, ref, ref, loss_type=loss_type, beta=2.0, sft_coef=0.1, **lens)
    assert torch.isfinite(losses).all() and torch.isfinite(cr).all() and torch.isfinite(rj).all()
    losses.sum().backward()
    assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()


# --- answer log-probs ----------------------------------------------------------------------------


def test_sequence_logps_hand_values():
    # V = 2. Row: 2 prompt tokens, answer tokens 1, 0, then 1 pad. logits[:, t] scores labels[:, t + 1]:
    # position 1 -> label 1 under (0, ln 3): 3/4; position 2 -> label 0 under (ln 3, 0): 3/4
    logits = torch.tensor([[[9.0, -9.0], [0.0, math.log(3.0)], [math.log(3.0), 0.0], [4.0, 4.0], [1.0, 2.0]]])
    labels = torch.tensor([[-100, -100, 1, 0, -100]])
    logps, lengths = sequence_logps(logits, labels)
    close(logps, [2 * math.log(0.75)])
    assert lengths.tolist() == [2] and lengths.dtype == torch.int64


def test_sequence_logps_masks_prompt_and_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    # row 0: prompt 0-1, answer 2-3, pad 4-5; row 1: prompt 0-2, answer 3-5
    labels = torch.tensor([[-100, -100, 3, 7, -100, -100], [-100, -100, -100, 1, 2, 10]])
    base, lengths = sequence_logps(logits, labels)
    assert lengths.tolist() == [2, 3]
    # positions whose next label is prompt or pad: row 0 -> 0, 3, 4, 5 (5 predicts nothing); row 1 -> 0, 1, 5
    for row, pos in [(0, 0), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1), (1, 5)]:
        changed = logits.clone()
        changed[row, pos] += torch.randn(11) * 10
        torch.testing.assert_close(sequence_logps(changed, labels)[0], base, atol=0, rtol=0)
    # positions scoring an answer token do count
    for row, pos in [(0, 1), (0, 2), (1, 2), (1, 4)]:
        changed = logits.clone()
        changed[row, pos, labels[row, pos + 1]] += 3.0
        moved = sequence_logps(changed, labels)[0]
        assert moved[row] > base[row] + 0.1
        assert moved[1 - row] == base[1 - row]


def test_sequence_logps_agree_with_token_nll_and_pair_split():
    torch.manual_seed(1)
    logits = torch.randn(4, 7, 13)
    labels = torch.randint(0, 13, (4, 7))
    labels[:, :3] = -100
    labels[1, 5:] = -100
    labels[3, 6:] = -100
    logps, lengths = sequence_logps(logits, labels)
    nll, n = token_nll_sum(logits, labels)
    close(logps.sum(), -nll)
    assert lengths.sum() == n
    chosen, rejected, c_len, r_len = pair_sequence_logps(logits, labels)
    torch.testing.assert_close(chosen, logps[:2], atol=0, rtol=0)
    torch.testing.assert_close(rejected, logps[2:], atol=0, rtol=0)
    assert c_len.tolist() == lengths[:2].tolist() and r_len.tolist() == lengths[2:].tolist()


# --- dataset and collator ------------------------------------------------------------------------


def enc(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_dataset_tokenises_identical_prompts_and_exact_masks(tokenizer):
    eos = tokenizer.eos_token_id
    pairs = [Pair("질문 하나", "yes", "no"), Pair("hello there friend", "good answer here", "bad")]
    ds = DPODataset(pairs, tokenizer, max_len=256, language="en")
    assert len(ds) == 2 and ds.dropped == ds.truncated == 0
    prompt = tokenizer(build_prompt("질문 하나", "", "en"), add_special_tokens=True)["input_ids"]
    item = ds[0]
    assert item["index"] == 0 and item["prompt_len"] == len(prompt)
    assert item["chosen_ids"] == prompt + enc(tokenizer, "yes") + [eos]
    assert item["rejected_ids"] == prompt + enc(tokenizer, "no") + [eos]
    assert "ref_chosen_logps" not in item

    batch = DPOCollator(pad_token_id=tokenizer.pad_token_id)([ds[0], ds[1]])
    rows = [ds[0]["chosen_ids"], ds[1]["chosen_ids"], ds[0]["rejected_ids"], ds[1]["rejected_ids"]]
    prompt_lens = [ds[0]["prompt_len"], ds[1]["prompt_len"]] * 2
    width = max(map(len, rows))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, width)
    assert batch["index"].tolist() == [0, 1]
    for i, (ids, p) in enumerate(zip(rows, prompt_lens)):
        pad = width - len(ids)
        assert batch["input_ids"][i].tolist() == ids + [tokenizer.pad_token_id] * pad
        assert batch["attention_mask"][i].tolist() == [1] * len(ids) + [0] * pad
        assert batch["labels"][i].tolist() == [-100] * p + ids[p:] + [-100] * pad
    # the rows line up as pairs: row i and row 2 + i share the prompt
    for i in range(2):
        p = prompt_lens[i]
        assert batch["input_ids"][i, :p].tolist() == batch["input_ids"][2 + i, :p].tolist()


def test_collator_masks_from_lengths_when_pad_is_eos(tokenizer):
    eos = tokenizer.eos_token_id
    ds = DPODataset([Pair("q", "a long answer indeed", "b")], tokenizer, max_len=256, language="en")
    batch = DPOCollator(pad_token_id=eos)([ds[0]])
    short = ds[0]["rejected_ids"]
    # the rejected row ends in EOS and then pads with the same id: only the real EOS is attended and scored
    assert batch["attention_mask"][1].sum().item() == len(short)
    assert batch["labels"][1, len(short) - 1].item() == eos
    assert (batch["labels"][1, len(short):] == -100).all()


def test_truncation_never_cuts_the_prompt_and_drops_counted(tokenizer):
    eos = tokenizer.eos_token_id
    prompt = "question one two"
    p_len = len(enc(tokenizer, prompt))
    assert p_len == 4
    assert enc(tokenizer, "a b c d e")[:3] == enc(tokenizer, "a b c x y")[:3]  # the pair shares 3 tokens
    assert enc(tokenizer, "a b c d e")[3] != enc(tokenizer, "a b c x y")[3]
    pairs = [
        Pair(prompt, "hello there friend", "no", templated=False),  # chosen cut, rejected fits
        Pair(prompt, "a b c d e", "a b c x y", templated=False),  # identical once cut to 3 answer tokens
        Pair(prompt + " " + prompt, "yes", "no", templated=False),  # prompt fills max_len
        Pair(prompt, "same", "same", templated=False),  # identical as written
        Pair(prompt, "yes", "no", templated=False),  # fits
    ]
    ds = DPODataset(pairs, tokenizer, max_len=p_len + 3)
    assert (len(ds), ds.truncated, ds.dropped_no_answer, ds.dropped_identical, ds.dropped) == (2, 1, 1, 2, 3)
    cut = ds[0]
    assert cut["chosen_ids"] == enc(tokenizer, prompt) + enc(tokenizer, "hello there friend")[:3]  # no EOS
    assert cut["rejected_ids"] == enc(tokenizer, prompt) + enc(tokenizer, "no") + [eos]
    assert ds[1]["chosen_ids"] == enc(tokenizer, prompt) + enc(tokenizer, "yes") + [eos]
    assert ds.lengths() == [p_len + 3, p_len + max(len(enc(tokenizer, "yes")), len(enc(tokenizer, "no"))) + 1]
    # one token of room still makes a pair when the answers start differently; none does not
    one = DPODataset([Pair(prompt, "yes", "no", templated=False)], tokenizer, max_len=p_len + 1)
    assert one[0]["chosen_ids"][p_len:] == enc(tokenizer, "yes")[:1] and one.truncated == 1
    with pytest.raises(UserError, match=r"--dataset: no usable preference pair within --max_len 4 \(1 left no room"):
        DPODataset([Pair(prompt, "yes", "no", templated=False)], tokenizer, max_len=p_len)


def test_empty_prompt_needs_two_answer_tokens(tokenizer):
    # with no prompt the first answer token is never predicted; an answer of EOS alone scores nothing
    ds = DPODataset([Pair("", "", "no", templated=False), Pair("", "yes", "no", templated=False)], tokenizer,
                    max_len=64)
    assert len(ds) == 1 and ds.dropped_no_answer == 1 and ds[0]["prompt_len"] == 0


def test_reference_logps_reach_the_batch_only_when_complete(tokenizer):
    pairs = [Pair(f"q{i}", f"good {i}", "bad", templated=False) for i in range(3)]
    ds = DPODataset(pairs, tokenizer, max_len=64)
    collate = DPOCollator(pad_token_id=tokenizer.pad_token_id)
    ds.set_reference_logps(torch.tensor([2, 0]), t(-2.5, -0.5), t(-3.5, -1.5))
    assert not ds.has_reference_logps() and "ref_chosen_logps" not in collate([ds[0], ds[2]])
    ds.set_reference_logps(torch.tensor([1]), t(-1.25), t(-2.25))
    assert ds.has_reference_logps()
    batch = collate([ds[2], ds[0], ds[1]])
    assert batch["index"].tolist() == [2, 0, 1]
    close(batch["ref_chosen_logps"], [-2.5, -0.5, -1.25])
    close(batch["ref_rejected_logps"], [-3.5, -1.5, -2.25])
    assert batch["ref_chosen_logps"].dtype == torch.float32
    close(ds.reference_logps(), [[-0.5, -1.5], [-1.25, -2.25], [-2.5, -3.5]])
    mixed = [ds[0], {k: v for k, v in ds[1].items() if not k.startswith("ref_")}]
    with pytest.raises(ValueError, match="some items of the batch carry reference log-probs and some do not"):
        collate(mixed)


def test_dataset_reads_conversation_pairs_through_the_chat_template(tokenizer):
    from coati.dataset.chat import load_chat_template
    from coati.dataset.preference import encode_pair

    template = load_chat_template("chatml", tokenizer)
    convo = [{"role": "system", "content": "친절하게"}, {"role": "user", "content": "안녕?"}]
    pairs = [Pair(convo, "안녕하세요!", "몰라."), Pair("날씨는?", "맑아요.", "비.")]
    ds = DPODataset(pairs, tokenizer, max_len=256, template=template)
    assert len(ds) == 2 and ds.dropped == 0
    for i, pair in enumerate(pairs):  # the reward model's and PPO's tokens, to the last id
        prompt, chosen, rejected = encode_pair(pair, tokenizer, template=template)
        assert (ds[i]["prompt_len"], ds[i]["chosen_ids"], ds[i]["rejected_ids"]) == (
            len(prompt), prompt + chosen, prompt + rejected)
    end = tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ds[0]["chosen_ids"][-len(end):] == end  # the answer ends in the template's end of turn, not EOS
    assert tokenizer.decode(ds[0]["chosen_ids"][ds[0]["prompt_len"]:]).startswith("안녕하세요!")
    # a template that refuses a pair drops it, counted
    strict = load_chat_template("chatml", tokenizer).__class__("strict", "{{ raise_exception('no') }}")
    with pytest.raises(UserError, match="1 the chat template could not render"):
        DPODataset(pairs[:1], tokenizer, max_len=256, template=strict)


def test_reference_table_round_trips_through_state_dict(tokenizer):
    pairs = [Pair(f"q{i}", f"good {i}", "bad", templated=False) for i in range(3)]
    ds = DPODataset(pairs, tokenizer, max_len=64)
    assert ds.state_dict() == {}  # nothing to keep until every pair has its values
    ds.set_reference_logps(torch.arange(3), t(-1.0, -2.0, -3.0), t(-4.0, -5.0, -6.0))
    other = DPODataset(pairs, tokenizer, max_len=64)
    other.load_state_dict(ds.state_dict())
    assert other.has_reference_logps()
    close(other.reference_logps(), [[-1.0, -4.0], [-2.0, -5.0], [-3.0, -6.0]])
    with pytest.raises(UserError, match="cover 3 pairs, this data has 2"):
        DPODataset(pairs[:2], tokenizer, max_len=64).load_state_dict(ds.state_dict())


# --- the model wrapper and the trainer -------------------------------------------------------------


def _batch(tokenizer, n: int = 3):
    pairs = [Pair(f"질문 {i}: 무엇을 할까요?", f"좋은 답변 {i} 입니다. " * (1 + i), "몰라요.") for i in range(n)]
    ds = DPODataset(pairs, tokenizer, max_len=128)
    return ds, DPOCollator(tokenizer.pad_token_id)([ds[i] for i in range(n)])


def _lm(tiny_models, family, tokenizer):
    from coati.models.loading import disable_dropout, load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models(family)
    model = load_causal_lm(path, resolve_family(family, path), tokenizer)
    disable_dropout(model)
    return model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_answer_log_probs_sum_the_answer_tokens_only(tiny_models, tokenizer, family):
    """AnswerLogProbs projects only the positions that predict answer tokens, and equals sequence_logps of the
    full logits (gpt2 takes coati's fast path on the CPU, llama transformers' forward)."""
    from coati.models.forward import AnswerLogProbs, causal_lm_logits

    _, batch = _batch(tokenizer)
    hf = _lm(tiny_models, family, tokenizer).eval()
    scorer = AnswerLogProbs(hf)
    with torch.no_grad():
        logps, lengths = scorer(batch["input_ids"], batch["attention_mask"], batch["labels"])
        full, counts = sequence_logps(causal_lm_logits(hf, batch["input_ids"], batch["attention_mask"]),
                                      batch["labels"])
    torch.testing.assert_close(logps, full, atol=1e-4, rtol=1e-5)
    assert lengths.tolist() == counts.tolist() == (batch["labels"][:, 1:] != -100).sum(1).tolist()
    # the prompt's and the padding's ids may change: only what the answers see counts, and padding is never seen
    changed = batch["input_ids"].clone()
    changed[batch["attention_mask"] == 0] = 7
    with torch.no_grad():
        again, _ = scorer(changed, batch["attention_mask"], batch["labels"])
    torch.testing.assert_close(again, logps, atol=1e-5, rtol=1e-5)


class _Recorder(torch.nn.Module):
    """A reference that records the batches it scores and answers with the wrapped scorer."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer, self.seen = scorer, []

    def forward(self, input_ids, attention_mask, labels):
        self.seen.append((input_ids.clone(), labels.clone()))
        return self.scorer(input_ids, attention_mask, labels)


def _trainer(model, ref, **kwargs):
    from coati.strategies.base import Strategy
    from coati.trainer.dpo import DPOTrainer

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=kwargs.pop("lr", 0.5))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return DPOTrainer(strategy=Strategy(), model=model, optimizer=opt, scheduler=sched, train_loader=[None],
                      ref_model=ref, max_grad_norm=0, **kwargs)


def test_reference_scores_the_same_answer_tokens_and_the_first_step_is_log_2(tiny_models, tokenizer):
    from coati.models.forward import AnswerLogProbs

    _, batch = _batch(tokenizer)
    policy = AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer))
    ref = _Recorder(AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer).requires_grad_(False)).eval())
    trainer = _trainer(policy, ref, loss_type="dpo", beta=0.1)
    first = trainer.train_step([batch])
    # the same weights on both sides: every implicit reward is 0, the loss log 2, no pair ranked right (ties)
    assert first["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert (first["accuracy"], first["margin"], first["chosen_reward"]) == (0.0, 0.0, 0.0)
    (ids, labels), = ref.seen
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(labels, batch["labels"])
    second = trainer.train_step([batch])
    assert second["loss"] < first["loss"] and second["accuracy"] == 1.0 and second["margin"] > 0
    # chosen_logp is the policy's mean summed answer log-prob over the pairs, before the step
    with torch.no_grad():
        logps, _ = policy(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert logps[:3].mean().item() > second["chosen_logp"]


def test_lora_reference_is_the_policy_with_adapters_off(tiny_models, tokenizer):
    """With LoRA the reference is the policy object itself, run with its adapters disabled: equal to the base
    weights loaded on their own, before and after steps that move the adapters."""
    from coati.models.forward import AnswerLogProbs
    from coati.models.loading import apply_lora
    from coati.strategies.base import Strategy
    from coati.trainer.dpo import reference_logps

    _, batch = _batch(tokenizer)
    base = AnswerLogProbs(_lm(tiny_models, "llama", tokenizer)).eval()
    with torch.no_grad():
        expected, _ = base(batch["input_ids"], batch["attention_mask"], batch["labels"])
    model = AnswerLogProbs(apply_lora(_lm(tiny_models, "llama", tokenizer), 4, 16, 0.0))
    params = sum(p.numel() for p in model.parameters())
    trainer = _trainer(model, model, loss_type="ipo", beta=0.5, lr=0.05)
    assert trainer.ref_model is trainer.model
    for _ in range(3):
        trainer.train_step([batch])
    assert sum(p.numel() for p in model.parameters()) == params  # nothing was copied
    strategy = Strategy()
    ref = reference_logps(strategy, model, model, batch)
    torch.testing.assert_close(ref, expected, atol=1e-5, rtol=1e-5)
    assert model.training  # handed back in training mode
    with torch.no_grad():
        policy, _ = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert (policy - expected).abs().max() > 1e-3  # the adapters did move the policy
    # without adapters the policy is its own reference before training only (the precompute pass)
    plain = AnswerLogProbs(_lm(tiny_models, "llama", tokenizer)).train()
    torch.testing.assert_close(reference_logps(strategy, plain, plain, batch), expected, atol=1e-5, rtol=1e-5)
    assert plain.training
    with pytest.raises(ValueError, match="its own reference during training only with LoRA adapters"):
        _trainer(plain, plain, loss_type="dpo")


def test_precomputed_reference_gives_the_same_losses(tiny_models, tokenizer):
    from coati.models.forward import AnswerLogProbs
    from coati.strategies.base import Strategy
    from coati.trainer.dpo import precompute_reference_logps

    ds, batch = _batch(tokenizer, n=4)
    strategy = Strategy()
    ref = AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer).requires_grad_(False)).eval()
    runs = []
    for precompute in (False, True):
        torch.manual_seed(0)
        policy = AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer))
        collate = DPOCollator(tokenizer.pad_token_id)
        if precompute:
            loader = strategy.dataloader(ds, 3, collate, shuffle=False)  # other batches, other padding
            precompute_reference_logps(strategy=strategy, reference=ref, policy=policy, loader=loader)
            assert ds.has_reference_logps()
        batches = [collate([ds[i] for i in (3, 1)]), collate([ds[i] for i in (0, 2)])]
        assert ("ref_chosen_logps" in batches[0]) == precompute
        trainer = _trainer(policy, None if precompute else ref, loss_type="dpo", beta=0.5, sft_coef=0.1)
        runs.append([trainer.train_step([b])["loss"] for b in batches * 2])
    assert max(abs(a - b) for a, b in zip(*runs)) <= 1e-5
    assert len(set(runs[0])) > 1
    _trainer(AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer)), None, loss_type="simpo", beta=2.0) \
        .train_step([DPOCollator(tokenizer.pad_token_id)([{k: v for k, v in ds[0].items() if "ref" not in k}])])
    with pytest.raises(ValueError, match="dpo needs a reference model"):
        _trainer(AnswerLogProbs(_lm(tiny_models, "gpt2", tokenizer)), None, loss_type="dpo").train_step(
            [DPOCollator(tokenizer.pad_token_id)([{k: v for k, v in ds[0].items() if "ref" not in k}])])


# --- train_dpo.py end to end ---------------------------------------------------------------------

WORDS = ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글", "산책", "요리"]
RANKING = [{"prompt": f"{w}에 대해 알려 주세요.", "completion_0": f"{w}은 정말 좋습니다. 자세히 설명해 드릴게요.",
            "completion_1": "몰라요.", "completion_2": f"{w}? 글쎄요.", "ranking": [0, 2, 1]} for w in WORDS]
TRAIN_KEYS = {"loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp", "lr"}


def dpo_args(tiny_models, tmp_path, *extra, family="gpt2"):
    from conftest import write_json

    return ["train_dpo.py", "--strategy", "naive", "--model", family, "--pretrain", tiny_models(family),
            "--dataset", write_json(tmp_path / "ranking.json", RANKING), "--eval_split", "0.2", "--batch_size", "4",
            "--lr", "2e-3", "--warmup_ratio", "0", "--max_len", "64", *extra]


def records(folder) -> tuple[list[dict], list[dict]]:
    import json

    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "split" not in r], [r for r in rows if r.get("split") == "eval"]


def test_train_dpo_writes_a_model_folder_metrics_plot_and_summary(tiny_models, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, run_script
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "dpo"
    res = run_script(dpo_args(tiny_models, tmp_path, "--max_epochs", "4", "--precompute_ref", "--eval_interval",
                              "6", "--save_path", str(out)))
    assert res.returncode == 0, res.stderr[-3000:]
    data = tmp_path / "ranking.json"
    assert f"[dpo] --dataset {data}: read 8 rows, used 8, truncated 0, dropped 0" in res.stderr
    assert f"[dpo] --dataset {data}: read 24 pairs, used 24, truncated 0, dropped 0" in res.stderr
    assert f"[dpo] --dataset {data} (held out by --eval_split): read 6 pairs, used 6" in res.stderr
    train, evals = records(out)
    assert len(train) == 24 and all(TRAIN_KEYS <= set(r) for r in train)
    assert train[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)  # the policy starts as its reference
    # evaluated before the first step, every 6 steps and at the end
    assert [r["step"] for r in evals] == [0, 6, 12, 18, 24]
    assert all({"eval_loss", "eval_accuracy", "eval_margin"} <= set(r) for r in evals)
    assert (evals[0]["eval_loss"], evals[0]["eval_accuracy"]) == (pytest.approx(math.log(2.0), abs=1e-6), 0.0)
    assert evals[-1]["eval_accuracy"] >= 0.8 and evals[-1]["eval_margin"] > 0 and evals[-1]["eval_loss"] < 0.6
    for name in ("args.json", "dpo.png", "model.safetensors", "tokenizer.json"):
        assert (out / name).exists(), name
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size >= len(tok)
    summary = subprocess.run([sys.executable, "-m", "coati.summary", str(out)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert f"DPO  24 steps: held-out loss 0.6931 -> {evals[-1]['eval_loss']:.4f}, accuracy 0.000 -> " \
           f"{evals[-1]['eval_accuracy']:.3f}, margin {evals[-1]['eval_margin']:.3f}" in summary


@pytest.mark.parametrize("loss_type,extra", [("ipo", ["--beta", "0.5"]), ("simpo", ["--beta", "2"]),
                                             ("orpo", ["--orpo_alpha", "0.5"])])
def test_other_loss_types_learn(tiny_models, tmp_path, loss_type, extra):
    from conftest import run_script

    out = tmp_path / loss_type
    res = run_script(dpo_args(tiny_models, tmp_path, "--loss_type", loss_type, "--max_epochs", "3",
                              "--save_path", str(out), *extra))
    assert res.returncode == 0, res.stderr[-3000:]
    train, evals = records(out)
    assert sum(r["loss"] for r in train[-3:]) < sum(r["loss"] for r in train[:3])
    assert evals[-1]["eval_accuracy"] > evals[0]["eval_accuracy"]
    assert (out / "dpo.png").exists()
    from coati.summary import describe

    assert describe(str(out)).startswith(f"DPO  {train[-1]['step']} steps ({loss_type}): held-out loss "
                                         f"{evals[0]['eval_loss']:.4f} -> {evals[-1]['eval_loss']:.4f}")


def _in_process(argv, monkeypatch) -> tuple[int, int]:
    """Run train_dpo.main here; returns (causal LMs loaded, reference passes made before training). The signal
    handlers it installs go away."""
    import signal

    import train_dpo
    from coati.models import loading
    from coati.trainer import dpo as trainer_dpo

    loads, passes = [], []
    real, real_pass = loading.load_causal_lm, trainer_dpo.precompute_reference_logps
    monkeypatch.setattr(loading, "load_causal_lm", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(trainer_dpo, "precompute_reference_logps", lambda **k: passes.append(1) or real_pass(**k))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        train_dpo.main(train_dpo.parse_args(argv[1:]))
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return len(loads), len(passes)


def test_lora_loads_one_model_and_saves_it_merged(tiny_models, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    argv = dpo_args(tiny_models, tmp_path, "--lora_rank", "4", "--lr", "1e-2", "--max_epochs", "2",
                    "--save_path", str(out), family="llama")
    assert _in_process(argv, monkeypatch) == (1, 0)  # the reference is the policy with its adapters off
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_models("llama")).state_dict()
    assert not any("lora" in k for k in merged)
    assert max(float((merged[k] - base[k]).abs().max()) for k in base) > 1e-4  # the adapters were merged in
    train, evals = records(out)
    assert train[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert evals[-1]["eval_accuracy"] > 0.5


def test_precomputed_reference_travels_in_checkpoints(tiny_models, tmp_path, monkeypatch):
    """With --precompute_ref a checkpoint keeps the table: a resumed run makes no reference pass and ends on the
    weights of the run it continues. A separate --ref_model is loaded for the pass and freed."""
    from safetensors.torch import load_file

    argv = dpo_args(tiny_models, tmp_path, "--precompute_ref", "--max_epochs", "2", "--save_interval", "4")
    # one model: the policy, still equal to --pretrain, makes the pass over the train and eval pairs
    assert _in_process([*argv, "--save_path", str(tmp_path / "full")], monkeypatch) == (1, 2)
    ckpt = tmp_path / "full" / "checkpoint-4"
    table = torch.load(ckpt / "state-reference-train.pt", weights_only=True)["reference_logps"]
    assert table.shape == (24, 2) and bool(torch.isfinite(table).all()) and bool((table < 0).all())
    assert (ckpt / "state-reference-eval.pt").exists()
    assert _in_process([*argv, "--save_path", str(tmp_path / "resumed"), "--resume_from", str(ckpt)],
                       monkeypatch) == (1, 0)  # no reference pass: the table came back with the checkpoint
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    full, resumed = records(tmp_path / "full")[0], records(tmp_path / "resumed")[0]
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in full[4:]], abs=1e-6)
    other = dpo_args(tiny_models, tmp_path, "--precompute_ref", "--max_epochs", "1", "--ref_model",
                     tiny_models("gpt2") + "/", "--save_path", str(tmp_path / "ref"))
    assert _in_process(other, monkeypatch) == (1, 2)  # the same folder spelled otherwise is still --pretrain
    other = dpo_args(tiny_models, tmp_path, "--precompute_ref", "--max_epochs", "1", "--ref_model",
                     str(tmp_path / "full"), "--save_path", str(tmp_path / "ref2"))
    assert _in_process(other, monkeypatch) == (2, 2)
    assert records(tmp_path / "ref2")[0][0]["loss"] != pytest.approx(math.log(2.0), abs=1e-3)
