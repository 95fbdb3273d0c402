"""Test double: lets ColossalAI 0.5.0's ZeRO-2 (`LowLevelZeroPlugin`, with or without cpu_offload) train on
CPU under gloo, so the colossalai strategies can be tested on a machine without a GPU.

Stock 0.5.0 refuses CPU in two places, neither of which matters to the arithmetic:
- its CPU accelerator raises on every stream call (`Stream`, `current_stream`, `stream`, `synchronize`,
  `Event`); CPU work is synchronous, so no-op streams are exact;
- `LowLevelZeroOptimizer._sanity_checks` asserts a CUDA/NPU accelerator; the dtype check it also does is kept.

Never imported by `coati/`. `install()` also tells coati's `check_strategy` that ZeRO-2 may run on CPU.
"""

from __future__ import annotations

import contextlib


class _NoStream:
    """Stands in for a CUDA stream or event: CPU ops have already finished when they return."""

    def wait_stream(self, stream) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True


def install() -> None:
    from colossalai.accelerator.cpu_accelerator import CpuAccelerator
    from colossalai.zero.low_level.low_level_optim import LowLevelZeroOptimizer

    import coati.strategies.colossalai as coati_colossalai

    CpuAccelerator.Stream = lambda self, *args, **kwargs: _NoStream()
    CpuAccelerator.Event = lambda self, *args, **kwargs: _NoStream()
    CpuAccelerator.current_stream = lambda self, *args, **kwargs: _NoStream()
    CpuAccelerator.default_stream = lambda self, *args, **kwargs: _NoStream()
    CpuAccelerator.stream = lambda self, stream: contextlib.nullcontext()
    CpuAccelerator.synchronize = lambda self, *args, **kwargs: None

    def sanity_checks(self) -> None:  # the original, less `assert accelerator in ("cuda", "npu")`
        for group in self.optim.param_groups:
            for param in group["params"]:
                if not getattr(param, "skip_zero_check", False):
                    assert param.dtype == self._dtype, f"expected {self._dtype}, got {param.dtype}"

    LowLevelZeroOptimizer._sanity_checks = sanity_checks
    coati_colossalai.CPU_SHIM = True
