"""AdamW over the trainable parameters and a cosine schedule with linear warmup."""

from __future__ import annotations

import math

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (1-D tensors) are not decayed, as is usual for transformers."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all tensors in one pass (about 2x faster steps on CPU); it takes plain CPU or
    # CUDA tensors only, not the DTensor shards of FSDP.
    params = decay + no_decay
    fused = all(type(p) is torch.nn.Parameter and p.device.type in ("cpu", "cuda") for p in params) and \
        len({p.dtype for p in params}) == 1
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=fused or None)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.03,
                    min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """lr * (step / warmup) during warmup, then a half cosine down to lr * min_ratio at total_steps."""
    total_steps = max(total_steps, 1)
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
