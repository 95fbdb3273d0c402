"""One benchmark measurement per process: coati's stage or TRL's equivalent on the same work.

Called by benchmarks/run.py, one subprocess per measurement, so that the peak-memory figure belongs to that
run alone:

    python benchmarks/workloads.py setup --work DIR [--sft_rows 80 ...]      # models and data, once
    python benchmarks/workloads.py run --work DIR --side ours --stage sft --model gpt2
    python benchmarks/workloads.py run --work DIR --side trl  --stage ppo --model gptneox
    python benchmarks/workloads.py run --work DIR --side ours --stage dpo_pre --model gpt2   # --precompute_ref
    python benchmarks/workloads.py run --work DIR --side trl  --stage grpo --model gpt2

`run` prints one line `RESULT {json}` on stdout: wall time of the training loop, samples, tokens, steps, the
process's peak RSS and, for PPO, the loop's time by phase (`PPOPhases`). With --count_flops, also the span's
matmul and attention FLOPs (`flop_counter`); that run's times are then not measurements. What "the training
loop" is, per side:

  ours  wall time of the trainer's fit() (SFTTrainer / RewardModelTrainer / PPOTrainer / DPOTrainer), wrapped
        here; model loading, tokenisation, DPO's reference precompute pass and the final save happen outside it
        and are not counted.
  trl   time between the Trainer callbacks on_train_begin and on_train_end (the same span: the optimisation loop,
        after model loading, dataset tokenisation and accelerate's prepare).

Both sides see the same models (random init from one config, saved once), the same rows with our template text
already applied, the same batch size / max length / step count, fp32, one process, and torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # `coati` and the stage scripts, whichever interpreter runs this

TOKENIZER = os.path.join(ROOT, "coati", "assets", "tokenizer")
SFT_DATA = os.path.join(ROOT, "data", "kochatgpt_sft_ko.jsonl")
RM_DATA = os.path.join(ROOT, "data", "kochatgpt_rm_ko.jsonl")
PPO_DATA = os.path.join(ROOT, "data", "kochatgpt_ppo_ko.jsonl")
LANGUAGE = "ko"
MODELS = ("gpt2", "gptneox")


# -- setup: models and data, written once and read by every run ----------------------------------------------
def model_config(family: str, tok):
    """6 layers x 256 wide, dropout off (so both sides do the same arithmetic whatever their dropout policy)."""
    from transformers import AutoConfig

    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=256, n_layer=6, n_head=4, n_positions=512, resid_pdrop=0.0,
                                    embd_pdrop=0.0, attn_pdrop=0.0, **ids)
    if family == "gptneox":
        return AutoConfig.for_model("gpt_neox", hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
                                    intermediate_size=1024, max_position_embeddings=512, hidden_dropout=0.0,
                                    attention_dropout=0.0, **ids)
    raise ValueError(family)


def setup(work: str, sft_rows: int, rm_pairs: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from coati.checkpoint import save_tokenizer
    from coati.dataset.io import load_rows
    from coati.dataset.preference import rows_to_pairs
    from coati.dataset.templates import build_prompt

    os.makedirs(work, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    for family in MODELS:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(model_config(family, tok))
        out = os.path.join(work, f"model-{family}")
        model.save_pretrained(out)
        save_tokenizer(tok, out)
        # PPO's reward model (and the critic's start): the same network with a seeded one-output score head,
        # saved as a reward-model folder, which is what coati's --rm_path takes.
        torch.manual_seed(0)
        scorer = AutoModelForSequenceClassification.from_pretrained(out, num_labels=1)
        scorer.config.pad_token_id = tok.pad_token_id
        scorer.save_pretrained(f"{out}-rm")
        save_tokenizer(tok, f"{out}-rm")

    def dump(name, rows):
        with open(os.path.join(work, name), "w", encoding="utf-8") as f:
            json.dump(rows, f, ensure_ascii=False)

    # SFT: coati reads prompt/completion and applies the template; TRL gets the templated prompt text.
    sft = load_rows(SFT_DATA, sft_rows)
    dump("sft_ours.json", [{"prompt": r["prompt"], "completion": r["completion"]} for r in sft])
    dump("sft_trl.json", [{"prompt": build_prompt(r["prompt"], "", LANGUAGE), "completion": r["completion"]}
                          for r in sft])
    # RM: the KoChatGPT rankings expanded into pairs once, so both sides train on the same rm_pairs pairs.
    pairs = rows_to_pairs(load_rows(RM_DATA), "ranking")[:rm_pairs]
    dump("rm_ours.json", [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    dump("rm_trl.json", [{"prompt": build_prompt(p.prompt, "", LANGUAGE), "chosen": p.chosen,
                          "rejected": p.rejected} for p in pairs])
    # PPO: prompt rows; TRL gets the token ids of the templated prompt, tokenised as coati tokenises it.
    prompts = load_rows(PPO_DATA)
    dump("ppo_ours.json", [{"prompt": r["prompt"]} for r in prompts])
    dump("ppo_trl.json", [{"input_ids": tok(build_prompt(r["prompt"], "", LANGUAGE))["input_ids"]}
                          for r in prompts])
    setup_grpo(work, prompts, dump)


def setup_grpo(work: str, prompts: list[dict], dump) -> None:
    """GRPO: the PPO prompts; TRL gets the templated text (it tokenises prompts itself, with the same tokenizer)."""
    from coati.dataset.templates import build_prompt

    dump("grpo_ours.json", [{"prompt": r["prompt"]} for r in prompts])
    dump("grpo_trl.json", [{"prompt": build_prompt(r["prompt"], "", LANGUAGE)} for r in prompts])


# -- measurement helpers --------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Clock:
    """Wall and CPU time (all threads of this process) of one span, plus the RSS when it started; with --profile, a
    cProfile of the span alone; with --count_flops, the FLOPs of the span's matmuls and attention."""

    profiler = None  # set by main() for --profile
    counter = None  # set by main() for --count_flops: a FlopCounterMode (flop_counter())

    def __init__(self):
        self.start = self.cpu_start = self.seconds = self.cpu_seconds = self.rss_before = self.flops = None

    def begin(self):
        self.rss_before = current_rss_mb()
        if Clock.profiler is not None:
            Clock.profiler.enable()
        if Clock.counter is not None:
            Clock.counter.__enter__()
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def end(self):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        if Clock.profiler is not None:
            Clock.profiler.disable()
        if Clock.counter is not None:
            self.flops = counted_flops()
            Clock.counter.__exit__(None, None, None)

    def figures(self, phases: PPOPhases | None = None) -> dict:
        """The span's figures for the RESULT line; with `phases`, the PPO loop's split of them."""
        out = dict(seconds=self.seconds, cpu_seconds=self.cpu_seconds, rss_before=self.rss_before)
        if phases is not None:
            out["phases"] = phases.result(self.seconds)
        if self.flops is not None:  # every rank does the same work: the run's FLOPs are rank 0's times the ranks
            out["flops"] = self.flops * world_size()
            if phases is not None:
                out["phase_flops"] = {k: v * world_size() for k, v in phases.flop_split(self.flops).items()}
        return out


