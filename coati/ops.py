"""Tensor ops shared by SFT, reward-model and PPO training.

Shape letters: B batch, T sequence positions, V vocabulary, A generated (action) tokens.
Every function is pure: it reads its tensors and returns new ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

KL_KINDS = ("k1", "k2", "k3")


def _zero_where_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weight x by mask and put exact zeros where mask == 0. x, mask: same shape; returns x's shape.

    torch.where instead of a bare product so an inf/nan sitting in a masked-out slot cannot leak out.
    """
    weighted = x * mask.to(x.dtype)
    return torch.where(mask.bool(), weighted, torch.zeros_like(weighted))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x where mask is set (a float mask weights each entry).

    x, mask: same shape, e.g. (B, A); returns (B,) for dim=1, a scalar for dim=None.
    """
    masked = _zero_where_masked(x, mask)
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, dim: int | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Mean of x over entries where mask == 1 (bool or float mask).

    x, mask: same shape, e.g. (B, A); returns (B,) for dim=1, a scalar for dim=None.
    An all-zero mask (or row) gives 0 rather than nan.
    """
    count = masked_sum(torch.ones_like(x), mask, dim=dim)
    # clamp rather than add eps so a non-empty mask gives the exact mean
    return masked_sum(x, mask, dim=dim) / count.clamp_min(eps)


def masked_moments(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum, sum of squares and count of x's entries where mask is set (all without a mask), in float64.

    x, mask: same shape, any; returns (3,) float64. Sums, so that the moments of several processes' entries
    are the sum of theirs (an all-reduce) before `whiten` reads them.
    """
    x = x.double()
    if mask is None:
        return torch.stack([x.sum(), (x**2).sum(), torch.tensor(float(x.numel()), dtype=torch.float64)])
    return torch.stack([masked_sum(x, mask), masked_sum(x**2, mask), masked_sum(torch.ones_like(x), mask)])


def whiten(
    x: torch.Tensor,
    moments: torch.Tensor,
    mask: torch.Tensor | None = None,
    shift_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Normalise x to zero mean and unit variance with the given `masked_moments` (those of x, or of every
    rank's entries together).

    x, mask: same shape; moments: (3,); returns x's shape and dtype, 0 where mask == 0. Computed in float64;
    the variance is the biased one, and (x - mean) / (std + eps) stays finite for constant x. With
    shift_mean=False the mean is added back, so only the scale changes (for advantages whose sign carries
    meaning).
    """
    moments = moments.to(x.device)
    mean = moments[0] / moments[2]
    std = (moments[1] / moments[2] - mean**2).clamp(min=0).sqrt()
    whitened = (x.double() - mean) / (std + eps)
    if not shift_mean:
        whitened = whitened + mean
    whitened = whitened.to(x.dtype)
    if mask is None:
        return whitened
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def log_probs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under the softmax of its logits.

    logits: (B, T, V); labels: (B, T) int64; returns (B, T) float32.
    Positions must already be aligned (logits[:, t] scores labels[:, t]).
    """
    rows = []
    # One row at a time: a float32 copy of the full (B, T, V) tensor is the largest
    # allocation in PPO for big vocabularies, and one row of it is enough.
    for row_logits, row_labels in zip(logits, labels):
        row_logits = row_logits.float()
        picked = row_logits.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(row_logits, dim=-1))
    return torch.stack(rows)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the softmax distribution at each position.

    logits: (B, T, V); returns (B, T) float32.
    """
    rows = []
    # row by row for the same memory reason as log_probs_from_logits
    for row_logits in logits:
        logp = F.log_softmax(row_logits.float(), dim=-1)
        rows.append(-(logp.exp() * logp).sum(dim=-1))
    return torch.stack(rows)


def action_mask_from_sequences(
    sequences: torch.Tensor,
    prompt_len: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int | None,
) -> torch.Tensor:
    """Mask of the generated tokens that belong to each response.

    sequences: (B, prompt_len + A) from generate, prompts left-padded to prompt_len;
    returns bool (B, A). A row is True up to and including its first EOS and False after it;
    a row without EOS is True wherever the token is not pad. pad may equal eos: the first eos
    is kept and the pads after it are dropped. eos_token_id may be a list of ids.
    """
    generated = sequences[:, prompt_len:]
    eos_ids = torch.as_tensor(eos_token_id, dtype=generated.dtype, device=generated.device).reshape(-1)
    is_eos = torch.isin(generated, eos_ids)
    # a token is inside the response when no EOS came strictly before it
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()
    upto_first_eos = eos_before == 0
    if pad_token_id is None:
        not_pad = torch.ones_like(upto_first_eos)
    else:
        not_pad = generated != pad_token_id
    has_eos = is_eos.any(dim=1, keepdim=True)
    return torch.where(has_eos, upto_first_eos, not_pad)


def approx_kl(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor | None = None, kind: str = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled-token log-probs.

    logp, ref_logp, mask: (B, A); returns (B, A), 0 where mask == 0.
    k1 = log r, k2 = (log r)^2 / 2, k3 = 1/r - 1 + log r, with r = p / p_ref (Schulman's
    estimators: k1 unbiased but noisy, k3 unbiased and always >= 0).
    """
    log_ratio = logp - ref_logp
    if kind == "k1":
        kl = log_ratio
    elif kind == "k2":
        kl = 0.5 * log_ratio**2
    elif kind == "k3":
        kl = torch.exp(-log_ratio) - 1 + log_ratio
    else:
        raise ValueError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_KINDS)}")
    if mask is None:
        return kl
    return torch.where(mask.bool(), kl, torch.zeros_like(kl))


def last_true_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of the last True in each row. mask: (B, A); returns (B,) int64, 0 for an empty row."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=1)


def compute_token_rewards(
    score: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    action_mask: torch.Tensor,
    kl_coef: float,
    reward_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO rewards: a KL penalty on every action token plus the score at the last one.

    score: (B,); logp, ref_logp, action_mask: (B, A); returns (rewards (B, A), kl (B, A)),
    both 0 outside the mask. The score goes on each row's last True in the mask, which is not
    the last column when the response ended early. reward_clip clamps the score to +-reward_clip.
    """
    kl = approx_kl(logp, ref_logp, action_mask, kind="k1")
    rewards = -kl_coef * kl
    if reward_clip is not None:
        score = score.clamp(-reward_clip, reward_clip)
    columns = torch.arange(action_mask.shape[1], device=action_mask.device)
    at_last = columns.unsqueeze(0) == last_true_index(action_mask).unsqueeze(1)
    # an empty row has no last token, so it gets no score
    at_last = at_last & action_mask.bool().any(dim=1, keepdim=True)
    rewards = rewards + torch.where(at_last, score.to(rewards.dtype).unsqueeze(1), torch.zeros_like(rewards))
    return rewards, kl


def gae_advantages_and_returns(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over the action tokens.

    rewards, values, mask: (B, A); returns (advantages (B, A), returns (B, A)), 0 outside the mask.
    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}. The state
    after a row's last masked token is terminal (V = 0, A = 0), so rows may end at different columns.
    """
    mask = mask.to(values.dtype)
    length = rewards.shape[1]
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(length)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = adv_t
        # what step t-1 bootstraps from: zero when t is past the row's end, so the last
        # masked token sees a terminal state and padded rewards/values never leak back
        next_value = values[:, t] * mask[:, t]
        next_adv = adv_t
    returns = (advantages + values) * mask
    return advantages, returns
