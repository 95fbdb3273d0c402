"""Reward-model training: pairwise loss on (chosen, rejected) scores, accuracy and margin on held-out pairs."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from coati.errors import UserError
from coati.losses import pair_accuracy, pair_distance, pairwise_reward_loss


class RewardModelTrainer:
    def __init__(self, strategy, model, optimizer, scheduler, train_loader, eval_loader=None,
                 loss_fn: str = "log_sig", max_epochs: int = 1, max_grad_norm: float = 1.0, logger=None,
                 log_interval: int = 1, eval_interval: int = 0):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.loss_fn, self.max_epochs, self.max_grad_norm = loss_fn, max_epochs, max_grad_norm
        self.logger, self.log_interval, self.eval_interval = logger, log_interval, eval_interval
        self.global_step = 0
        self.last = {}

    def fit(self) -> None:
        bar = tqdm(total=len(self.train_loader) * self.max_epochs, desc="rm", disable=not self.strategy.is_rank0,
                   dynamic_ncols=True)
        if self.global_step == 0:
            self.evaluate(0)  # the untrained model's accuracy, so the curve shows where learning started
        for epoch in range(self.max_epochs):
            self.strategy.set_epoch(self.train_loader, epoch)
            self.model.train()
            for batch in self.train_loader:
                stats = self.train_step(batch)
                self.global_step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['acc']:.2f}")
                if self.global_step % self.log_interval == 0:
                    self._log(epoch=epoch, lr=self.scheduler.get_last_lr()[0], **stats)
                if self.eval_interval and self.global_step % self.eval_interval == 0:
                    self.evaluate(epoch)
            if not self.eval_interval or self.global_step % self.eval_interval:
                self.evaluate(epoch)
        bar.close()

    def _scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {k: v.to(self.strategy.device) for k, v in batch.items()}
        scores = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def train_step(self, batch: dict) -> dict:
        chosen, rejected = self._scores(batch)
        loss = pairwise_reward_loss(chosen, rejected, self.loss_fn)
        if not math.isfinite(loss.item()):
            raise UserError(f"the reward-model loss became {loss.item()} at step {self.global_step + 1}; lower --lr "
                            "or use fp32/bf16")
        self.strategy.backward(loss, self.model, self.optimizer)
        self.strategy.step(self.optimizer, self.model, self.max_grad_norm)
        self.scheduler.step()
        stats = torch.stack([loss.detach(), pair_accuracy(chosen.detach(), rejected.detach()),
                             pair_distance(chosen.detach(), rejected.detach())])
        loss, acc, dist = self.strategy.all_reduce(stats, "mean").tolist()
        self.last.update(loss=loss, acc=acc, dist=dist)
        return {"loss": loss, "acc": acc, "dist": dist}

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict | None:
        """valid_acc (share of pairs with r_chosen > r_rejected; ties are wrong) and pair_dist over all eval pairs."""
        if self.eval_loader is None:
            return None
        self.model.eval()
        sums = torch.zeros(4, device=self.strategy.device)  # loss * n, correct, margin sum, n
        for batch in self.eval_loader:
            chosen, rejected = self._scores(batch)
            n = chosen.shape[0]
            sums += torch.stack([pairwise_reward_loss(chosen, rejected, self.loss_fn) * n,
                                 pair_accuracy(chosen, rejected) * n, (chosen - rejected).sum(),
                                 torch.tensor(float(n), device=sums.device)])
        self.model.train()
        loss_sum, correct, margin, n = self.strategy.all_reduce(sums, "sum").tolist()
        stats = {"loss": loss_sum / n, "acc": correct / n, "dist": margin / n}
        self.last.update({f"eval_{k}": v for k, v in stats.items()})
        self._log(split="eval", epoch=epoch, **stats)
        return stats

    def _log(self, **record) -> None:
        if self.logger is not None and self.strategy.is_rank0:
            self.logger.log({"step": self.global_step, **record})
