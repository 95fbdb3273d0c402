from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coati.losses import (
    pair_accuracy,
    pair_distance,
    pairwise_reward_loss,
    policy_loss,
    token_nll_sum,
    value_loss,
)


def close(actual: torch.Tensor, expected, atol: float = 1e-5) -> None:
    expected = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# --- PPO policy loss -----------------------------------------------------------------------------


def test_policy_loss_inside_and_beyond_clip():
    # eps 0.2 -> band [0.8, 1.2]; old_logp = 0 so ratio = exp(logp)
    ratio = torch.tensor([[1.1, 1.5, 0.5, 1.5, 3.0]])
    adv = torch.tensor([[2.0, 1.0, -1.0, -1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    logp = torch.log(ratio).requires_grad_()
    loss, clipfrac = policy_loss(logp, torch.zeros_like(logp), adv, mask, eps_clip=0.2)
    # per token max(-A*r, -A*clip(r)):
    #   t0 inside band:          max(-2.2, -2.2) = -2.2  (not clipped)
    #   t1 r=1.5 > 1.2, A > 0:   max(-1.5, -1.2) = -1.2  (clipped)
    #   t2 r=0.5 < 0.8, A < 0:   max( 0.5,  0.8) =  0.8  (clipped)
    #   t3 r=1.5 > 1.2, A < 0:   max( 1.5,  1.2) =  1.5  (pessimistic side: NOT clipped)
    #   t4 masked out
    # loss = (-2.2 - 1.2 + 0.8 + 1.5) / 4 = -0.275; clipfrac = 2 / 4
    close(loss, -0.275)
    close(clipfrac, 0.5)
    assert not clipfrac.requires_grad
    # d/dlogp of -A*r/4 is -A*r/4 where unclipped, 0 where clipped or masked:
    #   t0: -2*1.1/4 = -0.55, t3: 1*1.5/4 = 0.375
    loss.backward()
    close(logp.grad, [[-0.55, 0.0, 0.0, 0.375, 0.0]])


def test_policy_loss_on_policy_is_minus_mean_advantage():
    # first PPO epoch: logp == old_logp -> ratio 1, loss = -mean(A), nothing clipped
    adv = torch.tensor([[1.0, -3.0], [4.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    logp = torch.zeros(2, 2)
    loss, clipfrac = policy_loss(logp, logp, adv, mask)
    close(loss, -(1.0 - 3.0 + 4.0) / 3)
    close(clipfrac, 0.0)


# --- value loss ----------------------------------------------------------------------------------


def test_value_loss_clipped_and_unclipped():
    values = torch.tensor([[1.0, 2.0, 2.0, 10.0]])
    old = torch.tensor([[0.9, 1.0, 1.0, 0.0]])
    returns = torch.tensor([[1.5, 1.0, 3.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # c = 0.2:
    #   t0 v-old = 0.1 inside:       (1-1.5)^2 = 0.25 both ways          -> 0.25
    #   t1 v clipped to 1.2:         max((2-1)^2 = 1, (1.2-1)^2 = 0.04)  -> 1
    #   t2 v clipped to 1.2:         max((2-3)^2 = 1, (1.2-3)^2 = 3.24)  -> 3.24
    #   t3 masked out
    # clipped = 0.5 * (0.25 + 1 + 3.24) / 3 = 0.748333; unclipped = 0.5 * 2.25 / 3 = 0.375
    close(value_loss(values, old, returns, mask, value_clip=0.2), 0.5 * 4.49 / 3)
    close(value_loss(values, old, returns, mask, value_clip=None), 0.375)
    close(value_loss(values, old, returns, mask, value_clip=0.0), 0.375)
    close(value_loss(values, old, returns, mask, value_clip=-1.0), 0.375)


# --- reward-model losses -------------------------------------------------------------------------


def test_pairwise_loss_hand_values():
    chosen = torch.tensor([0.0, 1.0])
    rejected = torch.tensor([0.0, 0.0])
    # margin 0: -log sigmoid(0) = ln 2 = 0.693147; margin 1: log(1 + e^-1) = 0.313262
    expected = (math.log(2.0) + math.log1p(math.exp(-1.0))) / 2
    close(pairwise_reward_loss(chosen, rejected, "log_sig"), expected)
    close(pairwise_reward_loss(chosen, rejected, "log_exp"), expected)


def test_log_sig_and_log_exp_same_loss_and_gradients():
    torch.manual_seed(0)
    base_c = torch.randn(64) * 3
    base_r = torch.randn(64) * 3
    losses, grads = [], []
    for kind in ("log_sig", "log_exp"):
        c = base_c.clone().requires_grad_()
        r = base_r.clone().requires_grad_()
        loss = pairwise_reward_loss(c, r, kind=kind)
        loss.backward()
        losses.append(loss.detach())
        grads.append((c.grad, r.grad))
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-6, rtol=0)


def test_pairwise_loss_stable_for_large_margins():
    # margin +100 -> loss ~0; margin -100 -> loss ~100 (a naive log(1 + exp(100)) would be inf in fp16)
    for kind in ("log_sig", "log_exp"):
        close(pairwise_reward_loss(torch.tensor([100.0]), torch.tensor([0.0]), kind), 0.0)
        close(pairwise_reward_loss(torch.tensor([-100.0]), torch.tensor([0.0]), kind), 100.0)


def test_pairwise_loss_unknown_kind():
    with pytest.raises(ValueError, match=r"unknown pairwise loss kind 'hinge'.*log_sig, log_exp"):
        pairwise_reward_loss(torch.zeros(2), torch.zeros(2), kind="hinge")


def test_pair_accuracy_ties_are_wrong_and_distance():
    chosen = torch.tensor([1.0, 2.0, 3.0, 4.0])
    rejected = torch.tensor([0.0, 2.0, 5.0, 3.0])
    # right, tie (wrong), wrong, right -> 2/4
    acc = pair_accuracy(chosen, rejected)
    assert acc.dtype == torch.float32
    close(acc, 0.5)
    # margins 1, 0, -2, 1 -> mean 0
    close(pair_distance(chosen, rejected), 0.0)
    close(pair_distance(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 0.0])), 1.5)


# --- SFT token NLL -------------------------------------------------------------------------------


def test_token_nll_sum_hand_values_and_shift():
    # V = 2; position t's logits predict labels[t + 1]
    logits = torch.tensor(
        [
            [[0.0, math.log(3.0)], [0.0, 0.0], [5.0, 5.0]],  # last position predicts nothing
            [[0.0, 0.0], [math.log(3.0), 0.0], [7.0, -7.0]],
        ]
    )
    labels = torch.tensor(
        [
            [-100, 1, -100],  # first label is never predicted; third ignored
            [9, 0, 0],  # label 9 is out of range but at position 0, so never read
        ]
    )
    nll, n = token_nll_sum(logits, labels)
    # row 0: pos 0 -> label 1, p = 3/4, nll = -ln 0.75 = 0.287682
    # row 1: pos 0 -> label 0, uniform, nll = ln 2 = 0.693147
    #        pos 1 -> label 0, logits (ln 3, 0), p = 3/4, nll = 0.287682
    assert n.item() == 3
    close(nll, 2 * -math.log(0.75) + math.log(2.0))


def test_token_nll_sum_matches_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 13)
    labels = torch.randint(0, 13, (2, 6))
    labels[0, 2] = -100
    labels[1, 4:] = -100
    nll, n = token_nll_sum(logits, labels)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 13), labels[:, 1:].reshape(-1), reduction="sum")
    close(nll, expected)
    # 10 shifted labels, of which (0, 2), (1, 4), (1, 5) are ignored
    assert n.item() == 7
