"""Reward-model training: pairwise loss on (chosen, rejected) scores, accuracy and margin on held-out pairs."""

from __future__ import annotations

import torch

from coati.losses import pair_accuracy, pair_distance, pairwise_reward_loss
from coati.trainer.guard import guarded_step
from coati.trainer.loop import EpochLoop


def pairs_and_tokens(batch: dict) -> tuple[int, int]:
    """A batch holds the chosen rows, then the rejected ones: its pairs, and the real tokens of both sides."""
    return len(batch["input_ids"]) // 2, int(batch["attention_mask"].sum())


class RewardModelTrainer:
    """The reward-model step and evaluation; `EpochLoop` runs them over the epochs."""

    def __init__(self, *, strategy, model, optimizer, scheduler, train_loader, eval_loader=None,
                 loss_fn: str = "log_sig", accumulation_steps: int = 1, max_epochs: int = 1,
                 max_grad_norm: float = 1.0, logger=None, log_interval: int = 1, eval_interval: int = 0,
                 checkpointer=None, skip_nonfinite: bool = False):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.loss_fn, self.max_grad_norm, self.skip_nonfinite = loss_fn, max_grad_norm, skip_nonfinite
        self.loop = EpochLoop(strategy=strategy, loader=train_loader, name="rm",
                              accumulation_steps=accumulation_steps, max_epochs=max_epochs, logger=logger,
                              log_interval=log_interval, eval_interval=eval_interval,
                              checkpointer=checkpointer, bar={"loss": ".4f", "acc": ".2f"},
                              count=pairs_and_tokens, evaluate_first=True, scheduler=scheduler)
        self.last = {}

    def fit(self) -> None:
        self.model.train()  # evaluate() hands the model back in training mode
        self.loop.run(self.train_step, self.evaluate)

    def _scores(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {k: v.to(self.strategy.device) for k, v in batch.items()}
        scores = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def train_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over k micro-batches of pairs; returns loss, acc and dist over all of them.

        Each micro-batch's mean loss is weighted by its share of the pairs of the whole accumulated batch on
        all ranks (times world size, since DDP averages gradients), so the update equals one large batch of
        every rank's pairs."""
        n = [len(mb["input_ids"]) // 2 for mb in micro_batches]
        n_global = float(self.strategy.all_reduce(torch.tensor(float(sum(n))), "sum"))
        stats = torch.zeros(3, device=self.strategy.device)  # loss, acc, dist over this rank's pairs
        for i, mb in enumerate(micro_batches):
            with self.strategy.no_sync(self.model, sync=i == len(micro_batches) - 1):
                chosen, rejected = self._scores(mb)
                loss = pairwise_reward_loss(chosen, rejected, self.loss_fn)
                self.strategy.backward(loss * (self.strategy.world_size * n[i] / n_global), self.model,
                                       self.optimizer)
            chosen, rejected = chosen.detach(), rejected.detach()
            # weights n_i / n: exactly 1 for a single micro-batch, so its figures are its own to the last bit
            stats += (n[i] / sum(n)) * torch.stack([loss.detach(), pair_accuracy(chosen, rejected),
                                                    pair_distance(chosen, rejected)])
        guarded_step(self.strategy, self.optimizer, self.model,
                     loss=float(self.strategy.all_reduce(stats[0], "mean")), what="reward-model loss",
                     step=self.loop.global_step + 1, max_grad_norm=self.max_grad_norm, skip=self.skip_nonfinite,
                     scheduler=self.scheduler)
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
        return stats
