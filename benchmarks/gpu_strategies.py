"""Every strategy through the stage scripts on one CUDA machine: does it run, s/step, peak memory, final loss.

    python3 benchmarks/gpu_strategies.py                       # SFT, every strategy, a ~100M-parameter model
    python3 benchmarks/gpu_strategies.py --stages sft,rm,ppo   # also the reward-model and PPO stages
    python3 benchmarks/gpu_strategies.py --size tiny --strategies naive,fsdp   # a quick functional pass

Offline: the model is a random one of the llama family built from a config (no hub), the data is made here.
Each (stage, strategy) runs as a user would run it (torchrun over every visible GPU, the stage script's own
flags), inside a probe that times the strategy's optimizer steps and reads torch.cuda.max_memory_allocated; the
run's last loss (SFT, RM) or episode reward (PPO) shows whether strategies given the same work agree.
Prints a table and writes results.json to --out ($OUT when set). A strategy this machine cannot run is
reported with the stage script's one-line refusal (e.g. colossalai_* without requirements-colossalai.txt).

Stages are the STAGES table below: adding one is a script name and a function that returns its flags.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from run import child_env  # benchmarks/run.py: the project first on PYTHONPATH, a --target install kept

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ("naive", "ddp", "fsdp", "colossalai_zero2", "colossalai_zero2_cpu", "colossalai_gemini")
WORDS = ["사과", "바다", "여행", "음악", "축구", "커피", "도서관", "한글", "우주", "기차", "김치", "산책"]


# -- data and model ----------------------------------------------------------------------------------------
def make_data(root: str, rows: int) -> dict[str, str]:
    """SFT rows, preference pairs and prompts, as the stage scripts read them."""
    sft, pairs, prompts = [], [], []
    for i in range(rows):
        w = WORDS[i % len(WORDS)]
        answer = f"{w}은 정말 좋습니다. " * (4 + i % 8) + f"감사합니다 {i}."
        sft.append({"prompt": f"{w}에 대해 자세히 알려 주세요 ({i}).", "completion": answer})
        pairs.append({"prompt": f"{w}은 어떤가요? ({i})", "chosen": answer, "rejected": f"{w}? 모르겠어요."})
        prompts.append({"instruction": f"{w}에 대해 한 문단으로 설명해 주세요 ({i})."})
    paths = {}
    for name, data in (("sft", sft), ("rm", pairs), ("prompts", prompts)):
        paths[name] = os.path.join(root, f"{name}.json")
        with open(paths[name], "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    return paths


def make_model(root: str, size: str) -> str:
    """A random llama-family model with the shipped tokenizer: 'tiny' (hidden 64) or 'small' (~100M)."""
    from coati.kit import build_tiny_model

    path = os.path.join(root, f"llama-{size}")
    if size == "tiny":
        return build_tiny_model("llama", path)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coati.checkpoint import save_tokenizer
    from coati.kit import TOKENIZER_DIR
    from coati.models.registry import tiny_config

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    config = tiny_config("llama", len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    config.update(dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                       num_key_value_heads=16, max_position_embeddings=1024))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    save_tokenizer(tok, path)
    return path


# -- stages: (script, flags for one run) -------------------------------------------------------------------
def sft_flags(ctx: dict) -> list[str]:
    return ["--dataset", ctx["data"]["sft"], "--instruction_str", "prompt", "--output_str", "completion",
            "--batch_size", str(ctx["batch_size"]), "--accumulation_steps", "1", "--max_epochs", "1",
            "--max_len", "256", "--lr", "1e-5"]


def rm_flags(ctx: dict) -> list[str]:
    # Hook for train_reward_model.py (flags as of this writing; adjust here if its CLI changes).
    return ["--dataset", ctx["data"]["rm"], "--batch_size", str(ctx["batch_size"]), "--max_epochs", "1",
            "--max_len", "256", "--eval_split", "0"]


def ppo_flags(ctx: dict) -> list[str]:
    # Hook for train_prompts.py: needs a reward-model folder, the rm stage's output under the same strategy
    # (or naive's) when it ran first in this invocation.
    rm = ctx.get("rm_path")
    if rm is None:
        raise RuntimeError("no reward model: run with --stages rm,ppo (or sft,rm,ppo)")
    return ["--rm_path", rm, "--prompt_dataset", ctx["data"]["prompts"], "--num_episodes", "1",
            "--num_collect_steps", "2", "--num_update_steps", "1", "--experience_batch_size", str(ctx["batch_size"]),
            "--train_batch_size", str(ctx["batch_size"]), "--max_input_len", "64", "--max_new_tokens", "32"]


STAGES = {
    "sft": ("train_sft.py", sft_flags),
    "rm": ("train_reward_model.py", rm_flags),
    "ppo": ("train_prompts.py", ppo_flags),
}


# -- the probe: runs inside each torchrun'd process ----------------------------------------------------------
def probe(script: str, argv: list[str]) -> None:
    """Run a stage script's main(parse_args(argv)), timing the strategy's optimizer steps; each rank writes
    {steps, step_times, peak_bytes} to $COATI_PROBE_OUT.rank<r>."""
    import importlib.util

    import torch

    import coati.strategies

    times: list[float] = []
    build = coati.strategies.build_strategy
    cuda = torch.cuda.is_available()

    def timed_build(*args, **kwargs):
        strategy = build(*args, **kwargs)
        step = strategy.step

        def timed_step(*a, **k):
            out = step(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            return out

        strategy.step = timed_step
        return strategy

    coati.strategies.build_strategy = timed_build  # stage scripts import it inside main()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    spec = importlib.util.spec_from_file_location("stage", os.path.join(ROOT, script))
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    out = stage.main(stage.parse_args(argv))
    # The run's last loss (SFT, RM) or episode reward (PPO): strategies given the same work should agree on it.
    final = out["loss"] if "loss" in out else (out.get("history") or [{}])[-1].get("reward")
    rank = os.environ.get("RANK", "0")
    with open(f"{os.environ['COATI_PROBE_OUT']}.rank{rank}", "w") as f:
        json.dump({"steps": len(times), "step_times": [b - a for a, b in zip(times, times[1:])],
                   "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0, "final": final}, f)


# -- the driver --------------------------------------------------------------------------------------------
def run_one(stage: str, strategy: str, ctx: dict, args, ngpu: int) -> dict:
    script, flags = STAGES[stage]
    save = os.path.join(args.out, "runs", f"{stage}-{strategy}")
    shutil.rmtree(save, ignore_errors=True)
    os.makedirs(save)
    row = {"stage": stage, "strategy": strategy}
    try:
        stage_flags = flags(ctx)
    except RuntimeError as err:
        return {**row, "status": f"skipped: {err}"}
    probe_out = os.path.join(save, "probe")
    # naive is one process (plain python); the others take every GPU under torchrun.
    launch = [] if strategy == "naive" else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ngpu}"]
    cmd = [sys.executable, *launch, os.path.abspath(__file__), "--probe", script, "--",
           "--strategy", strategy, "--model", "llama", "--pretrain", ctx["model"], "--save_path", save,
           "--dtype", args.dtype, *stage_flags]
    env = child_env(COATI_PROBE_OUT=probe_out, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="4")
    start = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timeout after {args.timeout}s", "wall_s": args.timeout}
    row["wall_s"] = round(time.perf_counter() - start, 1)
    with open(os.path.join(save, "log.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n\n" + res.stdout + "\n" + res.stderr)
    if res.returncode != 0:
        errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
        last = errors[-1] if errors else (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**row, "status": f"{'refused' if errors else 'failed'} (rc {res.returncode}): {last[:160]}"}
    ranks = [json.load(open(os.path.join(save, f))) for f in os.listdir(save) if f.startswith("probe.rank")]
    step_times = [t for r in ranks[:1] for t in r["step_times"]][args.warmup:] or ranks[0]["step_times"]
    row.update(status="ok", steps=ranks[0]["steps"],
               s_per_step=round(statistics.median(step_times), 4) if step_times else None,
               peak_gib=round(max(r["peak_bytes"] for r in ranks) / 2**30, 2), final=ranks[0].get("final"))
    if stage == "rm":
        ctx.setdefault("rm_by_strategy", {})[strategy] = save
    for name in os.listdir(save):  # keep logs and metrics, not the weights
        if name.endswith((".safetensors", ".bin", ".pt")) and stage != "rm":
            os.remove(os.path.join(save, name))
    return row


def final_text(row: dict) -> str:
    value = row.get("final")
    return f"{value:.4f}" if isinstance(value, float) else ""


def table(rows: list[dict]) -> str:
    """final: the run's last loss (SFT, RM) or episode reward (PPO)."""
    head = f"{'stage':<5} {'strategy':<21} {'status':<8} {'s/step':>8} {'peak GiB':>9} {'final':>7} {'wall s':>7}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        ok = r["status"] == "ok"
        lines.append(f"{r['stage']:<5} {r['strategy']:<21} {'ok' if ok else r['status'].split(' ')[0]:<8} "
                     f"{r.get('s_per_step') or '':>8} {r.get('peak_gib') or '':>9} {final_text(r):>7} {r.get('wall_s', ''):>7}  "
                     f"{'' if ok else r['status']}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default="sft", help=f"comma-separated, of {', '.join(STAGES)}")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--size", default="small", choices=("tiny", "small"))
    p.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    p.add_argument("--batch_size", type=int, default=8, help="per GPU")
    p.add_argument("--rows", type=int, default=256, help="rows of each data set")
    p.add_argument("--warmup", type=int, default=3, help="step intervals left out of the median")
    p.add_argument("--timeout", type=int, default=600, help="seconds per run")
    p.add_argument("--cpu", action="store_true", help="run without a GPU (to check this script itself)")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "outputs", "gpu_strategies"))
    return p.parse_args(argv)


