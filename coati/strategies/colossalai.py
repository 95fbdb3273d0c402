"""ColossalAI's Booster: ZeRO-2 (`LowLevelZeroPlugin`, optionally offloading to CPU) and Gemini (`GeminiPlugin`).

The only module that imports colossalai, and only inside functions, so `import coati` works without it.
It needs the ColossalAI stack (requirements-colossalai.txt: colossalai 0.5.0, torch 2.5.1) and a CUDA GPU.

- zero2:      gradients and fp32 master weights/optimizer state sharded over the ranks; weights replicated.
- zero2_cpu:  the same, with master weights and optimizer state in CPU memory (HybridAdam steps them there).
- gemini:     parameters too, in chunks; bf16 or fp16 compute only (fp32 is taken as bf16).

`prepare_train` returns the plain optimizer (HybridAdam), so the LR scheduler is built on it as usual;
the booster's wrapper, which steps the shards, is looked up from it in `backward` and `step`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys

import torch

from coati.errors import UserError
from coati.optim import weight_decay_groups
from coati.strategies.base import fill_skeleton, hf_part, meta_skeleton
from coati.strategies.ddp import DDPStrategy

KINDS = ("zero2", "zero2_cpu", "gemini")

# Stock ColossalAI 0.5.0 cannot train on CPU: its CPU accelerator raises on stream calls and
# LowLevelZeroOptimizer asserts a CUDA/NPU device. tests/colossalai_cpu_shim.py (a test double) stubs
# both and sets this, so the ZeRO-2 paths can be tested on a CPU machine.
CPU_SHIM = False


def cpu_supported() -> bool:
    """Whether a ZeRO-2 strategy may run without CUDA (only under the test shim)."""
    return CPU_SHIM


class ColossalAIStrategy(DDPStrategy):
    def __init__(self, kind: str = "zero2", seed: int = 42, mixed_precision: str = "fp32"):
        if kind not in KINDS:
            raise ValueError(f"unknown ColossalAI strategy {kind}; one of {KINDS}")
        self.kind, self.name = kind, f"colossalai_{kind}"
        # Gemini keeps fp32 master weights but computes in bf16 or fp16 only.
        self.precision = "bf16" if kind == "gemini" and mixed_precision == "fp32" else mixed_precision
        self._boosted: dict[int, tuple] = {}  # id(plain optimizer) -> (booster, boosted optimizer)
        self._skeletons: dict[int, torch.nn.Module] = {}
        super().__init__(seed)

    # -- models ------------------------------------------------------------------------------------
    def prepare(self, model: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """Models that are not trained (reference, reward) are replicated as they are; a trained model is
        boosted by `prepare_train`, since the booster wraps model and optimizer together."""
        return model.to(self.device)

    def prepare_train(self, model: torch.nn.Module, lr: float, weight_decay: float = 0.0):
        from colossalai.booster import Booster

        if self.kind == "gemini":
            if not all(p.requires_grad for p in model.parameters()):
                raise UserError("--strategy colossalai_gemini cannot train a model with frozen parameters (LoRA); "
                                "use colossalai_zero2, fsdp or ddp, or --lora_rank 0")
            self._skeletons[id(model)] = meta_skeleton(model)  # Gemini empties the module's own parameters
        optimizer = self._optimizer(model, lr, weight_decay)
        booster = Booster(plugin=self._plugin())
        boosted_model, boosted_optimizer, *_ = booster.boost(model, optimizer)
        self._boosted[id(optimizer)] = (booster, boosted_optimizer)
        if self.kind == "gemini":
            self._skeletons[id(boosted_model)] = self._skeletons.pop(id(model))
        return boosted_model, optimizer

    def _plugin(self):
        from colossalai.booster.plugin import GeminiPlugin, LowLevelZeroPlugin

        if self.kind == "gemini":
            # max_norm=inf makes Gemini compute the gradient norm every step; `step` sets the real bound.
            return GeminiPlugin(precision=self.precision, placement_policy="static", max_norm=float("inf"),
                                enable_gradient_accumulation=True, initial_scale=2**16)
        # Comm streams only pay on a GPU; the CPU test path has none.
        return LowLevelZeroPlugin(stage=2, precision=self.precision, cpu_offload=self.kind == "zero2_cpu",
                                  initial_scale=2**16, overlap_communication=self.device.type == "cuda")

    def _optimizer(self, model: torch.nn.Module, lr: float, weight_decay: float):
        """HybridAdam (AdamW; steps CPU-resident shards with its CPU kernel) over the same parameter groups as
        `coati.optim.build_optimizer`."""
        groups = weight_decay_groups(model, weight_decay)
        try:
            from colossalai.nn.optimizer import HybridAdam

            return HybridAdam(groups, lr=lr)
        except Exception as err:  # its kernels are built on first use and need CUDA and a CUDA toolkit
            why = (str(err) or type(err).__name__).splitlines()[0][:200]
            if self.kind == "gemini":
                raise UserError(f"colossalai_gemini needs HybridAdam, whose kernels could not be loaded ({why}); "
                                "install a CUDA toolkit matching torch (nvcc, CUDA_HOME) or use colossalai_zero2") \
                    from err
            if self.is_rank0:
                print(f"[coati] HybridAdam unavailable ({why}); using torch.optim.AdamW", file=sys.stderr)
            return torch.optim.AdamW(groups, lr=lr)

    def _zero(self, optimizer):
        try:
            return self._boosted[id(optimizer)]
        except KeyError:
            raise ValueError("this optimizer was not made by ColossalAIStrategy.prepare_train") from None

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from colossalai.interface import ModelWrapper

        return model.unwrap(unwrap_peft=False) if isinstance(model, ModelWrapper) else model

    def no_sync(self, model: torch.nn.Module, sync: bool):
        # ZeRO-2 and Gemini reduce every micro-batch's gradients into their shards, which accumulate there.
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, model: torch.nn.Module, optimizer) -> None:
        booster, boosted = self._zero(optimizer)
        booster.backward(loss, boosted)

    def rollout_mode(self):
        # Not inference mode, as for FSDP: Gemini gathers chunks into buffers that training then writes in place,
        # and ZeRO-2's hooks are untested with it.
        return torch.no_grad()

    def rollout_model(self, model: torch.nn.Module) -> torch.nn.Module:
        # Gemini's weights exist only inside its wrapper's forward, which gathers the chunks and frees them after:
        # the rollout samples through the wrapper.
        if self.kind == "gemini" and id(model) in self._skeletons:
            return model
        return super().rollout_model(model)

    def generation_kwargs(self) -> dict:
        if self.kind != "gemini":
            return {}
        # Every decoding step calls the wrapper (see rollout_model), and the chunks are gathered collectively:
        # every rank must keep stepping until all are done.
        return {"call_wrapper": True, "synced_gpus": self.world_size > 1}

    def step(self, optimizer, model: torch.nn.Module, max_norm: float | None = None) -> float:
        """Clip (inside the ZeRO optimizer, which knows the global norm), step, zero the gradients; returns
        the norm. A non-finite norm skips the update, as in the other strategies."""
        _, boosted = self._zero(optimizer)
        if self.kind == "gemini":
            boosted.max_norm = max_norm if max_norm else float("inf")
        else:
            norm = self._zero2_norm(boosted)
            if norm is not None and not math.isfinite(norm):
                boosted.zero_grad()
                return norm
            boosted._clip_grad_norm = max_norm if max_norm else 0.0  # read by LowLevelZeroOptimizer.step
        boosted.step()
        boosted.zero_grad()
        norm = boosted.get_grad_norm()
        # None: fp16 loss scaling found an overflow and skipped the step, lowering the scale (routine).
        return float(norm) if norm is not None else 0.0

    def zero_grad(self, optimizer, model: torch.nn.Module) -> None:
        _, boosted = self._zero(optimizer)
        boosted.zero_grad()  # also empties ZeRO's own gradient store, which the plain optimizer does not see

    def _zero2_norm(self, boosted) -> float | None:
        """The global gradient norm of a ZeRO-2 optimizer, before it steps (None under fp16, where the loss
        scaler handles overflow itself)."""
        if boosted.mixed_precision_mixin is not None and boosted.dtype is torch.float16:
            return None
        local = torch.zeros((), dtype=torch.float64, device=self.device)
        for group_id in range(boosted.num_param_groups):
            for grad in boosted.get_working_grads_by_group_id(group_id):
                local += grad.detach().double().pow(2).sum().to(self.device)
        torch.distributed.all_reduce(local)  # each rank holds its partition of every gradient
        return float(local.sqrt())

    # -- state -------------------------------------------------------------------------------------
    def model_state_dict(self, model: torch.nn.Module) -> dict:
        """Full state dict; ZeRO-2 weights are whole on every rank (in the compute dtype), Gemini's are
        gathered to rank 0. Every rank calls it."""
        if self.kind == "gemini" and id(model) in self._skeletons:
            return model.state_dict(only_rank_0=True)
        return super().model_state_dict(model)

    def load_model_state_dict(self, model: torch.nn.Module, state: dict) -> None:
        """Every rank passes the full state dict; the fp32 master shards are refreshed from it."""
        if self.kind == "gemini" and id(model) in self._skeletons:
            model.load_state_dict(state, strict=True)
            return
        super().load_model_state_dict(model, state)
        if hasattr(model, "update_master_params"):  # the booster's ZeRO-2 model
            model.update_master_params()

    def optimizer_state_dict(self, optimizer, model: torch.nn.Module) -> dict:
        """ZeRO-2: this rank's shard (the state of its master-weight partition). Every rank saves its own and
        loads it back in a run of the same world size, as `coati.checkpoint.Checkpointer` does.
        Gemini: the whole state, gathered on every rank."""
        _, boosted = self._zero(optimizer)
        if self.kind == "gemini":
            return boosted.state_dict(only_rank_0=False)
        return boosted.optim.state_dict()

    def load_optimizer_state_dict(self, optimizer, model: torch.nn.Module, state: dict) -> None:
        _, boosted = self._zero(optimizer)
        if self.kind == "gemini":
            boosted.load_state_dict(state)
        else:
            boosted.optim.load_state_dict(state)

    def save_hf(self, model: torch.nn.Module, tokenizer, out_dir: str | None, merge_lora: bool = True,
                extra_json: dict | None = None) -> None:
        if self.kind != "gemini" or id(model) not in self._skeletons:
            return super().save_hf(model, tokenizer, out_dir, merge_lora, extra_json)
        state = self.model_state_dict(model)
        if self.is_rank0:
            from coati.checkpoint import save_hf_model

            full = fill_skeleton(copy.deepcopy(self._skeletons[id(model)]), state)
            save_hf_model(hf_part(full), tokenizer, out_dir, merge_lora, extra_json)
