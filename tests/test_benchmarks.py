"""benchmarks/efficiency.py measures coati's own SFT step and accounts for all of its op time; workloads.py splits
a PPO run's time into phases the same way on both sides.

Figures only, no timing asserted: what is checked is which model is timed and that the breakdowns add up."""

from __future__ import annotations

import os
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import flag_tables  # noqa: E402

TINY = ["--layers", "1", "--width", "64", "--batch_size", "2", "--steps", "2", "--warmup", "1", "--matmul_n", "128",
        "--threads", "1"]


@pytest.fixture(scope="module")
def efficiency():
    return flag_tables.load_module(os.path.join(ROOT, "benchmarks", "efficiency.py"))


def test_efficiency_times_the_model_coati_loads(efficiency):
    """GPT-2 with the fused GELU that coati's loader swaps in, not transformers' five-op gelu_new."""
    from transformers.activations import ACT2FN

    model = efficiency.build(efficiency.parse_args(["--model", "gpt2", *TINY]))[0]
    kinds = {type(m) for m in model.modules()}
    assert type(ACT2FN["gelu_pytorch_tanh"]) in kinds and type(ACT2FN["gelu_new"]) not in kinds


@pytest.mark.parametrize("family", ["gpt2", "gptneox"])
def test_breakdown_accounts_for_the_whole_step(efficiency, family, tmp_path):
    report = efficiency.main(["--model", family, *TINY, "--breakdown", "--out", str(tmp_path / "e.json")])
    bd = report["breakdown"]
    assert sum(bd["share"].values()) == pytest.approx(1.0)
    assert sum(bd["seconds"].values()) > 0
    # Every category the step must contain was found by name: the linear layers, sdpa, GELU, norms, AdamW.
    for category in ("weight matmuls", "attention", "activation", "norm layers", "optimizer"):
        assert bd["seconds"][category] > 0, category
    # The matmul rate is their FLOPs (6 x matmul params x tokens over both steps) over their own time.
    tokens = report["tokens_per_s"] * report["seconds_per_step"] * report["steps"]
    expected = 6 * report["matmul_params"] * tokens / bd["seconds"]["weight matmuls"]
    assert bd["weight_matmul_flops_per_s"] == pytest.approx(expected, rel=1e-6)
    assert os.path.getsize(tmp_path / "e.json") > 0


def test_ppo_phases_split_the_loop_by_event_order(monkeypatch):
    """Two episodes on a scripted clock: decoding calls, the rollout's rest, the updates, and what is left over."""
    workloads = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "workloads.py"))
    now = [0.0]
    monkeypatch.setattr(workloads, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    phases = workloads.PPOPhases()

    def decode(seconds):
        now[0] += seconds

    decode_timed = phases.timed_generation(decode)
    for gen, score, train, tail in ((2.0, 1.0, 5.0, 0.5), (1.5, 0.5, 4.0, 0.25)):
        now[0] += 0.125  # prompt loading: other
        decode_timed(gen / 2)
        now[0] += score / 2  # scoring between two decoding calls, as TRL interleaves them
        decode_timed(gen / 2)
        now[0] += score / 2
        phases.training_begins()
        for _ in range(4):
            now[0] += train / 4
            phases.stepped()
            phases.training_begins()  # later forwards with gradients do not restart the span
        now[0] += tail  # metrics and logging after the last step: other
    split = phases.result(now[0])
    assert split == pytest.approx({"generation": 3.5, "scoring": 1.5, "training": 9.0, "other": 1.0})
    assert sum(split.values()) == pytest.approx(now[0])
