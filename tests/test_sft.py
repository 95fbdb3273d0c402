"""Stage 1: data, accumulation, parameter updates, DDP, LoRA merge, and train_sft.py end to end."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from conftest import FAMILIES, run_script, write_json, write_jsonl

from coati.dataset.sft import IGNORE_INDEX, Keys, SFTCollator, SFTDataset
from coati.dataset.templates import build_prompt
from coati.strategies.base import Strategy

KO_ROWS = [{"prompt": f"{w}에 대해 알려 주세요.", "completion": f"{w}은 정말 좋습니다. 감사합니다."}
           for w in ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글"]]


def test_labels_cover_exactly_response_and_eos(tokenizer):
    ds = SFTDataset(KO_ROWS[:2], tokenizer, 256, "ko", Keys("prompt", "input", "completion"))
    item = ds[0]
    prompt_ids = tokenizer(build_prompt(KO_ROWS[0]["prompt"], "", "ko"))["input_ids"]
    response_ids = tokenizer(KO_ROWS[0]["completion"], add_special_tokens=False)["input_ids"]
    assert item["input_ids"] == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert item["labels"] == [IGNORE_INDEX] * len(prompt_ids) + response_ids + [tokenizer.eos_token_id]


def test_pad_equal_to_eos_keeps_the_real_eos_label(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    ds = SFTDataset(KO_ROWS[:2], tok, 256, "ko", Keys("prompt", "input", "completion"))
    batch = SFTCollator(tok.pad_token_id)([ds[0], ds[1]])
    for i in range(2):
        n = len(ds[i]["input_ids"])
        labels, mask = batch["labels"][i], batch["attention_mask"][i]
        assert labels[n - 1] == tok.eos_token_id  # the real EOS is a target...
        assert mask[:n].all() and not mask[n:].any()  # ...and attended to,
        assert (labels[n:] == IGNORE_INDEX).all()  # while padding (the same id) is not.
        n_response = len(ds[i]["input_ids"]) - ds[i]["labels"].count(IGNORE_INDEX)
        assert int((labels != IGNORE_INDEX).sum()) == n_response


def test_truncation_is_counted_and_keeps_prompt(tokenizer):
    rows = [{"instruction": "짧은 질문", "output": "아주 긴 대답 " * 200}]
    ds = SFTDataset(rows, tokenizer, 96, "ko")
    assert ds.truncated == 1 and len(ds[0]["input_ids"]) == 96
    prompt_len = len(tokenizer(build_prompt("짧은 질문", "", "ko"))["input_ids"])
    assert ds[0]["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len


def test_rows_missing_or_empty_values_are_dropped_and_counted(tokenizer):
    from coati.errors import UserError

    rows = [{"instruction": "질문", "output": "대답"}, {"instruction": "질문"}, {"instruction": " ", "output": "대답"},
            {"instruction": "질문", "output": None}, {"instruction": "긴 질문 " * 60, "output": "대답"},
            {"instruction": "또 질문", "output": "또 대답"}]
    ds = SFTDataset(rows, tokenizer, 64, "ko", source="s.json")
    assert len(ds) == 2 and ds.dropped == 4 and ds.truncated == 0
    need = len(tokenizer(build_prompt("긴 질문 " * 60, "", "ko"))["input_ids"]) + 1  # its prompt and one answer token
    assert ds.report.summary() == ("s.json: read 6 rows, used 2, truncated 0, dropped 4 (1 with no 'output': row 2; "
                                   "1 with an empty 'instruction': row 3; 1 with an empty 'output': row 4; "
                                   f"1 whose prompt alone fills --max_len 64: row 5; --max_len {need} would keep the "
                                   "rows dropped for length)")
    assert len(SFTDataset(rows, tokenizer, need, "ko")) == 3 and len(SFTDataset(rows, tokenizer, need - 1, "ko")) == 2
    with pytest.raises(UserError, match="s.json row 0 has no key 'output' and neither has any other row .keys found: "
                                        "instruction, answer"):
        SFTDataset([{"instruction": "q", "answer": "a"}] * 3, tokenizer, 64, source="s.json")


def _model(tiny_models, family, tokenizer):
    from coati.models.loading import load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models(family)
    return load_causal_lm(path, resolve_family(family, path), tokenizer)


def test_accumulation_equals_one_large_batch(tiny_models, tokenizer):
    from coati.trainer.sft import SFTTrainer

    ds = SFTDataset(KO_ROWS, tokenizer, 256, "ko", Keys("prompt", "input", "completion"))
    collate = SFTCollator(tokenizer.pad_token_id)
    items = [ds[i] for i in range(8)]
    results = []
    for k in (1, 4):
        torch.manual_seed(0)
        model = _model(tiny_models, "gpt2", tokenizer).eval()  # eval: no dropout, so both runs are deterministic
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        trainer = SFTTrainer(strategy=Strategy(), model=model, optimizer=opt, scheduler=sched,
                             train_loader=[None], accumulation_steps=k, max_grad_norm=0)
        size = 8 // k
        loss = trainer.train_step([collate(items[i:i + size]) for i in range(0, 8, size)])
        results.append((loss, torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_changes_every_trainable_parameter(tiny_models, tokenizer, family):
    from coati.trainer.sft import SFTTrainer

    model = _model(tiny_models, family, tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ds = SFTDataset(KO_ROWS, tokenizer, 256, "ko", Keys("prompt", "input", "completion"))
    trainer = SFTTrainer(strategy=Strategy(), model=model, optimizer=opt, scheduler=sched,
                         train_loader=[None])
    trainer.train_step([SFTCollator(tokenizer.pad_token_id)([ds[i] for i in range(4)])])
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f"{family}: not updated: {unchanged}"


def test_lora_merge_gives_the_same_logits(tiny_models, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    from coati.checkpoint import save_hf_model
    from coati.models.loading import apply_lora

    model = apply_lora(_model(tiny_models, "llama", tokenizer), 4, 8, 0.0).eval()
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; give the adapter something to merge
            p.data.normal_(std=0.1)
    ids = torch.tensor([tokenizer("안녕하세요 여러분, 반갑습니다.")["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    save_hf_model(model, tokenizer, str(tmp_path / "merged"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert not os.path.exists(tmp_path / "merged" / "adapter_config.json")


def test_ddp_two_ranks_match_naive_and_keep_replicas_identical(tiny_models, tmp_path):
    data = write_json(tmp_path / "d.json", KO_ROWS)
    common = ["--model", "gpt2", "--pretrain", tiny_models("gpt2"), "--dataset", data, "--instruction_str", "prompt",
              "--output_str", "completion", "--max_epochs", "1", "--lr", "1e-3", "--accumulation_steps", "1",
              "--warmup_ratio", "0"]
    ddp = run_script(["tests/ddp_sft_worker.py", *common, "--strategy", "ddp", "--batch_size", "2",
                      "--save_path", str(tmp_path / "ddp")], nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    naive = run_script(["tests/ddp_sft_worker.py", *common, "--strategy", "naive", "--batch_size", "4",
                        "--save_path", str(tmp_path / "naive")])
    assert naive.returncode == 0, naive.stderr[-3000:]
    ddp_out = json.loads((tmp_path / "ddp" / "worker.json").read_text())
    naive_out = json.loads((tmp_path / "naive" / "worker.json").read_text())
    assert ddp_out["replicas_identical"] is True
    assert len(ddp_out["losses"]) == 2
    assert ddp_out["losses"] == pytest.approx(naive_out["losses"], rel=1e-4)


def _loss_on(model_dir, rows, keys, language, tokenizer_dir=None):
    """Mean token loss of a saved model on the training responses, through the plain HF classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coati.losses import token_nll_sum

    tok = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ds = SFTDataset(rows, tok, 256, language, keys)
    batch = SFTCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        s, n = token_nll_sum(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                             batch["labels"])
    return float(s / n)


