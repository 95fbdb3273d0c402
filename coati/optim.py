"""AdamW over the trainable parameters and a cosine schedule with linear warmup."""

from __future__ import annotations

import math

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups of the trainable parameters: matrices decayed, biases and norm weights (1-D
    tensors) not, as is usual for transformers. Empty groups are left out."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW over `weight_decay_groups`.

    Trainable bf16/fp16 parameters (a full fine-tune with --dtype bf16) get `MasterWeightAdamW`, which steps fp32
    copies of them; fp32 parameters (fp32 runs, LoRA adapters) get plain AdamW."""
    groups = weight_decay_groups(model, weight_decay)
    params = [p for g in groups for p in g["params"]]
    # The fused kernel updates all tensors in one pass, fewer and larger ops per step (benchmarks/README.md);
    # it takes plain CPU or CUDA tensors of one dtype only (the masters are all fp32), not FSDP's DTensors.
    plain = all(type(p) is torch.nn.Parameter and p.device.type in ("cpu", "cuda") for p in params)
    if any(p.dtype in LOW_PRECISION for p in params):
        return MasterWeightAdamW(groups, lr=lr, fused=plain or None)
    return torch.optim.AdamW(groups, lr=lr, fused=(plain and len({p.dtype for p in params}) == 1) or None)


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW over fp32 master copies of bf16/fp16 parameters; after each step the model gets them back rounded.

    Why: bf16 keeps 8 significant bits, so a weight w moves in steps of |w| / 256 to |w| / 128, and an update
    under half a step is rounded away. An AdamW update moves a weight by about the learning rate, so at the
    stages' rates (SFT 2e-5, RM 5e-6, actor 1e-6) every weight above 256-512 x lr in magnitude, nearly all of
    them, would never train (benchmarks/README.md, "A correctness finding from that run"). The masters
    accumulate the updates; the moments are fp32 too. ZeRO's and FSDP's bf16 modes do the same. Memory per
    trained parameter: 2 (weight) + 2 (gradient) + 4 (master) + 8 (moments) bytes.

    Parameters already in fp32 (a value head, LoRA adapters) are their own master. The fp32 copies of the
    gradients are made about CHUNK elements at a time (whole tensors), so stepping adds about 4 x CHUNK bytes
    of memory, or one tensor's worth where a single tensor is larger.
    `state_dict` carries the masters, so a resumed run continues from them, not from the rounded weights."""

    CHUNK = 1 << 26

    def __init__(self, groups: list[dict], lr: float, fused: bool | None = None):
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (model parameter, master)
        master_groups = []
        for group in groups:
            masters = []
            for p in group["params"]:
                master = p.detach().float().clone() if p.dtype in LOW_PRECISION else p
                self.pairs.append((p, master))
                masters.append(master)
            master_groups.append({**group, "params": masters})
        super().__init__(master_groups, lr=lr, fused=fused)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("MasterWeightAdamW.step takes no closure")
        grads = [p.grad for p, _ in self.pairs]
        for _, master in self.pairs:
            master.grad = None  # AdamW steps exactly the tensors that have a gradient: one chunk at a time
        live = [i for i, grad in enumerate(grads) if grad is not None]
        chunk, size = [], 0
        for k, i in enumerate(live):
            chunk.append(i)
            size += grads[i].numel()
            if size >= self.CHUNK or k == len(live) - 1:
                self._step_chunk(chunk, grads)
                chunk, size = [], 0
        for (p, _), grad in zip(self.pairs, grads):
            p.grad = grad  # the model's gradients stay until zero_grad, as with any optimizer

    def _step_chunk(self, chunk: list[int], grads: list[torch.Tensor]) -> None:
        for i in chunk:
            p, master = self.pairs[i]
            master.grad = grads[i].float() if master is not p else grads[i]
        super().step()
        for i in chunk:
            p, master = self.pairs[i]
            master.grad = None
            if master is not p:
                p.copy_(master)

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for p, master in self.pairs:
            if master is not p and p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "masters": [m for p, m in self.pairs if m is not p]}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("masters", None)
        super().load_state_dict(state_dict)
        own = [(p, m) for p, m in self.pairs if m is not p]
        with torch.no_grad():
            if masters is None:  # a checkpoint of plain AdamW: the best start is the weights just loaded
                for p, m in own:
                    m.copy_(p)
                return
            if len(masters) != len(own):
                raise ValueError(f"optimizer state holds {len(masters)} master weights, the model has {len(own)}")
            for (p, m), saved in zip(own, masters):
                m.copy_(saved)
                p.copy_(m)


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
