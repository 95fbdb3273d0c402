"""Supervised fine-tuning: token cross-entropy on responses, accumulation equal to one large batch."""

from __future__ import annotations

import torch

from coati.losses import token_nll_sum
from coati.trainer.guard import guarded_step
from coati.trainer.loop import EpochLoop


class SFTTrainer:
    """The SFT step and evaluation; `EpochLoop` runs them over the epochs."""

    def __init__(self, *, strategy, model, optimizer, scheduler, train_loader, eval_loader=None,
                 accumulation_steps: int = 1, max_epochs: int = 1, max_grad_norm: float = 1.0, logger=None,
                 log_interval: int = 1, eval_interval: int = 0, checkpointer=None, skip_nonfinite: bool = False):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.max_grad_norm, self.skip_nonfinite = max_grad_norm, skip_nonfinite
        self.loop = EpochLoop(strategy=strategy, loader=train_loader, name="sft",
                              accumulation_steps=accumulation_steps, max_epochs=max_epochs, logger=logger,
                              log_interval=log_interval, eval_interval=eval_interval,
                              checkpointer=checkpointer, bar={"loss": ".4f", "lr": ".2e"}, scheduler=scheduler)
        self.last_loss = self.last_eval_loss = None

    def fit(self) -> None:
        self.model.train()  # evaluate() hands the model back in training mode
        self.loop.run(lambda micro_batches: {"loss": self.train_step(micro_batches)}, self.evaluate)

    def train_step(self, micro_batches: list[dict]) -> float:
        """One optimizer step over k micro-batches; returns the mean token loss over all of them.

        Each micro-batch's summed token loss is divided by the token count of the whole accumulated
        batch on all ranks (times world size, since DDP averages gradients), so the update equals
        one large batch of every rank's rows.
        """
        device = self.strategy.device
        n_local = sum(int((mb["labels"][:, 1:] != -100).sum()) for mb in micro_batches)
        n_global = float(self.strategy.all_reduce(torch.tensor(float(n_local)), op="sum"))
        scale = self.strategy.world_size / max(n_global, 1.0)
        total = torch.zeros((), device=device)
        for i, mb in enumerate(micro_batches):
            mb = {k: v.to(device) for k, v in mb.items()}
            with self.strategy.no_sync(self.model, sync=i == len(micro_batches) - 1):
                logits = self.model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits
                nll, _ = token_nll_sum(logits, mb["labels"])
                self.strategy.backward(nll * scale, self.model, self.optimizer)
            total += nll.detach()
        loss = float(self.strategy.all_reduce(total, op="sum")) / max(n_global, 1.0)
        if guarded_step(self.strategy, self.optimizer, self.model, loss=loss, what="training loss",
                        step=self.loop.global_step + 1, max_grad_norm=self.max_grad_norm,
                        skip=self.skip_nonfinite, scheduler=self.scheduler):
            self.last_loss = loss
        return loss

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict | None:
        """Mean token loss over every eval row on all ranks; None without an eval set."""
        if self.eval_loader is None:
            return None
        self.model.eval()
        nll = torch.zeros((), device=self.strategy.device)
        count = torch.zeros((), device=self.strategy.device)
        for mb in self.eval_loader:
            mb = {k: v.to(self.strategy.device) for k, v in mb.items()}
            logits = self.model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits
            s, n = token_nll_sum(logits, mb["labels"])
            nll += s
            count += n
        self.model.train()
        loss = float(self.strategy.all_reduce(nll, "sum") / self.strategy.all_reduce(count, "sum").clamp(min=1))
        self.last_eval_loss = loss
        return {"loss": loss}
