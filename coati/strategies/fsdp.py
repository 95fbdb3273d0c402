"""Torch FSDP2 (`fully_shard`): parameters, gradients and optimizer state sharded over the ranks.

Each transformer block is one shard group, then the root takes the rest (embeddings, head, final norm).
gloo on CPU, nccl on GPU (process setup is DDP's). fp32, or bf16 compute over fp32 master weights, and
optional CPU offload of the sharded state. Frozen parameters (LoRA) may sit in the same group as
trainable ones. Models prepared with trainable=False are not sharded: every rank keeps a replica.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os

import torch

from coati.strategies.base import fill_skeleton, hf_part, meta_skeleton
from coati.strategies.ddp import DDPStrategy, init_process_group

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def fsdp_api():
    """(fully_shard, FSDPModule, MixedPrecisionPolicy, CPUOffloadPolicy): public from torch 2.6, private before."""
    try:
        from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch 2.4 / 2.5 (the ColossalAI stack)
        from torch.distributed._composable.fsdp import (
            CPUOffloadPolicy,
            FSDPModule,
            MixedPrecisionPolicy,
            fully_shard,
        )
    return fully_shard, FSDPModule, MixedPrecisionPolicy, CPUOffloadPolicy


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of an HF model (peft-wrapped or inside a wrapper): the modules whose class the
    model names in `_no_split_modules`, else the children of its largest `nn.ModuleList`."""
    names = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if blocks:
        return blocks
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    if not lists:
        return []
    biggest = max(lists, key=lambda ml: sum(p.numel() for p in ml.parameters()))
    return list(biggest)


