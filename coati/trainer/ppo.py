"""PPO: collect rollouts, whiten advantages, then several clipped-update passes over the buffer.

Episode = `num_collect_steps` rollout batches into the buffer, `num_update_steps` passes over it in
minibatches of `train_batch_size`, then the buffer is cleared. Dropout stays off throughout, so the
policy ratio is exactly 1 at the first minibatch of every episode.
"""

from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from coati.dataset.sampler import LengthGroupedSampler
from coati.experience.experience import Sample, collate
from coati.losses import policy_loss, token_nll_sum, value_loss
from coati.models.forward import causal_lm_logits
from coati.ops import entropy_from_logits, log_probs_from_logits, masked_mean, masked_moments, whiten
from coati.trainer.guard import finite_or_skip
from coati.trainer.metrics import summed_counts


class EpochIterator:
    """Endless batches of a loader, epoch after epoch, with a position that a checkpoint can restore."""

    def __init__(self, loader, strategy):
        self.loader, self.strategy = loader, strategy
        self.epoch = self.position = 0
        self._it = None

    def __next__(self):
        while True:
            if self._it is None:
                self.strategy.set_epoch(self.loader, self.epoch)
                self._it = itertools.islice(iter(self.loader), self.position, None)
            batch = next(self._it, None)
            if batch is not None:
                self.position += 1
                return batch
            self.epoch, self.position, self._it = self.epoch + 1, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self._it = state["epoch"], state["position"], None


