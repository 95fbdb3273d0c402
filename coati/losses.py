"""Losses and metrics for SFT, reward-model and PPO training.

Shape letters: B batch, T sequence positions, V vocabulary, A generated (action) tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coati.ops import masked_mean

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
