"""Preference optimisation without a reward model (DPO, IPO, SimPO, ORPO): the preference loss of the policy's
answer log-probs against a frozen reference's (or none), on the shared epoch loop."""

from __future__ import annotations

import contextlib

import torch

from coati.losses import DEFAULT_SIMPO_GAMMA, REFERENCE_FREE_LOSSES, preference_loss
from coati.models.unwrap import peft_wrapper
from coati.trainer.guard import guarded_step
from coati.trainer.loop import EpochLoop
from coati.trainer.rm import pairs_and_tokens

# per-pair sums a step and an evaluation add up, in this order
FIGURES = ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward", "chosen_logp", "rejected_logp")


def needs_reference(loss_type: str) -> bool:
    return loss_type not in REFERENCE_FREE_LOSSES


def reference_logps(strategy, reference, policy, batch: dict) -> torch.Tensor:
    """(2B,) summed answer log-probs of a pair batch under the reference, as a plain tensor (no gradient).

    reference is a frozen model (AnswerLogProbs around it), or the policy itself, run in eval mode: with LoRA its
    adapters are switched off for the pass, so the reference is the base weights, never a second copy; without
    LoRA the policy is the reference only before its first step (the precompute pass, from --pretrain)."""
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    with strategy.rollout_mode():
        if reference is policy:
            inner = strategy.unwrap(policy)
            peft = peft_wrapper(inner)
            training = inner.training
            inner.eval()
            try:
                with peft.disable_adapter() if peft is not None else contextlib.nullcontext():
                    logps, _ = inner(*args)
            finally:
                inner.train(training)
        else:
            logps, _ = reference(*args)
    return logps.float().clone()  # cloned outside inference mode: a tensor the loss may combine with autograd's


@torch.no_grad()
def precompute_reference_logps(*, strategy, reference, policy, loader) -> None:
    """One pass of the reference over `loader` (each rank its share of the pairs), the table put together on
    every rank and stored in the loader's DPODataset (`set_reference_logps`): from then on batches carry it."""
    dataset = loader.dataset
    n = len(dataset)
    sums = torch.zeros(n, 2, dtype=torch.float64)
    counts = torch.zeros(n, dtype=torch.float64)  # a distributed sampler repeats a few pairs to even the ranks
    for batch in loader:
        batch = {k: v.to(strategy.device) for k, v in batch.items()}
        chosen, rejected = reference_logps(strategy, reference, policy, batch).cpu().double().chunk(2)
        index = batch["index"].cpu()
        sums.index_add_(0, index, torch.stack([chosen, rejected], dim=1))
        counts.index_add_(0, index, torch.ones(len(index), dtype=torch.float64))
    sums = strategy.all_reduce(sums, "sum").cpu()
    counts = strategy.all_reduce(counts, "sum").cpu()
    if bool((counts == 0).any()):
        raise RuntimeError(f"the reference pass missed {int((counts == 0).sum())} of {n} pairs")
    table = sums / counts[:, None]
    dataset.set_reference_logps(torch.arange(n), table[:, 0], table[:, 1])


