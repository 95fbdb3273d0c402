"""Strategies: fsdp on two ranks matches naive on the same global batch, the saved folders open with the plain
HF classes, optimizer checkpoints round-trip under naive, ddp and fsdp, and strategies this machine cannot run
are refused in one line before any model is loaded."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import run_script, write_json

WORDS = ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글"]
ROWS = [{"prompt": f"질문 {i}: {w}에 대해 알려 주세요.", "completion": f"{w}은 정말 좋습니다. 감사합니다 {i}."}
        for i, w in enumerate(WORDS * 2)]  # 16 rows: 4 steps of a global batch of 4
RANKING = [{"prompt": f"{w}에 대해 알려 주세요.", "completion_0": f"{w}은 정말 좋습니다. 자세히 설명해 드릴게요.",
            "completion_1": "몰라요.", "completion_2": f"{w}? 글쎄요.", "ranking": [0, 2, 1]}
           for w in WORDS]  # 24 pairs: 6 global batches of 4


def stage_flags(tmp_path, stage: str, nproc: int) -> list[str]:
    """Data and batch flags of `stage` for a global batch of 4 split over `nproc` ranks."""
    per_rank = str(4 // max(nproc, 1))
    if stage == "sft":
        return ["--dataset", write_json(tmp_path / "rows.json", ROWS), "--instruction_str", "prompt",
                "--output_str", "completion", "--batch_size", per_rank, "--lr", "1e-3", "--warmup_ratio", "0"]
    if stage in ("rm", "dpo"):
        return ["--dataset", write_json(tmp_path / "ranking.json", RANKING), "--batch_size", per_rank,
                "--lr", "1e-3", "--warmup_ratio", "0"]
    rl = ["--prompt_dataset", write_json(tmp_path / "prompts.json", ROWS), "--ppo_instruction_str", "prompt",
          "--experience_batch_size", per_rank, "--max_new_tokens", "6", "--actor_lr", "2e-4"]
    if stage == "grpo":  # 4 prompts x 2 answers; a k3 KL loss, per-answer aggregation and an asymmetric clip
        return rl + ["--algo", "grpo", "--num_generations", "2", "--kl_loss_coef", "0.1", "--loss_agg", "sequence",
                     "--eps_clip_high", "0.28", "--actor_lr", "1e-3"]
    return rl + ["--critic_lr", "1e-3"]


def run_worker(tmp_path, pretrain: str, family: str, strategy: str, nproc: int = 0, train=(), worker=(),
               stage: str = "sft"):
    """Run tests/strategy_worker.py (4 steps of `stage`, global batch 4); returns (worker.json, output folder)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "run"
    args = ["tests/strategy_worker.py", "--stage", stage, "--out", str(out), *worker, "--",
            "--strategy", strategy, "--model", family, "--pretrain", pretrain,
            *stage_flags(tmp_path, stage, nproc), *train]
    res = run_script(args, nproc=nproc)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads((out / "worker.json").read_text()), out


