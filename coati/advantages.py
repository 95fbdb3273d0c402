"""Advantages for critic-free RL: GRPO, RLOO and REINFORCE++ (PPO's GAE lives in coati.ops).

Shape letters: B prompts, G answers sampled per prompt (the group), N = B * G answers, A generated
(action) tokens. Groups are consecutive rows: answers [g * G, (g + 1) * G) belong to prompt g, which is
the order a rollout produces when each prompt is repeated G times in place.
Every function is pure: it reads its tensors and returns new ones.

Cross-rank statistics: a group always sits on one rank, so group statistics need no communication. The
batch-wide ones (GRPO's scale="batch", REINFORCE++'s normalisation) take `reduce`, a callable that sums a
1-D float64 tensor over ranks, e.g. `lambda t: strategy.all_reduce(t, "sum")`; None means this process's
batch is the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from coati.ops import compute_token_rewards, masked_moments, whiten

GRPO_SCALES = ("group", "batch", "none")
BASELINES = ("none", "group")

Reduce = Callable[[torch.Tensor], torch.Tensor]


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """rewards (N,) viewed as (B, G); rejects a G that does not tile N or leaves no spread to measure."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (one answer has no peers), got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def mean_std_from_moments(moments: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) scalars from coati.ops.masked_moments' [sum, sum of squares, count], float64.

    unbiased divides the squared deviations by count - 1 (count 1 then gives std 0, not nan).
    """
    total, total_sq, count = moments.unbind()
    mean = total / count.clamp_min(1)
    sq_dev = (total_sq - count * mean**2).clamp_min(0)
    denom = (count - 1) if unbiased else count
    return mean, (sq_dev / denom.clamp_min(1)).sqrt()


def _reduced(moments: torch.Tensor, reduce: Reduce | None) -> torch.Tensor:
    return moments if reduce is None else reduce(moments).to(moments.device, torch.float64)


def grpo_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: str = "group",
    eps: float = 1e-4,
    reduce: Reduce | None = None,
) -> torch.Tensor:
    """GRPO advantages (Shao et al. 2024): each reward minus its group's mean, then scaled.

    rewards: (N,) with N = B * G; returns (N,) in rewards' dtype.
    scale="group": divide by the group's std + eps; "batch": by the std of all N rewards (over ranks with
    `reduce`) + eps; "none": no division (Dr. GRPO, Liu et al. 2025, which argues the std division
    over-weights groups that are nearly all right or all wrong).
    The std is the sample (unbiased, n - 1) one in both scaled modes, as torch.std gives and TRL uses, so
    a run here and a TRL run with the same rewards see the same advantages; with G = 8 the two
    conventions differ by a factor sqrt(8/7) = 1.07. A group whose rewards are all equal gets 0 everywhere.
    """
    if scale not in GRPO_SCALES:
        raise ValueError(f"unknown GRPO scale {scale!r}; expected one of {', '.join(GRPO_SCALES)}")
    grouped = _groups(rewards, group_size).double()
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        _, std = mean_std_from_moments(_reduced(masked_moments(rewards.detach()), reduce), unbiased=True)
        centred = centred / (std + eps)
    return centred.reshape(-1).to(rewards.dtype)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Kool et al. 2019; Ahmadian et al. 2024).

    rewards: (N,) with N = B * G; returns (N,). Each reward minus the mean of the other G - 1 rewards of
    its group, which is G / (G - 1) times (reward - group mean): a baseline that does not depend on the
    answer it scores, so the gradient estimate stays unbiased.
    """
    grouped = _groups(rewards, group_size).double()
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).reshape(-1).to(rewards.dtype)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go without a critic: R_t = r_t + gamma * R_{t+1}, R = 0 after a row's last masked token.

    rewards, mask: (B, A); returns (B, A), 0 outside the mask. Equal to the returns of
    gae_advantages_and_returns with all values 0 and lam = 1.
    """
    mask_f = mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        # past a row's end the running sum restarts at 0, so padding never flows back into the answer
        running = (rewards[:, t] + gamma * running) * mask_f[:, t]
        returns[:, t] = running
    return returns


def reinforce_pp_advantages(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
    gamma: float = 1.0,
    baseline: str = "none",
    group_size: int | None = None,
    reward_clip: float | None = None,
    reduce: Reduce | None = None,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """REINFORCE++ (Hu 2025): PPO's per-token rewards, critic-free returns, whitened over the whole batch.

    scores: (N,); logp, ref_logp, action_mask: (N, A); returns (advantages (N, A), returns (N, A),
    kl (N, A)), all 0 outside the mask.
    baseline="group" first subtracts from each score the mean score of its group of group_size answers
    (--reinforce_baseline group); reward_clip then clamps the score as in PPO. The token rewards are those
    of compute_token_rewards (-kl_coef * k1 KL on every answer token, the score on the last one), the
    returns their discounted sums (gamma), and the advantages those returns minus their mean and divided by
    their std over every answer token of the batch (population std, as the PPO trainer whitens; over ranks
    with `reduce`).
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown REINFORCE++ baseline {baseline!r}; expected one of {', '.join(BASELINES)}")
    if baseline == "group":
        if group_size is None:
            raise ValueError("baseline='group' needs group_size")
        grouped = _groups(scores, group_size)
        scores = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    rewards, kl = compute_token_rewards(scores, logp, ref_logp, action_mask, kl_coef, reward_clip)
    returns = discounted_returns(rewards, action_mask, gamma)
    moments = _reduced(masked_moments(returns.detach(), action_mask), reduce)
    return whiten(returns, moments, action_mask, eps=eps), returns, kl


def sequence_to_tokens(advantages: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Give every token of an answer its answer's advantage.

    advantages: (N,); action_mask: (N, A); returns (N, A) in advantages' dtype, 0 outside the mask.
    """
    spread = advantages.unsqueeze(1).expand(action_mask.shape)
    return torch.where(action_mask.bool(), spread, torch.zeros_like(spread))


def group_filter_mask(
    rewards: torch.Tensor, group_size: int, atol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which answers belong to a group that can teach something (--filter_groups).

    rewards: (N,); returns (keep bool (N,), zero_std_groups float scalar). keep is True for every answer
    of a group whose rewards differ (max - min > atol): in a group where all are equal every
    group-relative advantage is 0, so its answers add no gradient, only dilute the loss's token mean.
    zero_std_groups is the share of groups that were dropped.
    """
    grouped = _groups(rewards, group_size)
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)
    informative = spread > atol
    keep = informative.unsqueeze(1).expand_as(grouped).reshape(-1)
    return keep, (~informative).float().mean()
