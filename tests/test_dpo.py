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
