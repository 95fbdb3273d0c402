"""Supervised fine-tuning: token cross-entropy on responses, accumulation equal to one large batch."""

from __future__ import annotations

import itertools
import math

import torch
from tqdm.auto import tqdm

from coati.losses import token_nll_sum
from coati.trainer.guard import finite_or_skip
from coati.trainer.metrics import Throughput


class SFTTrainer:
    def __init__(self, strategy, model, optimizer, scheduler, train_loader, eval_loader=None,
                 accumulation_steps: int = 1, max_epochs: int = 1, max_grad_norm: float = 1.0, logger=None,
                 log_interval: int = 1, eval_interval: int = 0, checkpointer=None, skip_nonfinite: bool = False):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.accumulation_steps, self.max_epochs, self.max_grad_norm = accumulation_steps, max_epochs, max_grad_norm
        self.logger, self.log_interval, self.eval_interval = logger, log_interval, eval_interval
        self.checkpointer, self.skip_nonfinite = checkpointer, skip_nonfinite
        self.steps_per_epoch = math.ceil(len(train_loader) / accumulation_steps)
        self.global_step = self.epoch = self.batches_done = 0  # batches_done: micro-batches of this epoch
        self.last_loss = self.last_eval_loss = None

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.global_step, self.epoch, self.batches_done = state["global_step"], state["epoch"], state["batches_done"]

    def fit(self) -> None:
        total = self.steps_per_epoch * self.max_epochs
        bar = tqdm(total=total, initial=self.global_step, desc="sft", disable=not self.strategy.is_rank0,
                   dynamic_ncols=True)
        speed = Throughput(self.strategy)
        try:
            while self.epoch < self.max_epochs:
                epoch = self.epoch
                self.strategy.set_epoch(self.train_loader, epoch)
                self.model.train()
                # On resume, skip what the interrupted run had consumed of this epoch: same batches, same order.
                batches = itertools.islice(iter(self.train_loader), self.batches_done, None)
                for micro_batches in _groups(batches, self.accumulation_steps):
                    loss = self.train_step(micro_batches)
                    speed.add(sum(len(mb["input_ids"]) for mb in micro_batches),
                              sum(int(mb["attention_mask"].sum()) for mb in micro_batches))
                    self.global_step += 1
                    self.batches_done += len(micro_batches)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                    if self.global_step % self.log_interval == 0:
                        self._log(loss=loss, lr=self.scheduler.get_last_lr()[0], epoch=epoch, **speed.read())
                    if self.eval_interval and self.global_step % self.eval_interval == 0:
                        with speed.paused():
                            self.evaluate(epoch)
                    if self.batches_done >= len(self.train_loader):
                        self.epoch, self.batches_done = epoch + 1, 0
                    if self.checkpointer is not None:
                        with speed.paused():
                            self.checkpointer.after_step(self.global_step, self.state_dict())
                if not self.eval_interval or self.global_step % self.eval_interval:
                    with speed.paused():
                        self.evaluate(epoch)
                self.epoch, self.batches_done = epoch + 1, 0
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own

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
        step = self.global_step + 1
        if not finite_or_skip(loss, "training loss", step, self.skip_nonfinite):
            self.strategy.zero_grad(self.optimizer, self.model)
            return loss
        norm = self.strategy.step(self.optimizer, self.model, self.max_grad_norm)
        if finite_or_skip(norm, "gradient norm", step, self.skip_nonfinite):
            self.scheduler.step()
        self.last_loss = loss
        return loss

    @torch.no_grad()
    def evaluate(self, epoch: int) -> float | None:
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
        self._log(split="eval", loss=loss, epoch=epoch)
        return loss

    def _log(self, **record) -> None:
        if self.logger is not None and self.strategy.is_rank0:
            self.logger.log({"step": self.global_step, **record})


def _groups(loader, k: int):
    """Consecutive groups of k batches (the last group may be shorter)."""
    group = []
    for batch in loader:
        group.append(batch)
        if len(group) == k:
            yield group
            group = []
    if group:
        yield group
