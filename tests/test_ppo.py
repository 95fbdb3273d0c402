"""Stage 3: experience shapes for every family, frozen-model offload, ptx alignment, and SFT -> RM -> PPO end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FAMILIES, run_script, write_json

from coati.dataset.prompt import LeftPadCollator, PromptDataset
from coati.dataset.sft import IGNORE_INDEX, SFTCollator, SFTDataset
from coati.experience.experience import collate
from coati.experience.maker import ExperienceMaker
from coati.models.value import ValueModel
from coati.strategies.base import Strategy

PROMPTS = [{"instruction": q} for q in ["오늘 뭐 먹을까요?", "주말에 어디 갈까요?", "공부는 어떻게 해요?",
                                        "운동을 시작하고 싶어요.", "커피 추천해 주세요."]]


def rollout_models(path: str, family: str, tokenizer):
    """(actor, initial model, critic, reward model) from one tiny checkpoint, all in eval mode."""
    from coati.models.loading import load_causal_lm, load_sequence_scorer
    from coati.models.registry import resolve_family

    fam = resolve_family(family, path)
    actor, initial = (load_causal_lm(path, fam, tokenizer).eval() for _ in range(2))
    critic, rm = (ValueModel(load_sequence_scorer(path, fam, tokenizer)).eval() for _ in range(2))
    return actor, initial, critic, rm


def prompt_batch(tokenizer):
    """The first four PROMPTS, encoded, and left-padded into one batch."""
    prompts = PromptDataset(PROMPTS, tokenizer, 64)
    return prompts, LeftPadCollator(tokenizer.pad_token_id)([prompts[i] for i in range(4)])


@pytest.mark.parametrize("family", FAMILIES)
def test_experience_shapes_for_every_family(tiny_models, tokenizer, family):
    actor, initial, critic, rm = rollout_models(tiny_models(family), family, tokenizer)
    maker = ExperienceMaker(strategy=Strategy(), actor=actor, critic=critic, reward_model=rm,
                            initial_model=initial, tokenizer=tokenizer, gen_kwargs=dict(max_new_tokens=6),
                            gamma=1.0, lam=0.95)
    prompts, batch = prompt_batch(tokenizer)
    torch.manual_seed(0)
    samples = maker.make(batch, kl_coef=0.1)
    assert len(samples) == 4
    for s, p in zip(samples, (prompts[i] for i in range(4))):
        a = len(s.response)
        assert 1 <= a <= 6 and s.prompt.tolist() == p
        for name in ("log_probs", "ref_log_probs", "values", "rewards", "advantages", "returns"):
            assert getattr(s, name).shape == (a,), name
        # the initial model has the actor's weights, so the KL penalty is zero and only the score remains
        assert s.kl == pytest.approx(0.0, abs=1e-4)
        assert float(s.rewards.sum()) == pytest.approx(s.score, abs=1e-4)
        if tokenizer.eos_token_id in s.response.tolist():
            assert s.response.tolist().index(tokenizer.eos_token_id) == a - 1
    exp = collate(samples, tokenizer.pad_token_id)
    b, a_max = exp.action_mask.shape
    assert exp.sequences.shape == (4, exp.prompt_len + a_max) == exp.attention_mask.shape
    assert exp.log_probs.shape == exp.values.shape == exp.advantages.shape == (4, a_max)
    assert exp.action_mask.sum(1).tolist() == [len(s.response) for s in samples]
    # the rollout ran in inference mode; its minibatches are plain tensors that a loss with gradients can save
    assert samples[0].log_probs.is_inference() and not any(t.is_inference() for t in vars(exp).values()
                                                            if torch.is_tensor(t))
    from coati.losses import policy_loss

    new_log_probs = exp.log_probs.clone().requires_grad_(True)
    policy_loss(new_log_probs, exp.log_probs, exp.advantages, exp.action_mask)[0].backward()
    assert new_log_probs.grad is not None
    # recomputing the actor's log-probs on the re-padded batch gives the sampled ones (same positions)
    from coati.models.forward import causal_lm_logits
    from coati.ops import log_probs_from_logits

    # (the maker reads them off the decoding steps, without a forward pass of its own)
    with torch.no_grad():
        full = causal_lm_logits(actor, exp.sequences, exp.attention_mask)
        lp = log_probs_from_logits(full[:, exp.prompt_len - 1:-1], exp.sequences[:, exp.prompt_len:])
        # asking for the response's logits only (the LM head skips the prompt) changes none of them
        tail = causal_lm_logits(actor, exp.sequences, exp.attention_mask, exp.prompt_len - 1)
    torch.testing.assert_close(lp * exp.action_mask, exp.log_probs, atol=1e-4, rtol=1e-4)
    assert tail.shape == (4, a_max + 1, full.shape[-1])
    torch.testing.assert_close(tail, full[:, exp.prompt_len - 1:], atol=1e-5, rtol=1e-5)


def test_offloaded_frozen_models_visit_the_device_only_to_score(tiny_models, tokenizer):
    """--offload_frozen: the initial and reward models go to the strategy's device for their forward and back to
    the CPU after it, and the samples are those of a run that keeps them resident."""
    actor, initial, critic, rm = rollout_models(tiny_models("gpt2"), "gpt2", tokenizer)
    strategy = Strategy()
    strategy.device = torch.device("cpu", 0)  # a device name distinct from "cpu", so the moves can be told apart
    events = []
    for name, model in (("initial", initial), ("reward", rm)):
        model.register_forward_pre_hook(lambda *_, name=name: events.append((name, "forward")))
        move = model.to
        model.to = lambda device, name=name, move=move: events.append((name, str(device))) or move(device)
    _, batch = prompt_batch(tokenizer)
    runs = {}
    for offload in (False, True):
        events.clear()
        maker = ExperienceMaker(strategy=strategy, actor=actor, critic=critic, reward_model=rm,
                                initial_model=initial, tokenizer=tokenizer, gen_kwargs=dict(max_new_tokens=6),
                                offload_frozen=offload)
        torch.manual_seed(0)
        runs[offload] = maker.make(batch, kl_coef=0.1)
    assert events == [("initial", "cpu:0"), ("initial", "forward"), ("initial", "cpu"),
                      ("reward", "cpu:0"), ("reward", "forward"), ("reward", "cpu")]
    for resident, offloaded in zip(runs[False], runs[True]):
        assert torch.equal(resident.response, offloaded.response) and resident.score == offloaded.score
        assert torch.equal(resident.ref_log_probs, offloaded.ref_log_probs)


@pytest.mark.parametrize("cls", ["sft", "rm", "ppo", "maker"])
def test_trainers_and_the_experience_maker_take_keyword_arguments_only(cls):
    """A constructor of a dozen or more settings takes them by name: positional ones are refused."""
    from coati.trainer.ppo import PPOTrainer
    from coati.trainer.rm import RewardModelTrainer
    from coati.trainer.sft import SFTTrainer

    constructor = {"sft": SFTTrainer, "rm": RewardModelTrainer, "ppo": PPOTrainer,
                   "maker": ExperienceMaker}[cls]
    with pytest.raises(TypeError, match=r"takes 1 positional argument but 2 were given"):
        constructor(Strategy())


def test_checkpointer_takes_its_settings_by_name(tmp_path):
    import inspect

    from coati.checkpoint import Checkpointer

    # (refused before the constructor runs, so no signal handler is installed in the test process)
    with pytest.raises(TypeError, match=r"takes 3 positional arguments but 4 were given"):
        Checkpointer(Strategy(), str(tmp_path), 5)
    kinds = {n: p.kind for n, p in inspect.signature(Checkpointer).parameters.items()}
    positional = [n for n, k in kinds.items() if k is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == ["strategy", "save_path"]


def test_update_minibatches_group_rollouts_of_similar_length():
    """Each pass over the buffer uses every sample once, in minibatches of train_batch_size (the short one
    last). Grouped, they hold less padding than the plain shuffle (which stays as it was), whether the prompts
    or the responses are the lengths that vary."""
    import types

    from coati.trainer.ppo import PPOTrainer

    spread = [10 + (7 * i) % 41 for i in range(22)]  # 22 distinct lengths, 10..50, in no order
    trainer = types.SimpleNamespace(train_batch_size=4)  # all that minibatches() reads

    def passes(sizes, seed=3, count=2):
        gen = torch.Generator().manual_seed(seed)
        return [PPOTrainer.minibatches(trainer, 22, gen, sizes) for _ in range(count)]

    def padding(batches, sizes):  # positions collate adds: up to the longest prompt plus the longest response
        return sum(len(b) * (max(sizes[i][0] for i in b) + max(sizes[i][1] for i in b)) - sum(sizes[i][0] +
                   sizes[i][1] for i in b) for b in batches)

    shuffled = passes(None)
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(22, generator=gen).tolist()
    assert shuffled[0] == [order[i:i + 4] for i in range(0, 22, 4)]  # --no-group_by_length: as before
    for varied in (0, 1):  # prompts of varied length and responses alike, then the other way round
        sizes = [(n, 16) if varied == 0 else (16, n) for n in spread]
        grouped = passes(sizes)
        for batches in grouped + shuffled:
            assert sorted(i for b in batches for i in b) == list(range(22))
            assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 2]
        assert padding(grouped[0], sizes) < 0.5 * padding(shuffled[0], sizes)
        for batches in grouped:  # sorted within the (single) mega-batch: no minibatch's lengths overlap another's
            spans = sorted((min(spread[i] for i in b), max(spread[i] for i in b)) for b in batches)
            assert all(hi < lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
        # A buffer of one mega-batch meets the same groups in every pass, in a new order.
        assert grouped[0] != grouped[1] and sorted(grouped[0]) == sorted(grouped[1])


def test_ptx_batches_are_aligned(tokenizer):
    rows = [{"instruction": f"질문 {i}", "output": "대답 " * (i + 1)} for i in range(5)]
    ds = SFTDataset(rows, tokenizer, 128)
    batch = SFTCollator(tokenizer.pad_token_id)([ds[i] for i in (3, 0, 4)])
    for row, i in enumerate((3, 0, 4)):
        n = len(ds[i]["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == ds[i]["input_ids"]
        assert int(batch["attention_mask"][row].sum()) == n
        labels = batch["labels"][row]
        real = labels != IGNORE_INDEX
        # every target is the row's own token at that position
        assert torch.equal(labels[real], batch["input_ids"][row][real])
        assert int(real.sum()) == n - ds[i]["labels"].count(IGNORE_INDEX)


GOOD = "네, 좋은 질문이에요. 친절하게 도와 드릴게요."
BAD = "몰라요. 귀찮아요."


def test_sft_rm_ppo_end_to_end_ddp_with_ptx(tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    topics = ["요리", "여행", "공부", "운동", "음악", "독서", "청소", "산책", "커피", "사진", "수영", "영화"]
    sft_rows = [{"prompt": f"{t}에 대해 알려 주세요.", "completion": GOOD if i % 2 else BAD}
                for i, t in enumerate(topics * 2)]
    rm_rows = [{"prompt": f"{t} 좋아하세요?", "chosen": GOOD, "rejected": BAD} for t in topics]
    ppo_rows = [{"prompt": f"{t}은 어때요?"} for t in topics]
    held_rows = [{"prompt": f"{t} 이야기 해 주세요."} for t in topics[:8]]
    sft_data, rm_data = write_json(tmp_path / "sft.json", sft_rows), write_json(tmp_path / "rm.json", rm_rows)
    ppo_data, held = write_json(tmp_path / "ppo.json", ppo_rows), write_json(tmp_path / "held.json", held_rows)
    base = tiny_models("gptneox")
    res = run_script(["train_sft.py", "--strategy", "naive", "--model", "gptneox", "--pretrain", base, "--dataset",
                      sft_data, "--instruction_str", "prompt", "--output_str", "completion", "--save_path",
                      str(tmp_path / "sft"), "--batch_size", "8", "--accumulation_steps", "1", "--max_epochs", "40",
                      "--lr", "1e-2", "--warmup_ratio", "0"])
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gptneox", "--pretrain",
                      str(tmp_path / "sft"), "--dataset", rm_data, "--save_path", str(tmp_path / "rm"),
                      "--batch_size", "4", "--max_epochs", "6", "--lr", "2e-3", "--eval_split", "0"])
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "ppo"
    res = run_script(["train_prompts.py", "--strategy", "ddp", "--model", "gptneox", "--pretrain",
                      str(tmp_path / "sft"), "--rm_path", str(tmp_path / "rm"), "--prompt_dataset", ppo_data,
                      "--ppo_instruction_str", "prompt", "--pretrain_dataset", sft_data, "--instruction_str", "prompt",
                      "--output_str", "completion", "--eval_dataset", held, "--save_path", str(out),
                      "--num_episodes", "8", "--num_collect_steps", "1", "--num_update_steps", "2",
                      "--experience_batch_size", "6", "--train_batch_size", "6", "--ptx_batch_size", "2",
                      "--ptx_coef", "0.05", "--max_new_tokens", "16", "--actor_lr", "2e-3", "--critic_lr", "2e-3",
                      "--kl_coef", "0.05"], nproc=2)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    episodes = [r for r in records if "episode" in r and r.get("split") != "eval"]
    assert len(episodes) == 8
    for key in ("reward", "kl", "policy_loss", "value_loss", "ptx_loss", "clipfrac", "entropy", "response_len"):
        assert key in episodes[0], key
    for r in episodes:  # 6 rollouts on each of the 2 ranks per episode, over its rollout and update time
        assert r["rollout_s"] > 0 and r["update_s"] > 0
        assert r["samples_per_s"] * (r["rollout_s"] + r["update_s"]) == pytest.approx(12)
        assert r["tokens_per_s"] / r["samples_per_s"] > r["response_len"]  # prompt tokens count too
    first = sum(r["reward"] for r in episodes[:2]) / 2
    last = sum(r["reward"] for r in episodes[-2:]) / 2
    assert last > first, [r["reward"] for r in episodes]
    before, after = [r for r in records if r.get("split") == "eval"]  # before the first episode, after the last
    assert (before["episode"], after["episode"]) == (0, 8)
    assert after["eval_reward_sampled"] > before["eval_reward_sampled"], (before, after)
    assert after["eval_reward"] > before["eval_reward"], (before, after)  # greedy answers too
    assert max(r["kl"] for r in episodes) < 10.0
    assert all(r["ptx_loss"] > 0 for r in episodes)
    AutoModelForCausalLM.from_pretrained(out)
    assert (out / "ppo_reward_kl.png").exists()