def flop_counter():
    """torch's FlopCounterMode, also told the two ops its table lacks that these runs call on the CPU: oneDNN's
    linear (coati's rollout, coati/models/fast) and sdpa's CPU flash kernel (both sides' attention). Matmuls
    and attention are what it counts; elementwise ops, norms and the optimizer are not FLOPs in this sense.
    Attention counts the full T x T square, causal or not, as torch's own sdpa formula does."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def linear(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(out_shape) * x_shape[-1]  # (..., in) @ (in, out): 2 FLOPs per multiply-add

    def attention(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
        b, h, s_q, d = q_shape
        return 2 * 2 * b * h * s_q * k_shape[-2] * d  # Q K^T and P V, (s_q x d) @ (d x s_k) each

    def attention_backward(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * attention(q_shape, k_shape, v_shape)  # dV, dP, dQ, dK: four products of the forward's size

    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.mkldnn._linear_pointwise: linear,
        aten._scaled_dot_product_flash_attention_for_cpu: attention,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward,
    })


def counted_flops() -> float:
    """FLOPs counted so far in this process's --count_flops span (0 outside one)."""
    return float(Clock.counter.get_total_flops()) if Clock.counter is not None else 0.0


def time_method(cls, name: str, clock: Clock, before=None):
    """Wrap cls.name so that each call is timed by `clock`; `before(self)` runs first (untimed)."""
    original = getattr(cls, name)

    def wrapped(self, *a, **k):
        if before is not None:
            before(self)
        clock.begin()
        try:
            return original(self, *a, **k)
        finally:
            clock.end()

    setattr(cls, name, wrapped)