def max_weight_diff(dir_a, dir_b, scorer: bool = False) -> float:
    """Largest absolute difference between two saved models, opened with the plain HF class (the sequence
    classifier for a reward model)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if scorer else AutoModelForCausalLM
    a = cls.from_pretrained(dir_a).state_dict()
    b = cls.from_pretrained(dir_b).state_dict()
    assert sorted(a) == sorted(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def score_margins(folder) -> torch.Tensor:
    """A saved reward model's scores of some answers, less the first one's, opened with the plain HF classes.

    Reward models of two strategies are compared by these rather than by weights: a pairwise loss leaves
    directions of zero gradient (the final norm's bias shifts both scores of a pair alike), where Adam moves the
    weights by the sign of rounding noise, which differs between strategies while the margins do not."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = [row[f"completion_{i}"] + tok.eos_token for row in RANKING[:3] for i in range(3)]
    with torch.no_grad():
        scores = torch.cat([model(**tok(t, return_tensors="pt")).logits[:, 0] for t in texts])
    return scores - scores[0]


def same_trained_model(out, naive_out, stage: str) -> None:
    """The trained model (SFT model, reward model, PPO actor) saved by a strategy equals naive's."""
    if stage == "rm":
        assert float((score_margins(out / "final") - score_margins(naive_out / "final")).abs().max()) < 1e-4
    else:
        assert max_weight_diff(out / "final", naive_out / "final") < 1e-5


def check_round_trip(result: dict, out, resume_at: int = 2, stage: str = "sft") -> None:
    """The resumed run repeats the original run's steps after the checkpoint exactly."""
    assert result["resumed_losses"] == pytest.approx(result["losses"][resume_at:], rel=1e-6)
    assert max_weight_diff(out / "final", out / "resumed", scorer=stage == "rm") < 1e-6
    ckpt = out / f"checkpoint-{resume_at}"
    name = "actor" if stage in ("ppo", "grpo") else "model"
    assert (ckpt / f"{name}.safetensors").exists() and (ckpt / f"optimizer-{name}.rank0.pt").exists()


@pytest.fixture(scope="module")
def naive_gpt2(tiny_models, tmp_path_factory):
    return run_worker(tmp_path_factory.mktemp("naive"), tiny_models("gpt2"), "gpt2", "naive",
                      worker=["--resume_at", "2"])


@pytest.fixture(scope="module")
def naive_llama_lora(tiny_models, tmp_path_factory):
    return run_worker(tmp_path_factory.mktemp("naive-lora"), tiny_models("llama"), "llama", "naive",
                      train=["--lora_rank", "4", "--lr", "1e-2"])


def test_naive_optimizer_checkpoint_round_trips(naive_gpt2):
    result, out = naive_gpt2
    assert len(result["losses"]) == 4 and result["losses"][-1] < result["losses"][0]
    check_round_trip(result, out)


def test_naive_bf16_keeps_fp32_masters_in_its_checkpoint_and_resumes_exactly(tiny_models, tmp_path):
    """--dtype bf16 without LoRA: at lr 1e-5 the updates are below bf16's resolution, so they live in the fp32
    master weights, which the checkpoint carries and the resumed run continues from."""
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", "naive", train=["--dtype", "bf16", "--lr", "1e-5"],
                             worker=["--resume_at", "2"])
    check_round_trip(result, out)
    state = torch.load(out / "checkpoint-2" / "optimizer-model.rank0.pt", weights_only=True)
    masters = state["masters"]
    assert len(masters) == sum(len(g["params"]) for g in state["param_groups"])  # every trained tensor is bf16
    assert {m.dtype for m in masters} == {torch.float32}
    flat = torch.cat([m.flatten() for m in masters])
    assert (flat != flat.bfloat16().float()).float().mean() > 0.9  # they hold what bf16 weights cannot


def test_ddp_optimizer_checkpoint_round_trips(tiny_models, tmp_path, naive_gpt2):
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", "ddp", nproc=2, worker=["--resume_at", "2"])
    assert result["losses"] == pytest.approx(naive_gpt2[0]["losses"], rel=1e-4)
    check_round_trip(result, out)


def test_fsdp_two_ranks_match_naive_save_and_resume(tiny_models, tmp_path, naive_gpt2):
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", "fsdp", nproc=2, worker=["--resume_at", "2"])
    naive, naive_out = naive_gpt2
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4)
    assert result["norms"][:4] == pytest.approx(naive["norms"][:4], rel=1e-4)  # the norm `step` returns
    # Gathered from the shards into a plain folder (tied GPT-2 head included) that HF opens as is.
    assert max_weight_diff(out / "final", naive_out / "final") < 1e-5
    check_round_trip(result, out)


