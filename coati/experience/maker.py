"""Roll out prompts and turn them into scored, advantage-annotated samples.

One rollout serves every algorithm: sample G answers per prompt with the actor (which gives its log-probs
too), score them with the reward model and/or the reward functions, read the initial model's log-probs when a
KL term needs them and the critic's values when PPO has one. Only the advantages differ: PPO's GAE over the
critic, GRPO's and RLOO's group-relative ones, REINFORCE++'s batch-whitened returns (coati.advantages).
"""

from __future__ import annotations

import contextlib

import torch

from coati.advantages import (
    group_filter_mask,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    sequence_to_tokens,
)
from coati.experience.experience import Sample
from coati.models.forward import answer_logits
from coati.models.loading import adapters_disabled
from coati.models.sampling import sample
from coati.ops import (
    action_mask_from_sequences,
    compute_token_rewards,
    gae_advantages_and_returns,
    log_probs_from_logits,
)
from coati.rewards import score_each

ALGOS = ("ppo", "grpo", "rloo", "reinforce_pp")
ADAPTERS_OFF = "adapters off"  # initial_model under LoRA: the actor itself, its adapters switched off
GROUP_ALGOS = ("grpo", "rloo")  # advantages that compare the answers to one prompt


class ExperienceMaker:
    """Generate, score and compute advantages.

    algo: ppo (needs a critic), grpo, rloo or reinforce_pp. num_generations: answers per prompt (G); a rollout
    of B prompts gives B * G samples, the G answers to a prompt consecutive. reward_model and reward_fns (with
    reward_weights) are summed; missing_eos_penalty is subtracted from the score of an answer that ends
    without EOS. initial_model: the frozen reference; ADAPTERS_OFF, the LoRA actor with its adapters switched
    off (the base weights it was trained from, held once); None, no KL anywhere (ref_log_probs are the
    actor's own). filter_groups: the samples of a group whose scores are all equal leave the update
    (in_update False).
    offload_frozen: keep the initial and reward models on the CPU except while they score, to save
    accelerator memory at the cost of two copies per rollout.
    """

    def __init__(self, *, strategy, actor, tokenizer, gen_kwargs: dict, critic=None, reward_model=None,
                 initial_model=None, reward_fns=(), reward_weights=None, algo: str = "ppo",
                 num_generations: int = 1, scale_rewards: str = "group", reinforce_baseline: str = "none",
                 filter_groups: bool = False, missing_eos_penalty: float = 0.0, gamma: float = 1.0,
                 lam: float = 0.95, reward_clip: float | None = None, offload_frozen: bool = False):
        if algo not in ALGOS:
            raise ValueError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")
        if algo == "ppo" and critic is None:
            raise ValueError("PPO needs a critic")
        if reward_model is None and not reward_fns:
            raise ValueError("give a reward model, reward functions or both")
        self.strategy, self.actor, self.critic = strategy, actor, critic
        self.reward_model, self.initial_model, self.tokenizer = reward_model, initial_model, tokenizer
        self.reward_fns, self.reward_weights = list(reward_fns), reward_weights
        self.algo, self.num_generations = algo, num_generations
        self.scale_rewards, self.reinforce_baseline = scale_rewards, reinforce_baseline
        self.filter_groups, self.missing_eos_penalty = filter_groups, missing_eos_penalty
        self.gen_kwargs, self.gamma, self.lam = gen_kwargs, gamma, lam
        self.reward_clip, self.offload_frozen = reward_clip, offload_frozen

    @property
    def whiten_buffer(self) -> bool:
        """PPO's GAE advantages are whitened over the episode's whole buffer by the trainer; the other
        algorithms normalise (or not) in their own advantage computation."""
        return self.algo == "ppo"

    @contextlib.contextmanager
    def _on_device(self, model):
        if model is ADAPTERS_OFF:  # the reference is the actor with its adapters off
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

    def make(self, prompts: dict, kl_coef: float) -> list[Sample]:
        """prompts: left-padded input_ids / attention_mask (B, P), with texts / columns / index when reward
        functions score -> B * G samples, whose rewards carry a per-token KL penalty of kl_coef (the
        trainer's KL controller decides it)."""
        with self.strategy.rollout_mode():
            return self._make(prompts, kl_coef)

    def evaluate(self, prompts: dict, greedy: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One answer per prompt, greedy or sampled, scored as in training: (score (B,), name -> (B,) per
        reward function)."""
        with self.strategy.rollout_mode():
            seqs, _, action_mask, attn, p = self._generate(prompts, 1, do_sample=not greedy)
            return self._score(seqs, attn, action_mask, p, prompts, 1)

    def _generate(self, prompts: dict, g: int, do_sample: bool = True):
        device = self.strategy.device
        input_ids, prompt_mask = prompts["input_ids"].to(device), prompts["attention_mask"].to(device)
        p = input_ids.shape[1]
        # The actor's log-probs come from the decoding steps: one forward per token, none after. Each prompt is
        # prefilled once for its g answers.
        gen_kwargs = self.gen_kwargs if do_sample else {**self.gen_kwargs, "do_sample": False}
        seqs, log_probs = sample(self.strategy.rollout_model(self.actor), input_ids, prompt_mask, self.tokenizer,
                                 return_log_probs=True, repeats=g, **gen_kwargs, **self.strategy.generation_kwargs())
        action_mask = action_mask_from_sequences(seqs, p, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        attn = torch.cat([prompt_mask.repeat_interleave(g, dim=0), action_mask.long()], dim=1)
        return seqs, log_probs, action_mask, attn, p

    def _make(self, prompts: dict, kl_coef: float) -> list[Sample]:
        g = self.num_generations
        seqs, log_probs, action_mask, attn, p = self._generate(prompts, g)
        actions = seqs[:, p:]

        # Column p-1+t of the logits predicts action t; the critic's value there is V(state before action t).
        if self.initial_model is not None:
            with self._on_device(self.initial_model) as ref:  # each prompt runs once for its g answers
                ref_log_probs = log_probs_from_logits(answer_logits(ref, seqs, attn, p, g), actions)
        else:
            ref_log_probs = log_probs  # no KL term: the reference is not loaded
        if self.critic is not None:
            values = self.critic(input_ids=seqs, attention_mask=attn, per_token=True, first=p - 1)[:, :-1]
        else:
            values = torch.zeros_like(log_probs)
        score, parts = self._score(seqs, attn, action_mask, p, prompts, g)
        rewards, kl = compute_token_rewards(score, log_probs, ref_log_probs, action_mask, kl_coef,
                                            self.reward_clip)
        advantages, returns = self._advantages(score, rewards, kl, log_probs, ref_log_probs, values, action_mask,
                                               kl_coef)

        n = seqs.shape[0]
        in_update = torch.ones(n, dtype=torch.bool)
        group_std = torch.zeros(n)
        if g > 1:
            group_std = score.float().view(-1, g).std(dim=1).repeat_interleave(g).cpu()
            if self.filter_groups:
                in_update = group_filter_mask(score.float().cpu(), g)[0]
        mask = action_mask.float()
        samples = []
        for i in range(n):
            cut = slice(0, int(action_mask[i].sum()))
            samples.append(Sample(  # the prompt as rolled out: seqs and attn begin with the repeated prompts
                prompt=seqs[i, :p][attn[i, :p].bool()].cpu(), response=actions[i, cut].cpu(),
                log_probs=log_probs[i, cut].cpu(), ref_log_probs=ref_log_probs[i, cut].cpu(),
                values=values[i, cut].cpu(), rewards=rewards[i, cut].cpu(), advantages=advantages[i, cut].cpu(),
                returns=returns[i, cut].cpu(), score=float(score[i]), kl=float((kl[i] * mask[i]).sum()),
                in_update=bool(in_update[i]), group_std=float(group_std[i]),
                parts={name: float(v[i]) for name, v in parts.items()},
            ))
        return samples

    def _score(self, seqs, attn, action_mask, p: int, prompts: dict, g: int):
        """(score (N,), name -> (N,) unweighted score of each reward function) of N = B * g answers."""
        n = seqs.shape[0]
        score = torch.zeros(n, device=seqs.device)
        parts: dict[str, torch.Tensor] = {}
        if self.reward_model is not None:
            with self._on_device(self.reward_model) as rm:
                score = rm(input_ids=seqs, attention_mask=attn, prompt_len=p, repeats=g)
        if self.reward_fns:
            texts = [t for t in prompts["texts"] for _ in range(g)]
            columns = {k: [v for v in values for _ in range(g)] for k, values in prompts["columns"].items()}
            names = [f"data row {int(i) + 1}" for i in prompts["index"] for _ in range(g)]
            total, parts = score_each(self.reward_fns, self.reward_weights, texts, self.decode(seqs[:, p:],
                                      action_mask), columns, row_names=names)
            score = score + total.to(score.device, score.dtype)
        if self.missing_eos_penalty:
            eos = torch.as_tensor(self.tokenizer.eos_token_id, device=seqs.device).reshape(-1)
            ended = (torch.isin(seqs[:, p:], eos) & action_mask).any(dim=1)
            score = score - self.missing_eos_penalty * (~ended).to(score.dtype)
        return score, parts

    def decode(self, actions: torch.Tensor, action_mask: torch.Tensor) -> list[str]:
        """The answers as text: cut at the first EOS, special tokens dropped."""
        return self.tokenizer.batch_decode([row[m].tolist() for row, m in zip(actions, action_mask.bool())],
                                           skip_special_tokens=True)

    def _advantages(self, score, rewards, kl, log_probs, ref_log_probs, values, action_mask, kl_coef):
        """(advantages (N, A), returns (N, A)): the one place the algorithms differ in a rollout."""
        mask = action_mask.float()
        g = self.num_generations

        def reduce(t):  # batch-wide statistics over every rank's rollout
            return self.strategy.all_reduce(t, "sum")

        if self.algo == "ppo":
            return gae_advantages_and_returns(rewards, values * mask, action_mask, self.gamma, self.lam)
        if self.algo == "reinforce_pp":
            advantages, returns, _ = reinforce_pp_advantages(
                score, log_probs, ref_log_probs, action_mask, kl_coef, self.gamma, self.reinforce_baseline,
                g, self.reward_clip, reduce)
            return advantages, returns
        # GRPO / RLOO: one reward per answer, the KL penalty (kl_coef) summed over its tokens
        clipped = score if self.reward_clip is None else score.clamp(-self.reward_clip, self.reward_clip)
        seq_reward = clipped - kl_coef * (kl * mask).sum(dim=1)
        if self.algo == "grpo":
            per_answer = grpo_advantages(seq_reward.float(), g, self.scale_rewards, reduce=reduce)
        else:
            per_answer = rloo_advantages(seq_reward.float(), g)
        advantages = sequence_to_tokens(per_answer, action_mask)
        return advantages, advantages
