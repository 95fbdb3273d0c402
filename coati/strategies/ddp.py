"""DistributedDataParallel: gloo on CPU, nccl on GPU, one process per device under torchrun."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from torch.nn.parallel import DistributedDataParallel

from coati.strategies.base import Strategy


def init_process_group(backend: str) -> None:
    """`torch.distributed.init_process_group` from torchrun's environment, with keys of their own after a restart.

    torchrun lends its workers its rendezvous store, and that store outlives a restart (--max_restarts): the
    restarted workers would read the addresses the failed ones published there and fail to connect ("Gloo
    connectFullMesh failed ... Connection refused"). Each restart's keys get their own prefix."""
    timeout = timedelta(minutes=30)
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if restart == "0":
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # With the agent's store every worker is a client; otherwise rank 0 hosts a store, as init_process_group does.
    hosted = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and rank == 0
    store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                       is_master=hosted, timeout=timeout, multi_tenant=True)
    torch.distributed.init_process_group(backend=backend, store=torch.distributed.PrefixStore(
        f"coati/restart{restart}/", store), rank=rank, world_size=world_size, timeout=timeout)


class DDPStrategy(Strategy):
    name = "ddp"

    def setup_distributed(self) -> None:
        if "RANK" not in os.environ:
            # Launched without torchrun: a world of one, so `python train_sft.py --strategy ddp` still runs.
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=os.environ.get("MASTER_PORT", "29531"))
        if not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            init_process_group(backend)

    def prepare(self, model: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        model = model.to(self.device)
        if not trainable or not any(p.requires_grad for p in model.parameters()):
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def no_sync(self, model: torch.nn.Module, sync: bool):
        if sync or not isinstance(model, DistributedDataParallel):
            return super().no_sync(model, sync)
        return model.no_sync()
