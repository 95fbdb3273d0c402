"""Rewards as code: loading FILE.py:NAME / module:NAME, calling with one-line errors, the shipped
functions, and the verifiable demo data they score."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from coati.errors import UserError
from coati.rewards import (
    exact_answer,
    extract_answer,
    format_check,
    length_penalty,
    load_reward_fn,
    reward_columns,
    score_each,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- load_reward_fn --------------------------------------------------------------------------------


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(
        "THRESHOLD = 3\n"
        "def longer(prompts, responses, **columns):\n"
        "    return [float(len(r) > THRESHOLD) for r in responses]\n",
        encoding="utf-8",
    )
    return str(path)


def test_load_from_file_module_and_bare_name(reward_file):
    fn = load_reward_fn(f"{reward_file}:longer")
    assert fn.__name__ == "longer"
    assert fn(["p", "p"], ["ab", "abcd"]) == [0.0, 1.0]
    assert load_reward_fn("coati.rewards:exact_answer") is exact_answer
    assert load_reward_fn("format_check") is format_check


def test_load_errors_name_the_spec(reward_file, tmp_path):
    missing = str(tmp_path / "nope.py")
    msg = one_line_error(load_reward_fn, f"{missing}:f")
    assert msg == f"--reward_fn '{missing}:f': file {missing} does not exist"
    msg = one_line_error(load_reward_fn, f"{reward_file}:shorter")
    assert f"'{reward_file}:shorter'" in msg and "defines no 'shorter'" in msg
    msg = one_line_error(load_reward_fn, f"{reward_file}:THRESHOLD")
    assert "THRESHOLD" in msg and "is a int, not a function" in msg
    msg = one_line_error(load_reward_fn, "coati.no_such_module:f")
    assert "'coati.no_such_module:f'" in msg and "no module 'coati.no_such_module'" in msg
    msg = one_line_error(load_reward_fn, "exact")
    assert "'exact'" in msg and "FILE.py:NAME" in msg and "exact_answer" in msg
    msg = one_line_error(load_reward_fn, f"{reward_file}:", flag="--reward_funcs")
    assert msg.startswith("--reward_funcs ") and "NAME an identifier" in msg
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n    pass\n", encoding="utf-8")
    msg = one_line_error(load_reward_fn, f"{broken}:f")
    assert f"importing {broken} failed: SyntaxError" in msg


# --- score_each -------------------------------------------------------------------------------


PROMPTS = ["첫 번째 질문입니다", "second prompt, which is quite a bit longer than forty characters", "셋"]
RESPONSES = ["답: 1", "Answer: two", "답: 3"]


def test_weighted_sum_means_and_columns():
    seen = {}

    def spy(prompts, responses, **columns):
        seen.update(prompts=prompts, responses=responses, columns=columns)
        return [1.0, 0.0, 1.0]

    def half(prompts, responses, **_):
        return [0.5, 1, 2]  # an int is a number too

    columns = {"answer": ["1", "2", "3"], "source": ["a", "b", "c"]}
    total, each = score_each([spy, half], [2.0, -1.0], PROMPTS, RESPONSES, columns)
    close = torch.testing.assert_close
    close(total, torch.tensor([2.0 - 0.5, 0.0 - 1.0, 2.0 - 2.0]))
    assert total.dtype == torch.float32 and total.shape == (3,)
    assert list(each) == ["spy", "half"]
    close(each["spy"], torch.tensor([1.0, 0.0, 1.0]))
    close(each["half"], torch.tensor([0.5, 1.0, 2.0]))
    assert seen == {"prompts": PROMPTS, "responses": RESPONSES, "columns": columns}
    # weights default to 1 each; a tensor result is accepted
    as_tensor = lambda p, r, **_: torch.tensor([1.0, 2.0, 3.0])  # noqa: E731
    total, _ = score_each([spy, as_tensor], None, PROMPTS, RESPONSES)
    close(total, torch.tensor([2.0, 2.0, 4.0]))


def test_same_name_twice_keeps_both_means():
    def f(prompts, responses, **_):
        return [1.0] * len(prompts)

    _, each = score_each([f, f], None, PROMPTS, RESPONSES)
    assert sorted(each) == ["f", "f#2"]


def test_wrong_weight_count():
    msg = one_line_error(score_each, [format_check], [1.0, 2.0], PROMPTS, RESPONSES)
    assert msg.startswith("--reward_weights has 2 value(s) but 1 reward function(s)")


def test_function_raising_names_the_row():
    def picky(prompts, responses, **_):
        if any(r.startswith("Answer") for r in responses):
            raise KeyError("english")
        return [1.0] * len(responses)

    msg = one_line_error(score_each, [picky], None, PROMPTS, RESPONSES)
    assert msg == ("reward function picky raised on row 2 (prompt 'second prompt, which is quite a bit "
                   "l...'): KeyError: 'english'")

    def batch_only(prompts, responses, **_):
        if len(prompts) > 1:
            raise RuntimeError("needs one at a time\nsecond line")
        return [0.0]

    msg = one_line_error(score_each, [batch_only], None, PROMPTS, RESPONSES)
    assert msg == ("reward function batch_only raised on a batch of 3 answers: "
                   "RuntimeError: needs one at a time")


def test_missing_answer_column_or_value():
    msg = one_line_error(score_each, [exact_answer], None, PROMPTS, RESPONSES)
    assert msg.startswith("reward function exact_answer raised on row 1 (prompt '첫 번째 질문입니다'):")
    assert msg.endswith("ValueError: exact_answer needs an 'answer' column in the prompt rows")
    columns = {"answer": ["1", None, "3"]}
    msg = one_line_error(score_each, [exact_answer], None, PROMPTS, RESPONSES, columns)
    assert "on row 2" in msg and "the row has no 'answer'" in msg


@pytest.mark.parametrize("result, expected", [
    ([1.0, 2.0], "reward function bad returned 2 values for 3 answers; return one number per answer, "
                 "in order"),
    (1.0, "reward function bad returned a float, not one number per answer (a list of 3)"),
    ([1.0, None, 0.0], "reward function bad returned 'None' (a NoneType, not a number) for row 2 (prompt "
                       "'second prompt, which is quite a bit l...')"),
    ([1.0, 0.0, "1"], "reward function bad returned \"'1'\" (a str, not a number) for row 3 (prompt '셋')"),
    ([float("nan"), 0.0, 0.0], "reward function bad returned nan for row 1 (prompt '첫 번째 질문입니다'); "
                               "rewards must be finite"),
    ([0.0, 0.0, float("-inf")], "reward function bad returned -inf for row 3 (prompt '셋'); "
                                "rewards must be finite"),
])
def test_bad_results(result, expected):
    def bad(prompts, responses, **_):
        return result

    assert one_line_error(score_each, [bad], None, PROMPTS, RESPONSES) == expected


def test_reward_columns_aligned_with_rows():
    rows = [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2", "note": "x"}]
    assert reward_columns(rows, "prompt") == {"answer": ["1", "2"], "note": [None, "x"]}


# --- shipped functions -----------------------------------------------------------------------------


def test_exact_answer_text_and_numbers():
    cases = [
        ("답: 사과", "사과", 1.0),
        ("설명입니다.\n답: '사과'.", "사과", 1.0),  # quotes and end punctuation stripped
        ("답: 사과\n답: 포도", "포도", 1.0),  # the last marker counts
        ("답: 사과입니다", "사과", 0.0),  # exact: extra words fail
        ("답: 포도", "사과", 0.0),
        ("사과", "사과", 1.0),  # no marker: the whole response
        ("Answer: Apple", "apple", 1.0),  # case ignored
        ("answer :  apple\n", "Apple", 1.0),
        ("The answer is apple", "apple", 0.0),
        ("답: 42개", "42", 1.0),  # numeric gold: the last number in the answer text
        ("모두 1,000원입니다.", "1000", 1.0),  # no marker: the last number of the response
        ("답: 41", "42", 0.0),
        ("답: 42.0", 42, 1.0),
        ("7 더하기 5는 12", "12", 1.0),
        ("12 빼기 5는 7", "12", 0.0),
        ("답:", "사과", 0.0),
        ("", "0", 0.0),
    ]
    responses = [c[0] for c in cases]
    got = exact_answer(["p"] * len(cases), responses, answer=[c[1] for c in cases])
    assert got == [c[2] for c in cases]
    assert extract_answer("생각해 보면\n 답 : \"사과\"!  ") == "사과"


def test_format_check():
    responses = ["답: 사과", "풀이입니다.\n답: 사과\n\n", "Answer: two", "answer:x", "답: 사과\n끝", "답:", "사과", "",
                 "정답: 사과"]
    assert format_check(["p"] * len(responses), responses) == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_length_penalty():
    responses = ["a" * 100, " " + "b" * 150 + "\n", "c" * 5]
    assert length_penalty(["p"] * 3, responses) == pytest.approx([0.0, -0.5, 0.0])
    custom = length_penalty(["p"] * 3, responses, target_chars=4, per_char=0.1)
    assert custom == pytest.approx([-9.6, -14.6, -0.1])


# --- verifiable demo data --------------------------------------------------------------------------


def read_jsonl(name: str) -> list[dict]:
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_verifiable_data_is_regenerated_identically(tmp_path):
    script = os.path.join(DATA, "make_verifiable.py")
    subprocess.run([sys.executable, script, "--out", str(tmp_path)], check=True)
    for split in ("train", "eval", "sft"):
        name = f"verifiable_{split}_ko.jsonl"
        with open(os.path.join(DATA, name), "rb") as shipped, open(tmp_path / name, "rb") as fresh:
            assert shipped.read() == fresh.read(), f"data/{name} differs from what make_verifiable.py writes"


def test_verifiable_rows_are_scored_right_and_splits_disjoint():
    train, evals, sft = (read_jsonl(f"verifiable_{s}_ko.jsonl") for s in ("train", "eval", "sft"))
    assert (len(train), len(evals), len(sft)) == (300, 60, 1200)
    sft_answers = []
    for rows in (train, evals):
        assert all(set(r) == {"prompt", "answer"} for r in rows)
        prompts, answers = [r["prompt"] for r in rows], [r["answer"] for r in rows]
        assert all(a in p for p, a in zip(prompts, answers))  # the answer is visible in the prompt
        right = exact_answer(prompts, [f"답: {a}" for a in answers], answer=answers)
        # a wrong answer: the next row's answer (when it differs)
        wrong_pairs = [(p, answers[i + 1], a) for i, (p, a) in enumerate(zip(prompts[:-1], answers))
                       if answers[i + 1] != a]
        wrong = exact_answer([w[0] for w in wrong_pairs], [f"답: {w[1]}" for w in wrong_pairs],
                             answer=[w[2] for w in wrong_pairs])
        assert right == [1.0] * len(rows)
        assert len(wrong) > len(rows) * 0.9 and wrong == [0.0] * len(wrong)
    checkable = 0
    for r in sft:
        assert set(r) == {"prompt", "completion"}
        if format_check([r["prompt"]], [r["completion"]]) == [1.0]:
            checkable += 1
            answer = extract_answer(r["completion"])
        else:  # the same answer said in a sentence: right for a number, wrong for a word
            assert r["completion"].startswith("정답은 ") and r["completion"].endswith("입니다.")
            answer = r["completion"][len("정답은 "):-len("입니다.")]
            expected = 1.0 if answer.isdigit() else 0.0
            assert exact_answer([r["prompt"]], [r["completion"]], answer=[answer]) == [expected]
        assert answer in r["prompt"]
        sft_answers.append(answer)
    assert 0.4 < checkable / len(sft) < 0.6  # both forms, about half each
    train_answers, eval_answers = {r["answer"] for r in train}, {r["answer"] for r in evals}
    assert len(eval_answers) >= 25  # varied enough that a few memorised words cannot pass the eval
    # Eval prompts are new to RL and SFT; the words are shared (what RL may carry over is the copying), the
    # numbers are not
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in evals}
    assert not {r["prompt"] for r in sft} & {r["prompt"] for r in train + evals}
    numbers = [{a for a in answers if a.isdigit()} for answers in (train_answers, eval_answers, set(sft_answers))]
    assert all(numbers) and not numbers[0] & numbers[1] and not numbers[2] & (numbers[0] | numbers[1])
    assert set(sft_answers) & eval_answers and set(sft_answers) & train_answers