def test_fsdp_lora_with_accumulation_matches_naive_and_saves_merged(tiny_models, tmp_path, naive_llama_lora):
    # Two accumulated micro-batches per step (gradient sync only on the last) against one whole batch.
    result, out = run_worker(tmp_path, tiny_models("llama"), "llama", "fsdp", nproc=2,
                             train=["--lora_rank", "4", "--lr", "1e-2"], worker=["--micro", "2"])
    assert result["losses"] == pytest.approx(naive_llama_lora[0]["losses"], rel=1e-4)
    assert not (out / "final" / "adapter_config.json").exists()  # merged: a plain causal LM folder
    assert max_weight_diff(out / "final", naive_llama_lora[1] / "final") < 1e-5


def test_fsdp_bf16_mixed_precision_with_cpu_offload(tiny_models, tmp_path, naive_gpt2):
    result, out = run_worker(tmp_path, tiny_models("gpt2"), "gpt2", "fsdp", nproc=2, train=["--dtype", "bf16"],
                             worker=["--cpu_offload"])
    assert result["losses"] == pytest.approx(naive_gpt2[0]["losses"], rel=2e-3)  # bf16 compute
    from safetensors import safe_open

    with safe_open(str(out / "final" / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}  # the fp32 master weights


def test_unavailable_strategies_say_why_in_one_line(monkeypatch):
    from coati.errors import UserError
    from coati.strategies import STRATEGIES, check_strategy

    def refused(name, **kwargs) -> str:
        with pytest.raises(UserError) as err:
            check_strategy(name, **kwargs)
        assert "\n" not in str(err.value)
        return str(err.value)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "needs a CUDA GPU" in refused("colossalai_gemini") and "on CPU use" in refused("colossalai_gemini")
    assert "needs a CUDA GPU" in refused("colossalai_zero2_cpu")
    assert "use --dtype bf16" in refused("fsdp", mixed_precision="fp16")
    assert "one of" in refused("deepspeed")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu124")
    assert "torch 2.6 or later" in refused("fsdp")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "colossalai" else real_find_spec(name, *a))
    assert "pip install -r requirements-colossalai.txt" in refused("colossalai_zero2")
    check_strategy("fsdp")  # with CUDA, torch 2.5's FSDP2 is fine
    assert set(STRATEGIES) >= {"naive", "ddp", "fsdp", "colossalai_zero2", "colossalai_zero2_cpu",
                               "colossalai_gemini"}


def test_stage_script_refuses_gemini_on_cpu_before_loading(tiny_models, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = write_json(tmp_path / "rows.json", ROWS)
    res = run_script(["train_sft.py", "--strategy", "colossalai_gemini", "--model", "gpt2", "--pretrain",
                      tiny_models("gpt2"), "--dataset", data, "--save_path", str(tmp_path / "out")])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: --strategy colossalai_gemini needs a CUDA GPU")
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def naive_stages(tiny_models, tmp_path_factory):
    """(stage, family) -> naive run, resumed after step 2."""
    runs = {}

    def get(stage: str, family: str):
        if (stage, family) not in runs:
            runs[stage, family] = run_worker(tmp_path_factory.mktemp(f"naive-{stage}-{family}"), tiny_models(family),
                                             family, "naive", worker=["--resume_at", "2"], stage=stage)
        return runs[stage, family]

    return get


# GPT-NeoX runs coati's lean forward (under DDP, inside DDP's forward; FSDP's sharded parameters keep
# transformers' forward), LLaMA transformers' forward. GRPO under FSDP: the reference and the reward model run
# each prompt once through transformers' caches on sharded parameters.
@pytest.mark.parametrize("strategy,stage,family", [
    ("ddp", "rm", "gptneox"), ("fsdp", "rm", "gptneox"), ("ddp", "ppo", "llama"), ("fsdp", "ppo", "llama"),
    ("ddp", "ppo", "gptneox"), ("ddp", "grpo", "gptneox"), ("fsdp", "grpo", "llama"), ("ddp", "dpo", "gpt2"),
    ("fsdp", "dpo", "llama")])
def test_reward_model_ppo_and_dpo_steps_on_two_ranks_match_naive(tiny_models, tmp_path, naive_stages, stage, strategy,
                                                             family):
    naive, naive_out = naive_stages(stage, family)
    result, out = run_worker(tmp_path, tiny_models(family), family, strategy, nproc=2, worker=["--resume_at", "2"],
                             stage=stage)
    assert len(naive["losses"]) == 4 and len(set(naive["losses"])) > 1  # the model moved between steps
    # GRPO's first loss is 0 up to rounding (ratio 1, a group's advantages summing to 0): compared absolutely
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4, abs=1e-6)
    assert result["norms"] == pytest.approx(naive["norms"], rel=1e-4)  # PPO: actor and critic, alternating
    # Gathered into a plain HF folder, the trained model behaves as naive's.
    same_trained_model(out, naive_out, stage)
    check_round_trip(result, out, stage=stage)


