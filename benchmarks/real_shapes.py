"""The stages at a real model's shape on this machine: peak resident memory and time per step, beside the estimate
of `python -m coati.memory` for the same run.

    python benchmarks/real_shapes.py --preset polyglot-ko-1.3b --dtype fp32 --work /tmp/real-shapes
    python benchmarks/real_shapes.py --table      # the markdown table of benchmarks/README.md, from results.jsonl

Each run is one stage script as a user types it (plain python, --strategy naive, LoRA rank 8), in a fresh process
whose peak resident set (the kernel's high-water mark, from wait4) is the figure. The base model is the preset
with random weights, written once in the run's dtype (so loading maps it and converts nothing); SFT's
checkpointed run writes the folder RM, DPO, PPO and GRPO start from, RM's the reward model PPO scores with
(GRPO is rewarded by a function, length_penalty, and keeps a k3 KL loss, so its reference takes part). Rows are
long enough to fill --max_len (SFT, RM, DPO) and --max_input_len (PPO and GRPO prompts), so the measured lengths
are the ones the estimate is asked about. Folders under --work are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "benchmarks", "results", "real_shapes")
DATA = os.path.join(ROOT, "data")
RUNS = ("sft", "sft_ckpt", "rm", "rm_ckpt", "ppo", "ppo_ckpt", "ppo_ckpt_offload", "dpo", "dpo_ckpt", "grpo",
        "grpo_ckpt")
SFT_BATCH, RM_BATCH, MAX_LEN, SFT_ROWS, RM_ROWS = 2, 2, 128, 4, 4
PPO = dict(experience_batch_size=2, train_batch_size=2, max_input_len=48, max_new_tokens=16)
GENERATIONS = 4  # GRPO's answers per prompt: 2 prompts x 4 answers per rollout, minibatches of 2
GRPO_KL = 0.04  # a k3 KL loss, so the reference (the actor with its adapters off) takes part
LIMIT_S = 480  # a run still going after 8 minutes is stopped and reported


def long_rows(work: str) -> dict[str, str]:
    """Shipped Korean rows, each text repeated until it fills --max_len (SFT, RM) or --max_input_len (PPO)."""
    def read(name):
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            text = f.read()
        return json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]

    def long(text: str) -> str:
        return " ".join([text] * 12)

    sft = [{"prompt": r["prompt"], "completion": long(r["completion"])} for r in read("kochatgpt_sft_ko.jsonl")[:20]]
    rm = [{"prompt": r["prompt"], "chosen": long(r["completion_0"]), "rejected": long(r["completion_1"])}
          for r in read("kochatgpt_rm_ko.jsonl")[:20]]
    ppo = [{"prompt": long(r["prompt"])} for r in read("kochatgpt_ppo_ko.jsonl")[:20]]
    paths = {}
    for name, rows in (("sft", sft), ("rm", rm), ("ppo", ppo)):
        paths[name] = os.path.join(work, f"{name}.jsonl")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return paths


def command(run: str, dtype: str, work: str, data: dict, base: str) -> tuple[list[str], str]:
    """(argv, save_path) of one run."""
    stage, ckpt, offload = run.split("_")[0], "ckpt" in run, "offload" in run
    save = os.path.join(work, f"{run}-{dtype}")
    common = ["--strategy", "naive", "--model", "auto", "--lora_rank", "8", "--dtype", dtype, "--save_path", save,
              "--language", "ko", "--max_len", str(MAX_LEN)] + (["--grad_checkpoint"] if ckpt else [])
    if stage == "sft":
        return ["train_sft.py", *common, "--pretrain", base, "--dataset", data["sft"], "--instruction_str", "prompt",
                "--output_str", "completion", "--batch_size", str(SFT_BATCH), "--accumulation_steps", "1",
                "--max_epochs", "1", "--max_datasets_size", str(SFT_ROWS), "--no-group_by_length"], save
    # The stage before's folder when its run finished, else the base model (the same shape and file size).
    sft = os.path.join(work, f"sft_ckpt-{dtype}")
    sft = sft if os.path.isfile(os.path.join(sft, "config.json")) else base
    if stage in ("rm", "dpo"):  # the same pairs, the same batch
        script = "train_reward_model.py" if stage == "rm" else "train_dpo.py"
        return [script, *common, "--pretrain", sft, "--dataset", data["rm"], "--batch_size",
                str(RM_BATCH), "--max_epochs", "1", "--max_datasets_size", str(RM_ROWS), "--eval_split", "0",
                "--no-group_by_length"], save
    rollout = ["--prompt_dataset", data["ppo"], "--ppo_instruction_str", "prompt", "--num_episodes", "1",
               "--num_collect_steps", "1", "--num_update_steps", "1", "--max_datasets_size", "4", "--top_k", "0",
               *[x for k, v in PPO.items() for x in (f"--{k}", str(v))]]
    if stage == "grpo":  # rewards written as code: no reward model, no critic
        return ["train_prompts.py", *common, "--algo", "grpo", "--pretrain", sft, "--reward_fn", "length_penalty",
                "--num_generations", str(GENERATIONS), "--kl_coef", "0", "--kl_loss_coef", str(GRPO_KL),
                *rollout], save
    rm = os.path.join(work, f"rm_ckpt-{dtype}")
    if not os.path.isfile(os.path.join(rm, "config.json")):
        write_scorer(sft, rm)
    return ["train_prompts.py", *common, "--pretrain", sft, "--rm_path", rm, *rollout] + \
        (["--offload_frozen"] if offload else []), save


def write_scorer(source: str, out: str) -> None:
    """A reward-model folder with an untrained score head, for PPO when the RM run did not finish in time."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)


