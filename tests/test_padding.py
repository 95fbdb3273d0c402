"""--pad_to_multiple_of: every collator pads its batch to a multiple of N columns, masks stay the lengths', and
what a model computes from the batch (SFT loss, reward scores, PPO minibatches) does not change."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_script, write_json
from safetensors.torch import load_file

ROWS = [{"prompt": f"{w}에 대해 알려 주세요.", "completion": f"{w}은 정말 좋습니다. 감사합니다."}
        for w in ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글"]]


def test_pad_rounds_the_width_up_and_masks_only_real_tokens():
    from coati.dataset.padding import pad, padded_width

    ids, mask = pad([[5, 6, 7], [8]], value=0, multiple_of=4)
    assert ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    ids, mask = pad([[5, 6, 7], [8]], value=0, left=True, multiple_of=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert pad([[5, 6, 7], [8]], value=0)[0].shape == (2, 3)  # unset: the longest row
    assert [padded_width([n], 64) for n in (1, 63, 64, 65, 128)] == [64, 64, 64, 128, 128]
    assert padded_width([1, 5, 3], None) == 5


def test_every_collator_pads_to_the_multiple(tokenizer):
    from coati.dataset.dpo import DPOCollator
    from coati.dataset.preference import PairCollator
    from coati.dataset.prompt import LeftPadCollator
    from coati.dataset.sft import IGNORE_INDEX, SFTCollator
    from coati.experience.experience import Sample, collate

    pad = tokenizer.pad_token_id
    sft = SFTCollator(pad, 16)([{"input_ids": [1, 2, 3], "labels": [IGNORE_INDEX, 2, 3]}])
    assert sft["input_ids"].shape == sft["labels"].shape == (1, 16)
    assert sft["labels"][0, 3:].eq(IGNORE_INDEX).all() and sft["attention_mask"].sum() == 3
    pairs = PairCollator(pad, 8)([([1, 2, 3], [1, 2]), ([4] * 9, [5])])
    assert pairs["input_ids"].shape == (4, 16) and pairs["attention_mask"].sum(1).tolist() == [3, 9, 2, 1]
    prompts = LeftPadCollator(pad, 8)([[1, 2, 3], [4]])
    assert prompts["input_ids"].shape == (2, 8) and prompts["input_ids"][:, -1].tolist() == [3, 4]
    dpo = DPOCollator(pad, 8)([{"chosen_ids": [1, 2, 3], "rejected_ids": [1, 2], "prompt_len": 1, "index": 0}])
    assert dpo["input_ids"].shape == dpo["labels"].shape == (2, 8)
    assert dpo["labels"][0].tolist() == [IGNORE_INDEX, 2, 3] + [IGNORE_INDEX] * 5

    def sample(p, a):
        zeros = torch.zeros(a)
        return Sample(prompt=torch.arange(1, p + 1), response=torch.arange(1, a + 1), log_probs=zeros,
                      ref_log_probs=zeros, values=zeros, rewards=zeros, advantages=zeros + 1, returns=zeros,
                      score=0.0, kl=0.0)

    plain = collate([sample(3, 2), sample(2, 4)], pad)
    padded = collate([sample(3, 2), sample(2, 4)], pad, pad_to_multiple_of=8)
    assert plain.sequences.shape == (2, 7) and padded.sequences.shape == (2, 8)  # P = 3, A grows from 4 to 5
    assert padded.prompt_len == plain.prompt_len == 3
    assert torch.equal(padded.sequences[:, :7], plain.sequences) and padded.sequences[:, 7].eq(pad).all()
    assert torch.equal(padded.action_mask[:, :4], plain.action_mask) and not padded.action_mask[:, 4].any()
    assert torch.equal(padded.advantages[:, :4], plain.advantages) and padded.advantages[:, 4].eq(0).all()


def test_reward_scores_are_equal_with_and_without_padding(tiny_models, tokenizer):
    from coati.dataset.preference import PairCollator
    from coati.models.loading import load_sequence_scorer
    from coati.models.registry import resolve_family
    from coati.models.value import ValueModel

    for family in ("gpt2", "llama"):
        torch.manual_seed(0)
        path = tiny_models(family)
        model = ValueModel(load_sequence_scorer(path, resolve_family(family, path), tokenizer)).eval()
        items = [(tokenizer(r["prompt"] + r["completion"])["input_ids"], tokenizer(r["prompt"])["input_ids"])
                 for r in ROWS[:3]]
        with torch.no_grad():
            plain, padded = (model(**PairCollator(tokenizer.pad_token_id, n)(items)) for n in (None, 64))
        assert PairCollator(tokenizer.pad_token_id, 64)(items)["input_ids"].shape[1] == 64
        assert plain.shape == padded.shape == (6,)
        assert torch.allclose(plain, padded, atol=1e-5, rtol=0), (family, plain, padded)


def test_sft_losses_and_weights_are_equal_with_and_without_padding(tiny_models, tmp_path):
    args = ["train_sft.py", "--strategy", "naive", "--model", "gptneox", "--pretrain", tiny_models("gptneox"),
            "--dataset", write_json(tmp_path / "d.json", ROWS), "--instruction_str", "prompt",
            "--output_str", "completion", "--batch_size", "4", "--accumulation_steps", "1", "--max_epochs", "2",
            "--lr", "1e-3"]
    runs = {}
    for name, extra in (("plain", []), ("padded", ["--pad_to_multiple_of", "64"])):
        res = run_script([*args, *extra, "--save_path", str(tmp_path / name)])
        assert res.returncode == 0, res.stderr[-3000:]
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        runs[name] = [json.loads(line) for line in lines if "split" not in line]
    assert len(runs["plain"]) == 4
    assert [r["loss"] for r in runs["padded"]] == pytest.approx([r["loss"] for r in runs["plain"]], rel=1e-5)
    wa = load_file(tmp_path / "plain" / "model.safetensors")
    wb = load_file(tmp_path / "padded" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5


def test_pad_to_multiple_of_must_be_positive(tiny_models):
    from coati.cli import base_parser, check_common
    from coati.errors import UserError

    args = base_parser("t").parse_args(["--pretrain", tiny_models("gpt2"), "--pad_to_multiple_of", "0"])
    with pytest.raises(UserError, match="--pad_to_multiple_of must be positive, got 0"):
        check_common(args)
