"""Critic-free RL math: GRPO / RLOO / REINFORCE++ advantages, group filtering, and the GRPO-style losses."""

from __future__ import annotations

import math

import pytest
import torch

from coati.advantages import (
    discounted_returns,
    group_filter_mask,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    sequence_to_tokens,
)
from coati.losses import aggregate_loss, clipped_policy_loss, kl_loss, policy_loss
from coati.ops import gae_advantages_and_returns


def close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# two groups of G = 4: one mixed, one where every answer scored the same
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])


# --- GRPO ----------------------------------------------------------------------------------------


def test_grpo_group_scale_uses_sample_std_per_group():
    # group 1: mean 0.5, deviations +-0.5, sample std sqrt((4 * 0.25) / 3) = sqrt(1/3)
    # group 2: all equal -> deviations 0, std 0 -> 0 / eps = 0
    adv = grpo_advantages(REWARDS, 4, scale="group", eps=1e-4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    close(adv, [a, -a, -a, a, 0, 0, 0, 0])
    assert adv.shape == (8,) and adv.dtype == torch.float32


def test_grpo_batch_scale_divides_by_whole_batch_std():
    # batch mean 1.25; squared deviations 0.0625, 1.5625, 1.5625, 0.0625, 4 * 0.5625 -> 5.5;
    # sample std sqrt(5.5 / 7) = 0.886405
    adv = grpo_advantages(REWARDS, 4, scale="batch", eps=0.0)
    a = 0.5 / math.sqrt(5.5 / 7)
    close(adv, [a, -a, -a, a, 0, 0, 0, 0])


def test_grpo_batch_scale_reduce_hook_sums_over_ranks():
    # a hook that doubles the sums plays two ranks holding the same 8 rewards: 16 rewards, squared
    # deviations 11, sample variance 11 / 15
    adv = grpo_advantages(REWARDS, 4, scale="batch", eps=0.0, reduce=lambda t: 2 * t)
    a = 0.5 / math.sqrt(11 / 15)
    close(adv, [a, -a, -a, a, 0, 0, 0, 0])


def test_grpo_none_scale_only_centres():
    close(grpo_advantages(REWARDS, 4, scale="none"), [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    # groups are consecutive rows: G = 2 pairs (1, 0), (0, 1), (2, 2), (2, 2)
    close(grpo_advantages(REWARDS, 2, scale="none"), [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    close(grpo_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2, scale="none"), [0.5, -0.5, 0, 0])


def test_grpo_rejects_bad_groups_and_scale():
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        grpo_advantages(REWARDS, 3)
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(REWARDS, 1)
    with pytest.raises(ValueError, match="unknown GRPO scale 'std'"):
        grpo_advantages(REWARDS, 4, scale="std")
    with pytest.raises(ValueError, match="1-D"):
        grpo_advantages(REWARDS.view(2, 4), 4)


# --- RLOO ----------------------------------------------------------------------------------------


def test_rloo_subtracts_mean_of_the_other_answers():
    # group (1, 0, 0, 1): 1 - 1/3, 0 - 2/3
    close(rloo_advantages(REWARDS[:4], 4), [2 / 3, -2 / 3, -2 / 3, 2 / 3])
    # groups of 3: (3, 1, 2) -> 3 - 1.5, 1 - 2.5, 2 - 2; (0, 0, 6) -> 0 - 3, 0 - 3, 6 - 0
    close(rloo_advantages(torch.tensor([3.0, 1.0, 2.0, 0.0, 0.0, 6.0]), 3), [1.5, -1.5, 0, -3, -3, 6])


# --- REINFORCE++ ---------------------------------------------------------------------------------


def test_discounted_returns_by_hand_and_equal_to_gae_without_critic():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 99.0], [5.0, 99.0, 99.0, 99.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # gamma 0.5: R2 = 3, R1 = 2 + 1.5 = 3.5, R0 = 1 + 1.75 = 2.75; the padded 99s never leak in
    close(discounted_returns(rewards, mask, gamma=0.5), [[2.75, 3.5, 3.0, 0.0], [5.0, 0, 0, 0]])
    torch.manual_seed(0)
    r, m = torch.randn(3, 6), torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5])
    _, gae_returns = gae_advantages_and_returns(r, torch.zeros(3, 6), m, gamma=0.9, lam=1.0)
    close(discounted_returns(r, m, gamma=0.9), gae_returns)


def test_reinforce_pp_folds_kl_then_whitens_over_batch_tokens():
    scores = torch.tensor([1.0, -1.0])
    logp = torch.zeros(2, 3)
    ref = torch.tensor([[-0.1, -0.2, -5.0], [-0.3, -5.0, -5.0]])  # k1 KL = logp - ref
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv, returns, kl = reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.5)
    # token rewards: row 0 (-0.05, -0.1 + 1), row 1 (-0.15 - 1); returns (gamma 1): (0.85, 0.9), (-1.15)
    close(kl, [[0.1, 0.2, 0], [0.3, 0, 0]])
    close(returns, [[0.85, 0.9, 0], [-1.15, 0, 0]])
    # mean 0.6 / 3 = 0.2; squared deviations 0.4225 + 0.49 + 1.8225 = 2.735; population std sqrt(2.735 / 3)
    std = math.sqrt(2.735 / 3)
    close(adv, [[0.65 / std, 0.7 / std, 0], [-1.35 / std, 0, 0]])
    # gamma 0.5: row 0 returns (-0.05 + 0.45, 0.9)
    _, returns, _ = reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.5, gamma=0.5)
    close(returns, [[0.4, 0.9, 0], [-1.15, 0, 0]])