def around(fn, before=None, after=None):
    """`fn` with before() called first and after() called once it has returned or raised."""
    def wrapped(*args, **kwargs):
        if before is not None:
            before()
        try:
            return fn(*args, **kwargs)
        finally:
            if after is not None:
                after()
    return wrapped


class PPOPhases:
    """Where a PPO loop's time goes, split the same way on both sides (wall seconds, summed over episodes):

    generation  decoding the responses: coati's `sample`, TRL's `batch_generation`
    scoring     the rest of the rollout: from the end of decoding to the first training forward (reference,
                critic and reward forwards, KL rewards, advantages)
    training    from the first forward with gradients to the last optimizer step of the episode
    other       the rest of the loop's span (prompt loading, logging and metrics, TRL's gc.collect)
    An episode starts at its first decoding call; the next decoding call (or the end) closes it.

    Every boundary reads two meters, the clock and `counted_flops()`, so under --count_flops the same split is
    made of the loop's FLOPs (`flop_split`).
    """

    def __init__(self):
        self.generation = self.rollout = self.training = (0.0, 0.0)
        self._start = self._train_start = self._last_step = None

    @staticmethod
    def read() -> tuple[float, float]:
        return time.perf_counter(), counted_flops()

    @staticmethod
    def _add(total, start, end):
        return tuple(t + e - s for t, s, e in zip(total, start, end))

    def generating(self, start: tuple, end: tuple) -> None:
        if self._train_start is not None:
            self.close()
        if self._start is None:
            self._start = start
        self.generation = self._add(self.generation, start, end)

    def training_begins(self) -> None:
        if self._start is not None and self._train_start is None:
            self._train_start = self.read()
            self.rollout = self._add(self.rollout, self._start, self._train_start)

    def stepped(self) -> None:
        self._last_step = self.read()

    def close(self) -> None:
        if self._train_start is not None and self._last_step is not None:
            self.training = self._add(self.training, self._train_start, self._last_step)
        self._start = self._train_start = self._last_step = None

    def _split(self, meter: int, total: float) -> dict:
        self.close()
        gen, roll, train = self.generation[meter], self.rollout[meter], self.training[meter]
        return {"generation": gen, "scoring": roll - gen, "training": train, "other": total - roll - train}

    def result(self, total_seconds: float) -> dict:
        return self._split(0, total_seconds)

    def flop_split(self, total_flops: float) -> dict:
        return self._split(1, total_flops)

    def timed_generation(self, fn):
        def wrapped(*a, **k):
            start = self.read()
            try:
                return fn(*a, **k)
            finally:
                self.generating(start, self.read())
        return wrapped


