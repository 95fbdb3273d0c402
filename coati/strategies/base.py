"""Strategy: the only code that knows how many processes there are and how models are wrapped.

Trainers call `prepare`, `backward`, `step`, `dataloader`, `unwrap`, `all_reduce` and `barrier`, and
never ask which strategy they have. `Strategy` itself is the single-process ("naive") one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from coati.dataset.sampler import LengthGroupedSampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def end_process_group() -> None:
    """The last call of a distributed run (every strategy's `close`): all ranks together, then the group goes."""
    if not torch.distributed.is_initialized():
        return
    # Together, so that no rank tears its connections down while another still uses them (rank 0 writing its
    # last files).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    # A gloo worker thread frees each finished collective just after waking its caller, and freeing one that
    # holds a tensor Python also sees takes the GIL. A thread that asks for the GIL once the interpreter is
    # finalizing is ended inside that destructor, and the process aborts after every file was written
    # ("terminate called without an active exception", exit 134). destroy_process_group does not join those
    # threads (DDP keeps the group alive), so give them a moment, with the GIL released, while Python still
    # runs: a minimal two-rank DDP script aborted at exit in 10 of 100 runs without this wait, in none of 280
    # with it.
    time.sleep(0.05)


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
        end_process_group()

    # -- models ------------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """Move to the device and, for distributed strategies, wrap for training."""
        return model.to(self.device)

    def prepare_train(self, model: torch.nn.Module, lr: float, weight_decay: float = 0.0):
        """(wrapped model, optimizer) for a trainable model; the optimizer is built over the wrapped
        parameters, since sharding strategies replace them."""
        from coati.optim import build_optimizer

        model = self.prepare(model, trainable=True)
        return model, build_optimizer(model, lr, weight_decay)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def rollout_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the rollout samples from: the model without its training wrapper (whose forward would
        only add work), unless the strategy needs its wrapper's forward to run (`generation_kwargs`)."""
        return self.unwrap(model)

    def generation_kwargs(self) -> dict:
        """Extra arguments of `coati.models.sampling.sample`; sharded strategies need every rank to step
        together."""
        return {}

    def rollout_mode(self):
        """Context for the rollout's forwards (decoding and scoring), whose outputs are never differentiated.

        Inference mode rather than no_grad: it also skips autograd's per-op bookkeeping (version counters,
        view tracking), which adds up over a decoding step of a few hundred small ops (measured in
        benchmarks/README.md). Tensors made in it cannot be saved for a backward later; PPO's updates only
        read copies of them (`collate`)."""
        return torch.inference_mode()

    def no_sync(self, model: torch.nn.Module, sync: bool):
        """Context for a micro-batch of gradient accumulation; gradients sync only when `sync`."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, model: torch.nn.Module, optimizer) -> None:
        loss.backward()

    def step(self, optimizer, model: torch.nn.Module, max_norm: float | None = None) -> float:
        """Clip, step and zero the gradients; returns the gradient norm before clipping.

        A non-finite norm skips the update (the weights stay as they were); the trainer decides
        whether that stops the run."""
        params = [p for p in model.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf")))
        if math.isfinite(norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm

    def zero_grad(self, optimizer, model: torch.nn.Module) -> None:
        """Drop the gradients of a step that is not taken (e.g. a non-finite loss); `step` zeroes its own."""
        optimizer.zero_grad(set_to_none=True)

    def model_state_dict(self, model: torch.nn.Module) -> dict:
        """Full, unsharded state dict of the underlying model (every rank calls; rank 0 uses it)."""
        return self.unwrap(model).state_dict()

    def load_model_state_dict(self, model: torch.nn.Module, state: dict) -> None:
        """Load a full state dict (as `model_state_dict` returns it) into the possibly wrapped model."""
        missing, unexpected = self.unwrap(model).load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def optimizer_state_dict(self, optimizer, model: torch.nn.Module) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, optimizer, model: torch.nn.Module, state: dict) -> None:
        optimizer.load_state_dict(state)

    def save_hf(self, model: torch.nn.Module, tokenizer, out_dir: str | None, merge_lora: bool = True,
                extra_json: dict | None = None) -> None:
        """Write the model as a folder the plain HF Auto classes open (see `coati.checkpoint.save_hf_model`).

        Every rank calls it, since sharded strategies gather the weights first; only rank 0 writes, into
        `out_dir` (other ranks may pass None). A wrapper that keeps its HF model as `.hf` (ValueModel) saves
        that. Here the weights are whole on rank 0 already; note that merging LoRA merges the live model.
        """
        if self.is_rank0:
            from coati.checkpoint import save_hf_model

            save_hf_model(hf_part(self.unwrap(model)), tokenizer, out_dir, merge_lora, extra_json)

    # -- data --------------------------------------------------------------------------------------
    def sampler(self, dataset: Dataset, shuffle: bool, seed: int, batch_size: int = 1,
                lengths: list[int] | None = None) -> Sampler:
        if lengths is not None and shuffle:
            return LengthGroupedSampler(lengths, batch_size, self.world_size, self.rank, seed)
        # DistributedSampler also serves one process: a (seed, epoch) permutation, so resuming is exact.
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle,
                                  seed=seed, drop_last=False)

    def dataloader(self, dataset: Dataset, batch_size: int, collate_fn, shuffle: bool = True,
                   drop_last: bool = False, sampler: Sampler | None = None,
                   lengths: list[int] | None = None) -> DataLoader:
        """Per-rank batches of `batch_size`; call `set_epoch(loader, epoch)` before each epoch.

        lengths: the examples' token counts; with shuffle, batches then hold examples of similar length
        (`LengthGroupedSampler`), so little of each padded batch is padding."""
        if sampler is None:
            sampler = self.sampler(dataset, shuffle, self.seed, batch_size, lengths)
        # A generator of its own: otherwise each new epoch's iterator draws from the global RNG, and a
        # resumed run would see different dropout and sampling than an uninterrupted one.
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                          drop_last=drop_last, shuffle=False, generator=torch.Generator().manual_seed(self.seed))

    @staticmethod
    def set_epoch(loader: DataLoader, epoch: int) -> None:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)


# -- helpers for strategies whose weights are sharded --------------------------------------------------------
def hf_part(module: torch.nn.Module) -> torch.nn.Module:
    """The module to `save_pretrained`: the model itself, or the `.hf` model a wrapper holds."""
    from coati.models.unwrap import savable

    return savable(module)


def meta_skeleton(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose parameters live on the meta device (no memory); buffers are real copies.

    Taken before sharding, it is what a full state dict is later loaded into to write an unsharded
    model: tied parameters stay tied, and peft's LoRA layers stay mergeable.
    """
    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in model.parameters()}
    return copy.deepcopy(model, memo)


def fill_skeleton(skeleton: torch.nn.Module, state: dict) -> torch.nn.Module:
    """Load a full CPU state dict into a `meta_skeleton` by assignment; refuses to leave meta tensors."""
    skeleton.load_state_dict(state, strict=False, assign=True)
    from coati.models.unwrap import innermost

    base = innermost(skeleton)
    if hasattr(base, "tie_weights"):
        base.tie_weights()  # assignment gave tied names separate tensors; tie them again
    left = [n for n, t in [*skeleton.named_parameters(), *skeleton.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"the gathered state dict lacks {len(left)} tensors of the model, e.g. {left[:3]}")
    return skeleton
