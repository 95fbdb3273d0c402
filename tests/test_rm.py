"""Stage 2: preference formats, pooling, HF round trip for every family, legacy .pt, train_reward_model.py."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import FAMILIES, run_script, write_json, write_jsonl

from coati.dataset.preference import PairCollator, PreferenceDataset, ranking_pairs, rows_to_pairs
from coati.errors import UserError
from coati.models.value import ValueModel, load_legacy_state_dict
from coati.ops import last_true_index


def test_ranking_row_expands_into_all_pairs_best_first():
    row = {"prompt": "q", "completion_0": "c", "completion_1": "a", "completion_2": "d", "completion_3": "b",
           "ranking": [2, 0, 3, 1]}  # read as ranks: a (rank 0) > b > c > d
    pairs = ranking_pairs(row, "ranks")
    assert [(p.chosen, p.rejected) for p in pairs] == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"),
                                                       ("b", "d"), ("c", "d")]
    assert len(ranking_pairs({**row, "completion_4": "e", "ranking": [2, 0, 3, 1, 4]}, "ranks")) == 10


def test_inconsistent_ranking_is_refused_with_the_row():
    rows = [{"prompt": "q", "completion_0": "a", "completion_1": "b", "ranking": [0, 1]},
            {"prompt": "q", "completion_0": "a", "completion_1": "b", "ranking": [0]}]
    with pytest.raises(UserError, match="row 1: 'ranking' must list one rank per completion"):
        rows_to_pairs(rows, source="r.json")


def test_other_formats_become_pairs():
    hh = rows_to_pairs([{"chosen": "\n\nHuman: hi\n\nAssistant: hello friend",
                         "rejected": "\n\nHuman: hi\n\nAssistant: go away"}])[0]
    assert (hh.prompt, hh.chosen, hh.rejected, hh.templated) == (
        "\n\nHuman: hi\n\nAssistant:", " hello friend", " go away", False)
    summ = rows_to_pairs([{"info": {"post": "long post", "title": "T"}, "summaries": [{"text": "s0"}, {"text": "s1"}],
                           "choice": 1}])[0]
    assert (summ.chosen, summ.rejected) == ("s1", "s0") and "long post" in summ.prompt
    web = rows_to_pairs([{"question": {"full_text": "why?"}, "answer_0": "x", "answer_1": "y", "score_0": -1.0,
                          "score_1": 1.0},
                         {"question": {"full_text": "tie"}, "answer_0": "x", "answer_1": "y", "score_0": 0.0,
                          "score_1": 0.0}])
    assert len(web) == 1 and (web[0].chosen, web[0].rejected) == ("y", "x")
    custom = rows_to_pairs([{"q": "p", "good": "g", "bad": "b"}],
                           keys=__import__("coati.dataset.preference", fromlist=["PairKeys"]).PairKeys("q", "good", "bad"))
    assert (custom[0].prompt, custom[0].chosen) == ("p", "g")


def _scorer(tiny_models, family, tokenizer):
    from coati.models.loading import load_sequence_scorer
    from coati.models.registry import resolve_family

    path = tiny_models(family)
    return load_sequence_scorer(path, resolve_family(family, path), tokenizer).eval()


@pytest.mark.parametrize("family", ["gpt2", "llama", "bloom"])
def test_pooling_reads_the_last_real_token_under_left_and_right_padding(tiny_models, tokenizer, family):
    model = ValueModel(_scorer(tiny_models, family, tokenizer))
    ids = tokenizer("좋은 답변입니다.")["input_ids"] + [tokenizer.eos_token_id]
    pad, n = tokenizer.pad_token_id, len(ids)
    with torch.no_grad():
        alone = model(torch.tensor([ids]), torch.ones(1, n, dtype=torch.long))
        right = model(torch.tensor([ids + [pad] * 3]), torch.tensor([[1] * n + [0] * 3]))
        left = model(torch.tensor([[pad] * 3 + ids]), torch.tensor([[0] * 3 + [1] * n]))
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    assert last_true_index(torch.tensor([[1, 1, 0], [0, 1, 1], [1, 1, 1]])).tolist() == [1, 2, 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_reward_model_scores_the_same_through_plain_hf(tiny_models, tokenizer, tmp_path, family):
    from transformers import AutoModelForSequenceClassification

    from coati.checkpoint import save_hf_model

    model = ValueModel(_scorer(tiny_models, family, tokenizer))
    pairs = rows_to_pairs([{"prompt": "날씨 어때요?", "chosen": "맑고 따뜻합니다. 좋은 하루 보내세요.", "rejected": "몰라요."}])
    batch = PairCollator(tokenizer.pad_token_id)([PreferenceDataset(pairs, tokenizer, 128)[0]])
    with torch.no_grad():
        ours = model(**batch)
    save_hf_model(model.hf, tokenizer, str(tmp_path))
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert hf.config.num_labels == 1 and hf.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        theirs = hf(**batch).logits.squeeze(-1)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    assert not torch.equal(ours[0], ours[1])


def test_accumulation_equals_one_large_batch(tiny_models, tokenizer):
    """--accumulation_steps 2 over two batches of 4 pairs makes the update of one batch of 8, and so does an
    uneven split (an epoch's last, shorter micro-batch): each micro-batch weighs by its share of the pairs."""
    from coati.strategies.base import Strategy
    from coati.trainer.rm import RewardModelTrainer

    # pairs of different lengths: micro-batches pad differently
    rows = [{"prompt": f"{t} 좋아하세요?", "chosen": GOOD[i % 4].format(t=t) * (1 + i % 3),
             "rejected": BAD[i % 3]} for i, t in enumerate(TOPICS[:8])]
    items = [PreferenceDataset(rows_to_pairs(rows), tokenizer, 128)[i] for i in range(8)]
    collate = PairCollator(tokenizer.pad_token_id)
    tiny_models("gpt2")  # built before the seed below, which must give every run the same value head
    results = []
    for sizes in ([8], [4, 4], [5, 3]):
        torch.manual_seed(0)
        model = ValueModel(_scorer(tiny_models, "gpt2", tokenizer))  # eval mode: no dropout in any run
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        trainer = RewardModelTrainer(strategy=Strategy(), model=model, optimizer=opt, scheduler=sched,
                                     train_loader=[None], accumulation_steps=len(sizes), max_grad_norm=0)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        stats = trainer.train_step([collate(items[a:a + n]) for a, n in zip(starts, sizes)])
        results.append((stats, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (one, after_one), *accumulated = results
    assert not torch.equal(after_one, before)  # the step moved the weights
    assert 0 < one["acc"] < 1  # an untrained head: the accuracy is a real average, not 0 or 1 everywhere
    for stats, after in accumulated:
        for key in ("loss", "acc", "dist"):
            assert stats[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
        torch.testing.assert_close(after, after_one, atol=1e-5, rtol=1e-5)


def test_head_is_initialised_with_std_one_over_d_plus_one(tiny_models, tokenizer):
    hf = _scorer(tiny_models, "gpt2", tokenizer)
    w = hf.score.weight
    assert w.shape == (1, 64) and 0.3 / 65 < float(w.detach().std()) < 3.0 / 65


def test_legacy_coati_pt_loads_and_scores_the_same(tiny_models, tokenizer, tmp_path):
    hf = _scorer(tiny_models, "opt", tokenizer)
    prefix = hf.base_model_prefix
    legacy = {("model." + k[len(prefix) + 1:] if k.startswith(prefix + ".") else k): v
              for k, v in hf.state_dict().items() if k != "score.weight"}
    legacy["value_head.weight"] = hf.score.weight.detach().clone()
    legacy["value_head.bias"] = torch.tensor([0.5])
    torch.save(legacy, tmp_path / "rm.pt")
    fresh = _scorer(tiny_models, "opt", tokenizer)
    torch.nn.init.zeros_(fresh.score.weight)
    notes = load_legacy_state_dict(fresh, str(tmp_path / "rm.pt"))
    assert any("value_head.bias" in n for n in notes)
    batch = PairCollator(tokenizer.pad_token_id)([([5, 6, 7, 0], [5, 9, 0])])
    with torch.no_grad():
        torch.testing.assert_close(ValueModel(fresh)(**batch), ValueModel(hf)(**batch))
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a readable PyTorch state dict"):
        load_legacy_state_dict(fresh, str(tmp_path / "junk.pt"))


GOOD = ["{t}에 대해서는 천천히 준비하시면 좋습니다. 도움이 되었으면 합니다.", "{t}은 이렇게 하시면 됩니다. 감사합니다!",
        "좋은 질문이에요. {t}은 계획을 세워서 해 보세요.", "{t}을 즐기시려면 먼저 기본부터 익히세요. 응원합니다."]
MID = ["{t}요? 글쎄요.", "{t}은 그냥 그래요.", "잘 모르겠지만 {t}이겠죠."]
BAD = ["몰라요. 귀찮아요.", "그건 알아서 하세요.", "왜 나한테 물어요? 짜증나요."]
TOPICS = ["요리", "여행", "공부", "운동", "음악", "독서", "청소", "산책", "커피", "사진", "수영", "영화"]


def _ranking_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = rng.choice(TOPICS)
        texts = [rng.choice(GOOD).format(t=t), rng.choice(MID).format(t=t), rng.choice(BAD)]
        order = rng.sample(range(3), 3)
        row = {"prompt": f"{t}을 잘하려면 어떻게 해야 하나요? ({i})"}
        for slot, k in enumerate(order):
            row[f"completion_{slot}"] = texts[k]
        row["ranking"] = [order.index(k) for k in range(3)]  # KoChatGPT's slots: where the k-th best one sits
        rows.append(row)
    return rows


def test_train_reward_model_ddp_learns_held_out_rankings(tiny_models, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train = write_json(tmp_path / "rm_train.jsonl", _ranking_rows(120, 0), bom=True)
    held_rows = _ranking_rows(30, 1)
    held = write_json(tmp_path / "rm_eval.json", held_rows)
    out = tmp_path / "rm"
    res = run_script(["train_reward_model.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain",
                      tiny_models("gpt2"), "--dataset", train, "--eval_dataset", held, "--save_path", str(out),
                      "--batch_size", "8", "--lr", "1e-3", "--max_epochs", "2", "--max_len", "128",
                      "--eval_interval", "10"], nproc=2)  # the rows list slots, the default order
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("split") == "eval"]
    assert len(evals) >= 3 and {"acc", "dist", "loss"} <= set(evals[-1])
    assert evals[-1]["acc"] >= 0.9, evals[-1]
    assert (out / "rm_accuracy.png").exists()

    tok = AutoTokenizer.from_pretrained(out)
    # Throughput counts pairs on both ranks, and both sides' real tokens: per pair, within the data's range.
    sizes = [len(c) + len(r) for c, r in PreferenceDataset(rows_to_pairs(_ranking_rows(120, 0)), tok, 128).items]
    train_rows = [r for r in records if "split" not in r]
    assert train_rows and all(r["samples_per_s"] > 0 for r in train_rows)
    per_pair = [round(r["tokens_per_s"] / r["samples_per_s"], 6) for r in train_rows]  # both rates share one span
    assert all(min(sizes) <= x <= max(sizes) for x in per_pair), (sizes, per_pair)
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    pairs = rows_to_pairs(held_rows)
    ds = PreferenceDataset(pairs, tok, 128)
    batch = PairCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        scores = hf(**batch).logits.squeeze(-1)
    chosen, rejected = scores[: len(ds)], scores[len(ds):]
    acc = float((chosen > rejected).float().mean())
    assert acc == pytest.approx(evals[-1]["acc"], abs=0.04)  # the run's eval pads the last shard by <= 1 pair


def test_train_reward_model_hh_style_naive_with_lora(tiny_models, tmp_path):
    rows = [{"chosen": f"\n\nHuman: {t} 추천해 줄래요?\n\nAssistant: {GOOD[i % 4].format(t=t)}",
             "rejected": f"\n\nHuman: {t} 추천해 줄래요?\n\nAssistant: {BAD[i % 3]}"} for i, t in enumerate(TOPICS * 3)]
    data = write_jsonl(tmp_path / "hh.jsonl", rows)
    out = tmp_path / "rm"
    res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "llama", "--pretrain",
                      tiny_models("llama"), "--dataset", data, "--save_path", str(out), "--batch_size", "4",
                      "--lr", "5e-3", "--max_epochs", "3", "--lora_rank", "4", "--loss_func", "log_exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "eval acc" in res.stderr
    args = json.loads((out / "args.json").read_text())
    assert args["loss_fn"] == "log_exp" and args["lora_rank"] == 4
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()


# -- rankings, conversation pairs, the prompt rule, dropped rows -------------------------------------------------
def _three(ranking):
    return {"prompt": "q", "completion_0": "zero", "completion_1": "one", "completion_2": "two", "ranking": ranking}


@pytest.mark.parametrize("ranking, ranks, slots", [
    ([1, 2, 0], [("two", "zero"), ("two", "one"), ("zero", "one")], [("one", "two"), ("one", "zero"), ("two", "zero")]),
    ([2, 0, 1], [("one", "two"), ("one", "zero"), ("two", "zero")], [("two", "zero"), ("two", "one"), ("zero", "one")]),
    ([1, 0, 2], [("one", "zero"), ("one", "two"), ("zero", "two")], [("one", "zero"), ("one", "two"), ("zero", "two")]),
])
def test_ranking_orders_slots_and_ranks(ranking, ranks, slots):
    assert [(p.chosen, p.rejected) for p in ranking_pairs(_three(ranking), "ranks")] == ranks
    assert [(p.chosen, p.rejected) for p in ranking_pairs(_three(ranking), "slots")] == slots
    assert [(p.chosen, p.rejected) for p in rows_to_pairs([_three(ranking)], ranking_order="slots")] == slots


def test_slots_read_what_kochatgpts_generator_writes():
    import itertools

    sentences = ["best", "middle", "worst"]
    for ranking in itertools.permutations(range(3)):
        row = {"prompt": "q", "ranking": list(ranking)}
        for k, slot in enumerate(ranking):
            row[f"completion_{slot}"] = sentences[k]
        assert [(p.chosen, p.rejected) for p in ranking_pairs(row, "slots")] == [
            ("best", "middle"), ("best", "worst"), ("middle", "worst")]
    with pytest.raises(UserError, match="row 0: 'ranking' \\[0, 0, 1\\] is not an order of the completions 0..2"):
        rows_to_pairs([_three([0, 0, 1])], ranking_order="slots")
    with pytest.raises(UserError, match="--ranking_order best is unknown"):
        rows_to_pairs([_three([0, 1, 2])], ranking_order="best")


def test_rows_missing_or_empty_values_are_dropped_and_counted():
    from coati.dataset.io import ReadReport

    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "", "rejected": "b"},
            {"prompt": "q", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "a"},
            {"prompt": "q", "chosen": None, "rejected": "b"}, {"prompt": "r", "chosen": "c", "rejected": "d"}]
    report = ReadReport("p.jsonl")
    pairs = rows_to_pairs(rows, report=report)
    assert [(p.prompt, p.chosen) for p in pairs] == [("q", "a"), ("r", "c")]
    assert report.dropped_rows == {"with an empty 'chosen'": [2, 5], "with no 'chosen'": [3],
                                   "whose chosen and rejected answers are the same": [4]}
    assert report.summary() == ("p.jsonl: read 6 rows, used 2, truncated 0, dropped 4 (2 with an empty 'chosen': "
                                "rows 2, 5; 1 with no 'chosen': row 3; 1 whose chosen and rejected answers are "
                                "the same: row 4)")
    with pytest.raises(UserError, match="row 0 has no key 'chosen' for format 'pairs' .keys found: prompt, good, "
                                        "rejected"):
        rows_to_pairs([{"prompt": "q", "good": "a", "rejected": "b"}] * 2, fmt="pairs")
    with pytest.raises(UserError, match="no preference pairs .2 with an empty 'prompt': rows 1, 2"):
        rows_to_pairs([{"prompt": " ", "chosen": "a", "rejected": "b"}] * 2)


SYS, U1, A1, U2 = "친절하게 답하세요.", "김치찌개 끓이는 법 알려 주세요.", "먼저 김치를 볶으세요.", "돼지고기도 넣나요?"
GOOD_A, BAD_A = "네, 돼지고기를 함께 볶으면 국물이 진해져요.", "몰라요."


def _msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_conversation_preference_formats():
    lead = _msgs(("system", SYS), ("user", U1), ("assistant", A1), ("user", U2))
    ultra = {"prompt": U2, "chosen": lead + _msgs(("assistant", GOOD_A)), "rejected": lead + _msgs(("assistant", BAD_A))}
    answers_only = {"prompt": U1, "chosen": _msgs(("assistant", GOOD_A)), "rejected": _msgs(("assistant", BAD_A))}
    forked = {"chosen": lead + _msgs(("assistant", GOOD_A)),
              "rejected": _msgs(("user", U1), ("assistant", "다른 답"), ("user", U2), ("assistant", BAD_A))}
    empty = {"chosen": lead + _msgs(("assistant", " ")), "rejected": lead + _msgs(("assistant", BAD_A))}
    from coati.dataset.io import ReadReport

    report = ReadReport()
    pairs = rows_to_pairs([ultra, answers_only, forked, empty], report=report)
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [(lead, GOOD_A, BAD_A),
                                                                 (_msgs(("user", U1)), GOOD_A, BAD_A)]
    assert report.dropped_rows == {"whose chosen and rejected differ in more than their last assistant turn": [3],
                                   "with an empty turn": [4]}
    listed = rows_to_pairs([{"prompt": lead, "chosen": GOOD_A, "rejected": BAD_A}])
    assert [(p.prompt, p.chosen) for p in listed] == [(lead, GOOD_A)]
    orca = rows_to_pairs([{"system": SYS, "question": U1, "chosen": GOOD_A, "rejected": BAD_A},
                          {"system": "", "question": U2, "chosen": GOOD_A, "rejected": BAD_A}])
    assert [p.prompt for p in orca] == [_msgs(("system", SYS), ("user", U1)), _msgs(("user", U2))]


def test_one_prompt_rule_for_reward_model_and_ppo(tokenizer):
    from coati.dataset.chat import load_chat_template
    from coati.dataset.preference import Pair, has_own_template, render_pair, render_prompt
    from coati.dataset.prompt import PromptDataset
    from coati.dataset.templates import build_prompt

    chatml = load_chat_template("chatml", tokenizer)
    dialogue = "\n\nHuman: 김치찌개 끓이는 법?\n\nAssistant:"
    assert has_own_template(dialogue) and has_own_template("글\nTL;DR:") and not has_own_template(U1)
    # A prompt with its own template is wrapped by neither stage, under any template; a plain one by both.
    for template in (None, chatml):
        assert render_prompt(dialogue, tokenizer, template=template) == dialogue.strip()
    assert render_prompt(U1, tokenizer) == build_prompt(U1, "", "ko")
    assert render_prompt(U1, tokenizer, template=chatml) == f"<|im_start|>user\n{U1}<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(U1, tokenizer, template=chatml, without_prompt=True) == U1
    lead = _msgs(("system", SYS), ("user", U1))
    assert render_prompt(lead, tokenizer, template=load_chat_template("ko", tokenizer)) == \
        f"{SYS}\n\n### 명령어:\n{U1}\n\n### 응답:\n"
    with pytest.raises(UserError, match="conversation prompts, and no chat template was chosen"):
        render_prompt(lead, tokenizer)
    assert render_pair(Pair(lead, GOOD_A, BAD_A), tokenizer, template=chatml)[1:] == (GOOD_A + "<|im_end|>",
                                                                                  BAD_A + "<|im_end|>")
    assert render_pair(Pair(U1, GOOD_A, BAD_A), tokenizer)[1:] == (GOOD_A + tokenizer.eos_token,
                                                               BAD_A + tokenizer.eos_token)
    for template in (None, chatml):
        pairs = rows_to_pairs([{"prompt": p, "chosen": GOOD_A, "rejected": BAD_A} for p in (U1, dialogue)])
        ds = PreferenceDataset(pairs, tokenizer, 256, template=template)
        ppo = PromptDataset([{"instruction": p} for p in (U1, dialogue)], tokenizer, 256, template=template)
        for i in range(2):
            prompt_ids = ppo[i]
            chosen, rejected = ds[i]
            text = render_pair(pairs[i], tokenizer, template=template)
            assert chosen[: len(prompt_ids)] == prompt_ids and rejected[: len(prompt_ids)] == prompt_ids
            assert tokenizer.decode(chosen) == text[0] + text[1] and tokenizer.decode(rejected) == text[0] + text[2]
    conv = PreferenceDataset([Pair(lead, GOOD_A, BAD_A)], tokenizer, 256, template=chatml)
    ppo = PromptDataset([{"messages": lead + _msgs(("assistant", A1))}], tokenizer, 256, template=chatml)
    assert conv[0][0][: len(ppo[0])] == ppo[0] and tokenizer.decode(ppo[0]).endswith("<|im_start|>assistant\n")


def test_pairs_that_cutting_makes_identical_are_dropped(tokenizer):
    from coati.dataset.preference import Pair

    long_prompt = Pair("긴 질문 " * 80, "좋아요.", "싫어요.")
    shared = Pair("질문", "같은 말을 반복합니다. " * 30 + "좋아요.", "같은 말을 반복합니다. " * 30 + "싫어요.")
    fine = Pair("질문", "좋아요. " * 40, "싫어요.")
    ds = PreferenceDataset([long_prompt, shared, fine], tokenizer, 48, source="r.json")
    assert len(ds) == 1 and ds.dropped == 2 and ds.truncated == 1
    assert ds.report.dropped_rows == {"whose prompt alone fills --max_len 48": [1],
                                      "whose chosen and rejected are the same once cut to --max_len 48": [2]}
    chosen, rejected = ds[0]
    assert len(chosen) == 48 and chosen[-1] == tokenizer.eos_token_id and rejected[-1] == tokenizer.eos_token_id
    # The --max_len named keeps both dropped pairs, and one token less drops one again.
    keep = ds.report.keep_len
    assert f"--max_len {keep} would keep the pairs dropped for length" in ds.report.summary()
    assert len(PreferenceDataset([long_prompt, shared], tokenizer, keep)) == 2
    assert len(PreferenceDataset([long_prompt, shared, fine], tokenizer, keep - 1)) == 2
    with pytest.raises(UserError, match="r.json: no usable preference pair .1 whose prompt alone fills --max_len 48: "
                                        "row 1; --max_len [0-9]+ would keep the pairs dropped for length.; raise"):
        PreferenceDataset([long_prompt], tokenizer, 48, source="r.json")
