"""Long runs lose nothing: SIGKILL + resume ends on the same weights, SIGTERM checkpoints, NaN stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_script, script_env, write_json
from safetensors.torch import load_file

KO = [{"prompt": f"{w}에 대해 알려 주세요.", "completion": f"{w}은 정말 좋습니다. 감사합니다."}
      for w in ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글", "산책", "요리", "영화", "독서"]]


class _Records:
    """Stands in for MetricsLogger and Checkpointer: keeps what the loop hands them."""

    def __init__(self):
        self.logged, self.states = [], []

    def log(self, record):
        self.logged.append(record)

    def after_step(self, step, state):
        self.states.append(dict(state))


def _run_loop(state=None):
    """Five one-row batches, 2 per step, 2 epochs; returns (rows of each step, records)."""
    from coati.strategies.base import Strategy
    from coati.trainer.loop import EpochLoop

    strategy = Strategy()
    loader = strategy.dataloader([{"row": i} for i in range(5)], 1, lambda items: items[0], shuffle=False)
    records, steps = _Records(), []
    loop = EpochLoop(strategy=strategy, loader=loader, name="test", accumulation_steps=2, max_epochs=2,
                     logger=records, checkpointer=records, count=lambda batch: (1, 1))
    if state is not None:
        loop.load_state_dict(state)

    def step(micro_batches):
        steps.append([b["row"] for b in micro_batches])
        return {"loss": float(len(steps))}

    loop.run(step, lambda epoch: {"loss": -1.0 - epoch})
    return steps, records, loop


def test_epoch_loop_steps_evaluates_checkpoints_and_resumes_mid_epoch():
    """The loop a new stage reuses: groups of accumulation_steps micro-batches (a short one ending an epoch),
    an evaluation at the end of each epoch, the position after every step, and a resume from any of those
    positions that meets exactly the remaining batches."""
    steps, records, loop = _run_loop()
    assert steps == [[0, 1], [2, 3], [4]] * 2
    assert loop.steps_per_epoch == 3
    assert loop.state_dict() == {"global_step": 6, "epoch": 2, "batches_done": 0}
    assert [(s["global_step"], s["epoch"], s["batches_done"]) for s in records.states] == [
        (1, 0, 2), (2, 0, 4), (3, 1, 0), (4, 1, 2), (5, 1, 4), (6, 2, 0)]
    train = [r for r in records.logged if "split" not in r]
    assert [(r["step"], r["loss"], r["epoch"]) for r in train] == [(1, 1.0, 0), (2, 2.0, 0), (3, 3.0, 0),
                                                                    (4, 4.0, 1), (5, 5.0, 1), (6, 6.0, 1)]
    assert all(r["samples_per_s"] > 0 for r in train)
    evals = [(r["step"], r["loss"], r["epoch"]) for r in records.logged if r.get("split") == "eval"]
    assert evals == [(3, -1.0, 0), (6, -2.0, 1)]
    resumed, records, _ = _run_loop(records.states[3])  # after step 4: epoch 1, two batches consumed
    assert resumed == [[2, 3], [4]]
    assert [r["step"] for r in records.logged] == [5, 6, 6]


def _popen(args):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=script_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc, folder, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before a checkpoint appeared: {proc.stderr.read()[-2000:]}")
        if os.path.isdir(folder) and any(n.startswith("checkpoint-") and not n.endswith(".tmp")
                                         for n in os.listdir(folder)):
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def _max_diff(a, b) -> float:
    wa, wb = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _interrupted_equals_uninterrupted(args, tmp_path, sig=signal.SIGKILL, expect_rc=None):
    full = run_script([*args, "--save_path", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    proc = _popen([*args, "--save_path", str(tmp_path / "cut")])
    _wait_for_checkpoint(proc, tmp_path / "cut")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if expect_rc is not None:
        assert proc.returncode == expect_rc, err[-3000:]
    else:
        assert proc.returncode != 0, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = run_script([*args, "--save_path", str(tmp_path / "cut"), "--resume_from", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _max_diff(tmp_path / "full", tmp_path / "cut") <= 1e-5
    return err


def test_sft_sigkill_and_resume_matches_uninterrupted(tiny_models, tmp_path):
    data = write_json(tmp_path / "d.json", KO)
    args = ["train_sft.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
            "--dataset", data, "--instruction_str", "prompt", "--output_str", "completion", "--batch_size", "2",
            "--accumulation_steps", "2", "--max_epochs", "12", "--lr", "1e-3", "--save_interval", "3",
            "--max_checkpoints", "2"]
    _interrupted_equals_uninterrupted(args, tmp_path)
    kept = sorted(n for n in os.listdir(tmp_path / "full") if n.startswith("checkpoint-"))
    assert len(kept) == 2, kept  # --max_checkpoints keeps the newest two
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if "split" not in line]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


def test_sft_sigterm_writes_a_loadable_checkpoint(tiny_models, tmp_path):
    data = write_json(tmp_path / "d.json", KO)
    args = ["train_sft.py", "--strategy", "naive", "--model", "llama", "--pretrain", tiny_models("llama"),
            "--dataset", data, "--instruction_str", "prompt", "--output_str", "completion", "--batch_size", "2",
            "--accumulation_steps", "1", "--max_epochs", "12", "--lr", "1e-3", "--save_interval", "5"]
    err = _interrupted_equals_uninterrupted(args, tmp_path, signal.SIGTERM, expect_rc=143)
    assert "stopped by SIGTERM" in err and "--resume_from" in err and "Traceback" not in err


def test_rm_sigkill_and_resume_matches_uninterrupted(tiny_models, tmp_path):
    rows = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": "몰라요."} for r in KO] * 2
    data = write_json(tmp_path / "rm.json", rows)
    args = ["train_reward_model.py", "--strategy", "naive", "--model", "opt", "--pretrain", tiny_models("opt"),
            "--dataset", data, "--batch_size", "2", "--max_epochs", "6", "--lr", "1e-3", "--save_interval", "4"]
    _interrupted_equals_uninterrupted(args, tmp_path)


def test_ppo_sigkill_and_resume_matches_uninterrupted(tiny_models, tmp_path):
    base = tiny_models("gptneox")
    rm = tmp_path / "rm"
    res = run_script(["train_reward_model.py", "--strategy", "naive", "--model", "gptneox", "--pretrain", base,
                      "--dataset", write_json(tmp_path / "rm.json", [{"prompt": "q", "chosen": "좋아요", "rejected":
                                                                      "싫어요"}] * 4),
                      "--save_path", str(rm), "--max_epochs", "1", "--eval_split", "0"])
    assert res.returncode == 0, res.stderr[-3000:]
    prompts = write_json(tmp_path / "p.json", [{"instruction": r["prompt"]} for r in KO])
    args = ["train_prompts.py", "--strategy", "naive", "--model", "gptneox", "--pretrain", base, "--rm_path", str(rm),
            "--prompt_dataset", prompts, "--pretrain_dataset", write_json(tmp_path / "ptx.json", KO),
            "--instruction_str", "prompt", "--output_str", "completion", "--num_episodes", "8",
            "--num_collect_steps", "1", "--num_update_steps", "2", "--experience_batch_size", "4",
            "--train_batch_size", "2", "--ptx_batch_size", "2", "--max_new_tokens", "8", "--actor_lr", "1e-3",
            "--critic_lr", "1e-3", "--save_interval", "2", "--target_kl", "0.5"]
    _interrupted_equals_uninterrupted(args, tmp_path)


def test_resume_auto_takes_the_newest_complete_checkpoint_and_starts_fresh_without_one(tmp_path):
    from coati.checkpoint import resolve_resume
    from coati.errors import UserError

    assert resolve_resume("auto", str(tmp_path / "none")) is None
    assert resolve_resume("auto", str(tmp_path)) is None
    with pytest.raises(UserError, match="--resume_from latest: no checkpoint"):
        resolve_resume("latest", str(tmp_path))
    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-12.tmp").mkdir()  # a save cut short by a kill: never renamed
    (tmp_path / "checkpoint-12.tmp" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-16").mkdir()  # no trainer_state.json: not a checkpoint (pruning cut short)
    assert resolve_resume("auto", str(tmp_path)) == str(tmp_path / "checkpoint-8")
    assert resolve_resume("latest", str(tmp_path)) == str(tmp_path / "checkpoint-8")


def _children(pid: int) -> list[int]:
    """The processes `pid` started (torchrun's workers), from /proc."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def test_torchrun_restarts_a_killed_rank_and_resume_auto_continues_from_the_newest_checkpoint(tiny_models, tmp_path):
    """torchrun --max_restarts 1 restarts both ranks after one is SIGKILLed past a checkpoint; with --resume_from
    auto the same command line then continues from the newest complete checkpoint (a save the kill cut short
    stays a .tmp folder) and ends on the weights of an uninterrupted run."""
    data = write_json(tmp_path / "d.json", KO)
    args = ["train_sft.py", "--strategy", "ddp", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
            "--dataset", data, "--instruction_str", "prompt", "--output_str", "completion", "--batch_size", "1",
            "--accumulation_steps", "1", "--max_epochs", "8", "--lr", "1e-3", "--save_interval", "4",
            "--resume_from", "auto"]
    full = run_script([*args, "--save_path", str(tmp_path / "full")], nproc=2)
    assert full.returncode == 0, full.stderr[-3000:]
    assert "resuming from" not in full.stderr  # auto with no checkpoint yet: a fresh start
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max_restarts=1",
           *args, "--save_path", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_checkpoint(proc, tmp_path / "cut")
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "(exitcode: -9)" in err, err[-3000:]  # torchrun saw the SIGKILL and restarted the group
    resumed = [line for line in err.splitlines() if line.startswith("[coati] resuming from")]
    assert len(resumed) == 1 and "checkpoint-" in resumed[0], err[-3000:]
    assert _max_diff(tmp_path / "full", tmp_path / "cut") <= 1e-5
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if "split" not in line]
    assert steps == list(range(1, 49))  # 8 epochs of 6 steps, none lost or logged twice


