"""Training strategies, picked by name; heavy backends are imported only when chosen."""

from __future__ import annotations

import importlib.util

from coati.errors import UserError

STRATEGIES = ("naive", "ddp", "fsdp", "colossalai_zero2", "colossalai_zero2_cpu", "colossalai_gemini")
COLOSSALAI_INSTALL = "pip install -r requirements-colossalai.txt"


def check_strategy(name: str, mixed_precision: str | None = None) -> None:
    """Refuse a strategy this machine cannot run, in one line, before any model is loaded.

    mixed_precision: the run's --dtype ("fp32", "bf16", "fp16"), when the caller knows it.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name} is unknown; choose one of {', '.join(STRATEGIES)}")
    if name == "fsdp":
        import torch

        if mixed_precision == "fp16":
            raise UserError("--strategy fsdp trains in fp32 or bf16 (fp16 needs loss scaling it does not do); "
                            "use --dtype bf16")
        if not torch.cuda.is_available() and _torch_version() < (2, 6):
            raise UserError(f"--strategy fsdp on CPU needs torch 2.6 or later (FSDP2 in torch {torch.__version__} "
                            "runs on CUDA only); on CPU use ddp")
    if name.startswith("colossalai"):
        import torch

        from coati.strategies.colossalai import cpu_supported

        if not torch.cuda.is_available() and (name == "colossalai_gemini" or not cpu_supported()):
            why = "Gemini keeps its parameter chunks on the GPU" if name == "colossalai_gemini" else \
                "ColossalAI 0.5.0's ZeRO optimizer runs on CUDA or NPU only"
            cpu_choice = "fsdp or ddp" if _torch_version() >= (2, 6) else "ddp"
            raise UserError(f"--strategy {name} needs a CUDA GPU ({why}); on CPU use {cpu_choice}")
        if importlib.util.find_spec("colossalai") is None:
            raise UserError(f"--strategy {name} needs ColossalAI, which is not installed: {COLOSSALAI_INSTALL} "
                            "(its own stack: torch 2.5.1, transformers 4.51.3), or use fsdp or ddp")


def _torch_version() -> tuple[int, int]:
    import torch

    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


def build_strategy(name: str, seed: int = 42, mixed_precision: str = "fp32", cpu_offload: bool = False):
    """The strategy called `name`.

    mixed_precision ("fp32", "bf16", "fp16"; pass --dtype) is the compute precision of the sharded strategies,
    which keep fp32 master weights; naive and ddp train in the dtype the model was loaded in.
    cpu_offload: fsdp keeps its shards and optimizer state in CPU memory (colossalai_zero2_cpu always does).
    """
    check_strategy(name, mixed_precision)
    if name == "ddp":
        from coati.strategies.ddp import DDPStrategy

        return DDPStrategy(seed)
    if name == "fsdp":
        from coati.strategies.fsdp import FSDPStrategy

        return FSDPStrategy(seed, mixed_precision=mixed_precision, cpu_offload=cpu_offload)
    if name.startswith("colossalai_"):
        from coati.strategies.colossalai import ColossalAIStrategy

        return ColossalAIStrategy(name.removeprefix("colossalai_"), seed, mixed_precision=mixed_precision)
    from coati.strategies.base import Strategy

    return Strategy(seed)