def world_size() -> int:
    """Processes in this measurement (torchrun sets WORLD_SIZE; 1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def common_ours(a) -> list[str]:
    return ["--strategy", "ddp" if world_size() > 1 else "naive", "--model", a.model, "--pretrain", os.path.join(a.work, f"model-{a.model}"),
            "--save_path", os.path.join(a.scratch, "out"), "--language", LANGUAGE, "--max_len", str(a.max_len),
            "--seed", "42", "--dtype", "fp32"]


# -- coati ----------------------------------------------------------------------------------------------------
def ours_sft(a) -> dict:
    import train_sft
    from coati.trainer.sft import SFTTrainer

    clock, seen = Clock(), {}
    time_method(SFTTrainer, "fit", clock,
                before=lambda t: seen.update(tokens=sum(t.train_loader.dataset.lengths()),
                                             samples=len(t.train_loader.dataset)))
    argv = common_ours(a) + ["--dataset", os.path.join(a.work, "sft_ours.json"), "--instruction_str", "prompt",
                                    "--output_str", "completion", "--batch_size", str(a.batch_size),
                                    "--accumulation_steps", "1", "--max_epochs", "1", "--lr", "2e-5",
                                    "--log_interval", "1"] + (["--grad_checkpoint"] if a.grad_ckpt else [])
    out = train_sft.main(train_sft.parse_args(argv))
    return dict(**clock.figures(), steps=out["steps"], **seen)


def ours_rm(a) -> dict:
    import train_reward_model
    from coati.trainer.rm import RewardModelTrainer

    clock, seen = Clock(), {}

    def count(t):
        items = t.train_loader.dataset.items
        seen.update(samples=len(items), tokens=sum(len(c) + len(r) for c, r in items))

    time_method(RewardModelTrainer, "fit", clock, before=count)
    argv = common_ours(a) + ["--dataset", os.path.join(a.work, "rm_ours.json"), "--data_format", "pairs",
                                   "--eval_split", "0", "--batch_size", str(a.batch_size), "--max_epochs", "1",
                                   "--lr", "5e-6", "--loss_fn", "log_sig", "--log_interval", "1"]
    out = train_reward_model.main(train_reward_model.parse_args(argv))
    return dict(**clock.figures(), steps=out["steps"], **seen)


def rollout_probe(a) -> tuple[Clock, dict, PPOPhases]:
    """For coati's train_prompts.py runs (PPO, GRPO): fixed-length answers and the counts of what was rolled out.

    Equal work: every answer is exactly --response_len tokens on both sides. TRL runs with no stop token; here
    EOS is held back until the last position (min_new_tokens), the one change made to coati's run. Returns a
    Clock around PPOTrainer.fit, the running counts (answers, their tokens, all tokens) on this rank, and the
    loop's phases (decoding, scoring, update)."""
    from coati.experience import maker as maker_mod
    from coati.trainer.ppo import PPOTrainer

    clock, seen = Clock(), {"samples": 0, "tokens": 0, "response_tokens": 0}
    original_init, original_make = maker_mod.ExperienceMaker.__init__, maker_mod.ExperienceMaker.make

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.gen_kwargs = {**self.gen_kwargs, "min_new_tokens": a.response_len}

    def make(self, prompts, kl_coef):
        samples = original_make(self, prompts, kl_coef)
        seen["samples"] += len(samples)
        seen["response_tokens"] += sum(len(s.response) for s in samples)
        seen["tokens"] += sum(len(s.prompt) + len(s.response) for s in samples)
        return samples

    maker_mod.ExperienceMaker.__init__, maker_mod.ExperienceMaker.make = init, make
    time_method(PPOTrainer, "fit", clock)
    phases = PPOPhases()
    maker_mod.sample = phases.timed_generation(maker_mod.sample)
    # _update is the episode's minibatch loop: its first forward to its last optimizer step
    PPOTrainer._update = around(PPOTrainer._update, before=phases.training_begins, after=phases.stepped)
    return clock, seen, phases


def ours_ppo(a) -> dict:
    import train_prompts

    clock, seen, phases = rollout_probe(a)
    rm_dir = os.path.join(a.work, f"model-{a.model}-rm")  # written by setup beside the model
    argv = common_ours(a) + [
        "--rm_path", rm_dir, "--prompt_dataset", os.path.join(a.work, "ppo_ours.json"),
        "--ppo_instruction_str", "prompt", "--num_episodes", str(a.episodes), "--num_collect_steps",
        str(a.collect_steps), "--experience_batch_size", str(a.rollout_batch), "--train_batch_size",
        str(a.batch_size * 2), "--num_update_steps", str(a.ppo_epochs), "--max_new_tokens", str(a.response_len),
        "--top_k", "0", "--top_p", "1.0", "--temperature", "1.0", "--kl_coef", "0.05", "--max_input_len", "256",
        "--actor_lr", "1e-6", "--critic_lr", "1e-5",
    ] + (["--offload_frozen"] if a.offload else [])
    out = train_prompts.main(train_prompts.parse_args(argv))
    # Every rank rolls out the same number of prompts: the global counts are rank 0's times the ranks (tokens
    # to within the prompts' length differences).
    seen = {k: v * world_size() for k, v in seen.items()}
    return dict(**clock.figures(phases), steps=len(out["history"]), **seen)