def test_grpo_sigkill_and_resume_matches_uninterrupted(tiny_models, tmp_path):
    """Critic-free, reward functions, a k3 KL loss, groups filtered and held-out prompts scored every two
    episodes (their sampling draws from the RNG the checkpoint restores): the resumed run ends on the same
    weights, bit for bit, and logs the same figures."""
    rows = [{"prompt": r["prompt"], "answer": r["completion"].split("은")[0]} for r in KO]
    prompts = write_json(tmp_path / "p.json", rows)
    (tmp_path / "fns.py").write_text("def chars(prompts, responses, **_):\n"
                                     "    return [len(r) % 3 for r in responses]\n")
    args = ["train_prompts.py", "--algo", "grpo", "--strategy", "naive", "--model", "gpt2", "--pretrain",
            tiny_models("gpt2"), "--prompt_dataset", prompts, "--ppo_instruction_str", "prompt", "--reward_fn",
            "exact_answer", "--reward_fn", f"{tmp_path / 'fns.py'}:chars", "--reward_weights", "2", "1",
            "--num_generations", "3",
            "--filter_groups", "--kl_loss_coef", "0.05", "--loss_agg", "sequence", "--eps_clip_high", "0.3",
            "--eval_dataset", write_json(tmp_path / "e.json", rows[:4]), "--eval_interval", "2",
            "--num_episodes", "8", "--num_collect_steps", "1", "--num_update_steps", "2",
            "--experience_batch_size", "2", "--train_batch_size", "3", "--max_new_tokens", "8", "--actor_lr", "1e-3",
            "--save_interval", "2"]
    _interrupted_equals_uninterrupted(args, tmp_path)
    assert _max_diff(tmp_path / "full", tmp_path / "cut") == 0.0
    full, cut = ([json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                 for name in ("full", "cut"))
    strip = ("rollout_s", "update_s", "samples_per_s", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in cut] == \
        [{k: v for k, v in r.items() if k not in strip} for r in full]
    assert [r["episode"] for r in full if r.get("split") == "eval"] == [0, 2, 4, 6, 8]
    train = [r for r in full if r.get("split") != "eval"]
    # some episodes had groups to learn from, and their updates moved the policy
    assert any(r["zero_std_groups"] < 1 for r in train) and any(r["clipfrac"] > 0 for r in train)


def test_forced_nan_stops_naming_the_step_and_keeps_the_checkpoint(tiny_models, tmp_path):
    data = write_json(tmp_path / "d.json", KO)
    args = ["train_sft.py", "--strategy", "naive", "--model", "gpt2", "--pretrain", tiny_models("gpt2"),
            "--dataset", data, "--instruction_str", "prompt", "--output_str", "completion", "--batch_size", "4",
            "--accumulation_steps", "1", "--max_epochs", "2", "--warmup_ratio", "0", "--save_interval", "1",
            "--save_path", str(tmp_path / "out")]
    res = run_script([*args, "--lr", "1e30"])  # one AdamW step of this size makes the next forward overflow
    assert res.returncode == 2
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")][0]
    assert "at step 2" in line and ("nan" in line or "inf" in line) and "Traceback" not in res.stderr
    ckpt = tmp_path / "out" / "checkpoint-1"
    assert load_file(ckpt / "model.safetensors")  # the last good checkpoint is intact and loads
    assert (ckpt / "trainer_state.json").exists() and not (tmp_path / "out" / "checkpoint-2").exists()
    skipped = run_script([*args, "--lr", "1e30", "--skip_nonfinite", "--save_path", str(tmp_path / "skip")])
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "step skipped (--skip_nonfinite)" in skipped.stderr


def _dpo_args(tiny_models, tmp_path, family: str) -> list[str]:
    rows = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": "몰라요."} for r in KO]
    return ["train_dpo.py", "--strategy", "naive", "--model", family, "--pretrain", tiny_models(family),
            "--dataset", write_json(tmp_path / "dpo.json", rows), "--eval_split", "0.25", "--batch_size", "2",
            "--max_epochs", "6", "--lr", "1e-3", "--eval_interval", "4"]


def test_dpo_sigkill_and_resume_matches_uninterrupted(tiny_models, tmp_path):
    # the precomputed reference log-probs come back from the checkpoint, not from a second pass
    _interrupted_equals_uninterrupted([*_dpo_args(tiny_models, tmp_path, "gpt2"), "--precompute_ref",
                                       "--save_interval", "4"], tmp_path)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
             if "split" not in line]
    assert steps == sorted(set(steps)) and len(steps) == 30  # 9 pairs: 5 batches of up to 2, 6 epochs


def test_dpo_sigterm_with_lora_checkpoints_and_resumes(tiny_models, tmp_path):
    err = _interrupted_equals_uninterrupted([*_dpo_args(tiny_models, tmp_path, "llama"), "--lora_rank", "4",
                                             "--save_interval", "5"], tmp_path, signal.SIGTERM, expect_rc=143)
    assert "stopped by SIGTERM" in err and "Traceback" not in err
