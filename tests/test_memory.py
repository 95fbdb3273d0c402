"""coati.memory's arithmetic on small configs (hand-computed counts and bytes, and the activation constants against
the tensors autograd saves), the real-shape presets of coati.kit through one LoRA SFT step, the bf16 check, and
PPO's reference as the actor with its LoRA adapters off."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_script

from coati.errors import UserError
from coati.memory import Shape, estimate, read_shape

# The -mini twins: 2 layers, hidden 64, 4 heads, vocabulary 3000 (the shipped tokenizer), untied LM head.
NEOX = Shape("gpt_neox", layers=2, hidden=64, heads=4, kv_heads=4, intermediate=256, vocab=3000)
LLAMA = Shape("llama", layers=2, hidden=64, heads=4, kv_heads=1, intermediate=176, vocab=3000)


def test_parameter_counts_by_hand():
    # GPT-NeoX block: qkv 64*192+192, dense 64*64+64, MLP 64*256+256 and 256*64+64, two LayerNorms 4*64.
    assert NEOX.layer_params() == 12288 + 192 + 4096 + 64 + 16384 + 256 + 16384 + 64 + 256 == 49984
    assert NEOX.lm_params() == 3000 * 64 + 2 * 49984 + 2 * 64 + 3000 * 64 == 484096
    assert NEOX.scorer_params() == 484096 - 3000 * 64 + 64
    # LLaMA block: q and o 64*64 each, k and v 64*16 each (one key/value head of 16), gate/up/down 64*176, 2 norms.
    assert LLAMA.layer_params() == 2 * 4096 + 2 * 1024 + 3 * 11264 + 128 == 44160
    assert LLAMA.lm_params() == 3000 * 64 + 2 * 44160 + 64 + 3000 * 64 == 472384
    # LoRA r8: rank x (in + out) of every block linear: NeoX 8*(256 + 128 + 320 + 320), LLaMA adds q, k, v, o apart.
    assert NEOX.lora_params(8) == 2 * 8 * (256 + 128 + 320 + 320) == 16384
    assert LLAMA.lora_params(8) == 2 * 8 * (128 + 80 + 80 + 128 + 240 + 240 + 240) == 18176


@pytest.mark.parametrize("preset,shape", [("polyglot-ko-1.3b-mini", NEOX), ("llama-1b-mini", LLAMA)])
def test_counts_match_the_built_preset(tmp_path, preset, shape):
    from transformers import AutoModelForCausalLM

    from coati.kit import build_preset
    from coati.models.loading import apply_lora

    folder = build_preset(preset, str(tmp_path / preset))
    assert read_shape(folder) == Shape(**{**shape.__dict__, "saved_dtype": "fp32"})
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == shape.lm_params()
    lora = apply_lora(model, 8, 16, 0.05)
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == shape.lora_params(8)


def test_bytes_by_hand():
    sft = estimate(NEOX, "sft", lora_rank=8, dtype="fp32", batch_size=2, max_len=16)
    assert sft.terms["weights"] == 484096 * 4
    assert sft.terms["LoRA adapters (fp32)"] == sft.terms["gradients"] == 16384 * 4
    assert sft.terms["optimizer states"] == 16384 * 8  # AdamW's two fp32 moments
    # Full tuning in bf16: bf16 gradient, fp32 master and two fp32 moments per weight.
    full = estimate(NEOX, "sft", dtype="bf16", batch_size=2, max_len=16)
    assert (full.terms["weights"], full.terms["gradients"], full.terms["optimizer states"]) == \
        (484096 * 2, 484096 * 2, 484096 * 12)
    # PPO under LoRA: actor, critic and reward model; the reference is the actor with its adapters off.
    ppo = estimate(NEOX, "ppo", lora_rank=8, dtype="bf16", experience_batch_size=2, max_input_len=8,
                   max_new_tokens=4, train_batch_size=2)
    scorer = 484096 - 3000 * 64 + 64
    assert ppo.terms["weights"] == (484096 + 2 * scorer) * 2
    assert ppo.terms["optimizer states"] == (2 * 16384 + 64) * 8  # the critic's score head is trained whole
    assert ppo.terms["KV cache"] == 2 * 12 * 2 * 2 * 64 * 2  # rows x tokens x layers x (k, v) x kv width x bytes
    assert estimate(NEOX, "ppo", dtype="bf16").terms["weights"] == (2 * 484096 + 2 * scorer) * 2
    # GRPO under LoRA rewarded by functions only: the actor alone (no critic, no reward model, no second copy);
    # its rollout is 8 answers, 2 prompts x 4 generations.
    grpo = estimate(NEOX, "grpo", lora_rank=8, dtype="bf16", experience_batch_size=2, max_input_len=8,
                    max_new_tokens=4, train_batch_size=2, num_generations=4, reward_model=False)
    assert grpo.terms["weights"] == 484096 * 2 and grpo.terms["optimizer states"] == 16384 * 8
    assert grpo.terms["KV cache"] == 8 * 12 * 2 * 2 * 64 * 2
    assert estimate(NEOX, "grpo", lora_rank=8, dtype="bf16").terms["weights"] == (484096 + scorer) * 2
    # DPO under LoRA: the policy alone; a step runs chosen and rejected, 2 x batch sequences.
    dpo = estimate(NEOX, "dpo", lora_rank=8, dtype="fp32", batch_size=2, max_len=16)
    assert dpo.terms["weights"] == 484096 * 4
    assert dpo.terms["activations"] == 2 * estimate(NEOX, "sft", lora_rank=8, batch_size=2, max_len=16).terms[
        "activations"]
    # --offload_frozen on a GPU: the reward model waits in host memory.
    off = estimate(NEOX, "ppo", lora_rank=8, dtype="bf16", offload_frozen=True, device="cuda")
    assert off.terms["weights"] == (484096 + scorer) * 2 and off.host == scorer * 2
    # Sharded over 4 processes, every term of the model state is a quarter.
    fsdp = estimate(NEOX, "sft", dtype="bf16", strategy="fsdp", nproc=4)
    assert fsdp.terms["weights"] == 484096 * 2 / 4 and fsdp.terms["optimizer states"] == 484096 * 12 / 4


def saved_bytes_per_layer_token(preset: str, dtype: torch.dtype, lora: bool) -> float:
    """Bytes autograd saves per token for one more block (3 layers minus 1, halved), parameters left out."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from coati.kit import preset_fields
    from coati.models.loading import apply_lora

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        config = AutoConfig.for_model(**{**preset_fields(preset), "num_hidden_layers": layers})
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        if lora:
            model = apply_lora(model, 8, 16, 0.05)
        model.train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                storages[s.data_ptr()] = s.nbytes()
            return t

        ids = torch.randint(0, 3000, (2, 16))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        return sum(storages.values())

    return (saved(3) - saved(1)) / 2 / 32