def test_reinforce_pp_group_baseline_and_reduce_hook():
    scores = torch.tensor([1.0, 3.0, 0.0, 0.0])
    logp = ref = torch.zeros(4, 1)
    mask = torch.ones(4, 1)
    # group baseline (G = 2): scores -> (-1, 1, 0, 0); no KL; mean 0, population std sqrt(2 / 4)
    adv, returns, _ = reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.1, baseline="group",
                                              group_size=2, eps=0.0)
    close(returns, [[-1.0], [1.0], [0.0], [0.0]])
    close(adv, [[-math.sqrt(2)], [math.sqrt(2)], [0.0], [0.0]])
    # two ranks with the same tokens have the same mean and population std as one
    doubled, _, _ = reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.1, baseline="group",
                                            group_size=2, eps=0.0, reduce=lambda t: 2 * t)
    close(doubled, adv)
    with pytest.raises(ValueError, match="needs group_size"):
        reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.1, baseline="group")
    with pytest.raises(ValueError, match="unknown REINFORCE"):
        reinforce_pp_advantages(scores, logp, ref, mask, kl_coef=0.1, baseline="mean")


# --- broadcasting and filtering ------------------------------------------------------------------


def test_sequence_to_tokens_respects_mask():
    out = sequence_to_tokens(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    close(out, [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])


def test_group_filter_mask_keeps_groups_with_distinct_rewards():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.5 + 1e-8, 0.5], dtype=torch.float64)
    keep, zero_std = group_filter_mask(rewards, 3, atol=1e-6)
    assert keep.tolist() == [False] * 3 + [True] * 3 + [False] * 3
    close(zero_std, 2 / 3)
    # atol 0 tells 0.5 and 0.5 + 1e-8 apart
    keep, zero_std = group_filter_mask(rewards, 3, atol=0.0)
    assert keep.tolist() == [False] * 3 + [True] * 6
    close(zero_std, 1 / 3)


# --- losses --------------------------------------------------------------------------------------


