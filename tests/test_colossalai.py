"""ColossalAI strategies (the requirements-colossalai.txt stack, run by .ci/colossalai.sh): ZeRO-2 with and
without CPU offload on two ranks match naive on the same global batch, save plain HF folders and resume
exactly; the reward-model, PPO and DPO steps likewise. On a CPU machine they run under
tests/colossalai_cpu_shim.py. Gemini needs CUDA and is covered by
benchmarks/gpu_strategies.py. Skipped where colossalai is not installed (requirements.txt alone); it also passes
with colossalai 0.5.0 installed over the modern stack without its pins (docs/multi-gpu.md, "The ColossalAI
stack")."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("colossalai")

from test_strategies import check_round_trip, max_weight_diff, run_worker, same_trained_model  # noqa: E402

SHIM = [] if torch.cuda.is_available() else ["--cpu_shim"]


@pytest.fixture(scope="module")
def naive_gpt2(tiny_models, tmp_path_factory):
    return run_worker(tmp_path_factory.mktemp("naive"), tiny_models("gpt2"), "gpt2", "naive")


@pytest.mark.parametrize("name", ["colossalai_zero2", "colossalai_zero2_cpu"])
def test_colossalai_zero2_two_ranks_match_naive_save_and_resume(tiny_models, tmp_path, naive_gpt2, name):
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", name, nproc=2,
                             worker=["--resume_at", "2", *SHIM])
    naive, naive_out = naive_gpt2
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4)
    assert result["norms"][:4] == pytest.approx(naive["norms"][:4], rel=1e-4)  # clipping inside ZeRO
    assert max_weight_diff(out / "final", naive_out / "final") < 1e-5
    check_round_trip(result, out)


def test_colossalai_zero2_lora_with_accumulation_matches_naive(tiny_models, tmp_path):
    train = ["--lora_rank", "4", "--lr", "1e-2"]
    naive, naive_out = run_worker(tmp_path / "naive", tiny_models("llama"), "llama", "naive", train=train)
    # Two accumulated micro-batches per step: ZeRO-2 reduces each into its gradient shards.
    result, out = run_worker(tmp_path / "zero2", tiny_models("llama"), "llama", "colossalai_zero2", nproc=2,
                             train=train, worker=["--micro", "2", *SHIM])
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4)
    assert not (out / "final" / "adapter_config.json").exists()
    assert max_weight_diff(out / "final", naive_out / "final") < 1e-5


def test_colossalai_refusals_on_this_stack(monkeypatch):
    from coati.errors import UserError
    from coati.strategies import _torch_version, check_strategy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("colossalai_gemini", "colossalai_zero2"):  # the shim is not installed in this process
        with pytest.raises(UserError, match="needs a CUDA GPU"):
            check_strategy(name)
    if _torch_version() < (2, 6):
        with pytest.raises(UserError, match="torch 2.6 or later"):
            check_strategy("fsdp")


@pytest.fixture(scope="module")
def naive_stages(tiny_models, tmp_path_factory):
    return {stage: run_worker(tmp_path_factory.mktemp(f"naive-{stage}"), tiny_models("gpt2"), "gpt2", "naive",
                              worker=["--resume_at", "2"], stage=stage) for stage in ("rm", "ppo", "dpo")}


@pytest.mark.parametrize("name", ["colossalai_zero2", "colossalai_zero2_cpu"])
@pytest.mark.parametrize("stage", ["rm", "ppo", "dpo"])
def test_colossalai_zero2_reward_model_ppo_and_dpo_match_naive(tiny_models, tmp_path, naive_stages, stage, name):
    naive, naive_out = naive_stages[stage]
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", name, nproc=2, worker=["--resume_at", "2", *SHIM],
                             stage=stage)
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4)
    assert result["norms"] == pytest.approx(naive["norms"], rel=1e-4)
    same_trained_model(out, naive_out, stage)
    check_round_trip(result, out, stage=stage)
