"""Conversation rows through every stage: SFT under torchrun with 2 ranks (both key styles in one file), the
reward model on message-list pairs, PPO on conversation prompts; the template each stage saves, the checks
between stages, the counts each stage prints, and inference.py on the result."""

from __future__ import annotations

import argparse
import json
import os

import pytest
from conftest import ROOT, run_script, write_jsonl

from coati.dataset.chat import CHATML, load_chat_template, saved_chat_template


def _conversations(n):
    with open(os.path.join(ROOT, "data", "conversations_ko.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:n]
    share = {"system": "system", "user": "human", "assistant": "gpt"}
    # every other row in ShareGPT's spelling: one file, both key styles
    return [r if i % 2 == 0 else {"conversations": [{"from": share[t["role"]], "value": t["content"]}
                                                    for t in r["messages"]]} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def stages(tiny_models, tmp_path_factory):
    """SFT (2 ranks, chatml) -> RM (default rule: the template SFT saved) -> folders and the runs' stderr."""
    tmp = tmp_path_factory.mktemp("conv")
    rows = _conversations(8) + [{"messages": [{"role": "user", "content": "답이 없는 질문"}]}]
    data = write_jsonl(tmp / "conv.jsonl", rows)
    sft = run_script(["train_sft.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
                      "--dataset", data, "--chat_template", "chatml", "--save_path", str(tmp / "sft"),
                      "--batch_size", "2", "--accumulation_steps", "1", "--max_epochs", "1", "--max_len", "512",
                      "--lr", "1e-3"], nproc=2)
    assert sft.returncode == 0, sft.stderr[-3000:]
    with open(os.path.join(ROOT, "data", "preference_conversations_ko.jsonl"), encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f][:10]
    rm = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gpt2", "--pretrain",
                     str(tmp / "sft"), "--dataset", write_jsonl(tmp / "pairs.jsonl", pairs), "--eval_split", "0.2",
                     "--save_path", str(tmp / "rm"), "--batch_size", "4", "--max_epochs", "1", "--max_len", "256"])
    assert rm.returncode == 0, rm.stderr[-3000:]
    return {"tmp": tmp, "conv": data, "sft": sft, "rm": rm}


def test_sft_on_conversations_two_ranks_prints_counts_once_and_saves_its_template(stages):
    from transformers import AutoTokenizer

    err, out = stages["sft"].stderr, stages["tmp"] / "sft"
    line = (f"[sft] --dataset {stages['conv']}: read 9 rows, used 8, truncated 0, dropped 1 (1 with no assistant "
            "turn: row 9)")
    assert err.count(line) == 1, err[-3000:]
    assert err.count("[sft] chat template: chatml, training on all assistant turns") == 1
    assert saved_chat_template(str(out)) == CHATML
    # The saved folder renders as coati does, in plain transformers too.
    tok = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요."}]
    assert tok.apply_chat_template(messages, tokenize=False) == load_chat_template("chatml", tok).render(messages, tok)


def test_reward_model_on_message_list_pairs_follows_the_saved_template(stages):
    err, out = stages["rm"].stderr, stages["tmp"] / "rm"
    assert "[rm] chat template: tokenizer" in err
    assert "read 8 rows, used 8" in err and "(held out by --eval_split): read 2 rows, used 2" in err, err[-3000:]
    assert "eval acc" in err
    assert saved_chat_template(str(out)) == CHATML


def test_ppo_on_conversation_prompts_reports_ptx_drops_and_the_ignored_rm_pretrain(stages, tiny_models):
    tmp = stages["tmp"]
    ptx = write_jsonl(tmp / "ptx.jsonl", [{"instruction": "인사해 주세요.", "output": "안녕하세요."},
                                          {"instruction": "빈 답", "output": " "},
                                          {"instruction": "고마워요.", "output": "천만에요."}])
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", str(tmp / "sft"),
                      "--rm_path", str(tmp / "rm"), "--rm_pretrain", tiny_models("gpt2"),
                      "--prompt_dataset", stages["conv"], "--pretrain_dataset", ptx, "--save_path", str(tmp / "ppo"),
                      "--num_episodes", "1", "--num_collect_steps", "1", "--num_update_steps", "1",
                      "--experience_batch_size", "4", "--train_batch_size", "4", "--max_new_tokens", "8",
                      "--max_len", "128", "--max_input_len", "512"])
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    assert (f"[ppo] --rm_pretrain {tiny_models('gpt2')} is ignored: --rm_path {tmp / 'rm'} is a model folder "
            "(--rm_pretrain only names the base model of a legacy .pt)") in err
    # The row without an assistant turn still gives a prompt: PPO answers the last user turn.
    assert f"[ppo] --prompt_dataset {stages['conv']}: read 9 prompts, used 9, truncated 0, dropped 0" in err
    # ptx instruction rows follow the prompts' chat template, one user and one assistant turn each.
    assert (f"[ppo] --pretrain_dataset {ptx}: read 3 rows, used 2, truncated 0, dropped 1 (1 with an empty turn: "
            "row 2)") in err
    assert "[ppo] chat template: tokenizer" in err
    assert saved_chat_template(str(tmp / "ppo")) == CHATML


