"""Strategy: the only code that knows how many processes there are and how models are wrapped.

Trainers call `prepare`, `backward`, `step`, `dataloader`, `unwrap`, `all_reduce` and `barrier`, and
never ask which strategy they have. `Strategy` itself is the single-process ("naive") one.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Strategy:
    name = "naive"

    def __init__(self, seed: int = 42):
        self.seed = seed
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.setup_distributed()
        seed_everything(seed)

    # -- processes ---------------------------------------------------------------------------------
    def setup_distributed(self) -> None:
        """One process: nothing to set up."""

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def all_reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """Sum or mean of `tensor` over ranks (a copy; the input is left alone)."""
        out = tensor.detach().clone().to(self.device)
        if torch.distributed.is_initialized() and self.world_size > 1:
            torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
            if op == "mean":
                out /= self.world_size
        return out

    def broadcast_object(self, obj):
        """rank 0's `obj` on every rank."""
        if torch.distributed.is_initialized() and self.world_size > 1:
            box = [obj]
            torch.distributed.broadcast_object_list(box, src=0)
            return box[0]
        return obj

    def close(self) -> None:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    # -- models ------------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """Move to the device and, for distributed strategies, wrap for training."""
        return model.to(self.device)

    def prepare_train(self, model: torch.nn.Module, lr: float, weight_decay: float = 0.0):
        """(wrapped model, optimizer) for a trainable model; the optimizer is built over the wrapped
        parameters, since sharding strategies replace them."""
        from coati.trainer.optim import build_optimizer

        model = self.prepare(model, trainable=True)
        return model, build_optimizer(model, lr, weight_decay)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def generation_kwargs(self) -> dict:
        """Extra `generate` arguments; sharded strategies need every rank to step together."""
        return {}

    def no_sync(self, model: torch.nn.Module, sync: bool):
        """Context for a micro-batch of gradient accumulation; gradients sync only when `sync`."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, model: torch.nn.Module, optimizer) -> None:
        loss.backward()

    def step(self, optimizer, model: torch.nn.Module, max_norm: float | None = None) -> float:
        """Clip, step and zero the gradients; returns the gradient norm before clipping."""
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def model_state_dict(self, model: torch.nn.Module) -> dict:
        """Full, unsharded state dict of the underlying model (every rank calls; rank 0 uses it)."""
        return self.unwrap(model).state_dict()

    def optimizer_state_dict(self, optimizer, model: torch.nn.Module) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, optimizer, model: torch.nn.Module, state: dict) -> None:
        optimizer.load_state_dict(state)

    # -- data --------------------------------------------------------------------------------------
    def sampler(self, dataset: Dataset, shuffle: bool, seed: int) -> Sampler:
        # DistributedSampler also serves one process: a (seed, epoch) permutation, so resuming is exact.
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                  seed=seed, drop_last=False)

    def dataloader(self, dataset: Dataset, batch_size: int, collate_fn, shuffle: bool = True,
                   drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
        """Per-rank batches of `batch_size`; call `set_epoch(loader, epoch)` before each epoch."""
        sampler = sampler if sampler is not None else self.sampler(dataset, shuffle, self.seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                          drop_last=drop_last, shuffle=False)

    @staticmethod
    def set_epoch(loader: DataLoader, epoch: int) -> None:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