@pytest.mark.parametrize("family,lora", [("gpt2", 0), ("bloom", 4), ("opt", 0), ("llama", 4), ("gptneox", 0)])
def test_train_sft_ddp_korean_end_to_end(tiny_models, tmp_path, family, lora):
    data = write_json(tmp_path / "kochatgpt.jsonl", KO_ROWS, bom=True)  # a JSON array behind a .jsonl name
    out = tmp_path / "out"
    res = run_script(["train_sft.py", "--strategy", "ddp", "--model", family, "--pretrain", tiny_models(family),
                      "--dataset", data, "--instruction_str", "prompt", "--output_str", "completion",
                      "--language", "ko", "--lora_rank", str(lora), "--save_path", str(out), "--batch_size", "2",
                      "--accumulation_steps", "1", "--max_epochs", "10" if lora else "6", "--lr", "1e-2" if lora else "2e-3"],
                     nproc=2)
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "args.json", "metrics.jsonl", "sft_loss.png"):
        assert (out / f).exists(), f
    keys = Keys("prompt", "input", "completion")
    # Throughput counts both ranks' rows and their real tokens: per row, between the shortest and longest row.
    from transformers import AutoTokenizer

    ds = SFTDataset(KO_ROWS, AutoTokenizer.from_pretrained(out), 256, "ko", keys)
    lengths = [len(ds[i]["input_ids"]) for i in range(len(ds))]
    train = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "split" not in r]
    assert train and all(r["samples_per_s"] > 0 for r in train)
    per_row = [round(r["tokens_per_s"] / r["samples_per_s"], 6) for r in train]  # both rates share one span
    assert all(min(lengths) <= x <= max(lengths) for x in per_row), (lengths, per_row)
    before = _loss_on(tiny_models(family), KO_ROWS, keys, "ko")
    after = _loss_on(str(out), KO_ROWS, keys, "ko")
    # LoRA on a random tiny model moves less (frozen random embeddings), but must still clearly learn.
    assert after < (before * 0.93 if lora else before - 1.0), (before, after)