def ours_dpo(a, precompute: bool = False) -> dict:
    import train_dpo
    from coati.trainer.dpo import DPOTrainer

    clock, seen = Clock(), {}

    def count(t):
        items = t.train_loader.dataset.items  # (prompt, chosen answer, rejected answer) token lists
        seen.update(samples=len(items), tokens=sum(2 * len(p) + len(c) + len(r) for p, c, r in items))

    time_method(DPOTrainer, "fit", clock, before=count)
    argv = common_ours(a) + ["--dataset", os.path.join(a.work, "rm_ours.json"), "--data_format", "pairs",
                             "--eval_split", "0", "--batch_size", str(a.batch_size), "--max_epochs", "1",
                             "--lr", "5e-7", "--loss_type", "dpo", "--beta", "0.1", "--log_interval", "1"]
    out = train_dpo.main(train_dpo.parse_args(argv + (["--precompute_ref"] if precompute else [])))
    return dict(**clock.figures(), steps=out["steps"], **seen)


# -- TRL ------------------------------------------------------------------------------------------------------
def trl_common(a) -> dict:
    # TRL defaults bf16=True and gradient_checkpointing=True; the comparison is fp32 without checkpointing.
    import torch

    # use_cpu only where coati's strategy also lands on the CPU (it takes a GPU when there is one).
    return dict(output_dir=os.path.join(a.scratch, "out"), bf16=False, fp16=False, gradient_checkpointing=False,
                report_to="none", save_strategy="no", logging_steps=1, seed=42, use_cpu=not torch.cuda.is_available(),
                dataloader_num_workers=0, gradient_accumulation_steps=1)


def span_callback(clock: Clock):
    from transformers import TrainerCallback

    class Span(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_train_end(self, args, state, control, **kwargs):
            clock.end()

    return Span()


def trl_tokenizer(a):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(a.work, f"model-{a.model}"))


def trl_sft(a) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    clock = Clock()
    with open(os.path.join(a.work, "sft_trl.json"), encoding="utf-8") as f:
        rows = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(a.work, f"model-{a.model}"), dtype="float32")
    cfg = SFTConfig(max_length=a.max_len, per_device_train_batch_size=a.batch_size, learning_rate=2e-5,
                    max_steps=-(-len(rows) // (a.batch_size * world_size())), **trl_common(a))
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows),
                         processing_class=trl_tokenizer(a), callbacks=[span_callback(clock)])
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    trainer.train()
    return dict(**clock.figures(), steps=trainer.state.global_step,
                samples=len(lengths), tokens=sum(lengths))