@pytest.mark.parametrize("preset,shape", [("polyglot-ko-1.3b-mini", NEOX), ("llama-1b-mini", LLAMA)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("lora", [False, True])
def test_activation_constants_are_what_autograd_saves(preset, shape, dtype, lora):
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    assert shape.layer_activation_bytes(dtype, 8 if lora else 0) == saved_bytes_per_layer_token(preset, torch_dtype,
                                                                                                 lora)


def test_memory_cli_reads_a_folder_and_refuses_other_families(tmp_path, capsys):
    from coati import memory

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SystemExit) as err:
        memory.main(["--pretrain", str(folder)])
    assert err.value.code == 2
    assert "model_type 'gpt2' is not one coati.memory knows (gpt_neox, llama)" in capsys.readouterr().err
    memory.main(["--pretrain", "polyglot-ko-1.3b", "--stage", "ppo", "--lora_rank", "8", "--dtype", "bf16"])
    out = capsys.readouterr().out
    assert "1.332 B parameters" in out and "reference: the actor with its LoRA adapters off" in out
    for term in ("weights", "gradients", "optimizer states", "activations", "KV cache", "total"):
        assert f"  {term}" in out


# -- the presets run the stages ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["polyglot-ko-1.3b-mini", "llama-1b-mini"])
def test_preset_mini_runs_one_lora_sft_step(tmp_path, preset):
    base, out = str(tmp_path / "base"), str(tmp_path / "out")
    res = run_script(["-m", "coati.kit", "preset", preset, "--out", base])
    assert res.returncode == 0, res.stderr
    with open(os.path.join(base, "config.json")) as f:
        config = json.load(f)
    assert config["num_hidden_layers"] == 2 and config["vocab_size"] == 3000
    res = run_script(["train_sft.py", "--strategy", "naive", "--model", "auto", "--pretrain", base, "--dataset",
                      "data/kochatgpt_sft_ko.jsonl", "--instruction_str", "prompt", "--output_str", "completion",
                      "--max_datasets_size", "2", "--batch_size", "2", "--accumulation_steps", "1", "--max_epochs",
                      "1", "--lora_rank", "8", "--max_len", "128", "--save_path", out])
    assert res.returncode == 0, res.stderr
    with open(os.path.join(out, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"loss"' in line]
    assert [s["step"] for s in steps] == [1]
    assert os.path.isfile(os.path.join(out, "model.safetensors"))


def test_full_size_preset_fields_are_the_published_ones():
    from coati.kit import preset_fields

    pko = preset_fields("polyglot-ko-1.3b")
    assert (pko["num_hidden_layers"], pko["hidden_size"], pko["num_attention_heads"], pko["intermediate_size"],
            pko["rotary_pct"], pko["use_parallel_residual"], pko["max_position_embeddings"]) == \
        (24, 2048, 16, 8192, 0.5, True, 2048)
    llama = preset_fields("llama-1b")
    assert (llama["num_hidden_layers"], llama["hidden_size"], llama["num_attention_heads"],
            llama["num_key_value_heads"], llama["intermediate_size"]) == (22, 2048, 32, 4, 5632)
    with pytest.raises(UserError, match="preset 'gpt-5' is unknown"):
        preset_fields("gpt-5")


# -- --dtype bf16 where it is not native ---------------------------------------------------------------------
def test_bf16_is_refused_without_native_support(monkeypatch):
    import coati.strategies as strategies
    from coati.strategies import check_dtype

    monkeypatch.delenv("COATI_ALLOW_SLOW_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(strategies, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(UserError, match="not computed natively on this CPU .* use --dtype fp32"):
        check_dtype("bf16")
    check_dtype("fp32")
    monkeypatch.setattr(strategies, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    check_dtype("bf16")
    monkeypatch.setattr(strategies, "cpu_flags", lambda: {"amx_bf16"})
    check_dtype("bf16")
    monkeypatch.setattr(strategies, "cpu_flags", set)  # flags unknown: not refused
    check_dtype("bf16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(UserError, match="this GPU .*compute capability 8.0"):
        check_dtype("bf16")
    monkeypatch.setenv("COATI_ALLOW_SLOW_BF16", "1")
    check_dtype("bf16")


def test_bf16_refusal_comes_before_any_model_loads(monkeypatch, tiny_models, capsys):
    import coati.models.loading as loading
    import coati.strategies as strategies
    import train_sft

    monkeypatch.delenv("COATI_ALLOW_SLOW_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(strategies, "cpu_flags", lambda: {"avx2"})

    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_causal_lm", no_load)
    args = train_sft.parse_args(["--strategy", "naive", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
                                 "--dataset", "data/kochatgpt_sft_ko.jsonl", "--dtype", "bf16"])
    capsys.readouterr()  # building the tiny model printed its progress
    with pytest.raises(SystemExit) as err:
        train_sft.main(args)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--dtype bf16" in lines[0] and "use --dtype fp32" in lines[0]


# -- PPO's reference under LoRA ------------------------------------------------------------------------------
def test_lora_reference_is_the_actor_with_adapters_off(tiny_models, tokenizer):
    from coati.dataset.prompt import LeftPadCollator, PromptDataset
    from coati.experience.maker import ADAPTERS_OFF, ExperienceMaker
    from coati.models.forward import causal_lm_logits
    from coati.models.loading import apply_lora, load_causal_lm, load_sequence_scorer
    from coati.models.registry import resolve_family
    from coati.models.value import ValueModel
    from coati.ops import log_probs_from_logits
    from coati.strategies.base import Strategy

    path = tiny_models("gptneox")
    fam = resolve_family("gptneox", path)
    base = load_causal_lm(path, fam, tokenizer).eval()
    actor = apply_lora(load_causal_lm(path, fam, tokenizer), 8, 16, 0.0).eval()
    torch.manual_seed(1)
    for name, p in actor.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (actor == base); move it so the two differ
            p.data.normal_(std=0.5)
    critic, rm = (ValueModel(load_sequence_scorer(path, fam, tokenizer)).eval() for _ in range(2))
    maker = ExperienceMaker(strategy=Strategy(), actor=actor, critic=critic, reward_model=rm,
                            initial_model=ADAPTERS_OFF,
                            tokenizer=tokenizer, gen_kwargs=dict(max_new_tokens=5), gamma=1.0, lam=0.95)
    prompts = PromptDataset([{"instruction": q} for q in ("오늘 뭐 먹을까요?", "주말에 어디 갈까요?")], tokenizer, 64)
    batch = LeftPadCollator(tokenizer.pad_token_id)([prompts[0], prompts[1]])
    torch.manual_seed(0)
    samples = maker.make(batch, kl_coef=0.1)
    for s in samples:
        seq = torch.cat([s.prompt, s.response]).unsqueeze(0)
        mask = torch.ones_like(seq)
        p = len(s.prompt)
        with torch.no_grad():
            want = log_probs_from_logits(causal_lm_logits(base, seq, mask, p - 1)[:, :-1], s.response.unsqueeze(0))
        torch.testing.assert_close(s.ref_log_probs, want[0], atol=1e-5, rtol=1e-5)
        assert (s.log_probs - s.ref_log_probs).abs().max() > 1e-3  # the actor itself is not the reference
    assert any(m.training is False for m in actor.modules())
    assert all("lora_A" in n or "lora_B" in n or not p.requires_grad for n, p in actor.named_parameters())


def test_train_prompts_loads_one_causal_lm_under_lora(tiny_models, tmp_path, monkeypatch):
    import coati.models.loading as loading
    import train_prompts
    import train_reward_model

    base = tiny_models("gptneox")
    rm_out = str(tmp_path / "rm")
    train_reward_model.main(train_reward_model.parse_args([
        "--strategy", "naive", "--model", "gptneox", "--pretrain", base, "--dataset", "data/kochatgpt_rm_ko.jsonl",
        "--max_datasets_size", "4", "--batch_size", "2", "--max_epochs", "1", "--eval_split", "0",
        "--save_path", rm_out]))
    loaded = []
    real = loading.load_causal_lm
    monkeypatch.setattr(loading, "load_causal_lm", lambda *a, **k: loaded.append(a[0]) or real(*a, **k))
    out = train_prompts.main(train_prompts.parse_args([
        "--strategy", "naive", "--model", "gptneox", "--pretrain", base, "--rm_path", rm_out, "--prompt_dataset",
        "data/kochatgpt_ppo_ko.jsonl", "--ppo_instruction_str", "prompt", "--max_datasets_size", "4",
        "--num_episodes", "1", "--num_collect_steps", "1", "--num_update_steps", "1", "--experience_batch_size",
        "2", "--train_batch_size", "2", "--max_new_tokens", "4", "--lora_rank", "4", "--save_path",
        str(tmp_path / "ppo")]))
    assert loaded == [base]  # the actor only: no second causal LM as the reference
    assert len(out["history"]) == 1