def test_ppo_refuses_templates_that_differ_in_one_line_before_loading(stages):
    tmp = stages["tmp"]
    res = run_script(["train_prompts.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", str(tmp / "sft"),
                      "--rm_path", str(tmp / "rm"), "--prompt_dataset", stages["conv"], "--chat_template", "ko",
                      "--save_path", str(tmp / "refused")])
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: the actor's chat template (--chat_template ko: ko) differs from the reward model's "
                     f"(--rm_path {tmp / 'rm'}: chatml), so the reward model would score prompts rendered in a "
                     "template it was not trained on; train both with the same --chat_template, or pass "
                     "--allow_template_mismatch"], res.stderr
    assert not (tmp / "refused").exists()


def test_template_check_compares_folders_and_the_flag_in_force(stages, tiny_models, tmp_path):
    import shutil
    import sys

    sys.path.insert(0, ROOT)
    from coati.errors import UserError
    from train_prompts import check_same_template

    tmp = stages["tmp"]
    ns = dict(tokenizer=None, pretrain=str(tmp / "sft"), rm_path=str(tmp / "rm"), chat_template=None,
              allow_template_mismatch=False)
    check_same_template(argparse.Namespace(**ns))  # both chatml
    check_same_template(argparse.Namespace(**{**ns, "chat_template": "chatml"}))
    check_same_template(argparse.Namespace(**{**ns, "chat_template": "tokenizer"}))
    # A reward model saved without a template (trained on instruction rows from the base model) differs.
    plain = tmp_path / "rm"
    shutil.copytree(tmp / "rm", plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=r"--pretrain .*: chatml\) differs from the reward model's \(--rm_path "
                                        r".*: none \(instruction rows use the --language template\)\)"):
        check_same_template(argparse.Namespace(**{**ns, "rm_path": str(plain)}))
    check_same_template(argparse.Namespace(**{**ns, "rm_path": str(plain), "allow_template_mismatch": True}))
    # The base model and a reward model without templates: nothing to compare.
    check_same_template(argparse.Namespace(**{**ns, "pretrain": tiny_models("gpt2"), "rm_path": str(plain)}))


def test_inference_renders_one_user_turn_in_the_saved_template_and_stops_at_its_end(stages):
    import sys

    sys.path.insert(0, ROOT)
    import inference
    from coati.dataset.chat import encode_text
    from coati.models.loading import load_tokenizer

    out = str(stages["tmp"] / "sft")
    tok = load_tokenizer(out)
    template = load_chat_template("tokenizer", tok)
    args = inference.parse_args(["--model_path", out, "--prompt", "x", "--language", "ko"])
    assert inference.prompt_ids(tok, "안녕?", "", template, args) == \
        encode_text(tok, "<|im_start|>user\n안녕?<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert inference.prompt_ids(tok, "안녕?", "", None, args) == tok(
        "아래는 작업을 설명하는 명령어입니다.\n\n명령어에 따른 요청을 적절히 완료하는 응답을 작성하세요.\n\n### 명령어:\n안녕?\n\n### 응답:\n")[
        "input_ids"]
    res = run_script(["inference.py", "--model_path", out, "--prompt", "안녕?", "--greedy", "True",
                      "--max_new_tokens", "12"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "<|im_end|>" not in res.stdout and "<|im_start|>" not in res.stdout
