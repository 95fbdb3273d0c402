"""coati.evaluate: held-out answers of several policies, scored by a reward model and reward functions."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from conftest import run_script, write_json

PROMPTS = [{"prompt": f"{w}에 대해 알려 주세요.", "answer": w} for w in ["사과", "바다", "여행"]]


@pytest.fixture(scope="module")
def rm_folder(tiny_models, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    base, out = tiny_models("gpt2"), tmp_path_factory.mktemp("rm")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(out)
    for f in os.listdir(base):
        if f.startswith("tokenizer"):
            shutil.copy(os.path.join(base, f), out)
    return str(out)


def test_win_rate_counts_ties_half():
    from coati.evaluate import win_rate

    assert win_rate([1.0, 0.0, 2.0, 3.0], [0.5, 0.0, 2.5, 3.0]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)


def test_two_models_greedy_and_sampled_scored_by_reward_model_and_function(tiny_models, rm_folder, tmp_path):
    from coati.dataset.preference import Pair, encode_pair
    from coati.models.loading import load_sequence_scorer, load_tokenizer
    from coati.models.registry import resolve_family
    from coati.models.value import ValueModel

    gpt2, llama = tiny_models("gpt2"), tiny_models("llama")
    out = tmp_path / "eval.json"
    res = run_script(["-m", "coati.evaluate", "--model_path", gpt2, llama, "--prompt_dataset",
                      write_json(tmp_path / "p.json", PROMPTS), "--rm_path", rm_folder, "--reward_fn",
                      "exact_answer", "--samples", "2", "--max_new_tokens", "6", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(out.read_text())
    results, answers = found["results"], found["answers"]
    assert list(results[gpt2]) == ["greedy", "sampled"]
    assert len(answers[gpt2]["greedy"]) == 3 and len(answers[gpt2]["sampled"]) == 6
    # the reward-model score is its score of prompt + answer as train_reward_model.py tokenises a pair
    tok = load_tokenizer(rm_folder, distinct_pad=True)
    rm = ValueModel(load_sequence_scorer(rm_folder, resolve_family("auto", rm_folder), tok)).eval()
    scores = []
    for row, answer in zip(PROMPTS, answers[llama]["greedy"]):
        prompt_ids, answer_ids, _ = encode_pair(Pair(row["prompt"], answer, answer), tok)
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            scores.append(float(rm(ids, torch.ones_like(ids))))
    assert results[llama]["greedy"]["rm_score"] == pytest.approx(sum(scores) / 3, abs=1e-5)
    assert 0 <= results[llama]["greedy"]["win_rate"] <= 1 and "win_rate" not in results[gpt2]["greedy"]
    assert results[gpt2]["sampled"]["reward_exact_answer"] == 0.0  # a random model names no answer
    table = res.stdout.strip().splitlines()
    assert table[0] == "model | mode | answers | rm_score | reward_exact_answer | win_rate"
    assert f"{llama} | greedy | 3 | {results[llama]['greedy']['rm_score']:.4f} | 0.0000 | " \
           f"{results[llama]['greedy']['win_rate']:.4f}" in table


def test_same_model_twice_ties_and_bad_inputs_are_refused(tiny_models, rm_folder, tmp_path):
    gpt2 = tiny_models("gpt2")
    copy = shutil.copytree(gpt2, tmp_path / "copy")
    prompts = write_json(tmp_path / "p.json", PROMPTS)
    out = tmp_path / "same.json"
    res = run_script(["-m", "coati.evaluate", "--model_path", gpt2, str(copy), "--prompt_dataset", prompts,
                      "--rm_path", rm_folder, "--samples", "1", "--max_new_tokens", "5", "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(out.read_text())
    # the same weights answer alike, sampled answers too (every model draws from the same seeded stream)
    assert found["answers"][gpt2] == found["answers"][str(copy)]
    assert [found["results"][str(copy)][m]["win_rate"] for m in ("greedy", "sampled")] == [0.5, 0.5]

    def refused(*flags, models=(gpt2,)):
        res = run_script(["-m", "coati.evaluate", "--model_path", *models, "--prompt_dataset", prompts, *flags])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        return lines[0]

    assert "nothing scores the answers" in refused()
    assert "names a folder twice" in refused("--rm_path", rm_folder, models=(gpt2, gpt2))
    assert f"--rm_path {gpt2} is a causal language model" in refused("--rm_path", gpt2)
    assert "--samples must be >= 0" in refused("--rm_path", rm_folder, "--samples", "0", "--no-greedy")
    assert "row 0 has no key 'question'" in refused("--rm_path", rm_folder, "--prompt_str", "question")