def test_train_sft_naive_custom_keys_english_jsonl(tiny_models, tmp_path):
    rows = [{"q": f"Give the opposite of '{w}'.", "ctx": f"The word is {w}.", "a": f"The opposite of {w} is {o}."}
            for w, o in [("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow")]]
    data = write_jsonl(tmp_path / "en.jsonl", rows)
    out = tmp_path / "out"
    res = run_script(["train_sft.py", "--strategy", "naive", "--model", "gpt-neox", "--pretrain",
                      tiny_models("gptneox"), "--dataset", data, "--instruction_str", "q", "--input_str", "ctx",
                      "--output_str", "a", "--language", "en", "--save_path", str(out), "--batch_size", "2",
                      "--accumulation_steps", "2", "--max_epochs", "8", "--lr", "2e-3", "--eval_dataset", data])
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["loss"] for r in records if r.get("split") == "eval"]
    assert len(evals) == 8 and evals[-1] < evals[0]
    assert "### Input:" in build_prompt(rows[0]["q"], rows[0]["ctx"], "en")
    assert _loss_on(str(out), rows, Keys("q", "ctx", "a"), "en") < _loss_on(tiny_models("gptneox"), rows,
                                                                            Keys("q", "ctx", "a"), "en")


def test_throughput_sums_the_ranks_and_leaves_out_paused_time(monkeypatch):
    import types

    from coati.trainer import metrics

    now = [100.0]
    monkeypatch.setattr(metrics, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    class TwoRanks:  # the other rank counted as much as this one
        def all_reduce(self, t, op):
            assert op == "sum" and t.dtype == torch.float64
            return t * 2

    speed = metrics.Throughput(TwoRanks())
    speed.add(4, 300)
    now[0] += 1.0
    with speed.paused():  # an evaluation or a checkpoint save
        now[0] += 5.0
    speed.add(4, 100)
    now[0] += 1.0
    assert speed.read() == {"samples_per_s": 8.0, "tokens_per_s": 400.0}  # 16 rows, 800 tokens in 2 s
    speed.add(1, 10)
    now[0] += 0.5
    assert speed.read() == {"samples_per_s": 4.0, "tokens_per_s": 40.0}  # each reading starts afresh


def test_gpt2_loads_with_fused_gelu_and_the_same_outputs(tiny_models, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM
    from transformers.activations import ACT2FN

    from coati.checkpoint import save_hf_model
    from coati.models.loading import load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models("gpt2")
    ours = load_causal_lm(path, resolve_family("gpt2", path), tokenizer).eval()
    plain = AutoModelForCausalLM.from_pretrained(path).eval()
    kinds = {type(m) for m in ours.modules()}
    assert type(ACT2FN["gelu_pytorch_tanh"]) in kinds and type(ACT2FN["gelu_new"]) not in kinds
    ids = torch.tensor([tokenizer("안녕하세요, 반갑습니다. Hello there!")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    save_hf_model(ours, tokenizer, str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["activation_function"] == "gelu_new"
