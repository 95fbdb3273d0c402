"""Critic-free RL through train_prompts.py: flags refused before loading, only the models an algorithm needs,
the reward-function contract (what a function sees, and its errors in one line), G answers per prompt in
consecutive groups, group filtering, and a short GRPO run that logs every episode figure."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_jsonl

import train_prompts
from coati.dataset.prompt import LeftPadCollator, PromptDataset, RowPrompts
from coati.experience.experience import collate
from coati.experience.maker import ExperienceMaker
from coati.strategies.base import Strategy

ROWS = [{"prompt": "다음 단어를 그대로 답하세요: 사과", "answer": "사과", "kind": "copy"},
        {"prompt": "다음 숫자를 그대로 답하세요: 42", "answer": "42", "kind": "number"},
        {"prompt": "별표 뒤 단어만 답하세요: 오늘 * 바다 사진", "answer": "바다", "kind": "marked"}]

RECORDER = '''
import json, os

def record(prompts, responses, **columns):
    with open(os.environ["REWARD_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"prompts": prompts, "responses": responses, "columns": columns}, ensure_ascii=False)
                + "\\n")
    return [float(len(r)) for r in responses]

def picky(prompts, responses, answer=None, **_):
    if "42" in answer:
        raise ValueError("no numbers please")
    return [0.0] * len(prompts)

def short(prompts, responses, **_):
    return [0.0] * (len(prompts) - 1)
'''


@pytest.fixture
def setup(tiny_models, tmp_path):
    data = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    fns = tmp_path / "fns.py"
    fns.write_text(RECORDER, encoding="utf-8")
    return tiny_models("gpt2"), data, str(fns)


def flags(pretrain, data, tmp_path, *extra):
    return ["--strategy", "naive", "--model", "gpt2", "--pretrain", pretrain, "--prompt_dataset", data,
            "--ppo_instruction_str", "prompt", "--save_path", str(tmp_path / "out"), "--num_episodes", "1",
            "--num_collect_steps", "1", "--num_update_steps", "1", "--experience_batch_size", "3",
            "--train_batch_size", "4", "--max_new_tokens", "5", *extra]


@pytest.fixture
def loads(monkeypatch):
    """Counts the models main() loads: (causal LMs, sequence scorers)."""
    import coati.models.loading as loading

    counts = {"causal": 0, "scorer": 0}
    causal, scorer = loading.load_causal_lm, loading.load_sequence_scorer

    def count(kind, fn):
        def wrapped(*a, **k):
            counts[kind] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(loading, "load_causal_lm", count("causal", causal))
    monkeypatch.setattr(loading, "load_sequence_scorer", count("scorer", scorer))
    return counts


def refused(capsys, argv, before_loading: bool = True) -> str:
    """The one error line of a run main() stops with status 2; before_loading: the only line at all."""
    with pytest.raises(SystemExit) as stop:
        train_prompts.main(train_prompts.parse_args(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert [ln for ln in lines if ln.startswith("error: ")] == lines[-1:] and "Traceback" not in err, lines
    assert len(lines) == 1 or not before_loading, lines
    return lines[-1]


@pytest.mark.parametrize("extra, message", [
    (["--algo", "grpo", "--num_generations", "1", "--reward_fn", "exact_answer"],
     "--algo grpo compares the answers to one prompt and needs --num_generations of 2 or more, got 1"),
    (["--algo", "rloo", "--critic_lr", "1e-5", "--reward_fn", "exact_answer"],
     "--critic_lr is for ppo; --algo rloo has no critic, leave --critic_lr out"),
    (["--algo", "grpo"], "--rm_path or --reward_fn is required"),
    (["--algo", "grpo", "--reward_fn", "exact_answer", "--reward_weights", "1", "2"],
     "--reward_weights has 2 value(s) but 1 --reward_fn are given"),
    (["--reward_fn", "exact_answer", "--filter_groups"], "--filter_groups needs groups: --num_generations of 2"),
    (["--algo", "grpo", "--reward_fn", "nowhere.py:f"], "--reward_fn 'nowhere.py:f': file nowhere.py does not exist"),
    (["--algo", "grpo", "--reward_fn", "exact_answer", "--kl_loss_coef", "-1"],
     "--kl_loss_coef must be 0 or positive, got -1.0"),
])
def test_bad_flags_are_refused_in_one_line_before_any_model_loads(setup, tmp_path, capsys, loads, extra, message):
    pretrain, data, _ = setup
    line = refused(capsys, flags(pretrain, data, tmp_path, *extra))
    assert message in line, line
    assert loads == {"causal": 0, "scorer": 0}
    assert not (tmp_path / "out").exists()


def test_defaults_per_algorithm():
    ppo = train_prompts.parse_args([])
    grpo = train_prompts.parse_args(["--algo", "grpo"])
    rpp = train_prompts.parse_args(["--algo", "reinforce_pp"])
    assert (ppo.num_generations, ppo.kl_coef, ppo.critic_lr, ppo.top_k, ppo.critic_lr_given) == (1, 0.1, 1e-5, 0,
                                                                                                  False)
    assert (grpo.num_generations, grpo.kl_coef, grpo.kl_loss_coef, grpo.top_k) == (4, 0.0, 0.0, 0)
    assert (rpp.num_generations, rpp.kl_coef) == (4, 0.1)
    assert train_prompts.parse_args(["--eps_clip", "0.1"]).eps_clip_high == 0.1
    assert train_prompts.parse_args(["--eps_clip_high", "0.28"]).eps_clip_high == 0.28


@pytest.mark.parametrize("algo, extra, expected", [
    ("grpo", [], {"critic": False, "reference": False, "reward_model": False, "causal": 1, "scorer": 0}),
    ("rloo", ["--kl_loss_coef", "0.1"], {"critic": False, "reference": True, "reward_model": False, "causal": 2,
                                         "scorer": 0}),
    ("reinforce_pp", [], {"critic": False, "reference": True, "reward_model": False, "causal": 2, "scorer": 0}),
    ("ppo", ["--kl_coef", "0"], {"critic": True, "reference": False, "reward_model": False, "causal": 1,
                                 "scorer": 1}),
])
def test_only_the_models_an_algorithm_needs_are_loaded(setup, tmp_path, monkeypatch, loads, algo, extra, expected):
    pretrain, data, fns = setup
    monkeypatch.setenv("REWARD_LOG", str(tmp_path / "log.jsonl"))
    out = train_prompts.main(train_prompts.parse_args(flags(pretrain, data, tmp_path, "--algo", algo,
                                                            "--num_generations", "2", "--reward_fn",
                                                            f"{fns}:record", *extra)))
    assert {**out["models"], **loads} == expected
    (episode,) = out["history"]
    assert "value_loss" in episode if algo == "ppo" else "value_loss" not in episode
    assert ("kl_loss" in episode) == ("--kl_loss_coef" in extra)


def test_reward_functions_see_raw_prompts_decoded_answers_and_aligned_columns(setup, tmp_path, monkeypatch):
    """G answers per prompt, consecutive; prompts before the template; responses without the prompt or special
    tokens; columns aligned; the per-function mean logged as reward/NAME; eval scored greedy and sampled."""
    pretrain, data, fns = setup
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("REWARD_LOG", str(log))
    out = train_prompts.main(train_prompts.parse_args(flags(
        pretrain, data, tmp_path, "--algo", "grpo", "--num_generations", "3", "--reward_fn", f"{fns}:record",
        "--reward_fn", "exact_answer", "--reward_weights", "0.5", "2", "--eval_dataset", data)))
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    eval_before, rollout = calls[:2], calls[2]  # greedy then sampled held-out answers, then the rollout
    assert len(rollout["prompts"]) == 9
    by_prompt = {r["prompt"]: r for r in ROWS}
    for i in range(0, 9, 3):  # each prompt three times in a row, its columns beside it
        group = rollout["prompts"][i:i + 3]
        assert len(set(group)) == 1 and group[0] in by_prompt
        row = by_prompt[group[0]]
        assert rollout["columns"]["answer"][i:i + 3] == [row["answer"]] * 3
        assert rollout["columns"]["kind"][i:i + 3] == [row["kind"]] * 3
    assert set(rollout["columns"]) == {"answer", "kind"}
    for response in rollout["responses"]:  # neither the templated prompt nor a special token
        assert not response.startswith("아래는") and "### 명령어:" not in response and "<|endoftext|>" not in response
    for call in eval_before:
        assert sorted(call["prompts"]) == sorted(by_prompt) and len(call["responses"]) == 3
    (episode,) = out["history"]
    lengths = [float(len(r)) for r in rollout["responses"]]
    assert episode["reward/record"] == pytest.approx(sum(lengths) / 9, rel=1e-5)
    assert "reward/exact_answer" in episode
    # the reward is the weighted sum: 0.5 * length + 2 * exact
    assert episode["reward"] == pytest.approx(0.5 * episode["reward/record"] + 2 * episode["reward/exact_answer"],
                                              rel=1e-5)
    for key in ("reward_std", "zero_std_groups", "kl", "entropy", "response_len", "clipfrac", "policy_loss"):
        assert key in episode, key
    before, after = out["evals"]
    assert before["episode"] == 0 and after["episode"] == 1
    for record in (before, after):
        assert {"eval_reward", "eval_reward_sampled", "eval_reward/record", "eval_reward/exact_answer"} <= set(record)
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("split", "train") for r in metrics] == ["eval", "train", "eval"]
    assert (tmp_path / "out" / "grpo_reward_kl.png").exists()
    from coati.summary import describe

    text = describe(str(tmp_path / "out"))
    assert text.startswith("GRPO 1 episodes, 3 updates: reward ")  # 9 answers in minibatches of 4
    assert (f"held-out reward, greedy {before['eval_reward']:+.3f} -> {after['eval_reward']:+.3f}, sampled "
            f"{before['eval_reward_sampled']:+.3f} -> {after['eval_reward_sampled']:+.3f}") in text


@pytest.mark.parametrize("fn, message", [
    ("picky", "error: reward function picky raised on data row 2 (prompt '다음 숫자를 그대로 답하세요: 42'): "
              "ValueError: no numbers please"),
    ("short", "error: reward function short returned 5 values for 6 answers; return one number per answer"),
])
def test_a_broken_reward_function_stops_the_run_in_one_line(setup, tmp_path, capsys, fn, message):
    pretrain, data, fns = setup
    line = refused(capsys, flags(pretrain, data, tmp_path, "--algo", "grpo", "--num_generations", "2",
                                 "--reward_fn", f"{fns}:{fn}"), before_loading=False)
    assert line.startswith(message), line


def test_groups_are_consecutive_and_filtered_groups_leave_the_update(tiny_models, tokenizer):
    from coati.models.loading import load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models("gpt2")
    actor = load_causal_lm(path, resolve_family("gpt2", path), tokenizer).eval()
    rows = [{"prompt": "같은 점수"}, {"prompt": "다른 점수"}]
    prompts = RowPrompts(PromptDataset(rows, tokenizer, 64, key="prompt"), rows, "prompt")
    batch = LeftPadCollator(tokenizer.pad_token_id)([prompts[0], prompts[1]])

    def spread(prompts, responses, **_):  # one group all alike, the other 0, 1, 2
        return [0.0 if p == "같은 점수" else float(i % 3) for i, p in enumerate(prompts)]

    maker = ExperienceMaker(strategy=Strategy(), actor=actor, tokenizer=tokenizer, reward_fns=[spread],
                            gen_kwargs=dict(max_new_tokens=4), algo="grpo", num_generations=3, filter_groups=True)
    torch.manual_seed(0)
    samples = maker.make(batch, kl_coef=0.0)
    assert [s.prompt.tolist() for s in samples] == [prompts[0]["ids"]] * 3 + [prompts[1]["ids"]] * 3
    assert [s.score for s in samples] == [0.0, 0.0, 0.0, 0.0, 1.0, 2.0]
    assert [s.in_update for s in samples] == [False] * 3 + [True] * 3
    assert [s.group_std for s in samples] == pytest.approx([0.0] * 3 + [1.0] * 3)
    # group-relative advantages: 0 for the flat group, (r - 1) / (1 + 1e-4) for the other, on every token
    for s, want in zip(samples, [0, 0, 0, -1, 0, 1]):
        assert torch.allclose(s.advantages, torch.full_like(s.advantages, want / (1 + 1e-4)))
        assert torch.equal(s.ref_log_probs, s.log_probs) and s.kl == 0.0  # no reference loaded
    exp = collate(samples, tokenizer.pad_token_id)
    assert exp.update_mask[:3].sum() == 0 and torch.equal(exp.update_mask[3:], exp.action_mask[3:])


def test_missing_eos_penalty_is_subtracted_from_answers_cut_short(tiny_models, tokenizer):
    from coati.models.loading import load_causal_lm
    from coati.models.registry import resolve_family

    path = tiny_models("gpt2")
    actor = load_causal_lm(path, resolve_family("gpt2", path), tokenizer).eval()
    rows = [{"prompt": "안녕?"}]
    batch = LeftPadCollator(tokenizer.pad_token_id)([RowPrompts(PromptDataset(rows, tokenizer, 64, key="prompt"),
                                                                rows, "prompt")[0]])

    def one(prompts, responses, **_):
        return [1.0] * len(prompts)

    maker = ExperienceMaker(strategy=Strategy(), actor=actor, tokenizer=tokenizer, reward_fns=[one],
                            gen_kwargs=dict(max_new_tokens=3), algo="rloo", num_generations=8,
                            missing_eos_penalty=0.25)
    torch.manual_seed(0)
    samples = maker.make(batch, kl_coef=0.0)
    ended = [tokenizer.eos_token_id in s.response.tolist() for s in samples]
    assert [s.score for s in samples] == [1.0 if e else 0.75 for e in ended]
    assert not all(ended)  # a random tiny model rarely stops within three tokens


def test_row_prompts_carry_the_row_index_text_and_columns(tokenizer):
    rows = [{"prompt": "하나", "answer": "1"}, {"prompt": ""}, {"messages": [{"role": "user", "content": "셋"}],
                                                               "answer": "3"}]
    ds = PromptDataset(rows[:2], tokenizer, 64, key="prompt")
    assert ds.row_ids == [0]  # the empty prompt is dropped and counted; the index still names the file's row
    items = RowPrompts(ds, rows[:2], "prompt")
    batch = LeftPadCollator(tokenizer.pad_token_id)([items[0]])
    assert batch["texts"] == ["하나"] and batch["columns"] == {"answer": ["1"]} and batch["index"].tolist() == [0]
    from coati.dataset.chat import load_chat_template

    template = load_chat_template("ko", tokenizer)
    conv = RowPrompts(PromptDataset(rows[2:], tokenizer, 64, key="prompt", template=template), rows[2:], "prompt")
    assert conv[0]["text"] == "셋" and conv[0]["columns"] == {"answer": "3"}
