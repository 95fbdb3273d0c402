"""Losses and metrics for SFT, reward-model and PPO training.

Shape letters: B batch, T sequence positions, V vocabulary, A generated (action) tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coati.ops import approx_kl, masked_mean

PAIRWISE_KINDS = ("log_sig", "log_exp")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate loss (Schulman et al. 2017).

    logp, old_logp, advantages, mask: (B, A); returns (loss scalar, clipfrac scalar).
    loss is the masked token mean of max(-A * r, -A * clip(r, 1 - eps, 1 + eps)), r = p / p_old.
    clipfrac is the share of masked tokens where the clipped term was the larger one, i.e. the
    ones that give no gradient this step.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - eps_clip, 1.0 + eps_clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    # strict >: inside the band (or A == 0) both terms are equal and nothing is clipped
    clipfrac = masked_mean((clipped > unclipped).to(loss.dtype), mask).detach()
    return loss, clipfrac


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    value_clip: float | None = 0.2,
) -> torch.Tensor:
    """Clipped value-function loss, 0.5 * masked mean of the squared error.

    values, old_values, returns, mask: (B, A); returns a scalar.
    With clipping the error is the larger of (v - R)^2 and (old_v + clip(v - old_v, -c, c) - R)^2,
    which stops the critic moving far from old_values in one step. value_clip None or <= 0: unclipped.
    """
    sq_err = (values - returns) ** 2
    if value_clip is not None and value_clip > 0:
        values_clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        sq_err = torch.maximum(sq_err, (values_clipped - returns) ** 2)
    return 0.5 * masked_mean(sq_err, mask)


def pairwise_reward_loss(chosen: torch.Tensor, rejected: torch.Tensor, kind: str = "log_sig") -> torch.Tensor:
    """Bradley-Terry ranking loss for a reward model.

    chosen, rejected: (B,) rewards; returns the scalar mean over pairs.
    log_sig = -log sigmoid(c - r) and log_exp = log(1 + exp(r - c)) are the same function;
    both are written with the stable primitives so large margins neither overflow nor give nan.
    """
    if kind == "log_sig":
        per_pair = -F.logsigmoid(chosen - rejected)
    elif kind == "log_exp":
        per_pair = F.softplus(rejected - chosen)
    else:
        raise ValueError(f"unknown pairwise loss kind {kind!r}; expected one of: {', '.join(PAIRWISE_KINDS)}")
    return per_pair.mean()


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Share of pairs ranked correctly. chosen, rejected: (B,); returns a float scalar.

    A tie counts as wrong: a reward model that scores both answers alike has not ranked them.
    """
    return (chosen > rejected).float().mean()


def pair_distance(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean reward margin chosen - rejected. chosen, rejected: (B,); returns a scalar."""
    return (chosen - rejected).mean()


def token_nll_sum(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token negative log-likelihood and the number of tokens it covers.

    logits: (B, T, V); labels: (B, T) aligned with input_ids (HF convention, not shifted).
    logits[:, t] predicts labels[:, t + 1]; labels equal to ignore_index are skipped.
    Returns (sum scalar float32, count scalar int64), so a caller accumulating several
    micro-batches can divide by the total token count instead of averaging averages.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    nll_sum = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    n_tokens = (shift_labels != ignore_index).sum()
    return nll_sum, n_tokens


# --- critic-free RL (GRPO, RLOO, REINFORCE++) ------------------------------------------------------------

LOSS_AGGS = ("token", "sequence")


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_agg: str = "token") -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    per_token, mask: (B, A); returns a scalar. "token": mean over every masked token of the batch, so a long
    answer weighs more (DAPO's token-level loss). "sequence": mean over each answer's tokens, then mean over
    the answers that have at least one token (the original GRPO), so every answer weighs the same.
    """
    if loss_agg == "token":
        return masked_mean(per_token, mask)
    if loss_agg == "sequence":
        has_tokens = mask.bool().any(dim=1)
        return masked_mean(masked_mean(per_token, mask, dim=1), has_tokens)
    raise ValueError(f"unknown loss aggregation {loss_agg!r}; expected one of {', '.join(LOSS_AGGS)}")


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    loss_agg: str = "token",
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate with an asymmetric band and a choice of aggregation.

    logp, old_logp, advantages, mask: (B, A); returns (loss scalar, clipfrac scalar).
    Per token max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high)), r = p / p_old, reduced by
    aggregate_loss(loss_agg). A wider upper band (DAPO's clip-higher) lets unlikely tokens with a positive
    advantage grow faster. clipfrac is, as in policy_loss, the share of masked tokens whose clipped term
    was the larger, over all tokens whatever loss_agg is. eps_low == eps_high with loss_agg="token" gives
    exactly policy_loss.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    loss = aggregate_loss(torch.maximum(unclipped, clipped), mask, loss_agg)
    clipfrac = masked_mean((clipped > unclipped).to(loss.dtype), mask).detach()
    return loss, clipfrac


def kl_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, loss_agg: str = "token"
) -> torch.Tensor:
    """KL(policy || reference) as a loss term (GRPO's beta * KL), with the k3 estimator.

    logp, ref_logp, mask: (B, A); returns a scalar. Per token k3 = exp(ref - logp) - (ref - logp) - 1,
    which is >= 0 and unbiased for sampled tokens, reduced by aggregate_loss(loss_agg). Its gradient
    pulls the policy towards the reference, unlike PPO's KL folded into the reward, which only scores.
    """
    return aggregate_loss(approx_kl(logp, ref_logp, mask, kind="k3"), mask, loss_agg)
