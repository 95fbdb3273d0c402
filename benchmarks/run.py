"""coati against TRL on identical work, stage by stage: throughput, peak memory, ratio ours/TRL.

    python benchmarks/run.py --out benchmarks/results                     # 3 interleaved repeats, ~15 min on 2 cores
    python benchmarks/run.py --repeats 1 --stages sft --models gpt2       # a quick look
    python benchmarks/run.py --stages dpo,dpo_pre --models gpt2           # DPO, reference live and precomputed

Needs TRL in a venv of its own (benchmarks/requirements.txt says how); --python names its interpreter, and both
sides run under it, so they share one torch/transformers build. Every measurement is its own subprocess
(benchmarks/workloads.py), run in the order ours, TRL, ours, TRL, ... so that whatever else the machine is doing
lands on both sides alike; the table reports medians over the repeats and the median of the per-repeat ratios.

After the timed repeats, one more run per stage, model and side counts the FLOPs of the same work (workloads.py
--count_flops; --no_flops skips them), and the machine's fp32 matmul rate is measured before and after: the
arithmetic table gives each side's FLOPs per sample or episode, its utilisation of that rate, and for PPO the
episode coati's counted arithmetic alone would take.

Writes <out>/results.md (the tables, also printed), <out>/results.png (bar chart), <out>/results.jsonl (every
raw measurement) and <out>/logs/ (each run's output). The table and chart are rewritten after every repeat, so a
run stopped early (a time limit on a lent machine) keeps the repeats it finished.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_PYTHON = "/root/.cache/coati-bench/venv/bin/python"
TARGETS = {"sft": 1.0, "rm": 1.0, "ppo": 1.5, "dpo": 1.3, "dpo_pre": 1.3}  # ours/TRL throughput the issues ask for
STAGE_NAMES = {"sft": "SFT", "rm": "RM", "ppo": "PPO episode", "dpo": "DPO", "dpo_pre": "DPO, precomputed ref"}
TARGETS["grpo"], STAGE_NAMES["grpo"] = 1.5, "GRPO"  # answers per second
PHASES = ("generation", "scoring", "training", "other")  # workloads.PPOPhases
WORK_FLAGS = ("batch_size", "max_len", "episodes", "rollout_batch", "collect_steps", "ppo_epochs", "response_len",
              "threads", "generations", "beta")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--python", default=VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable,
                   help="interpreter with trl installed; runs both sides")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nproc", type=int, default=1,
                   help="processes per measurement: 2 runs both sides under torchrun (coati --strategy ddp, TRL's "
                        "Trainer through accelerate), each process with --threads threads, same per-process batch")
    p.add_argument("--stages", default="sft,rm,ppo")
    p.add_argument("--models", default="gpt2,gptneox")
    p.add_argument("--offload_models", default="gpt2",
                   help="also run coati's PPO with --offload_frozen for these models (memory option figure)")
    p.add_argument("--checkpoint_batch", type=int, default=16,
                   help="batch of the SFT runs with and without --grad_checkpoint (memory option figure; 0: skip)")
    p.add_argument("--sft_steps", type=int, default=20)
    p.add_argument("--rm_steps", type=int, default=20)
    p.add_argument("--work", default=None, help="where models and data are written (default: a temp folder)")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed for one measurement")
    from workloads import add_work_args

    add_work_args(p)
    p.add_argument("--no_flops", action="store_true",
                   help="skip the counting runs (one per stage, model and side, after the timed repeats) that give "
                        "each side's FLOPs per sample or episode and the arithmetic table")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run. 1 by default: on a shared 2-core machine two OpenMP threads that "
                        "get descheduled spin at barriers and a step can take 10x longer, which then measures "
                        "the neighbours, not the code")
    return p.parse_args(argv)


def child_env(**extra) -> dict:
    """The environment of a measurement: this one, with the project first on PYTHONPATH (anything already there,
    such as packages installed with --target, stays after it)."""
    path = os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH"))))
    return dict(os.environ, PYTHONPATH=path, **extra)


def measurement_env(a) -> dict:
    """What every measurement process runs under: the runs' thread count, offline, quiet tokenizers."""
    return child_env(OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads), TOKENIZERS_PARALLELISM="false",
                     HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def run_one(a, work: str, side: str, stage: str, model: str, offload: bool, tag: str, extra=()) -> dict:
    scratch = tempfile.mkdtemp(prefix="coati-bench-run-")
    launcher = [a.python] if a.nproc == 1 else \
        [a.python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={a.nproc}"]
    cmd = [*launcher, os.path.join(HERE, "workloads.py"), "run", "--work", work, "--scratch", scratch, "--side", side,
           "--stage", stage, "--model", model]
    cmd += [x for f in WORK_FLAGS for x in (f"--{f}", str(getattr(a, f)))]
    if offload:
        cmd.append("--offload")
    cmd += list(extra)  # later flags win: a memory-option run's own --batch_size
    env = measurement_env(a)
    log = os.path.join(a.out, "logs", f"{tag}.log")
    start = time.time()
    try:
        with open(log, "w") as f:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, env=env, timeout=a.timeout,
                                  cwd=scratch)
        with open(log, "a") as f:
            f.write(proc.stdout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            return {"side": side, "stage": stage, "model": model, "offload": offload, "error":
                    f"exit {proc.returncode}, see {log}"}
        result = json.loads(lines[-1][len("RESULT "):])
        # A measurement that finished and reported counts even if the process then failed to shut down cleanly
        # (seen once: a gloo abort at interpreter exit under torchrun); the exit status is kept with it.
        result["exit"] = proc.returncode
    except subprocess.TimeoutExpired:
        return {"side": side, "stage": stage, "model": model, "offload": offload, "error": f"timeout, see {log}"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["process_seconds"] = time.time() - start
    result["load_avg"] = os.getloadavg()[0]
    return result


def activation_checkpointing(a, work: str, raw) -> list[dict]:
    """coati SFT (first model) at a batch where activations matter, without and with --grad_checkpoint, twice
    each, interleaved: peak memory saved and time paid."""
    model = a.models.split(",")[0]
    out = []
    for rep in range(2):
        for on in (False, True):
            tag = f"ckpt-r{rep}-sft-{model}-{'on' if on else 'off'}"
            flags = ["--batch_size", str(a.checkpoint_batch)] + (["--grad_ckpt"] if on else [])
            r = run_one(a, work, "ours", "sft", model, False, tag, flags)
            r.update(repeat=rep, grad_ckpt=on)
            raw.write(json.dumps(r) + "\n")
            out.append(r)
            shown = r.get("error") or f"{r['samples'] / r['seconds']:.2f} samples/s, {peak_mb(r):.0f} MB"
            print(f"[bench] {tag}: {shown}", file=sys.stderr, flush=True)
    return out


def counting_runs(a, work: str, raw) -> list[dict]:
    """One run per stage, model and side under workloads.py --count_flops: the FLOPs of the same work as the
    timed runs (same seeds, data and lengths). Their own times are not used: the counter slows every op."""
    out = []
    for stage in a.stages.split(","):
        for model in a.models.split(","):
            for side in ("ours", "trl"):
                tag = f"flops-{stage}-{model}-{side}"
                r = run_one(a, work, side, stage, model, False, tag, ["--count_flops"])
                raw.write(json.dumps(r) + "\n")
                out.append(r)
                shown = r.get("error") or f"{r['flops'] / 1e9:.1f} GFLOP"
                print(f"[bench] {tag}: {shown}", file=sys.stderr, flush=True)
    return out


def checkpoint_table(runs: list[dict], a) -> str:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return ""
    lines = ["", f"| coati SFT, {ok[0]['model']}, batch {a.checkpoint_batch} | {memory_label(ok)} (median) | samples/s "
             "(median) |", "|---|---:|---:|"]
    for on in (False, True):
        rs = [r for r in ok if r["grad_ckpt"] == on]
        if rs:
            lines.append(f"| {'--grad_checkpoint' if on else 'activations kept'} | "
                         f"{median([peak_mb(r) for r in rs]):.0f} | "
                         f"{median([r['samples'] / r['seconds'] for r in rs]):.2f} |")
    return "\n".join(lines) + "\n"


def variant(r: dict) -> str:
    return "ours+offload" if r.get("offload") else r["side"]


def peak_mb(r: dict) -> float:
    """A run's peak memory: accelerator memory where the run had a GPU (what offload and batch size are about
    there), else the process's peak RSS."""
    return r.get("peak_gpu_mb", r["peak_rss_mb"])


def memory_label(results: list[dict]) -> str:
    return "peak GPU MB" if any("peak_gpu_mb" in r for r in results) else "peak RSS MB"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def summarise(results: list[dict], a, counts: list[dict] = ()) -> list[dict]:
    """One row per (stage, model): medians per side and the median of the paired per-repeat ratios; with the
    counting runs, each side's FLOPs per unit of work (sample; episode for PPO) and, for PPO, per phase."""
    rows = []
    for stage in a.stages.split(","):
        for model in a.models.split(","):
            by = {}
            for r in results:
                if r["stage"] == stage and r["model"] == model and "error" not in r:
                    by.setdefault(variant(r), []).append(r)
            ours, trl = by.get("ours", []), by.get("trl", [])
            if not ours or not trl:
                # coati's memory is kept when only TRL's side failed (TRL 1.16 has no PPO trainer left)
                mem = {"ours_mem": median([peak_mb(x) for x in ours])} if ours else {}
                rows.append({"stage": stage, "model": model, "missing": True, **mem})
                continue
            sps = {k: [x["samples"] / x["seconds"] for x in v] for k, v in by.items()}
            tps = {k: [x["tokens"] / x["seconds"] for x in v] for k, v in by.items()}
            # Ratios pair the two sides' runs of the same repeat (adjacent in time); a repeat where one side
            # failed has no ratio.
            trl_of = {x["repeat"]: x for x in trl}
            pairs = [(o, trl_of[o["repeat"]]) for o in ours if o["repeat"] in trl_of]
            paired = [(o["samples"] / o["seconds"]) / (t["samples"] / t["seconds"]) for o, t in pairs]
            # The same ratio from each process's CPU time over the loop: what the work cost, less the time spent
            # waiting for a core while the neighbours ran (steadier on a shared machine, not a substitute).
            paired_cpu = [(o["samples"] / o["cpu_seconds"]) / (t["samples"] / t["cpu_seconds"]) for o, t in pairs]
            row = {"stage": stage, "model": model, "n": len(pairs),
                   "ours_sps": median(sps["ours"]), "trl_sps": median(sps["trl"]),
                   "ours_tps": median(tps["ours"]), "trl_tps": median(tps["trl"]),
                   "ours_mem": median([peak_mb(x) for x in ours]), "trl_mem": median([peak_mb(x) for x in trl]),
                   "ratio": median(paired), "ratios": paired, "cpu_ratio": median(paired_cpu),
                   "target": TARGETS[stage]}
            if stage == "ppo":
                row["ours_episode_s"] = median([x["seconds"] / x["steps"] for x in ours])
                row["trl_episode_s"] = median([x["seconds"] / x["steps"] for x in trl])
                # Per-episode seconds of each phase (workloads.PPOPhases), median over the repeats, per side.
                row["phases"] = {side: {k: median([x["phases"][k] / x["steps"] for x in runs])
                                        for k in PHASES}
                                 for side, runs in (("ours", ours), ("trl", trl))
                                 if all("phases" in x for x in runs)}
                off = by.get("ours+offload", [])
                if off:
                    row["offload_mem"] = median([peak_mb(x) for x in off])
                    row["offload_episode_s"] = median([x["seconds"] / x["steps"] for x in off])
            counted = {c["side"]: c for c in counts
                       if c["stage"] == stage and c["model"] == model and "error" not in c}
            if len(counted) == 2:
                unit = "steps" if stage == "ppo" else "samples"
                row["flops"] = {side: c["flops"] / c[unit] for side, c in counted.items()}
                per_s = ({"ours": 1 / row["ours_episode_s"], "trl": 1 / row["trl_episode_s"]} if stage == "ppo"
                         else {"ours": row["ours_sps"], "trl": row["trl_sps"]})
                row["flops_per_s"] = {side: row["flops"][side] * per_s[side] for side in per_s}
                if all("phase_flops" in c for c in counted.values()):
                    row["phase_flops"] = {side: {k: v / c[unit] for k, v in c["phase_flops"].items()}
                                          for side, c in counted.items()}
            rows.append(row)
    return rows


def repeats(info: dict, a) -> str:
    done = info.get("repeats_done", a.repeats)
    return str(a.repeats) if done == a.repeats else f"{done} of {a.repeats}"


def markdown(rows: list[dict], a, info: dict) -> str:
    out = [
        f"Machine: {info['machine']}; torch {info['torch']}, transformers {info['transformers']}, trl "
        f"{info['trl']}; {a.threads} torch thread(s) per run; {repeats(info, a)} interleaved repeats "
        f"(ours, TRL, ours, TRL, ...); load average {info['load_start']:.1f} at start, {info['load_end']:.1f} at "
        "end (other engineers' jobs share the machine).",
        "",
        "| stage | model | ours samples/s | TRL samples/s | ours tokens/s | TRL tokens/s | ratio ours/TRL (per "
        f"repeat) | same, by CPU time | target | ours {info['memory']} | TRL {info['memory']} |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("missing"):
            out.append(f"| {STAGE_NAMES[r['stage']]} | {r['model']} | failed: see logs |  |  |  |  |  |  |  |  |")
            continue
        met = "met" if r["ratio"] >= r["target"] else "not met"
        per = ", ".join(f"{x:.2f}" for x in r["ratios"])
        out.append(f"| {STAGE_NAMES[r['stage']]} | {r['model']} | {r['ours_sps']:.2f} | {r['trl_sps']:.2f} | "
                   f"{r['ours_tps']:.0f} | {r['trl_tps']:.0f} | **{r['ratio']:.2f}x** ({per}) | {r['cpu_ratio']:.2f}x | "
                   f">= {r['target']:.1f}x: {met} | {r['ours_mem']:.0f} | {r['trl_mem']:.0f} |")
    ppo = [r for r in rows if r["stage"] == "ppo" and not r.get("missing")]
    if ppo:
        out += ["", "PPO seconds per episode (median): "
                + "; ".join(f"{r['model']}: ours {r['ours_episode_s']:.2f} s, TRL {r['trl_episode_s']:.2f} s "
                            f"({r['ours_episode_s'] / r['trl_episode_s']:.2f} of TRL's; target <= 0.67)"
                            for r in ppo)]
        split = [r for r in ppo if len(r.get("phases", {})) == 2]
        if split:
            out += ["", "PPO episode, where the time goes (median seconds per episode; generation: decoding; "
                        "scoring: the rest of the rollout; training: first forward with gradients to last "
                        "optimizer step; other: the rest of the loop):", "",
                    "| model | phase | ours s | TRL s | ours/TRL |", "|---|---|---:|---:|---:|"]
            # The target as a time budget: what coati's rollout may take once its training (matmul-bound, the same
            # arithmetic as TRL's) is paid for.
            budget = []
            for r in split:
                ours, trl = r["phases"]["ours"], r["phases"]["trl"]
                for k in PHASES:
                    out.append(f"| {r['model']} | {k} | {ours[k]:.2f} | {trl[k]:.2f} | "
                               f"{ours[k] / trl[k] if trl[k] > 0.005 else float('nan'):.2f} |")
                allowed = sum(trl.values()) / r["target"]
                left = allowed - ours["training"] - ours["other"]
                budget.append(f"{r['model']}: {allowed:.2f} s, of which training and other take "
                              f"{ours['training'] + ours['other']:.2f} s, leaving {left:.2f} s for generation and "
                              f"scoring (now {ours['generation'] + ours['scoring']:.2f} s)")
            out += ["", f"For {split[0]['target']:.1f}x, coati's episode must fit in TRL's / {split[0]['target']:.1f}: "
                    + "; ".join(budget) + "."]
        off = [r for r in ppo if "offload_mem" in r]
        if off:
            out += ["", f"| PPO memory option (coati) | {info['memory']} | s per episode |", "|---|---:|---:|"]
            for r in off:
                out.append(f"| {r['model']}, frozen models resident | {r['ours_mem']:.0f} | "
                           f"{r['ours_episode_s']:.2f} |")
                out.append(f"| {r['model']}, --offload_frozen | {r['offload_mem']:.0f} | "
                           f"{r['offload_episode_s']:.2f} |")
            if info["memory"] == "peak RSS MB":
                out += ["", "On a CPU-only machine the 'device' is the CPU, so --offload_frozen moves nothing and "
                            "can save nothing: this row shows its cost only. Its saving is accelerator memory."]
    work = (f"Work per run: SFT {a.sft_steps} steps x batch {a.batch_size}; RM {a.rm_steps} steps x "
            f"{a.batch_size} pairs (DPO: the same pairs, beta 0.1, sigmoid loss); PPO {a.episodes} episodes x "
            f"({a.collect_steps} x {a.rollout_batch} prompts, "
            f"{a.response_len} response tokens each, {a.ppo_epochs} PPO epochs over minibatches of "
            f"{a.batch_size * 2}); max_len {a.max_len}; fp32; "
            + ("one process." if a.nproc == 1 else f"{a.nproc} processes (the batch sizes are per process; samples "
               "and tokens count all processes; peak memory is rank 0's)."))
    return "\n".join(out + grpo_lines(rows, a, info) + ["", work]) + "\n"


def grpo_lines(rows: list[dict], a, info: dict) -> list[str]:
    """The GRPO work, and coati's GRPO memory against its PPO on the same model (no critic; a reference only
    with beta > 0)."""
    grpo = [r for r in rows if r["stage"] == "grpo" and not r.get("missing")]
    if not grpo:
        return []
    out = ["", f"GRPO work per run: {a.episodes} episodes x {a.rollout_batch} prompts x {a.generations} answers of "
               f"{a.response_len} tokens, {a.ppo_epochs} passes over minibatches of {a.batch_size * 2} answers, "
               f"beta {a.beta} (k3 KL loss, so a reference model on both sides), one reward function; samples are "
               "answers."]
    ppo = {r["model"]: r for r in rows if r["stage"] == "ppo" and "ours_mem" in r}
    same = [r for r in grpo if r["model"] in ppo]
    if same:
        out += ["", "coati's memory, GRPO against PPO on the same model ({}): ".format(info["memory"]) + "; ".join(
            f"{r['model']}: GRPO {r['ours_mem']:.0f}, PPO {ppo[r['model']]['ours_mem']:.0f}" for r in same)]
    return out


def matmul_peak(a, info: dict) -> float:
    """What utilisation is measured against: the higher of the matmul rates measured, for all the processes."""
    measured = [x for x in info.get("matmul_rate", []) if not math.isnan(x)]
    return max(measured) * a.nproc if measured else float("nan")


def arithmetic_tables(rows: list[dict], a, info: dict) -> str:
    """Each side's FLOPs for the same work, the rate it ran them at, and for PPO what that rate allows."""
    rows = [r for r in rows if "flops" in r]
    if not rows:
        return ""
    rates = info["matmul_rate"]
    peak = matmul_peak(a, info)
    out = ["", "Arithmetic: matmul and attention FLOPs of the same work, counted in one more run per stage, model "
               "and side (workloads.py --count_flops; elementwise ops, norms and the optimizer are not counted), "
               "against the machine's fp32 matmul rate measured as efficiency.py does, with the runs' threads: "
               + ", ".join(f"{x / 1e9:.1f}" for x in rates) + " GFLOP/s (before, after the runs)"
               + (f", x {a.nproc} processes" if a.nproc > 1 else "") + ". Utilisation: counted FLOPs per second "
               "of the timed runs (medians) over the higher rate.", "",
           "| stage | model | GFLOP per | ours | TRL | ours/TRL | ours GFLOP/s | TRL GFLOP/s | ours utilisation | "
           "TRL utilisation |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ppo, done = r["stage"] == "ppo", r["flops_per_s"]
        out.append(f"| {STAGE_NAMES[r['stage']]} | {r['model']} | {'episode' if ppo else 'sample'} | "
                   f"{r['flops']['ours'] / 1e9:.2f} | {r['flops']['trl'] / 1e9:.2f} | "
                   f"{r['flops']['ours'] / r['flops']['trl']:.2f} | {done['ours'] / 1e9:.1f} | {done['trl'] / 1e9:.1f} | "
                   f"{100 * done['ours'] / peak:.0f}% | {100 * done['trl'] / peak:.0f}% |")
    split = [r for r in rows if "phase_flops" in r and len(r.get("phases", {})) == 2]
    if split:
        out += ["", "PPO episode by phase: FLOPs, and the seconds they would take at the matmul rate beside the "
                    "seconds measured (medians per episode):", "",
                "| model | phase | ours GFLOP | TRL GFLOP | ours s at the rate | ours s | TRL s at the rate | TRL s |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        floors = []
        for r in split:
            f, t = r["phase_flops"], r["phases"]
            for k in PHASES[:-1]:  # "other" holds no counted arithmetic
                out.append(f"| {r['model']} | {k} | {f['ours'][k] / 1e9:.2f} | {f['trl'][k] / 1e9:.2f} | "
                           f"{f['ours'][k] / peak:.2f} | {t['ours'][k]:.2f} | {f['trl'][k] / peak:.2f} | "
                           f"{t['trl'][k]:.2f} |")
            floor = r["flops"]["ours"] / peak
            floors.append(f"{r['model']}: {floor:.2f} s of its {r['ours_episode_s']:.2f} s, against TRL's "
                          f"{r['trl_episode_s']:.2f} s: {r['trl_episode_s'] / floor:.2f}x")
        out += ["", "coati's episode if only its counted arithmetic took time, at the matmul rate, and the ratio to "
                    "TRL's measured episode it would then reach (the target is "
                    f"{split[0]['target']:.1f}x): " + "; ".join(floors) + "."]
    return "\n".join(out) + "\n"


def chart(rows: list[dict], path: str, memory: str, peak: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
        return
    rows = [r for r in rows if not r.get("missing")]
    def label(r):
        return f"{STAGE_NAMES[r['stage']]}\n{r['model']}"

    labels = [label(r) for r in rows]
    counted = [r for r in rows if "flops_per_s" in r]
    fig, axes = plt.subplots(1, 3 if counted else 2, figsize=(18 if counted else 12, 4.5))
    ax1, ax2 = axes[:2]
    x = range(len(rows))
    ax1.bar(x, [r["ratio"] for r in rows], color=["tab:green" if r["ratio"] >= r["target"] else "tab:red"
                                                  for r in rows])
    for i, r in enumerate(rows):
        ax1.hlines(r["target"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        ax1.scatter([i] * len(r["ratios"]), r["ratios"], color="black", s=10, zorder=3)
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax1.set_xticks(list(x), labels, fontsize=8)
    ax1.set_ylabel("throughput ours / TRL (median; dots: repeats)")
    ax1.set_title("Speed ratio (dashed: target)")
    w = 0.38
    ax2.bar([i - w / 2 for i in x], [r["ours_mem"] for r in rows], w, label="coati")
    ax2.bar([i + w / 2 for i in x], [r["trl_mem"] for r in rows], w, label="TRL")
    ax2.set_xticks(list(x), labels, fontsize=8)
    ax2.set_ylabel(f"{memory} of the run's process")
    ax2.set_title("Peak memory")
    ax2.legend()
    if counted:  # the arithmetic table's utilisation: how much of the machine's matmul rate each side used
        ax3, xc = axes[2], range(len(counted))
        for offset, side, name in ((-w / 2, "ours", "coati"), (w / 2, "trl", "TRL")):
            ax3.bar([i + offset for i in xc], [100 * r["flops_per_s"][side] / peak for r in counted], w, label=name)
        ax3.set_xticks(list(xc), [label(r) for r in counted], fontsize=8)
        ax3.set_ylabel("counted FLOP/s, % of the measured matmul rate")
        ax3.set_ylim(0, 110)  # room above the bars for the legend
        ax3.set_title("Utilisation")
        ax3.legend()
    fig.tight_layout()
    fig.savefig(f"{path}.tmp", dpi=110, format="png")
    plt.close(fig)
    os.replace(f"{path}.tmp", path)


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's name, with its family and model: a VM may report just "AMD EPYC", a name that has covered
    machines 3x apart in matmul speed from one session to the next here."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def matmul_rate(a, gpu: bool) -> float:
    """The machine's fp32 matmul FLOP/s as one measurement process sees it (same interpreter and threads):
    efficiency.py's best (n x n) @ (n x n), n = 2048 on the CPU, 8192 on a GPU."""
    device, n = ("cuda", 8192) if gpu else ("cpu", 2048)
    code = (f"import sys, torch; sys.path.insert(0, {HERE!r}); import efficiency; torch.set_num_threads({a.threads}); "
            f"print(efficiency.matmul_flops_per_s(torch.device({device!r}), torch.float32, {n}))")
    done = subprocess.run([a.python, "-c", code], capture_output=True, text=True, env=measurement_env(a))
    try:
        return float(done.stdout)
    except ValueError:  # the timed runs still count; only utilisation goes missing
        print(f"matmul rate not measured (utilisation left out): {done.stderr.strip()[-300:]}", file=sys.stderr)
        return float("nan")


def versions(python: str) -> dict:
    code = ("import json, torch, transformers, trl; print(json.dumps({'torch': torch.__version__, 'transformers': "
            "transformers.__version__, 'trl': trl.__version__, 'gpu': torch.cuda.is_available() and "
            "torch.cuda.get_device_name(0), 'simd': torch.backends.cpu.get_cpu_capability()}))")
    try:
        found = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    except (subprocess.CalledProcessError, ValueError):
        sys.exit(f"{python} cannot import torch, transformers and trl; install benchmarks/requirements.txt into a "
                 "venv (see benchmarks/README.md) and pass --python")
    return found


def report(results: list[dict], ckpt: list[dict], a, info: dict, counts: list[dict] = ()) -> str:
    """Write <out>/results.md and results.png from the measurements so far; returns the markdown."""
    info["load_end"] = os.getloadavg()[0]
    info["memory"] = memory_label(results)
    rows = summarise(results, a, counts)
    text = markdown(rows, a, info) + arithmetic_tables(rows, a, info) + checkpoint_table(ckpt, a)
    path = os.path.join(a.out, "results.md")
    with open(f"{path}.tmp", "w") as f:
        f.write(text)
    os.replace(f"{path}.tmp", path)
    chart(rows, os.path.join(a.out, "results.png"), info["memory"], matmul_peak(a, info))
    return text


def main(argv=None) -> None:
    a = parse_args(argv)
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    info = versions(a.python)
    info["machine"] = f"{os.cpu_count()} CPU cores, {cpu_name()}, torch's {info.get('simd')} kernels"
    if info["gpu"]:  # both sides then train on it (coati's strategy and TRL's Trainer take the GPU when there is one)
        info["machine"] += f", GPU {info['gpu']}"
    info["load_start"] = os.getloadavg()[0]
    work = a.work or tempfile.mkdtemp(prefix="coati-bench-work-")
    setup = subprocess.run([a.python, os.path.join(HERE, "workloads.py"), "setup", "--work", work, "--sft_rows",
                            str(a.sft_steps * a.batch_size), "--rm_pairs", str(a.rm_steps * a.batch_size)],
                           capture_output=True, text=True, env=child_env())
    if setup.returncode != 0:
        sys.exit(f"setup of models and data failed:\n{setup.stderr[-3000:]}")
    offload = set(a.offload_models.split(",")) if a.offload_models else set()
    # The machine's matmul rate, before the runs and after them: what "utilisation" is measured against, and a
    # check on how much the machine moved meanwhile.
    info["matmul_rate"] = [matmul_rate(a, info["gpu"])]
    results, counts = [], []
    raw = open(os.path.join(a.out, "results.jsonl"), "w")
    for rep in range(a.repeats):
        for stage in a.stages.split(","):
            for model in a.models.split(","):
                plan = [("ours", False), ("trl", False)]
                if stage == "ppo" and model in offload:
                    plan.append(("ours", True))
                for side, off in plan:
                    tag = f"r{rep}-{stage}-{model}-{side}{'-offload' if off else ''}"
                    r = run_one(a, work, side, stage, model, off, tag)
                    r["repeat"] = rep
                    results.append(r)
                    raw.write(json.dumps(r) + "\n")
                    raw.flush()
                    shown = r.get("error") or (f"{r['samples'] / r['seconds']:.2f} samples/s, "
                                               f"{peak_mb(r):.0f} MB, load {r['load_avg']:.1f}")
                    print(f"[bench] {tag}: {shown}", file=sys.stderr, flush=True)
        info["repeats_done"] = rep + 1
        report(results, [], a, info)  # after every repeat: a run stopped early keeps its whole repeats
    if not a.no_flops:
        counts = counting_runs(a, work, raw)
    info["matmul_rate"].append(matmul_rate(a, info["gpu"]))
    ckpt = activation_checkpointing(a, work, raw) if a.checkpoint_batch and a.nproc == 1 else []
    raw.close()
    text = report(results, ckpt, a, info, counts)
    print(text)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
