"""Roll out prompts and turn them into scored, advantage-annotated samples."""

from __future__ import annotations

import contextlib

import torch

from coati.experience.experience import Sample
from coati.models.forward import causal_lm_logits
from coati.models.loading import adapters_disabled
from coati.models.sampling import sample
from coati.ops import (
    action_mask_from_sequences,
    compute_token_rewards,
    gae_advantages_and_returns,
    log_probs_from_logits,
)


class ExperienceMaker:
    """Generate with the actor (which gives its log-probs too), then one forward each of the initial model, critic
    and reward model.

    initial_model None: the actor is LoRA-wrapped and its reference is the actor with its adapters switched off
    (the base weights it was trained from), so no second copy of the model is held.
    offload_frozen: keep the initial and reward models on the CPU except while they score, to save
    accelerator memory at the cost of two copies per rollout.
    """

    def __init__(self, *, strategy, actor, critic, reward_model, initial_model, tokenizer, gen_kwargs: dict,
                 gamma: float = 1.0, lam: float = 0.95, reward_clip: float | None = None,
                 offload_frozen: bool = False):
        self.strategy, self.actor, self.critic = strategy, actor, critic
        self.reward_model, self.initial_model, self.tokenizer = reward_model, initial_model, tokenizer
        self.gen_kwargs, self.gamma, self.lam = gen_kwargs, gamma, lam
        self.reward_clip, self.offload_frozen = reward_clip, offload_frozen

    @contextlib.contextmanager
    def _on_device(self, model):
        if model is None:  # the reference is the actor with its adapters off
            with adapters_disabled(self.strategy.unwrap(self.actor)):
                yield self.strategy.unwrap(self.actor)
            return
        if self.offload_frozen:
            model.to(self.strategy.device)
        try:
            yield model
        finally:
            if self.offload_frozen:
                model.to("cpu")

    def make(self, prompts: dict[str, torch.Tensor], kl_coef: float) -> list[Sample]:
        """prompts: left-padded input_ids / attention_mask (B, P) -> B samples, whose rewards carry a
        per-token KL penalty of kl_coef (the trainer's KL controller decides it)."""
        with self.strategy.rollout_mode():
            return self._make(prompts, kl_coef)

    def _make(self, prompts: dict[str, torch.Tensor], kl_coef: float) -> list[Sample]:
        device = self.strategy.device
        input_ids, prompt_mask = prompts["input_ids"].to(device), prompts["attention_mask"].to(device)
        p = input_ids.shape[1]
        # The actor's log-probs come from the decoding steps: one forward per token, none after.
        seqs, log_probs = sample(self.strategy.rollout_model(self.actor), input_ids, prompt_mask, self.tokenizer,
                                 return_log_probs=True, **self.gen_kwargs, **self.strategy.generation_kwargs())
        action_mask = action_mask_from_sequences(seqs, p, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        attn = torch.cat([prompt_mask, action_mask.long()], dim=1)
        actions = seqs[:, p:]

        # Column p-1+t of the logits predicts action t; the critic's value there is V(state before action t).
        with self._on_device(self.initial_model) as ref:
            ref_log_probs = log_probs_from_logits(causal_lm_logits(ref, seqs, attn, p - 1)[:, :-1], actions)
        values = self.critic(input_ids=seqs, attention_mask=attn, per_token=True, first=p - 1)[:, :-1]
        with self._on_device(self.reward_model) as rm:
            score = rm(input_ids=seqs, attention_mask=attn)

        mask = action_mask.float()
        rewards, kl = compute_token_rewards(score, log_probs, ref_log_probs, action_mask, kl_coef,
                                            self.reward_clip)
        advantages, returns = gae_advantages_and_returns(rewards, values * mask, action_mask, self.gamma, self.lam)

        samples = []
        for i in range(seqs.shape[0]):
            n = int(action_mask[i].sum())
            real_prompt = input_ids[i][prompt_mask[i].bool()]
            cut = slice(0, n)
            samples.append(Sample(
                prompt=real_prompt.cpu(), response=actions[i, cut].cpu(), log_probs=log_probs[i, cut].cpu(),
                ref_log_probs=ref_log_probs[i, cut].cpu(), values=values[i, cut].cpu(),
                rewards=rewards[i, cut].cpu(), advantages=advantages[i, cut].cpu(), returns=returns[i, cut].cpu(),
                score=float(score[i]), kl=float((kl[i] * mask[i]).sum()),
            ))
        return samples
