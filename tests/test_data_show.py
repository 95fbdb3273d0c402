"""python -m coati.data show: rows as a stage sees them, trained spans marked, counts, the read report."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, script_env, write_jsonl

from coati.dataset.templates import build_prompt

U1, A1, U2, A2 = "김치찌개 끓이는 법 알려 주세요.", "먼저 김치를 볶으세요.", "돼지고기도 넣나요?", "네, 함께 볶으면 좋아요."
EOS = "<|endoftext|>"


def show(capsys, *argv) -> list[str]:
    from coati.data import main, parse_args

    assert main(parse_args(["show", *argv])) == 0
    return capsys.readouterr().out.splitlines()


def _count(tokenizer, text):
    return len(tokenizer(text)["input_ids"])


def test_sft_conversations_marked_counted_and_reported(capsys, tmp_path, tokenizer):
    rows = [{"messages": [{"role": "user", "content": U1}, {"role": "assistant", "content": A1},
                          {"role": "user", "content": U2}, {"role": "assistant", "content": A2}]},
            {"conversations": [{"from": "human", "value": U2}, {"from": "gpt", "value": A2}]},
            {"messages": [{"role": "user", "content": U1}]}]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    out = show(capsys, "--dataset", data, "--chat_template", "ko", "--rows", "3")
    first = build_prompt(U1, "", "ko") + A1 + EOS + f"\n\n### 명령어:\n{U2}\n\n### 응답:\n" + A2 + EOS
    second = build_prompt(U2, "", "ko") + A2 + EOS
    trained = _count(tokenizer, A1 + EOS) + _count(tokenizer, A2 + EOS)
    assert out[0] == f"{data} as the sft stage sees it (guessed from the columns; --stage to choose), tokenizer " \
                     f"{ROOT}/coati/assets/tokenizer"
    text = "\n".join(out)
    assert f"-- row 1: {_count(tokenizer, first)} tokens, {trained} trained" in out
    assert (build_prompt(U1, "", "ko") + f"⟦{A1}{EOS}⟧\n\n### 명령어:\n{U2}\n\n### 응답:\n⟦{A2}{EOS}⟧") in text
    assert f"-- row 2: {_count(tokenizer, second)} tokens, {_count(tokenizer, A2 + EOS)} trained" in out
    assert "-- row 3: dropped, with no assistant turn" in out
    assert out[-2:] == ["chat template: ko", f"--dataset {data}: read 3 rows, used 2, truncated 0, dropped 1 "
                                             "(1 with no assistant turn: row 3)"]


@pytest.mark.parametrize("order, pairs", [
    ("slots", [("one", "two"), ("one", "zero"), ("two", "zero")]),
    ("ranks", [("two", "zero"), ("two", "one"), ("zero", "one")]),
])
def test_a_three_cycle_ranking_read_both_ways(capsys, tmp_path, order, pairs):
    row = {"prompt": "q", "completion_0": "zero", "completion_1": "one", "completion_2": "two", "ranking": [1, 2, 0]}
    data = write_jsonl(tmp_path / "r.jsonl", [row])
    out = show(capsys, "--dataset", data, "--ranking_order", order, "--rows", "5")
    assert [(c[len("chosen:   ⟦"):-len(EOS + "⟧")], r[len("rejected: ⟦"):-len(EOS + "⟧")])
            for c, r in zip(out, out[1:]) if c.startswith("chosen:") and r.startswith("rejected:")] == pairs
    assert f"ranking rows read with --ranking_order {order}" in "\n".join(out)
    assert out[-1] == f"--dataset {data}: read 3 pairs, used 3, truncated 0, dropped 0"


def test_ppo_conversation_prompt_ends_at_the_generation_prompt(capsys, tmp_path):
    rows = [{"messages": [{"role": "user", "content": U1}, {"role": "assistant", "content": A1},
                          {"role": "user", "content": U2}]}]
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    out = show(capsys, "--dataset", data, "--chat_template", "chatml")
    assert out[0].startswith(f"{data} as the ppo stage sees it")
    text = "\n".join(out)
    assert (f"<|im_start|>user\n{U1}<|im_end|>\n<|im_start|>assistant\n{A1}<|im_end|>\n<|im_start|>user\n{U2}"
            "<|im_end|>\n<|im_start|>assistant\n⟦here⟧") in text
    assert out[-1] == f"--prompt_dataset {data}: read 1 prompts, used 1, truncated 0, dropped 0"


def test_rows_dropped_for_length_name_the_max_len_that_keeps_them(capsys, tmp_path, tokenizer):
    rows = [{"instruction": "짧은 질문", "output": "답"}, {"instruction": "긴 질문 " * 30, "output": "답"}]
    data = write_jsonl(tmp_path / "s.jsonl", rows)
    out = show(capsys, "--dataset", data, "--max_len", "40", "--rows", "2")
    need = _count(tokenizer, build_prompt(rows[1]["instruction"], "", "ko")) + 1
    assert "-- row 2: dropped, whose prompt alone fills --max_len 40" in out
    assert out[-1] == (f"--dataset {data}: read 2 rows, used 1, truncated 0, dropped 1 (1 whose prompt alone fills "
                       f"--max_len 40: row 2; --max_len {need} would keep the rows dropped for length)")
    # At that --max_len the row is kept, its answer cut; one token less drops it again.
    assert show(capsys, "--dataset", data, "--max_len", str(need))[-1].endswith("used 2, truncated 1, dropped 0")
    assert show(capsys, "--dataset", data, "--max_len", str(need - 1))[-1].endswith(
        f"used 1, truncated 0, dropped 1 (1 whose prompt alone fills --max_len {need - 1}: row 2; --max_len {need} "
        "would keep the rows dropped for length)")


def test_a_file_it_cannot_read_is_one_line_and_status_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [\n', encoding="utf-8")
    for dataset, fragment in ((str(tmp_path / "none.jsonl"), "does not exist"), (str(bad), "invalid JSON")):
        res = subprocess.run([sys.executable, "-m", "coati.data", "show", "--dataset", dataset], cwd=ROOT,
                             env=script_env(), capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --dataset {dataset}") and fragment in lines[0]
