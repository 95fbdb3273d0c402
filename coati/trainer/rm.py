"""Reward-model training: pairwise loss on (chosen, rejected) scores, accuracy and margin on held-out pairs."""

from __future__ import annotations

import itertools

import torch
from tqdm.auto import tqdm

from coati.losses import pair_accuracy, pair_distance, pairwise_reward_loss
from coati.trainer.guard import finite_or_skip
from coati.trainer.metrics import Throughput


class RewardModelTrainer:
    def __init__(self, strategy, model, optimizer, scheduler, train_loader, eval_loader=None,
                 loss_fn: str = "log_sig", max_epochs: int = 1, max_grad_norm: float = 1.0, logger=None,
                 log_interval: int = 1, eval_interval: int = 0, checkpointer=None, skip_nonfinite: bool = False):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.loss_fn, self.max_epochs, self.max_grad_norm = loss_fn, max_epochs, max_grad_norm
        self.logger, self.log_interval, self.eval_interval = logger, log_interval, eval_interval
        self.checkpointer, self.skip_nonfinite = checkpointer, skip_nonfinite
        self.global_step = self.epoch = self.batches_done = 0
        self.last = {}

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.global_step, self.epoch, self.batches_done = state["global_step"], state["epoch"], state["batches_done"]

    def fit(self) -> None:
        bar = tqdm(total=len(self.train_loader) * self.max_epochs, initial=self.global_step, desc="rm",
                   disable=not self.strategy.is_rank0, dynamic_ncols=True)
        speed = Throughput(self.strategy)
        try:
            if self.global_step == 0:
                with speed.paused():
                    self.evaluate(0)  # the untrained model's accuracy, so the curve shows where learning started
            while self.epoch < self.max_epochs:
                epoch = self.epoch
                self.strategy.set_epoch(self.train_loader, epoch)
                self.model.train()
                for batch in itertools.islice(iter(self.train_loader), self.batches_done, None):
                    stats = self.train_step(batch)
                    # a batch holds the chosen rows, then the rejected ones: pairs, and the tokens of both
                    speed.add(len(batch["input_ids"]) // 2, int(batch["attention_mask"].sum()))
                    self.global_step += 1
                    self.batches_done += 1
                    if self.batches_done >= len(self.train_loader):
                        self.epoch, self.batches_done = epoch + 1, 0
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['acc']:.2f}")
                    if self.global_step % self.log_interval == 0:
                        self._log(epoch=epoch, lr=self.scheduler.get_last_lr()[0], **stats, **speed.read())
                    if self.eval_interval and self.global_step % self.eval_interval == 0:
                        with speed.paused():
                            self.evaluate(epoch)
                    if self.checkpointer is not None:
                        with speed.paused():
                            self.checkpointer.after_step(self.global_step, self.state_dict())
                if not self.eval_interval or self.global_step % self.eval_interval:
                    with speed.paused():
                        self.evaluate(epoch)
                self.epoch, self.batches_done = epoch + 1, 0
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own

    def _scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {k: v.to(self.strategy.device) for k, v in batch.items()}
        scores = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def train_step(self, batch: dict) -> dict:
        chosen, rejected = self._scores(batch)
        loss = pairwise_reward_loss(chosen, rejected, self.loss_fn)
        self.strategy.backward(loss, self.model, self.optimizer)
        step = self.global_step + 1
        mean_loss = float(self.strategy.all_reduce(loss.detach(), "mean"))
        if finite_or_skip(mean_loss, "reward-model loss", step, self.skip_nonfinite):
            norm = self.strategy.step(self.optimizer, self.model, self.max_grad_norm)
            if finite_or_skip(norm, "gradient norm", step, self.skip_nonfinite):
                self.scheduler.step()
        else:
            self.strategy.zero_grad(self.optimizer, self.model)
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