def trl_rm(a) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    clock = Clock()
    with open(os.path.join(a.work, "rm_trl.json"), encoding="utf-8") as f:
        rows = json.load(f)
    tok = trl_tokenizer(a)
    model = AutoModelForSequenceClassification.from_pretrained(os.path.join(a.work, f"model-{a.model}"),
                                                               num_labels=1, dtype="float32")
    model.config.pad_token_id = tok.pad_token_id
    cfg = RewardConfig(max_length=a.max_len, per_device_train_batch_size=a.batch_size, learning_rate=5e-6,
                       max_steps=-(-len(rows) // (a.batch_size * world_size())), **trl_common(a))
    trainer = RewardTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                            callbacks=[span_callback(clock)])
    ds = trainer.train_dataset
    tokens = sum(len(c) + len(r) for c, r in zip(ds["chosen_ids"], ds["rejected_ids"]))
    trainer.train()
    return dict(**clock.figures(), steps=trainer.state.global_step,
                samples=len(ds), tokens=tokens)


def trl_ppo(a) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    clock = Clock()
    with open(os.path.join(a.work, "ppo_trl.json"), encoding="utf-8") as f:
        rows = json.load(f)
    path = os.path.join(a.work, f"model-{a.model}")
    tok = trl_tokenizer(a)
    tok.padding_side = "left"  # TRL's PPO expects left-padded queries
    policy = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    ref = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    reward = AutoModelForSequenceClassification.from_pretrained(f"{path}-rm", num_labels=1, dtype="float32")
    value = AutoModelForSequenceClassification.from_pretrained(f"{path}-rm", num_labels=1, dtype="float32")
    for m in (reward, value):
        m.config.pad_token_id = tok.pad_token_id
    buffer = a.rollout_batch * a.collect_steps  # prompts per episode, as coati's collect steps x batch
    minibatch = a.batch_size * 2
    cfg = PPOConfig(
        per_device_train_batch_size=buffer, num_mini_batches=buffer // minibatch, num_ppo_epochs=a.ppo_epochs,
        local_rollout_forward_batch_size=a.rollout_batch, total_episodes=buffer * a.episodes * world_size(),
        response_length=a.response_len, stop_token=None, temperature=1.0, kl_coef=0.05, learning_rate=1e-6,
        num_sample_generations=0, **trl_common(a))
    train = Dataset.from_list(rows)
    trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=reward,
                         value_model=value, train_dataset=train, eval_dataset=train.select(range(buffer)),
                         callbacks=[span_callback(clock)])
    seen = {"samples": 0, "tokens": 0, "response_tokens": 0}
    import torch
    from trl.experimental.ppo import ppo_trainer as ppo_mod

    phases = PPOPhases()
    original = phases.timed_generation(ppo_mod.batch_generation)

    def gradient_forward():  # rollout forwards run under no_grad; the first with gradients starts training
        if torch.is_grad_enabled():
            phases.training_begins()

    ppo_mod.forward = around(ppo_mod.forward, before=gradient_forward)
    trainer.optimizer.step = around(trainer.optimizer.step, after=phases.stepped)

    def counted(model, queries, *args, **kwargs):
        out, logits = original(model, queries, *args, **kwargs)
        real = out != tok.pad_token_id
        seen["samples"] += queries.shape[0]
        seen["tokens"] += int(real.sum())
        seen["response_tokens"] += int(real[:, queries.shape[1]:].sum())
        return out, logits

    ppo_mod.batch_generation = counted
    trainer.train()
    seen = {k: v * world_size() for k, v in seen.items()}  # rank 0's rollouts; every rank makes as many
    return dict(**clock.figures(phases), steps=trainer.state.global_step, **seen)


def trl_dpo(a, precompute: bool = False) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    clock = Clock()
    with open(os.path.join(a.work, "rm_trl.json"), encoding="utf-8") as f:
        rows = json.load(f)
    path = os.path.join(a.work, f"model-{a.model}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    # Precomputing, TRL scores the pairs with the policy before its first step, as coati does: no second model.
    ref = None if precompute else AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    cfg = DPOConfig(max_length=a.max_len, per_device_train_batch_size=a.batch_size, learning_rate=5e-7, beta=0.1,
                    loss_type=["sigmoid"], precompute_ref_log_probs=precompute,
                    max_steps=-(-len(rows) // (a.batch_size * world_size())), **trl_common(a))
    if world_size() > 1:
        # An in-memory table keeps its map caches in a temp folder of each process's own, and TRL's precompute map
        # under 2 ranks then opens rank 0's cache file from rank 1 (FileNotFoundError): read the rows from disk
        # with a cache folder the ranks share.
        from datasets import load_dataset

        train = load_dataset("json", data_files=os.path.join(a.work, "rm_trl.json"), split="train",
                             cache_dir=os.path.join(a.work, "hf-datasets-cache"))
    else:
        train = Dataset.from_list(rows)
    trainer = DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=train,
                         processing_class=trl_tokenizer(a), callbacks=[span_callback(clock)])
    ds = trainer.train_dataset
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"],
                                                                  ds["rejected_ids"]))
    trainer.train()
    return dict(**clock.figures(), steps=trainer.state.global_step, samples=len(ds), tokens=tokens)