def test_clipped_policy_loss_equals_policy_loss_when_symmetric():
    torch.manual_seed(0)
    old = torch.randn(4, 7)
    adv = torch.randn(4, 7)
    mask = (torch.rand(4, 7) > 0.3).long()
    base = (old + 0.4 * torch.randn(4, 7)).requires_grad_()
    mine = base.detach().clone().requires_grad_()
    want, want_clip = policy_loss(base, old, adv, mask, eps_clip=0.2)
    got, got_clip = clipped_policy_loss(mine, old, adv, mask, eps_low=0.2, eps_high=0.2, loss_agg="token")
    assert 0 < float(want_clip) < 1  # the case exercises both sides of the band
    assert torch.equal(got, want) and torch.equal(got_clip, want_clip)
    want.backward()
    got.backward()
    assert torch.equal(mine.grad, base.grad)


def test_clipped_policy_loss_asymmetric_band():
    ratio = torch.tensor([[1.1, 1.5, 0.5, 1.25, 0.75]])
    adv = torch.tensor([[1.0, 1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 5)
    logp = torch.log(ratio)
    # band [0.8, 1.28]:
    #   t0 inside: -1.1; t1 1.5 > 1.28, A > 0: max(-1.5, -1.28) = -1.28 (clipped)
    #   t2 0.5 < 0.8, A < 0: max(0.5, 0.8) = 0.8 (clipped); t3 1.25 inside the wider top: -1.25
    #   t4 0.75 < 0.8, A < 0: max(0.75, 0.8) = 0.8 (clipped)
    loss, clipfrac = clipped_policy_loss(logp, torch.zeros_like(logp), adv, mask, eps_low=0.2, eps_high=0.28)
    close(loss, (-1.1 - 1.28 + 0.8 - 1.25 + 0.8) / 5)
    close(clipfrac, 3 / 5)
    # symmetric 0.2 clips t3 to -1.2 as well
    loss, clipfrac = clipped_policy_loss(logp, torch.zeros_like(logp), adv, mask, eps_low=0.2, eps_high=0.2)
    close(loss, (-1.1 - 1.2 + 0.8 - 1.2 + 0.8) / 5)
    close(clipfrac, 4 / 5)


def test_loss_aggregation_token_vs_sequence():
    # on-policy (ratio 1) the per-token loss is -A: row 0 (1, 3), row 1 (5), row 2 empty
    adv = -torch.tensor([[1.0, 3.0, 7.0], [5.0, 7.0, 7.0], [7.0, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    logp = torch.zeros(3, 3)
    token, clip_t = clipped_policy_loss(logp, logp, adv, mask, loss_agg="token")
    seq, clip_s = clipped_policy_loss(logp, logp, adv, mask, loss_agg="sequence")
    close(token, (1 + 3 + 5) / 3)
    close(seq, ((1 + 3) / 2 + 5) / 2)  # the empty answer does not count
    close(clip_t, 0.0)
    close(clip_s, 0.0)
    with pytest.raises(ValueError, match="unknown loss aggregation 'mean'"):
        aggregate_loss(adv, mask, "mean")


def test_kl_loss_k3_by_hand():
    # d = ref - logp: exp(ln 2) - ln 2 - 1 = 0.306853, exp(-ln 2) + ln 2 - 1 = 0.193147; third token masked
    logp = torch.zeros(1, 3)
    ref = torch.tensor([[math.log(2), -math.log(2), 5.0]])
    mask = torch.tensor([[1, 1, 0]])
    close(kl_loss(logp, ref, mask), 0.25)
    # sequence: row 0 alone (0.306853), row 1 zero KL -> (0.306853 + 0) / 2
    logp2, ref2 = torch.zeros(2, 2), torch.tensor([[math.log(2), 0.0], [0.0, 0.0]])
    mask2 = torch.tensor([[1, 0], [1, 1]])
    close(kl_loss(logp2, ref2, mask2, loss_agg="sequence"), (2 - math.log(2) - 1) / 2)
    close(kl_loss(logp2, ref2, mask2, loss_agg="token"), (2 - math.log(2) - 1) / 3)
    # the gradient pulls logp towards ref: d/dlogp (exp(ref - logp) + logp) = 1 - exp(ref - logp)
    x = torch.zeros(1, 1, requires_grad=True)
    kl_loss(x, torch.tensor([[math.log(2)]]), torch.ones(1, 1)).backward()
    close(x.grad, [[-1.0]])
