"""Losses and metrics for SFT, reward-model, PPO, critic-free RL (GRPO, RLOO, REINFORCE++) and preference
(DPO, IPO, SimPO, ORPO) training.

Shape letters: B batch, T sequence positions, V vocabulary, A generated (action) tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from coati.ops import approx_kl, log_probs_from_logits, masked_mean

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


# --- preference optimisation (DPO and its relatives) ------------------------------------------------------------
# Shape letters here: N rows of a concatenated batch (chosen rows then rejected rows), P = N / 2 pairs.

PREFERENCE_LOSSES = ("dpo", "ipo", "simpo", "orpo")
REFERENCE_FREE_LOSSES = ("simpo", "orpo")
# The papers' usual settings; the stage's --beta overrides them.
DEFAULT_BETA = {"dpo": 0.1, "ipo": 0.1, "simpo": 2.0, "orpo": 0.1}
DEFAULT_SIMPO_GAMMA = 0.5
# ORPO's log(1 - p) is -inf at p = 1; mean token log-probs are held at or below this so the loss stays finite.
_MAX_MEAN_LOGP = -1e-6


def answer_token_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every answer token and the mask saying which positions are answer tokens.

    logits: (N, T, V); labels: (N, T) aligned with input_ids (HF convention, not shifted), ignore_index on the
    prompt and the padding. logits[:, t] scores labels[:, t + 1], so both outputs are (N, T - 1):
    token_logps float32 with exact zeros off the mask, mask bool.
    """
    shift_labels = labels[:, 1:]
    mask = shift_labels != ignore_index
    # ignore_index is no valid vocabulary index: any real id serves, its log-prob is zeroed below
    token_logps = log_probs_from_logits(logits[:, :-1], shift_labels.masked_fill(~mask, 0))
    return torch.where(mask, token_logps, torch.zeros_like(token_logps)), mask


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's answer and its number of answer tokens.

    logits: (N, T, V); labels: (N, T) as for `answer_token_logps`. Returns (logps (N,) float32,
    lengths (N,) int64). Prompt and padding positions (labels == ignore_index) add nothing, so changing their
    logits leaves both outputs unchanged. lengths is what SimPO, ORPO, IPO and the SFT term divide by.
    """
    token_logps, mask = answer_token_logps(logits, labels, ignore_index)
    return token_logps.sum(dim=-1), mask.sum(dim=-1)


def pair_sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`sequence_logps` of a pair batch (first P rows chosen, last P rejected), split into its halves.

    logits: (2P, T, V); labels: (2P, T). Returns (chosen_logps, rejected_logps, chosen_lengths,
    rejected_lengths), each (P,).
    """
    logps, lengths = sequence_logps(logits, labels, ignore_index)
    chosen, rejected = logps.chunk(2)
    chosen_len, rejected_len = lengths.chunk(2)
    return chosen, rejected, chosen_len, rejected_len


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends. x: any shape; returns x's shape.

    log1p(-exp(x)) loses precision as x -> 0 and log(-expm1(x)) as x -> -inf; the switch at -ln 2 keeps the
    better one. Each branch sees only inputs valid for it, so the unused branch cannot put nan in the gradient.
    """
    cut = -math.log(2.0)
    far = torch.where(x < cut, x, torch.full_like(x, cut))
    near = torch.where(x < cut, torch.full_like(x, cut), x)
    return torch.where(x < cut, torch.log1p(-torch.exp(far)), torch.log(-torch.expm1(near)))


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = DEFAULT_SIMPO_GAMMA,
    sft_coef: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference loss and the implicit rewards of both answers.

    All inputs (P,): summed answer log-probs from `sequence_logps` (policy_* with gradient, ref_* without),
    lengths the answers' token counts. Returns (losses (P,) float32, chosen_rewards (P,), rejected_rewards (P,)),
    rewards detached; `pair_accuracy` and `pair_distance` of the rewards give the accuracy (a tie is wrong) and
    the margin. With lc = πc/|c| and lr = πr/|r| the mean token log-probs and h = (πc - rc) - (πr - rr):

      dpo    -(1 - ε) log σ(β h) - ε log σ(-β h)  (ε = label_smoothing: conservative DPO, labels flipped with
             probability ε). ε = 0 is plain DPO, TRL's "sigmoid", which ignores ε; TRL's "robust" is another
             estimator, so compare with TRL at ε = 0. Rewards β (πc - rc), β (πr - rr), as TRL logs them.
      ipo    (h' - 1 / (2β))², h' = (πc - rc) / |c| - (πr - rr) / |r|: log-ratios averaged over answer tokens,
             as TRL's DPOTrainer does for "ipo". With sums, the target 1 / (2β) would mean a different strength
             for every answer length; averaged, one β suits short and long answers. Rewards as dpo (summed).
      simpo  -(1 - ε) log σ(z) - ε log σ(-z), z = β (lc - lr) - γ, no reference model; γ = simpo_gamma is the
             absolute margin (TRL's CPOConfig.simpo_gamma; the SimPO paper's recipes give it as
             gamma_beta_ratio * β). Rewards β lc, β lr: the quantity SimPO ranks, as TRL logs it.
      orpo   -lc + β (-log σ(log odds(c) - log odds(r))), log odds(y) = ly - log(1 - exp(ly)) (exp(ly) =
             p, the geometric-mean token probability), no reference model; β is the paper's λ, the weight of the
             odds-ratio term (TRL's ORPOConfig.beta).
             The NLL covers the answer tokens only (TRL's ORPOTrainer also counts the prompt's). Rewards β lc,
             β lr as TRL logs them; log odds rise with ly, so the accuracy is the share of pairs whose odds
             favour the chosen answer.

    sft_coef adds sft_coef * (-lc), the chosen answer's mean token NLL, to any loss type (on top of ORPO's own).
    It is a per-pair mean, so the caller's mean over pairs weighs every pair alike; TRL's "sft" term and
    CPO's NLL take the mean over all chosen tokens of the batch instead (equal when all answers are as long).
    Everything is computed in float32.
    """
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {loss_type!r}; expected one of: {', '.join(PREFERENCE_LOSSES)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing > 0 and loss_type not in ("dpo", "simpo"):
        raise ValueError(f"label_smoothing applies to dpo and simpo only, not {loss_type}")
    if loss_type not in REFERENCE_FREE_LOSSES and (ref_chosen_logps is None or ref_rejected_logps is None):
        raise ValueError(f"{loss_type} needs the reference model's log-probs (ref_chosen_logps, ref_rejected_logps)")
    needs_lengths = loss_type != "dpo" or sft_coef != 0
    if needs_lengths and (chosen_lengths is None or rejected_lengths is None):
        raise ValueError(f"{loss_type}{' with sft_coef' if sft_coef else ''} needs chosen_lengths and "
                         "rejected_lengths to average log-probs over answer tokens")

    pc, pr = policy_chosen_logps.float(), policy_rejected_logps.float()
    if needs_lengths:
        # an answer cut to nothing would divide by zero; the dataset never makes one, the clamp is a guard
        n_c = chosen_lengths.to(pc.device).float().clamp_min(1.0)
        n_r = rejected_lengths.to(pc.device).float().clamp_min(1.0)
        mean_c, mean_r = pc / n_c, pr / n_r

    def smoothed(z: torch.Tensor) -> torch.Tensor:
        loss = -F.logsigmoid(z)
        return loss if label_smoothing == 0 else (1 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-z)

    if loss_type in ("dpo", "ipo"):
        ratio_c = pc - ref_chosen_logps.to(pc.device).float()
        ratio_r = pr - ref_rejected_logps.to(pc.device).float()
        if loss_type == "dpo":
            losses = smoothed(beta * (ratio_c - ratio_r))
        else:
            losses = (ratio_c / n_c - ratio_r / n_r - 1.0 / (2.0 * beta)) ** 2
        chosen_rewards, rejected_rewards = beta * ratio_c, beta * ratio_r
    elif loss_type == "simpo":
        losses = smoothed(beta * (mean_c - mean_r) - simpo_gamma)
        chosen_rewards, rejected_rewards = beta * mean_c, beta * mean_r
    else:  # orpo
        # clamping keeps p < 1, where log odds are finite; it only bites when the answer is already certain
        lc, lr = mean_c.clamp_max(_MAX_MEAN_LOGP), mean_r.clamp_max(_MAX_MEAN_LOGP)
        log_odds = (lc - _log1mexp(lc)) - (lr - _log1mexp(lr))
        losses = -mean_c - beta * F.logsigmoid(log_odds)
        chosen_rewards, rejected_rewards = beta * mean_c, beta * mean_r

    if sft_coef:
        losses = losses - sft_coef * mean_c
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


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
