"""Training strategies, picked by name; heavy backends are imported only when chosen."""

from __future__ import annotations

from coati.errors import UserError

STRATEGIES = ("naive", "ddp", "fsdp", "colossalai_zero2", "colossalai_zero2_cpu", "colossalai_gemini")
AVAILABLE = ("naive", "ddp")


def check_strategy(name: str) -> None:
    """Refuse a strategy this build cannot run, before any model is loaded."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name} is unknown; choose one of {', '.join(STRATEGIES)}")
    if name not in AVAILABLE:
        raise UserError(f"--strategy {name} is not available in this version of coati yet; "
                        f"use one of {', '.join(AVAILABLE)}")


def build_strategy(name: str, seed: int = 42):
    check_strategy(name)
    if name == "ddp":
        from coati.strategies.ddp import DDPStrategy

        return DDPStrategy(seed)
    from coati.strategies.base import Strategy

    return Strategy(seed)
