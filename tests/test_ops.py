from __future__ import annotations

import math

import pytest
import torch

from coati.ops import (
    action_mask_from_sequences,
    approx_kl,
    compute_token_rewards,
    entropy_from_logits,
    gae_advantages_and_returns,
    log_probs_from_logits,
    masked_mean,
    masked_moments,
    masked_sum,
    whiten,
)
from coati.trainer.kl import AdaptiveKLController, FixedKLController

LN2 = math.log(2.0)


def close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# --- masked reductions ---------------------------------------------------------------------------

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("mask", [MASK.bool(), MASK.float()])
def test_masked_sum_and_mean(mask):
    # kept entries: 1, 2 | 4
    close(masked_sum(X, mask), 7.0)
    close(masked_sum(X, mask, dim=1), [3.0, 4.0])
    close(masked_mean(X, mask), 7.0 / 3.0)
    close(masked_mean(X, mask, dim=1), [1.5, 4.0])
    close(masked_mean(X, mask, dim=0), [2.5, 2.0, 0.0])  # column 2 is empty -> 0, not nan


def test_masked_mean_ignores_nan_in_masked_slots():
    x = torch.tensor([1.0, float("nan"), 3.0])
    close(masked_mean(x, torch.tensor([True, False, True])), 2.0)


def test_masked_whiten():
    x = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # masked values 1, 2, 3: sum 6, sum of squares 14, count 3
    moments = masked_moments(x, mask)
    assert moments.dtype == torch.float64 and moments.tolist() == [6.0, 14.0, 3.0]
    # mean 2, biased var (1 + 0 + 1) / 3 = 2/3, std = 0.816497
    # whitened: -1/0.816497 = -1.224745, 0, +1.224745; masked slot -> 0
    out = whiten(x, moments, mask)
    assert out.dtype == torch.float32
    close(out, [[-1.224745, 0.0], [1.224745, 0.0]])
    # shift_mean=False adds the mean 2 back: 0.775255, 2, 3.224745
    close(whiten(x, moments, mask, shift_mean=False), [[0.775255, 2.0], [3.224745, 0.0]])


def test_whiten_with_moments_summed_over_parts_whitens_the_whole():
    # Two "ranks" hold 1, 2 and 3, 6: summed moments 12, 50, 4 -> mean 3, var 50/4 - 9 = 3.5, std 1.870829
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    total = masked_moments(a) + masked_moments(b)
    assert total.tolist() == [12.0, 50.0, 4.0]
    close(whiten(a, total), [-1.069045, -0.534522])
    close(whiten(b, total), [0.0, 1.603567])
    whole = torch.cat([a, b])
    close(torch.cat([whiten(a, total), whiten(b, total)]), whiten(whole, masked_moments(whole)))
    # a constant input has std 0: eps keeps it finite (all zeros)
    close(whiten(torch.full((3,), 5.0), masked_moments(torch.full((3,), 5.0))), [0.0, 0.0, 0.0])


# --- logits -> log-probs / entropy ---------------------------------------------------------------


def test_log_probs_and_entropy_hand_values():
    # row 0: logits (0, ln 3) -> p = (1/4, 3/4); row 1: uniform over 2 -> p = (1/2, 1/2)
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0]])
    close(log_probs_from_logits(logits, labels), [[math.log(0.75), math.log(0.5)]])
    # H = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.562335; uniform H = ln 2
    close(entropy_from_logits(logits), [[0.562335, LN2]])


def test_log_probs_match_log_softmax_and_upcast_bf16():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    close(log_probs_from_logits(logits, labels), expected)
    out_bf16 = log_probs_from_logits(logits.bfloat16(), labels)
    assert out_bf16.dtype == torch.float32 and out_bf16.shape == (3, 5)


# --- action mask ---------------------------------------------------------------------------------


def test_action_mask_eos_and_pad():
    eos, pad = 2, 0
    sequences = torch.tensor(
        [
            [0, 7, 5, 6, 2, 0],  # EOS at gen position 2: kept, pad after dropped
            [7, 8, 5, 6, 7, 8],  # no EOS, no pad: all generated tokens kept
            [7, 8, 5, 0, 0, 0],  # no EOS, trailing pad: only the real token
            [7, 8, 2, 5, 2, 0],  # EOS first: only it; the tokens and second EOS after are dropped
        ]
    )
    mask = action_mask_from_sequences(sequences, prompt_len=2, eos_token_id=eos, pad_token_id=pad)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, True, True, False],
        [True, True, True, True],
        [True, False, False, False],
        [True, False, False, False],
    ]