def _precomputed(fn):
    return lambda a: fn(a, precompute=True)


# "dpo": the reference model runs beside the policy at every step; "dpo_pre": its log-probs are computed in one
# pass before training (--precompute_ref, TRL's precompute_ref_log_probs), outside the timed span on both sides.
RUNS = {("ours", "sft"): ours_sft, ("ours", "rm"): ours_rm, ("ours", "ppo"): ours_ppo, ("ours", "dpo"): ours_dpo,
        ("ours", "dpo_pre"): _precomputed(ours_dpo),
        ("trl", "sft"): trl_sft, ("trl", "rm"): trl_rm, ("trl", "ppo"): trl_ppo, ("trl", "dpo"): trl_dpo,
        ("trl", "dpo_pre"): _precomputed(trl_dpo)}


# -- GRPO: both sides, one reward function, G answers per prompt -----------------------------------------------
def bench_reward(prompts, completions=None, responses=None, **_) -> list[float]:
    """The reward both sides call (TRL passes `completions`, coati `responses`): distinct characters / 10, cheap
    and different between answers, so the groups' advantages are not all 0."""
    answers = responses if responses is not None else completions
    return [len(set(a)) / 10 for a in answers]


def grpo_shape(a) -> dict:
    """One episode: rollout_batch prompts x generations answers, ppo_epochs passes over them in minibatches of
    2 x batch_size answers (TRL: steps_per_generation minibatches per generation, num_iterations passes)."""
    answers = a.rollout_batch * a.generations
    minibatch = a.batch_size * 2
    if answers % minibatch:
        raise SystemExit(f"rollout_batch x generations ({answers}) must be a multiple of 2 x batch_size ({minibatch})")
    return {"answers": answers, "minibatch": minibatch, "steps_per_generation": answers // minibatch}


def ours_grpo(a) -> dict:
    import train_prompts

    shape = grpo_shape(a)
    clock, seen, phases = rollout_probe(a)
    argv = common_ours(a) + [
        "--algo", "grpo", "--prompt_dataset", os.path.join(a.work, "grpo_ours.json"), "--ppo_instruction_str",
        "prompt", "--reward_fn", f"{os.path.abspath(__file__)}:bench_reward", "--num_generations",
        str(a.generations), "--num_episodes", str(a.episodes), "--num_collect_steps", "1",
        "--experience_batch_size", str(a.rollout_batch), "--train_batch_size", str(shape["minibatch"]),
        "--num_update_steps", str(a.ppo_epochs), "--max_new_tokens", str(a.response_len), "--top_k", "0",
        "--top_p", "1.0", "--temperature", "1.0", "--kl_coef", "0", "--kl_loss_coef", str(a.beta),
        "--scale_rewards", "group", "--loss_agg", "token", "--max_input_len", "256", "--actor_lr", "1e-6",
    ]
    out = train_prompts.main(train_prompts.parse_args(argv))
    seen = {k: v * world_size() for k, v in seen.items()}
    return dict(**clock.figures(phases), steps=len(out["history"]), **seen)


def trl_grpo(a) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    shape = grpo_shape(a)
    clock = Clock()
    with open(os.path.join(a.work, "grpo_trl.json"), encoding="utf-8") as f:
        rows = json.load(f)
    tok = trl_tokenizer(a)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(a.work, f"model-{a.model}"), dtype="float32")
    # bnpo: the token mean over each minibatch, which is coati's --loss_agg token; beta > 0 loads the reference.
    cfg = GRPOConfig(per_device_train_batch_size=shape["minibatch"], steps_per_generation=shape["steps_per_generation"],
                     num_generations=a.generations, num_iterations=a.ppo_epochs, max_completion_length=a.response_len,
                     generation_kwargs={"min_new_tokens": a.response_len}, temperature=1.0, top_k=0, top_p=1.0,
                     beta=a.beta, loss_type="bnpo", scale_rewards="group", learning_rate=1e-6,
                     max_steps=a.episodes * shape["steps_per_generation"] * a.ppo_epochs, log_completions=False,
                     **trl_common(a))
    trainer = GRPOTrainer(model=model, reward_funcs=bench_reward, args=cfg, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, callbacks=[span_callback(clock)])
    seen = {"samples": 0, "tokens": 0, "response_tokens": 0}
    original = trainer._generate_and_score_completions

    def counted(inputs):
        out = original(inputs)
        seen["samples"] += int(out["completion_ids"].shape[0])
        seen["response_tokens"] += int(out["completion_mask"].sum())
        seen["tokens"] += int(out["completion_mask"].sum() + out["prompt_mask"].sum())
        return out

    trainer._generate_and_score_completions = counted
    trainer.train()
    seen = {k: v * world_size() for k, v in seen.items()}
    return dict(**clock.figures(), steps=a.episodes, **seen)