class PPOTrainer:
    def __init__(self, *, strategy, actor, critic, actor_optim, critic_optim, maker, kl_ctl, prompt_loader,
                 tokenizer, ptx_loader=None, eval_loader=None, num_episodes: int = 10,
                 num_collect_steps: int = 1, num_update_steps: int = 1, train_batch_size: int = 8,
                 ptx_coef: float = 0.9, eps_clip: float = 0.2, value_clip: float = 0.2, vf_coef: float = 1.0,
                 max_grad_norm: float = 1.0, logger=None, seed: int = 42, checkpointer=None,
                 skip_nonfinite: bool = False, group_by_length: bool = True,
                 pad_to_multiple_of: int | None = None):
        self.strategy, self.actor, self.critic = strategy, actor, critic
        self.actor_optim, self.critic_optim, self.maker = actor_optim, critic_optim, maker
        self.kl_ctl = kl_ctl  # the KL penalty's coefficient: updated after each episode, saved in checkpoints
        self.prompt_loader, self.ptx_loader, self.tokenizer = prompt_loader, ptx_loader, tokenizer
        self.eval_loader = eval_loader  # held-out prompts, scored before and after PPO
        self.num_episodes, self.num_collect_steps = num_episodes, num_collect_steps
        self.num_update_steps, self.train_batch_size = num_update_steps, train_batch_size
        self.ptx_coef, self.eps_clip, self.value_clip, self.vf_coef = ptx_coef, eps_clip, value_clip, vf_coef
        self.max_grad_norm, self.logger, self.seed = max_grad_norm, logger, seed
        self.checkpointer, self.skip_nonfinite, self.group_by_length = checkpointer, skip_nonfinite, group_by_length
        self.pad_to_multiple_of = pad_to_multiple_of  # minibatch widths (see coati/dataset/padding.py)
        self.episode = self.global_step = 0
        self.history: list[dict] = []
        self.eval_before: float | None = None  # held-out reward before PPO, kept across a resume
        self.eval_after: float | None = None
        self._prompts = EpochIterator(prompt_loader, strategy)
        self._ptx = EpochIterator(ptx_loader, strategy) if ptx_loader is not None else None

    def state_dict(self) -> dict:
        return {"episode": self.episode, "global_step": self.global_step, "history": self.history,
                "prompts": self._prompts.state_dict(), "ptx": self._ptx.state_dict() if self._ptx else None,
                "kl_ctl": self.kl_ctl.state_dict(), "eval_before": self.eval_before}

    def load_state_dict(self, state: dict) -> None:
        self.episode, self.global_step, self.history = state["episode"], state["global_step"], state["history"]
        self._prompts.load_state_dict(state["prompts"])
        if self._ptx is not None and state["ptx"]:
            self._ptx.load_state_dict(state["ptx"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.eval_before = state.get("eval_before")

    def fit(self) -> None:
        bar = tqdm(total=self.num_episodes, initial=self.episode, desc="ppo", disable=not self.strategy.is_rank0,
                   dynamic_ncols=True)
        try:
            self.actor.eval()  # no dropout: see the module docstring
            self.critic.eval()
            if self.eval_loader is not None and self.episode == 0:  # a resumed run restored it
                self.eval_before = self.held_out_reward()
            while self.episode < self.num_episodes:
                start = time.perf_counter()
                samples = [s for _ in range(self.num_collect_steps)
                           for s in self.maker.make(next(self._prompts), self.kl_ctl.value)]
                rolled = time.perf_counter()
                self._whiten_advantages(samples)
                stats = self._update(samples)
                spent = {"rollout_s": rolled - start, "update_s": time.perf_counter() - rolled}
                rollout = self.strategy.all_reduce(torch.tensor([
                    sum(s.score for s in samples) / len(samples), sum(s.kl for s in samples) / len(samples),
                    sum(len(s.response) for s in samples) / len(samples)]), "mean").tolist()
                stats.update(reward=rollout[0], kl=rollout[1], response_len=rollout[2],
                             kl_coef=self.kl_ctl.value)
                stats.update(spent, **self._speed(samples, sum(spent.values())))
                self.kl_ctl.update(rollout[1], len(samples) * self.strategy.world_size)
                self.episode += 1
                self.history.append(stats)
                if self.logger is not None and self.strategy.is_rank0:
                    self.logger.log({"step": self.global_step, "episode": self.episode, "epoch": self._prompts.epoch,
                                     **stats})
                bar.update(1)
                bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.3f}")
                if self.checkpointer is not None:  # --save_interval counts episodes in PPO
                    self.checkpointer.after_step(self.global_step, self.state_dict(), unit=self.episode)
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own
        if self.eval_loader is not None:
            self.eval_after = self.held_out_reward()
            if self.logger is not None and self.strategy.is_rank0:
                self.logger.log({"step": self.global_step, "split": "eval", "reward_before": self.eval_before,
                                 "reward": self.eval_after})

    def held_out_reward(self) -> float:
        """Mean reward-model score of the actor's sampled responses to the held-out prompts, on all ranks."""
        total = torch.zeros(2)
        for batch in self.eval_loader:
            samples = self.maker.make(batch, self.kl_ctl.value)  # the coefficient shapes rewards, not scores
            total += torch.tensor([sum(s.score for s in samples), float(len(samples))])
        total = self.strategy.all_reduce(total, "sum")
        return float(total[0] / total[1])

    def _update(self, samples: list[Sample]) -> dict:
        """num_update_steps passes over the buffer; returns the mean of each figure over all minibatches."""
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.episode)
        sizes = [(len(s.prompt), len(s.response)) for s in samples] if self.group_by_length else None
        totals: dict[str, float] = {}
        n = 0
        for _ in range(self.num_update_steps):
            for indices in self.minibatches(len(samples), gen, sizes):
                batch = collate([samples[i] for i in indices], self.tokenizer.pad_token_id, self.pad_to_multiple_of)
                for k, v in self.train_step(batch.to(self.strategy.device)).items():
                    totals[k] = totals.get(k, 0.0) + v
                n += 1
        return {k: v / n for k, v in totals.items()}

    def minibatches(self, n: int, gen: torch.Generator,
                    sizes: list[tuple[int, int]] | None = None) -> list[list[int]]:
        """One pass over a buffer of n samples: minibatches of train_batch_size indices, each index once.

        Shuffled; with `sizes` (each sample's prompt and response length), grouped as SFT's batches are
        (LengthGroupedSampler: sorted within mega-batches of 32 minibatches, then the minibatches shuffled),
        because `collate` pads every sample to the minibatch's longest prompt plus its longest response and the
        update runs over the padding too. The sort key is the prompt length, the response length or their sum,
        whichever pads this buffer least: prompts spread wider than responses in one dataset, and the other way
        round in the next. A buffer of up to 32 minibatches is one mega-batch, so every pass then meets the
        same groups in a new order. Every rank has as many minibatches as without grouping, which DDP needs."""
        if sizes is None:
            order = torch.randperm(n, generator=gen).tolist()
            return [order[i:i + self.train_batch_size] for i in range(0, n, self.train_batch_size)]
        seed = int(torch.randint(2**31, (1,), generator=gen))

        def padded(batches):
            return sum(len(b) * (max(sizes[i][0] for i in b) + max(sizes[i][1] for i in b)) for b in batches)

        candidates = [LengthGroupedSampler([key(p, a) for p, a in sizes], self.train_batch_size, seed=seed)
                      .global_batches() for key in (lambda p, a: p, lambda p, a: a, lambda p, a: p + a)]
        return min(candidates, key=padded)  # the first of equals: by prompt length when responses are alike

    def train_step(self, exp) -> dict:
        """One actor and one critic update on a minibatch. Returns the step's figures."""
        p, mask = exp.prompt_len, exp.action_mask
        actions = exp.sequences[:, p:]
        logits = causal_lm_logits(self.actor, exp.sequences, exp.attention_mask, p - 1)[:, :-1]
        log_probs = log_probs_from_logits(logits, actions)
        pg_loss, clipfrac = policy_loss(log_probs, exp.log_probs, exp.advantages, mask, self.eps_clip)
        entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
        actor_loss, ptx_loss = pg_loss, torch.zeros(())
        if self._ptx is not None:
            ptx = {k: v.to(self.strategy.device) for k, v in next(self._ptx).items()}
            nll, count = token_nll_sum(causal_lm_logits(self.actor, ptx["input_ids"], ptx["attention_mask"]),
                                       ptx["labels"])
            ptx_loss = nll / count.clamp(min=1)
            actor_loss = (1 - self.ptx_coef) * pg_loss + self.ptx_coef * ptx_loss
        self.strategy.backward(actor_loss, self.actor, self.actor_optim)
        self._step(actor_loss, self.actor_optim, self.actor, "actor")

        values = self.critic(input_ids=exp.sequences, attention_mask=exp.attention_mask, per_token=True,
                             first=p - 1)[:, :-1]
        v_loss = value_loss(values, exp.values, exp.returns, mask, self.value_clip)
        self.strategy.backward(self.vf_coef * v_loss, self.critic, self.critic_optim)
        self._step(v_loss, self.critic_optim, self.critic, "critic")
        self.global_step += 1
        figures = torch.stack([pg_loss.detach(), v_loss.detach(), ptx_loss.detach().to(pg_loss.device),
                               clipfrac.detach(), entropy.detach()]).float()
        names = ("policy_loss", "value_loss", "ptx_loss", "clipfrac", "entropy")
        return dict(zip(names, self.strategy.all_reduce(figures, "mean").tolist()))

    def _speed(self, samples: list[Sample], seconds: float) -> dict:
        """Rollouts and their real tokens (prompt and response) per second of the episode, on all ranks together."""
        n, tokens = summed_counts(self.strategy, len(samples), sum(len(s.prompt) + len(s.response) for s in samples))
        return {"samples_per_s": n / seconds, "tokens_per_s": tokens / seconds}

    def _whiten_advantages(self, samples: list[Sample]) -> None:
        """Normalise advantages to mean 0, std 1 over every response token of the buffer on all ranks."""
        flat = torch.cat([s.advantages for s in samples])
        moments = self.strategy.all_reduce(masked_moments(flat), "sum").cpu()
        whitened = whiten(flat, moments).split([len(s.advantages) for s in samples])
        for s, advantages in zip(samples, whitened):
            s.advantages = advantages

    def _step(self, loss: torch.Tensor, optimizer, model, which: str) -> None:
        """Optimizer step unless the loss (on any rank) or the gradient is not finite."""
        step = self.global_step + 1
        if finite_or_skip(float(self.strategy.all_reduce(loss.detach(), "mean")), f"{which} loss", step,
                          self.skip_nonfinite, "Lower --actor_lr/--critic_lr or use fp32/bf16"):
            finite_or_skip(self.strategy.step(optimizer, model, self.max_grad_norm), f"{which} gradient norm", step,
                           self.skip_nonfinite)
        else:
            self.strategy.zero_grad(optimizer, model)