def test_action_mask_pad_equals_eos():
    # pad == eos == 2; the left padding of the prompt (2 in column 0) must not count
    sequences = torch.tensor(
        [
            [2, 9, 5, 2, 2, 2],  # first eos at gen position 1 kept, the pad-eos after it dropped
            [2, 9, 5, 6, 7, 8],  # never finished: all kept
            [9, 9, 2, 2, 2, 2],  # immediate eos: just that one token
        ]
    )
    mask = action_mask_from_sequences(sequences, prompt_len=2, eos_token_id=2, pad_token_id=2)
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
    ]


# --- KL and rewards ------------------------------------------------------------------------------


def test_approx_kl_values():
    # token 0: p = 0.5, p_ref = 0.25 -> log r = ln 2
    #   k1 = ln 2 = 0.693147, k2 = (ln 2)^2 / 2 = 0.240227, k3 = 1/2 - 1 + ln 2 = 0.193147
    # token 1: p = 0.25, p_ref = 0.5 -> log r = -ln 2
    #   k1 = -0.693147, k2 = 0.240227, k3 = 2 - 1 - ln 2 = 0.306853
    # token 2: equal probs -> all zero; token 3 is masked out
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.3, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.5, 0.3, 0.1]]))
    mask = torch.tensor([[1, 1, 1, 0]])
    close(approx_kl(logp, ref, mask), [[0.693147, -0.693147, 0.0, 0.0]])
    close(approx_kl(logp, ref, mask, kind="k2"), [[0.240227, 0.240227, 0.0, 0.0]])
    close(approx_kl(logp, ref, mask, kind="k3"), [[0.193147, 0.306853, 0.0, 0.0]])
    close(approx_kl(logp, ref, kind="k1")[0, 3], math.log(9.0))  # no mask: nothing zeroed
    with pytest.raises(ValueError, match="k1, k2, k3"):
        approx_kl(logp, ref, kind="k4")


def test_token_rewards_score_at_last_action_token():
    # ref_logp = 0, so k1 = logp; kl_coef 0.5 -> penalty -0.5 * logp per token
    logp = torch.tensor(
        [
            [0.1, 0.2, 0.3, 9.0],  # 3 action tokens, last at column 2
            [-0.1, 0.5, 9.0, 9.0],  # 2 action tokens, last at column 1
            [0.4, 0.4, 0.4, 0.4],  # all 4, last at column 3
            [9.0, 9.0, 9.0, 9.0],  # empty response: no reward at all
        ]
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]).bool()
    score = torch.tensor([2.0, -3.0, 1.0, 5.0])
    rewards, kl = compute_token_rewards(score, logp, torch.zeros_like(logp), mask, kl_coef=0.5)
    close(kl, [[0.1, 0.2, 0.3, 0.0], [-0.1, 0.5, 0.0, 0.0], [0.4, 0.4, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]])
    # row 0: -0.05, -0.10, -0.15 + 2 = 1.85 | row 1: +0.05, -0.25 - 3 = -3.25 | row 2: -0.2 x3, -0.2 + 1 = 0.8
    close(
        rewards,
        [[-0.05, -0.1, 1.85, 0.0], [0.05, -3.25, 0.0, 0.0], [-0.2, -0.2, -0.2, 0.8], [0.0, 0.0, 0.0, 0.0]],
    )
    # reward_clip 2.5: score 2 unchanged, -3 -> -2.5 (row 1 last = -0.25 - 2.5 = -2.75), 1 unchanged
    clipped, _ = compute_token_rewards(
        score, logp, torch.zeros_like(logp), mask, kl_coef=0.5, reward_clip=2.5
    )
    close(
        clipped,
        [[-0.05, -0.1, 1.85, 0.0], [0.05, -2.75, 0.0, 0.0], [-0.2, -0.2, -0.2, 0.8], [0.0, 0.0, 0.0, 0.0]],
    )


# --- GAE -----------------------------------------------------------------------------------------


