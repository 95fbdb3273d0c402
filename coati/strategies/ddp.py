"""DistributedDataParallel: gloo on CPU, nccl on GPU, one process per device under torchrun."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from torch.nn.parallel import DistributedDataParallel

from coati.strategies.base import Strategy


class DDPStrategy(Strategy):
    name = "ddp"

    def setup_distributed(self) -> None:
        if "RANK" not in os.environ:
            # Launched without torchrun: a world of one, so `python train_sft.py --strategy ddp` still runs.
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=os.environ.get("MASTER_PORT", "29531"))
        if not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend, timeout=timedelta(minutes=30))

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