RUNS.update({("ours", "grpo"): ours_grpo, ("trl", "grpo"): trl_grpo})
STAGES = tuple(dict.fromkeys(stage for _, stage in RUNS))


def add_work_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch_size", type=int, default=4, help="SFT/RM batch; PPO minibatch is twice this")
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--episodes", type=int, default=2, help="PPO episodes per run")
    p.add_argument("--rollout_batch", type=int, default=8, help="PPO prompts per rollout batch")
    p.add_argument("--collect_steps", type=int, default=2, help="PPO rollout batches per episode")
    p.add_argument("--ppo_epochs", type=int, default=2, help="PPO passes over the episode's buffer")
    p.add_argument("--response_len", type=int, default=32, help="PPO response tokens (fixed on both sides)")
    p.add_argument("--generations", type=int, default=4, help="GRPO answers per prompt")
    p.add_argument("--beta", type=float, default=0.04, help="GRPO k3 KL loss weight (coati --kl_loss_coef)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--work", required=True)
    s.add_argument("--sft_rows", type=int, default=80)
    s.add_argument("--rm_pairs", type=int, default=80)
    r = sub.add_parser("run")
    r.add_argument("--work", required=True)
    r.add_argument("--scratch", required=True, help="this run's output folder (deleted by the caller)")
    r.add_argument("--side", choices=("ours", "trl"), required=True)
    r.add_argument("--stage", choices=STAGES, required=True)
    r.add_argument("--model", choices=MODELS, required=True)
    r.add_argument("--offload", action="store_true", help="coati PPO with --offload_frozen")
    r.add_argument("--grad_ckpt", action="store_true", help="coati SFT with --grad_checkpoint")
    r.add_argument("--profile", default=None, help="write a cProfile of the timed span (the training loop) to this file")
    r.add_argument("--count_flops", action="store_true",
                   help="count the span's matmul and attention FLOPs (flop_counter); slows the run, so its time is "
                        "not a measurement")
    r.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides alike)")
    add_work_args(r)
    a = p.parse_args(argv)
    if a.cmd == "setup":
        setup(a.work, a.sft_rows, a.rm_pairs)
        return
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(a.threads)
    fn = RUNS[(a.side, a.stage)]
    if a.profile:
        import cProfile

        Clock.profiler = cProfile.Profile()
    if a.count_flops:
        Clock.counter = flop_counter()
    result = fn(a)
    if a.profile:
        Clock.profiler.dump_stats(a.profile)
    result.update(side=a.side, stage=a.stage, model=a.model, offload=a.offload, grad_ckpt=a.grad_ckpt,
                  counting=a.count_flops,
                  threads=torch.get_num_threads(),
                  peak_rss_mb=peak_rss_mb(), nproc=world_size())
    if torch.cuda.is_available():  # both sides train on the GPU then: its memory is the one that limits a run
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if os.environ.get("RANK", "0") == "0":  # rank 0 reports; its span covers the synchronised training loop
        print("RESULT " + json.dumps(result), flush=True)
    from coati.strategies.base import end_process_group

    end_process_group()  # TRL leaves its process group open; gloo may abort at exit otherwise


if __name__ == "__main__":
    main()