def test_dpo_lora_reference_with_accumulation_on_fsdp_matches_naive(tiny_models, tmp_path):
    """LoRA DPO: the reference is the policy with its adapters off (no second model) under FSDP's sharded
    parameters too; two accumulated micro-batches of whole pairs per step against naive's one batch."""
    train = ["--lora_rank", "4", "--lr", "1e-2"]
    naive, naive_out = run_worker(tmp_path / "naive", tiny_models("llama"), "llama", "naive", train=train,
                                  stage="dpo")
    result, out = run_worker(tmp_path / "fsdp", tiny_models("llama"), "llama", "fsdp", nproc=2, train=train,
                             worker=["--micro", "2"], stage="dpo")
    assert naive["losses"][0] == pytest.approx(0.6931472, abs=1e-6)  # policy == reference at the first step
    assert len(set(naive["losses"])) > 1
    assert result["losses"] == pytest.approx(naive["losses"], rel=1e-4)
    assert not (out / "final" / "adapter_config.json").exists()  # merged on save
    assert max_weight_diff(out / "final", naive_out / "final") < 1e-5


def test_ppo_under_gemini_is_refused_only_for_want_of_a_gpu(tiny_models, tmp_path):
    """PPO samples through Gemini's wrapper (tests/test_sampling.py), so train_prompts.py no longer refuses the
    strategy itself; on a machine without CUDA it stops, before loading, as the other stages do."""
    prompts = write_json(tmp_path / "prompts.json", [{"instruction": "안녕?"}] * 4)
    res = run_script(["train_prompts.py", "--strategy", "colossalai_gemini", "--model", "gpt2", "--pretrain",
                      tiny_models("gpt2"), "--rm_path", tiny_models("gpt2"), "--prompt_dataset", prompts,
                      "--save_path", str(tmp_path / "out")])
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: Gemini PPO runs in benchmarks/gpu_checks.sh")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("error: --strategy colossalai_gemini needs a CUDA GPU")
    assert not (tmp_path / "out").exists()


def test_trainers_and_strategies_do_not_import_each_other_and_nothing_else_imports_colossalai():
    """coati/trainer and coati/strategies meet only in the scripts; every module but the ColossalAI strategy
    imports without colossalai, which is blocked here (an ImportError on any attempt)."""
    import ast
    import pathlib
    import subprocess
    import sys

    from conftest import ROOT, script_env

    def imported(path: pathlib.Path) -> set[str]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    coati = pathlib.Path(ROOT) / "coati"
    for side, other in (("trainer", "coati.strategies"), ("strategies", "coati.trainer")):
        for path in (coati / side).glob("*.py"):
            assert not {m for m in imported(path) if m.startswith(other)}, f"{path} imports {other}"
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in coati.rglob("*.py") if not p.name.startswith("colossalai"))
    script = ("import importlib, sys\n"
              "class Block:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] == 'colossalai':\n"
              "            raise ImportError('colossalai is blocked in this test')\n"
              "sys.meta_path.insert(0, Block())\n"
              f"for m in {modules!r}:\n"
              "    importlib.import_module(m)\n"
              "assert not [m for m in sys.modules if m.startswith('colossalai')]\n"
              "assert 'coati.strategies.colossalai' not in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=script_env(), capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "coati.trainer.loop" in modules and "coati.optim" in modules
