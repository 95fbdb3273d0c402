"""Training strategies, picked by name; heavy backends are imported only when chosen."""

from __future__ import annotations

import importlib.util
import os

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


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (x86 'flags', Arm 'Features'); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = [line for line in f if line.startswith(("flags", "Features"))]
    except OSError:
        return set()
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


# x86: AVX512-BF16 or AMX-BF16 instructions; Arm: the BF16 extension. Without them torch runs bf16 matmuls through
# conversions, far slower than fp32 (benchmarks/README.md, "Real shapes").
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# Set to 1 to run bf16 anyway (the tests do: their models are tiny, so the slow path costs nothing there).
ALLOW_SLOW_BF16 = "COATI_ALLOW_SLOW_BF16"


def native_bf16(device_type: str) -> bool | None:
    """Whether `device_type` ("cpu" or "cuda") computes bf16 natively; None when the CPU's flags are unknown."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    return any(f in flags for f in NATIVE_BF16_FLAGS) if flags else None


def check_dtype(dtype: str) -> None:
    """Refuse --dtype bf16 where the run's device has no native bf16, before any model loads: there it is a trap
    (benchmarks/README.md, "Real shapes"). fp32 runs everywhere."""
    if dtype != "bf16" or os.environ.get(ALLOW_SLOW_BF16) == "1":
        return
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if native_bf16(device) is False:
        where = "this GPU (bf16 needs compute capability 8.0 or later)" if device == "cuda" else \
            "this CPU (it has neither avx512_bf16 nor amx_bf16)"
        raise UserError(f"--dtype bf16 is not computed natively on {where} and would run many times slower than "
                        f"fp32; use --dtype fp32 (or set {ALLOW_SLOW_BF16}=1 to run it anyway)")


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