class DPOTrainer:
    """The preference step and evaluation; `EpochLoop` runs them over the epochs.

    model: the policy inside AnswerLogProbs, prepared by the strategy. ref_model: None (reference-free loss, or
    every batch carries precomputed reference log-probs), a frozen AnswerLogProbs, or `model` itself (LoRA: the
    reference is the policy with its adapters off). beta is the loss's β (ORPO: the odds-ratio weight).
    """

    def __init__(self, *, strategy, model, optimizer, scheduler, train_loader, eval_loader=None, ref_model=None,
                 loss_type: str = "dpo", beta: float = 0.1, label_smoothing: float = 0.0,
                 simpo_gamma: float = DEFAULT_SIMPO_GAMMA, sft_coef: float = 0.0, accumulation_steps: int = 1,
                 max_epochs: int = 1, max_grad_norm: float = 1.0, logger=None, log_interval: int = 1,
                 eval_interval: int = 0, checkpointer=None, skip_nonfinite: bool = False):
        self.strategy, self.model, self.optimizer, self.scheduler = strategy, model, optimizer, scheduler
        if ref_model is model and peft_wrapper(strategy.unwrap(model)) is None:
            raise ValueError("the policy is its own reference during training only with LoRA adapters to switch "
                             "off; give a frozen reference model, or precomputed reference log-probs")
        self.ref_model = ref_model
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.loss_kwargs = dict(loss_type=loss_type, beta=beta, label_smoothing=label_smoothing,
                                simpo_gamma=simpo_gamma, sft_coef=sft_coef)
        self.loss_type = loss_type
        self.max_grad_norm, self.skip_nonfinite = max_grad_norm, skip_nonfinite
        self.loop = EpochLoop(strategy=strategy, loader=train_loader, name=loss_type,
                              accumulation_steps=accumulation_steps, max_epochs=max_epochs, logger=logger,
                              log_interval=log_interval, eval_interval=eval_interval,
                              checkpointer=checkpointer, bar={"loss": ".4f", "accuracy": ".2f"},
                              count=pairs_and_tokens, evaluate_first=True, scheduler=scheduler)
        self.last = {}

    def fit(self) -> None:
        self.model.train()  # evaluate() hands the model back in training mode
        self.loop.run(self.train_step, self.evaluate)

    def _reference(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not needs_reference(self.loss_type):
            return None, None
        if "ref_chosen_logps" in batch:
            return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        if self.ref_model is None:
            raise ValueError(f"{self.loss_type} needs a reference model, or batches with precomputed reference "
                             "log-probs")
        return reference_logps(self.strategy, self.ref_model, self.model, batch).chunk(2)

    def _pair_sums(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses (B,) with gradient, (7,) sums of FIGURES over the batch's pairs)."""
        ref_chosen, ref_rejected = self._reference(batch)
        logps, lengths = self.model(batch["input_ids"], batch["attention_mask"], batch["labels"])
        chosen, rejected = logps.chunk(2)
        chosen_len, rejected_len = lengths.chunk(2)
        losses, chosen_rewards, rejected_rewards = preference_loss(
            chosen, rejected, ref_chosen, ref_rejected, chosen_lengths=chosen_len, rejected_lengths=rejected_len,
            **self.loss_kwargs)
        sums = torch.stack([losses.detach().sum(), (chosen_rewards > rejected_rewards).float().sum(),
                            (chosen_rewards - rejected_rewards).sum(), chosen_rewards.sum(), rejected_rewards.sum(),
                            chosen.detach().float().sum(), rejected.detach().float().sum()])
        return losses, sums

    def train_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over k micro-batches of pairs; returns the mean of FIGURES over all their pairs.

        Each micro-batch's summed loss is divided by the pairs of the whole accumulated batch on all ranks (times
        world size, since DDP averages gradients), so the update equals one large batch of every rank's pairs."""
        n_local = sum(len(mb["index"]) for mb in micro_batches)
        n_global = float(self.strategy.all_reduce(torch.tensor(float(n_local)), "sum"))
        sums = torch.zeros(len(FIGURES), device=self.strategy.device)
        for i, mb in enumerate(micro_batches):
            mb = {k: v.to(self.strategy.device) for k, v in mb.items()}
            with self.strategy.no_sync(self.model, sync=i == len(micro_batches) - 1):
                losses, batch_sums = self._pair_sums(mb)
                self.strategy.backward(losses.sum() * (self.strategy.world_size / n_global), self.model,
                                       self.optimizer)
            sums += batch_sums.to(sums.device)
        stats = dict(zip(FIGURES, (self.strategy.all_reduce(sums, "sum") / n_global).tolist()))
        guarded_step(self.strategy, self.optimizer, self.model, loss=stats["loss"], what=f"{self.loss_type} loss",
                     step=self.loop.global_step + 1, max_grad_norm=self.max_grad_norm, skip=self.skip_nonfinite,
                     scheduler=self.scheduler)
        self.last.update(stats)
        return stats

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict | None:
        """eval_loss, eval_accuracy (share of pairs whose implicit reward ranks the chosen answer higher; a tie
        is wrong) and eval_margin (mean reward difference) over every eval pair on all ranks."""
        if self.eval_loader is None:
            return None
        self.model.eval()
        sums = torch.zeros(len(FIGURES) + 1, device=self.strategy.device)
        for batch in self.eval_loader:
            batch = {k: v.to(self.strategy.device) for k, v in batch.items()}
            _, batch_sums = self._pair_sums(batch)
            sums += torch.cat([batch_sums.to(sums.device), sums.new_tensor([len(batch["index"])])])
        self.model.train()
        totals = self.strategy.all_reduce(sums, "sum").tolist()
        n = max(totals[-1], 1.0)
        figures = dict(zip(FIGURES, (t / n for t in totals)))
        stats = {f"eval_{k}": figures[k] for k in ("loss", "accuracy", "margin")}
        self.last.update(stats)
        return stats