def measure(argv: list[str], log: str) -> dict:
    """Run one stage in a fresh process; its peak RSS (GiB) from wait4, and its wall time."""
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        deadline = start + LIMIT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    return {"rc": os.waitstatus_to_exitcode(status), "peak_rss_gib": usage.ru_maxrss / 2**20,
            "wall_s": time.perf_counter() - start}


def seconds_per_step(save: str, stage: str) -> float | None:
    """Median seconds per optimizer step (SFT, RM, DPO) or per episode (PPO, GRPO), from metrics.jsonl."""
    path = os.path.join(save, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        records = [r for r in map(json.loads, f) if r.get("split") != "eval"]
    if stage in ("ppo", "grpo"):
        times = [r["rollout_s"] + r["update_s"] for r in records if "rollout_s" in r]
    else:
        batch = SFT_BATCH if stage == "sft" else RM_BATCH  # pairs for RM and DPO
        times = [batch / r["samples_per_s"] for r in records if r.get("samples_per_s")]
    return sorted(times)[len(times) // 2] if times else None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="polyglot-ko-1.3b")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    p.add_argument("--work", default="/tmp/real-shapes", help="where models and outputs go (GBs)")
    p.add_argument("--out", default=OUT)
    p.add_argument("--keep", action="store_true", help="keep the folders under --work")
    p.add_argument("--table", action="store_true", help="print the README table from --out/results.jsonl")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table(os.path.join(args.out, "results.jsonl")))
        return
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.work, f"{args.preset}-{args.dtype}")
    if not os.path.isdir(base):
        from coati.kit import build_preset

        build_preset(args.preset, base, dtype=args.dtype)
    data = long_rows(args.work)
    for run in args.runs.split(","):
        argv_, save = command(run, args.dtype, args.work, data, base)
        shutil.rmtree(save, ignore_errors=True)
        result = measure(argv_, os.path.join(args.work, f"{run}-{args.dtype}.log"))
        stage = run.split("_")[0]
        record = {"preset": args.preset, "run": run, "stage": stage, "dtype": args.dtype,
                  "grad_checkpoint": "ckpt" in run, "offload_frozen": "offload" in run, **result,
                  "s_per_step": seconds_per_step(save, stage), "argv": argv_}
        print(json.dumps(record), flush=True)
        with open(os.path.join(args.out, "results.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if stage not in ("sft", "rm") or "ckpt" not in run:  # SFT and RM outputs of the checkpointed run feed the next stage
            shutil.rmtree(save, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


def predicted(record: dict) -> float:
    """coati.memory's total (GiB) for the run a record describes: the preset's shape with the shipped tokenizer's
    vocabulary, the same stage, dtype, lengths and options."""
    from coati.kit import TOKENIZER_DIR, preset_fields
    from coati.memory import GiB, estimate, shape_from_config

    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json"), encoding="utf-8") as f:
        vocab = len(json.load(f)["model"]["vocab"])
    shape = shape_from_config({**preset_fields(record["preset"]), "vocab_size": vocab}, record["preset"])
    batch = SFT_BATCH if record["stage"] == "sft" else RM_BATCH
    est = estimate(shape, record["stage"], lora_rank=8, dtype=record["dtype"], batch_size=batch, max_len=MAX_LEN,
                   grad_checkpoint=record["grad_checkpoint"], offload_frozen=record["offload_frozen"],
                   num_generations=GENERATIONS, reward_model=record["stage"] != "grpo", **PPO)
    return est.total / GiB


def table(path: str) -> str:
    """The README's table: one row per measured run, the estimate beside it."""
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rows = ["| stage | dtype | --grad_checkpoint | --offload_frozen | peak RSS, measured (GiB) | coati.memory (GiB) "
            "| estimate / measured | s per step (episode for PPO, GRPO) |", "|---|---|---|---|---:|---:|---:|---:|"]
    for r in records:
        guess = predicted(r)
        step = f"{r['s_per_step']:.0f}" if r["s_per_step"] else f"stopped after {r['wall_s']:.0f} s"
        rows.append(f"| {r['stage'].upper()} | {r['dtype']} | {'yes' if r['grad_checkpoint'] else 'no'} | "
                    f"{'yes' if r['offload_frozen'] else 'no'} | {r['peak_rss_gib']:.2f} | {guess:.2f} | "
                    f"{guess / r['peak_rss_gib']:.2f} | {step} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
