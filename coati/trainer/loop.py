"""The epoch loop of every stage that trains over a dataset in epochs (SFT, reward model): one place for the
position a checkpoint restores, the progress bar, throughput, logging, evaluation and checkpoint calls."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from tqdm.auto import tqdm

from coati.trainer.metrics import Throughput


def rows_and_tokens(batch: dict) -> tuple[int, int]:
    """Rows and real (unpadded) tokens of a batch, for the throughput figures."""
    return len(batch["input_ids"]), int(batch["attention_mask"].sum())


class EpochLoop:
    """Runs a stage's optimizer step over its loader, epoch after epoch, accumulation_steps batches a step.

    The stage supplies, to `run`:
      step(micro_batches: list[dict]) -> dict   one optimizer step; its figures (logged every log_interval, with
                                               the scheduler's learning rate as "lr" when a scheduler is given)
      evaluate(epoch: int) -> dict | None      held-out figures, logged with split "eval" (None: no eval set)
    Evaluation runs every eval_interval steps, and at the end of each epoch unless eval_interval is set and
    the epoch ended on such a step; with evaluate_first, also before the first step of a fresh run.

    The position (global_step, epoch, batches_done: micro-batches consumed of this epoch) is what the
    checkpointer saves after every step; a resumed run skips the batches its epoch had consumed, so it meets
    the same batches in the same order.
    """

    def __init__(self, *, strategy, loader, name: str, accumulation_steps: int = 1, max_epochs: int = 1,
                 logger=None, log_interval: int = 1, eval_interval: int = 0, checkpointer=None,
                 bar: dict[str, str] | None = None,
                 count: Callable[[dict], tuple[int, int]] = rows_and_tokens, evaluate_first: bool = False,
                 scheduler=None):
        self.strategy, self.loader, self.name = strategy, loader, name
        self.accumulation_steps, self.max_epochs = accumulation_steps, max_epochs
        self.logger, self.log_interval, self.eval_interval = logger, log_interval, eval_interval
        self.checkpointer, self.evaluate_first = checkpointer, evaluate_first
        self.bar = bar if bar is not None else {"loss": ".4f"}  # figure -> format shown on the progress bar
        self.count = count  # micro-batch -> (samples, real tokens) for the throughput figures
        self.scheduler = scheduler  # its learning rate is logged with each step's figures
        self.steps_per_epoch = math.ceil(len(loader) / accumulation_steps)
        self.global_step = self.epoch = self.batches_done = 0

    def state_dict(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.global_step, self.epoch = state["global_step"], state["epoch"]
        self.batches_done = state["batches_done"]

    def run(self, step: Callable[[list[dict]], dict], evaluate: Callable[[int], dict | None]) -> None:
        bar = tqdm(total=self.steps_per_epoch * self.max_epochs, initial=self.global_step, desc=self.name,
                   disable=not self.strategy.is_rank0, dynamic_ncols=True)
        speed = Throughput(self.strategy)
        try:
            if self.evaluate_first and self.global_step == 0:
                with speed.paused():
                    self._evaluate(evaluate, 0)  # the untrained model: the curve shows where learning started
            while self.epoch < self.max_epochs:
                epoch = self.epoch
                self.strategy.set_epoch(self.loader, epoch)
                batches = itertools.islice(iter(self.loader), self.batches_done, None)
                for micro_batches in _groups(batches, self.accumulation_steps):
                    stats = step(micro_batches)
                    if self.scheduler is not None:
                        stats = {**stats, "lr": self.scheduler.get_last_lr()[0]}
                    samples, tokens = (sum(n) for n in zip(*map(self.count, micro_batches)))
                    speed.add(samples, tokens)
                    self.global_step += 1
                    self.batches_done += len(micro_batches)
                    bar.update(1)
                    bar.set_postfix(**{k: format(stats[k], f) for k, f in self.bar.items()})
                    if self.global_step % self.log_interval == 0:
                        self._log({**stats, "epoch": epoch, **speed.read()})
                    if self.eval_interval and self.global_step % self.eval_interval == 0:
                        with speed.paused():
                            self._evaluate(evaluate, epoch)
                    if self.batches_done >= len(self.loader):
                        self.epoch, self.batches_done = epoch + 1, 0
                    if self.checkpointer is not None:
                        with speed.paused():
                            self.checkpointer.after_step(self.global_step, self.state_dict())
                if not self.eval_interval or self.global_step % self.eval_interval:
                    with speed.paused():
                        self._evaluate(evaluate, epoch)
                self.epoch, self.batches_done = epoch + 1, 0
        finally:
            bar.close()  # ends the bar's line, so an error message starts on its own

    def _evaluate(self, evaluate: Callable[[int], dict | None], epoch: int) -> None:
        stats = evaluate(epoch)
        if stats is not None:
            self._log({"split": "eval", **stats, "epoch": epoch})

    def _log(self, record: dict) -> None:
        if self.logger is not None and self.strategy.is_rank0:
            self.logger.log({"step": self.global_step, **record})


def _groups(batches, k: int):
    """Consecutive groups of k batches (the last group may be shorter)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == k:
            yield group
            group = []
    if group:
        yield group
