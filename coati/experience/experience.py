"""The experience record: what one rollout produced, kept per sample and re-batched for the updates of PPO,
GRPO, RLOO and REINFORCE++.

Samples are stored unpadded so minibatches can mix rollouts of different lengths; `collate` pads them
back: prompts on the left, responses on the right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from coati.dataset.padding import padded_width


@dataclass
class Sample:
    """One prompt and its sampled response. All per-token tensors have length A = response length
    (up to and including the first EOS) and are aligned with the response tokens."""

    prompt: torch.Tensor  # (P,) prompt ids, no padding
    response: torch.Tensor  # (A,) response ids
    log_probs: torch.Tensor  # (A,) actor log p(token) when sampled
    ref_log_probs: torch.Tensor  # (A,) initial model log p(token); log_probs when no initial model is loaded
    values: torch.Tensor  # (A,) critic V(state before the token); 0 without a critic
    rewards: torch.Tensor  # (A,) -kl_coef * KL per token, plus the score at the last token
    advantages: torch.Tensor  # (A,) PPO: GAE, whitened over the buffer before updates; the others: their own
    returns: torch.Tensor  # (A,) PPO: advantages + values, the critic's target
    score: float  # the answer's reward: reward-model score plus weighted reward functions, less penalties
    kl: float  # sum over the response of log p - log p_ref
    in_update: bool = True  # False when --filter_groups drops its group (all its answers scored alike)
    group_std: float = 0.0  # sample std of the scores of the answers to its prompt (0 with one answer)
    parts: dict[str, float] = field(default_factory=dict)  # each reward function's unweighted score


@dataclass
class Experience:
    """A padded minibatch. B samples, P = longest prompt, A = longest response, T = P + A.

    sequences (B, T), attention_mask (B, T), action_mask (B, A) bool; log_probs, ref_log_probs, values,
    advantages, returns: (B, A), zero where action_mask is False; score, kl: (B,); in_update (B,) bool.
    Column P - 1 + t of the logits predicts action t.
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    log_probs: torch.Tensor
    ref_log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    score: torch.Tensor
    kl: torch.Tensor
    prompt_len: int
    in_update: torch.Tensor | None = None

    @property
    def update_mask(self) -> torch.Tensor:
        """(B, A) bool: the action tokens the losses read (those of samples that stay in the update)."""
        return self.action_mask if self.in_update is None else self.action_mask & self.in_update[:, None]

    def to(self, device: torch.device) -> Experience:
        return Experience(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(self).items()})


def collate(samples: list[Sample], pad_token_id: int, pad_to_multiple_of: int | None = None) -> Experience:
    """Pad a list of samples into one Experience; with pad_to_multiple_of, A grows until T = P + A is a multiple of
    it (the extra response columns are masked out like any other padding)."""
    b = len(samples)
    p = max(len(s.prompt) for s in samples)
    a = padded_width([p + len(s.response) for s in samples], pad_to_multiple_of) - p
    seq = torch.full((b, p + a), pad_token_id, dtype=torch.long)
    attn = torch.zeros((b, p + a), dtype=torch.long)
    action_mask = torch.zeros((b, a), dtype=torch.bool)
    per_token = {k: torch.zeros((b, a)) for k in ("log_probs", "ref_log_probs", "values", "advantages", "returns")}
    for i, s in enumerate(samples):
        n_p, n_a = len(s.prompt), len(s.response)
        seq[i, p - n_p: p] = s.prompt
        seq[i, p: p + n_a] = s.response
        attn[i, p - n_p: p + n_a] = 1
        action_mask[i, :n_a] = True
        for k, t in per_token.items():
            t[i, :n_a] = getattr(s, k)
    return Experience(seq, attn, action_mask, score=torch.tensor([s.score for s in samples]),
                      kl=torch.tensor([s.kl for s in samples]), prompt_len=p,
                      in_update=torch.tensor([s.in_update for s in samples]), **per_token)