def test_gae_hand_computed():
    gamma, lam = 0.9, 0.8  # gamma * lam = 0.72
    # garbage (5, 9, 3, 7) in masked slots must have no effect
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0], [0.5, -1.0, 3.0, 3.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0], [1.0, 0.5, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = gae_advantages_and_returns(rewards, values, mask, gamma, lam)
    # row 0, terminal after t=2:
    #   t2: delta = 1 + 0.9*0 - 0.4 = 0.6;        A2 = 0.6
    #   t1: delta = 0 + 0.9*0.4 - 0.2 = 0.16;     A1 = 0.16 + 0.72*0.6 = 0.592
    #   t0: delta = 0 + 0.9*0.2 - 0.5 = -0.32;    A0 = -0.32 + 0.72*0.592 = 0.10624
    #   returns = A + V: 0.60624, 0.792, 1.0
    # row 1, terminal after t=1:
    #   t1: delta = -1 + 0 - 0.5 = -1.5;          A1 = -1.5
    #   t0: delta = 0.5 + 0.9*0.5 - 1.0 = -0.05;  A0 = -0.05 + 0.72*(-1.5) = -1.13
    #   returns: -0.13, -1.0
    close(adv, [[0.10624, 0.592, 0.6, 0.0], [-1.13, -1.5, 0.0, 0.0]])
    close(ret, [[0.60624, 0.792, 1.0, 0.0], [-0.13, -1.0, 0.0, 0.0]])


def test_gae_full_mask_lam_one_is_discounted_return_minus_value():
    # with lam = 1 the advantage telescopes to (discounted reward-to-go) - V_t
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.3, -0.2, 0.7]])
    adv, ret = gae_advantages_and_returns(rewards, values, torch.ones(1, 3), gamma=0.5, lam=1.0)
    # reward-to-go: t2 = 2; t1 = 0 + 0.5*2 = 1; t0 = 1 + 0.5*1 = 1.5
    close(ret, [[1.5, 1.0, 2.0]])
    close(adv, [[1.2, 1.2, 1.3]])


# --- KL controllers ------------------------------------------------------------------------------


def test_adaptive_kl_controller_direction_and_clamp():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    # KL 6.6: error 6.6/6 - 1 = 0.1 (inside the clamp) -> x (1 + 0.1*256/10000) = x 1.00256
    ctl.update(6.6, n_steps=256)
    assert ctl.value == pytest.approx(0.1 * 1.00256)
    # KL 60: error 9 clamped to 0.2 -> x 1.00512 (too much KL -> coefficient goes up)
    ctl = AdaptiveKLController(0.1, 6.0, 10000)
    ctl.update(60.0, n_steps=256)
    assert ctl.value == pytest.approx(0.100512)
    # KL 0: error -1 clamped to -0.2 -> x 0.99488 (too little KL -> coefficient goes down)
    ctl = AdaptiveKLController(0.1, 6.0, 10000)
    ctl.update(0.0, n_steps=256)
    assert ctl.value == pytest.approx(0.099488)
    # on target: unchanged
    ctl.update(6.0, n_steps=256)
    assert ctl.value == pytest.approx(0.099488)


def test_kl_controller_state_dict_round_trip():
    ctl = AdaptiveKLController(0.1, 6.0, 10000)
    ctl.update(60.0, 1000)
    restored = AdaptiveKLController(0.5, 1.0, 1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.state_dict() == ctl.state_dict()
    restored.update(60.0, 1000)
    ctl.update(60.0, 1000)
    assert restored.value == ctl.value

    fixed = FixedKLController(0.05)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.05


def test_length_grouped_sampler_splits_global_batches_over_ranks():
    from coati.dataset.sampler import LengthGroupedSampler

    lengths = [(i * 37) % 101 + 1 for i in range(203)]  # 203: the last global batch is short
    one = LengthGroupedSampler(lengths, batch_size=8, world_size=1, seed=3)
    ranks = [LengthGroupedSampler(lengths, batch_size=4, world_size=2, rank=r, seed=3) for r in range(2)]
    order = list(one)
    assert sorted(order) == list(range(203)) and len(one) == 203
    streams = [list(s) for s in ranks]
    assert [len(s) for s in streams] == [len(s) for s in ranks] == [102, 102]
    # Every global batch of one process is rank 0's batch plus rank 1's batch (the short one padded by repeats).
    for b in range(len(order) // 8):
        assert sorted(order[8 * b:8 * b + 8]) == sorted(streams[0][4 * b:4 * b + 4] + streams[1][4 * b:4 * b + 4])
    assert set(streams[0][100:] + streams[1][100:]) == set(order[200:])
    # Batches hold similar lengths: far less spread inside a batch than across the data.
    spread = sum(max(lengths[i] for i in order[k:k + 8]) - min(lengths[i] for i in order[k:k + 8])
                 for k in range(0, 200, 8)) / 25
    assert spread < 15 < max(lengths) - min(lengths)
    # Same (seed, epoch): same order (exact resume); another epoch: another order.
    again = LengthGroupedSampler(lengths, batch_size=8, world_size=1, seed=3)
    assert list(again) == order
    again.set_epoch(1)
    assert list(again) != order and sorted(again) == list(range(203))
