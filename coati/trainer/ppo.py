"""PPO, GRPO, RLOO and REINFORCE++: collect rollouts, then several clipped-update passes over the buffer.

Episode = `num_collect_steps` rollout batches into the buffer, `num_update_steps` passes over it in
minibatches of `train_batch_size`, then the buffer is cleared. Dropout stays off throughout, so the
policy ratio is exactly 1 at the first minibatch of every episode. The algorithms share this loop, the
KL controller, the strategy calls and the checkpoints; they differ in the advantages the ExperienceMaker
computes and in the losses: PPO trains a critic too, and any of them may add a k3 KL loss term.
"""

from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from coati.dataset.sampler import LengthGroupedSampler
from coati.experience.experience import Sample, collate
from coati.losses import clipped_policy_loss, kl_loss, token_nll_sum, value_loss
from coati.models.forward import causal_lm_logits
from coati.ops import entropy_from_logits, log_probs_from_logits, masked_mean, masked_moments, whiten
from coati.trainer.guard import guarded_step
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
    """The RL trainer of train_prompts.py, for every --algo. critic None: no value model (GRPO, RLOO,
    REINFORCE++). kl_loss_coef: weight of the k3 KL loss against the rollout's reference log-probs.
    eps_clip / eps_clip_high: the lower and upper clip of the policy ratio (None: eps_clip). loss_agg: token
    or sequence. eval_loader: held-out prompts, answered greedily and sampled and scored before training,
    every eval_interval episodes (0: only at the end) and after the last episode."""

    def __init__(self, *, strategy, actor, actor_optim, maker, kl_ctl, prompt_loader, tokenizer, critic=None,
                 critic_optim=None, ptx_loader=None, eval_loader=None, eval_interval: int = 0,
                 num_episodes: int = 10, num_collect_steps: int = 1, num_update_steps: int = 1,
                 train_batch_size: int = 8, ptx_coef: float = 0.9, eps_clip: float = 0.2,
                 eps_clip_high: float | None = None, loss_agg: str = "token", kl_loss_coef: float = 0.0,
                 value_clip: float = 0.2, vf_coef: float = 1.0, max_grad_norm: float = 1.0, logger=None,
                 seed: int = 42, checkpointer=None, skip_nonfinite: bool = False, group_by_length: bool = True,
                 pad_to_multiple_of: int | None = None):
        self.strategy, self.actor, self.critic = strategy, actor, critic
        self.actor_optim, self.critic_optim, self.maker = actor_optim, critic_optim, maker
        self.kl_ctl = kl_ctl  # the KL penalty's coefficient: updated after each episode, saved in checkpoints
        self.prompt_loader, self.ptx_loader, self.tokenizer = prompt_loader, ptx_loader, tokenizer
        self.eval_loader, self.eval_interval = eval_loader, eval_interval  # held-out prompts
        self.num_episodes, self.num_collect_steps = num_episodes, num_collect_steps
        self.num_update_steps, self.train_batch_size = num_update_steps, train_batch_size
        self.ptx_coef, self.eps_clip, self.value_clip, self.vf_coef = ptx_coef, eps_clip, value_clip, vf_coef
        self.eps_clip_high = eps_clip if eps_clip_high is None else eps_clip_high
        self.loss_agg, self.kl_loss_coef = loss_agg, kl_loss_coef
        self.max_grad_norm, self.logger, self.seed = max_grad_norm, logger, seed
        self.checkpointer, self.skip_nonfinite, self.group_by_length = checkpointer, skip_nonfinite, group_by_length
        self.pad_to_multiple_of = pad_to_multiple_of  # minibatch widths (see coati/dataset/padding.py)
        self.episode = self.global_step = 0
        self.history: list[dict] = []
        self.evals: list[dict] = []  # held-out scores: before training, at each interval, at the end
        self._prompts = EpochIterator(prompt_loader, strategy)
        self._ptx = EpochIterator(ptx_loader, strategy) if ptx_loader is not None else None

    def state_dict(self) -> dict:
        return {"episode": self.episode, "global_step": self.global_step, "history": self.history,
                "prompts": self._prompts.state_dict(), "ptx": self._ptx.state_dict() if self._ptx else None,
                "kl_ctl": self.kl_ctl.state_dict(), "evals": self.evals}

    def load_state_dict(self, state: dict) -> None:
        self.episode, self.global_step, self.history = state["episode"], state["global_step"], state["history"]
        self._prompts.load_state_dict(state["prompts"])
        if self._ptx is not None and state["ptx"]:
            self._ptx.load_state_dict(state["ptx"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.evals = list(state.get("evals", []))

    @property
    def eval_before(self) -> float | None:
        """Held-out reward of greedy answers before training (None without eval_loader)."""
        return self.evals[0]["eval_reward"] if self.evals else None

    @property
    def eval_after(self) -> float | None:
        return self.evals[-1]["eval_reward"] if self.evals else None

    def fit(self) -> None:
        bar = tqdm(total=self.num_episodes, initial=self.episode, desc=self.maker.algo,
                   disable=not self.strategy.is_rank0, dynamic_ncols=True)
        try:
            self.actor.eval()  # no dropout: see the module docstring
            if self.critic is not None:
                self.critic.eval()
            if self.eval_loader is not None and self.episode == 0:  # a resumed run restored it
                self._evaluate()
            while self.episode < self.num_episodes:
                start = time.perf_counter()
                samples = [s for _ in range(self.num_collect_steps)
                           for s in self.maker.make(next(self._prompts), self.kl_ctl.value)]
                rolled = time.perf_counter()
                if self.maker.whiten_buffer:
                    self._whiten_advantages(samples)
                stats = self._update(samples)
                spent = {"rollout_s": rolled - start, "update_s": time.perf_counter() - rolled}
                stats.update(self._rollout_stats(samples), kl_coef=self.kl_ctl.value)
                stats.update(spent, **self._speed(samples, sum(spent.values())))
                self.kl_ctl.update(stats["kl"], len(samples) * self.strategy.world_size)
                self.episode += 1
                self.history.append(stats)
                if self.logger is not None and self.strategy.is_rank0:
                    self.logger.log({"step": self.global_step, "episode": self.episode, "epoch": self._prompts.epoch,
                                     **stats})
                bar.update(1)
                bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.3f}")
                # evaluated before the checkpoint, so a resumed run's RNG continues after the same draws
                if self.eval_loader is not None and self.eval_interval and self.episode % self.eval_interval == 0 \
                        and self.episode < self.num_episodes:
                    self._evaluate()
                if self.checkpointer is not None:  # --save_interval counts episodes in PPO
                    self.checkpointer.after_step(self.global_step, self.state_dict(), unit=self.episode)
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own
        if self.eval_loader is not None and (not self.evals or self.evals[-1]["episode"] != self.episode):
            self._evaluate()

    def _rollout_stats(self, samples: list[Sample]) -> dict:
        """The episode's rollout figures, averaged over all its answers on every rank: reward, reward_std (the
        mean std within a prompt's group of answers; with one answer per prompt the std over all answers),
        zero_std_groups (share of groups whose answers all scored alike), kl, response_len, reward/NAME."""
        n = float(len(samples))
        names = sorted(samples[0].parts)
        sums = torch.tensor([n, sum(s.score for s in samples), sum(s.score ** 2 for s in samples),
                             sum(s.kl for s in samples), sum(len(s.response) for s in samples),
                             sum(s.group_std for s in samples), sum(float(s.group_std == 0) for s in samples),
                             *(sum(s.parts[k] for s in samples) for k in names)], dtype=torch.float64)
        count, score, score_sq, kl, length, group_std, flat, *parts = self.strategy.all_reduce(sums, "sum").tolist()
        reward = score / count
        stats = {"reward": reward, "kl": kl / count, "response_len": length / count}
        if self.maker.num_generations > 1:
            stats.update(reward_std=group_std / count, zero_std_groups=flat / count)
        else:
            stats["reward_std"] = max(score_sq / count - reward ** 2, 0.0) ** 0.5
        stats.update({f"reward/{k}": v / count for k, v in zip(names, parts)})
        return stats

    def _evaluate(self) -> dict:
        """Score the held-out prompts' greedy answers (eval_reward) and sampled ones (eval_reward_sampled) with
        the training rewards, on all ranks; logged as an eval record and kept in `evals`."""
        record = {"step": self.global_step, "episode": self.episode, "split": "eval"}
        for greedy, key in ((True, "eval_reward"), (False, "eval_reward_sampled")):
            sums: dict[str, float] = {}
            count = 0
            for batch in self.eval_loader:
                score, parts = self.maker.evaluate(batch, greedy=greedy)
                count += len(score)
                for name, values in (("", score), *parts.items()):
                    sums[name] = sums.get(name, 0.0) + float(values.double().sum())
            names = sorted(sums)
            totals = self.strategy.all_reduce(torch.tensor([float(count), *(sums[k] for k in names)],
                                                           dtype=torch.float64), "sum").tolist()
            for name, total in zip(names, totals[1:]):
                record[f"{key}/{name}" if name else key] = total / totals[0]
        self.evals.append(record)
        if self.logger is not None and self.strategy.is_rank0:
            self.logger.log(record)
        return record

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
        """One actor update (and one critic update with PPO) on a minibatch. Returns the step's figures."""
        p, mask = exp.prompt_len, exp.update_mask
        actions = exp.sequences[:, p:]
        logits = causal_lm_logits(self.actor, exp.sequences, exp.attention_mask, p - 1)[:, :-1]
        log_probs = log_probs_from_logits(logits, actions)
        pg_loss, clipfrac = clipped_policy_loss(log_probs, exp.log_probs, exp.advantages, mask, self.eps_clip,
                                                self.eps_clip_high, self.loss_agg)
        entropy = masked_mean(entropy_from_logits(logits.detach()), exp.action_mask)  # of every answer
        actor_loss, ptx_loss = pg_loss, torch.zeros(())
        figures = {"policy_loss": pg_loss.detach()}
        if self.kl_loss_coef:
            figures["kl_loss"] = kl_loss(log_probs, exp.ref_log_probs, mask, self.loss_agg)
            actor_loss = pg_loss + self.kl_loss_coef * figures["kl_loss"]
            figures["kl_loss"] = figures["kl_loss"].detach()
        if self._ptx is not None:
            ptx = {k: v.to(self.strategy.device) for k, v in next(self._ptx).items()}
            nll, count = token_nll_sum(causal_lm_logits(self.actor, ptx["input_ids"], ptx["attention_mask"]),
                                       ptx["labels"])
            ptx_loss = nll / count.clamp(min=1)
            actor_loss = (1 - self.ptx_coef) * actor_loss + self.ptx_coef * ptx_loss
        self.strategy.backward(actor_loss, self.actor, self.actor_optim)
        self._step(actor_loss, self.actor_optim, self.actor, "actor")

        if self.critic is not None:
            values = self.critic(input_ids=exp.sequences, attention_mask=exp.attention_mask, per_token=True,
                                 first=p - 1)[:, :-1]
            v_loss = value_loss(values, exp.values, exp.returns, mask, self.value_clip)
            self.strategy.backward(self.vf_coef * v_loss, self.critic, self.critic_optim)
            self._step(v_loss, self.critic_optim, self.critic, "critic")
            figures["value_loss"] = v_loss.detach()
        self.global_step += 1
        figures.update(ptx_loss=ptx_loss.detach().to(pg_loss.device), clipfrac=clipfrac.detach(),
                       entropy=entropy.detach())
        reduced = self.strategy.all_reduce(torch.stack(list(figures.values())).float(), "mean").tolist()
        return dict(zip(figures, reduced))

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
        guarded_step(self.strategy, optimizer, model, loss=float(self.strategy.all_reduce(loss.detach(), "mean")),
                     what=f"{which} loss", step=self.global_step + 1, max_grad_norm=self.max_grad_norm,
                     skip=self.skip_nonfinite, norm_what=f"{which} gradient norm",
                     hint="Lower --actor_lr/--critic_lr or use fp32/bf16")