def main() -> None:
    if "--probe" in sys.argv:
        i = sys.argv.index("--probe")
        rest = sys.argv[i + 2:]
        return probe(sys.argv[i + 1], rest[1:] if rest[:1] == ["--"] else rest)
    args = parse_args()
    sys.path.insert(0, ROOT)
    import torch

    if not torch.cuda.is_available() and not args.cpu:
        sys.exit("error: this benchmark needs a CUDA GPU (--cpu checks the script itself without one)")
    ngpu = torch.cuda.device_count() or 2
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, "work")
    os.makedirs(work, exist_ok=True)
    ctx = {"data": make_data(work, args.rows), "model": make_model(work, args.size), "batch_size": args.batch_size}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"{device} x{ngpu}, torch {torch.__version__}, model llama-{args.size}, "
          f"dtype {args.dtype}, batch {args.batch_size}/GPU", flush=True)
    rows = []
    for stage in args.stages.split(","):
        for strategy in args.strategies.split(","):
            if stage == "ppo":
                by = ctx.get("rm_by_strategy", {})
                ctx["rm_path"] = by.get(strategy) or by.get("naive")
            rows.append(run_one(stage, strategy, ctx, args, ngpu))
            r = rows[-1]
            print(f"  {stage:<4} {strategy:<21} {r['status'][:100]}"
                  + (f"  {r['s_per_step']} s/step, {r['peak_gib']} GiB" if r["status"] == "ok" else ""), flush=True)
    print("\n" + table(rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"device": device, "gpus": ngpu, "torch": torch.__version__,
                   "args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