class FSDPStrategy(DDPStrategy):
    name = "fsdp"

    def __init__(self, seed: int = 42, mixed_precision: str = "fp32", cpu_offload: bool = False):
        if mixed_precision not in DTYPES:
            raise ValueError(f"fsdp trains in fp32 or bf16, not {mixed_precision}")
        self.mixed_precision, self.cpu_offload = mixed_precision, cpu_offload
        self._skeletons: dict[int, torch.nn.Module] = {}
        super().__init__(seed)

    def setup_distributed(self) -> None:
        if self.cpu_offload and self.device.type == "cuda" and not torch.distributed.is_initialized():
            # Offloaded shards and their gradients live on CPU, and clipping all-reduces their norms: gloo
            # carries the CPU tensors, nccl the CUDA ones.
            if "RANK" not in os.environ:
                os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                                  MASTER_PORT=os.environ.get("MASTER_PORT", "29531"))
            init_process_group("cpu:gloo,cuda:nccl")
        super().setup_distributed()

    # -- models ------------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        if not trainable or not any(p.requires_grad for p in model.parameters()):
            return model.to(self.device)
        fully_shard, _, MixedPrecisionPolicy, CPUOffloadPolicy = fsdp_api()
        from torch.distributed.device_mesh import init_device_mesh

        if self.mixed_precision != "fp32":
            model = model.float()  # master weights and optimizer state in fp32; compute in bf16
        self._skeletons[id(model)] = meta_skeleton(model)
        if not self.cpu_offload:
            model = model.to(self.device)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        kwargs = {"mesh": mesh}
        if self.mixed_precision != "fp32":
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=DTYPES[self.mixed_precision],
                                                       reduce_dtype=torch.float32)
        if self.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=self.device.type == "cuda")
        for block in transformer_blocks(model):
            fully_shard(block, **kwargs)
        fully_shard(model, **kwargs)
        return model

    def _is_sharded(self, model: torch.nn.Module) -> bool:
        return isinstance(model, fsdp_api()[1])

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        # fully_shard changes the module in place; its parameters are DTensor shards outside forward.
        return model

    def no_sync(self, model: torch.nn.Module, sync: bool):
        if not self._is_sharded(model):
            return contextlib.nullcontext()
        return _gradient_sync(model, sync)

    def rollout_mode(self):
        # Not inference mode: the all-gathered weights' buffers are made in the rollout's forwards and written in
        # place by training's (PyTorch refuses that for inference tensors; seen in tests/test_strategies.py).
        return torch.no_grad()

    def generation_kwargs(self) -> dict:
        # Every rank must keep running forward (and so the all-gathers) until the longest sample ends.
        return {"synced_gpus": True} if self.world_size > 1 else {}

    def step(self, optimizer, model: torch.nn.Module, max_norm: float | None = None) -> float:
        """Clip, step and zero the gradients; returns the global gradient norm. A non-finite norm skips the update."""
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
        if hasattr(norm, "full_tensor"):  # a DTensor: each rank holds a partial norm
            norm = norm.full_tensor()
        norm = float(norm)
        if math.isfinite(norm):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return norm

    # -- state -------------------------------------------------------------------------------------
    def model_state_dict(self, model: torch.nn.Module) -> dict:
        """Full state dict on CPU, on rank 0 (other ranks get {}, so a big model is not copied world-size times)."""
        if not self._is_sharded(model):
            return super().model_state_dict(model)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state_dict(self, model: torch.nn.Module, state: dict) -> None:
        """Every rank passes the full state dict (as `model_state_dict` gave it); each keeps its shards."""
        if not self._is_sharded(model):
            return super().load_model_state_dict(model, state)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        missing, unexpected = set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True,
                                                                                         strict=False))
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def optimizer_state_dict(self, optimizer, model: torch.nn.Module) -> dict:
        """This rank's shard of the optimizer state, as plain tensors. Every rank saves its own and loads it
        back in a run of the same world size, as `coati.checkpoint.Checkpointer` does."""
        state = optimizer.state_dict()
        return {"state": {i: {k: _local(v) for k, v in s.items()} for i, s in state["state"].items()},
                "param_groups": state["param_groups"]}

    def load_optimizer_state_dict(self, optimizer, model: torch.nn.Module, state: dict) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]  # state_dict's numbering
        shards = {i: {k: _as_shard_of(v, params[int(i)]) for k, v in s.items()} for i, s in state["state"].items()}
        optimizer.load_state_dict({"state": shards, "param_groups": state["param_groups"]})

    def save_hf(self, model: torch.nn.Module, tokenizer, out_dir: str | None, merge_lora: bool = True,
                extra_json: dict | None = None) -> None:
        """Gather the full weights (every rank), load them into an unsharded CPU copy and write it (rank 0).
        The live sharded model is left as it was, so this can run mid-training."""
        if not self._is_sharded(model) or id(model) not in self._skeletons:
            return super().save_hf(model, tokenizer, out_dir, merge_lora, extra_json)
        state = self.model_state_dict(model)
        if self.is_rank0:
            from coati.checkpoint import save_hf_model

            # A fresh copy each time: merging LoRA rewires the copy's modules.
            full = fill_skeleton(copy.deepcopy(self._skeletons[id(model)]), state)
            save_hf_model(hf_part(full), tokenizer, out_dir, merge_lora, extra_json)


def _local(value):
    """A DTensor's local shard (a plain tensor torch.load(weights_only=True) reads back); others as they are."""
    return value.to_local().detach().cpu() if hasattr(value, "to_local") else value


def _as_shard_of(value, param):
    """`value`, this rank's shard of a state tensor saved by `_local`, as a DTensor laid out like `param`."""
    if not (hasattr(param, "device_mesh") and torch.is_tensor(value) and value.shape == param.to_local().shape
            and value.ndim > 0):
        return value
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(value.to(param.to_local().device), param.device_mesh, param.placements,
                              run_check=False, shape=param.shape, stride=param.stride())


@contextlib.contextmanager
def _gradient_sync(model, sync: bool):
    """Accumulate unsharded gradients locally; reduce-scatter them on the micro-batch where `sync`."""
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
