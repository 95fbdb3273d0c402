"""benchmarks/efficiency.py measures coati's own SFT step and accounts for all of its op time; workloads.py splits
a PPO run's time into phases the same way on both sides.

Figures only, no timing asserted: what is checked is which model is timed and that the breakdowns add up."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import flag_tables  # noqa: E402

TINY = ["--layers", "1", "--width", "64", "--batch_size", "2", "--steps", "2", "--warmup", "1", "--matmul_n", "128",
        "--threads", "1"]


@pytest.fixture(scope="module")
def efficiency():
    return flag_tables.load_module(os.path.join(ROOT, "benchmarks", "efficiency.py"))


def test_efficiency_times_the_model_coati_loads(efficiency):
    """GPT-2 with the fused GELU that coati's loader swaps in, not transformers' five-op gelu_new."""
    from transformers.activations import ACT2FN

    model = efficiency.build(efficiency.parse_args(["--model", "gpt2", *TINY]))[0]
    kinds = {type(m) for m in model.modules()}
    assert type(ACT2FN["gelu_pytorch_tanh"]) in kinds and type(ACT2FN["gelu_new"]) not in kinds


@pytest.mark.parametrize("family", ["gpt2", "gptneox"])
def test_breakdown_accounts_for_the_whole_step(efficiency, family, tmp_path):
    report = efficiency.main(["--model", family, *TINY, "--breakdown", "--out", str(tmp_path / "e.json")])
    bd = report["breakdown"]
    assert sum(bd["share"].values()) == pytest.approx(1.0)
    assert sum(bd["seconds"].values()) > 0
    # Every category the step must contain was found by name: the linear layers, sdpa, GELU, norms, AdamW.
    for category in ("weight matmuls", "attention", "activation", "norm layers", "optimizer"):
        assert bd["seconds"][category] > 0, category
    # The matmul rate is their FLOPs (6 x matmul params x tokens over both steps) over their own time.
    tokens = report["tokens_per_s"] * report["seconds_per_step"] * report["steps"]
    expected = 6 * report["matmul_params"] * tokens / bd["seconds"]["weight matmuls"]
    assert bd["weight_matmul_flops_per_s"] == pytest.approx(expected, rel=1e-6)
    assert os.path.getsize(tmp_path / "e.json") > 0


def test_preset_is_polyglot_ko_1_3b_and_lora_counts_frozen_weights_at_4_flops(efficiency):
    """The 1.3B preset has the published shape (counted on the meta device, no memory): matmul parameters
    24 x (2048 x 6144 + 2048 x 2048 + 2 x 2048 x 8192) + the 30080 x 2048 LM head. Under LoRA only the adapters
    are trained, and the report's FLOPs count the frozen weights 4x per token, the adapters 6x."""
    import torch
    from transformers import AutoModelForCausalLM

    args = efficiency.parse_args(["--preset", "polyglot-ko-1.3b"])
    config = efficiency.preset_config(args, {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1})
    rope = getattr(config, "rope_parameters", None)  # transformers 5 keeps rotary_pct there
    rotary = rope["partial_rotary_factor"] if rope else config.rotary_pct
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, rotary, config.use_parallel_residual) == ("gpt_neox", 24, 2048, 16, 8192, 0.5, True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert efficiency.matmul_params(model) == 24 * (2048 * 6144 + 2048 * 2048 + 2 * 2048 * 8192) + 30080 * 2048
    small = efficiency.parse_args(["--preset", "polyglot-ko-1.3b", "--layers", "1", "--width", "128",
                                   "--lora_rank", "8", *TINY[4:]])
    model = efficiency.build(small)[0]
    trained, frozen = efficiency.trained_and_frozen(model)
    # one layer's adapters: r x (in + out) for qkv (128 -> 384), dense (128 -> 128), MLP up and down (128 <-> 512)
    assert trained == 8 * ((128 + 384) + (128 + 128) + 2 * (128 + 512))
    assert trained + frozen == efficiency.matmul_params(model)


def test_ppo_phases_split_the_loop_by_event_order(monkeypatch):
    """Two episodes on a scripted clock: decoding calls, the rollout's rest, the updates, and what is left over."""
    workloads = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "workloads.py"))
    now = [0.0]
    monkeypatch.setattr(workloads, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(workloads, "counted_flops", lambda: now[0] * 1e9)  # a FLOP meter that runs with the clock
    phases = workloads.PPOPhases()

    def decode(seconds):
        now[0] += seconds

    decode_timed = phases.timed_generation(decode)
    for gen, score, train, tail in ((2.0, 1.0, 5.0, 0.5), (1.5, 0.5, 4.0, 0.25)):
        now[0] += 0.125  # prompt loading: other
        decode_timed(gen / 2)
        now[0] += score / 2  # scoring between two decoding calls, as TRL interleaves them
        decode_timed(gen / 2)
        now[0] += score / 2
        phases.training_begins()
        for _ in range(4):
            now[0] += train / 4
            phases.stepped()
            phases.training_begins()  # later forwards with gradients do not restart the span
        now[0] += tail  # metrics and logging after the last step: other
    split = phases.result(now[0])
    assert split == pytest.approx({"generation": 3.5, "scoring": 1.5, "training": 9.0, "other": 1.0})
    assert sum(split.values()) == pytest.approx(now[0])
    # The FLOP meter is read at the same boundaries, so its split is the clock's, in GFLOP.
    assert phases.flop_split(now[0] * 1e9) == pytest.approx({k: v * 1e9 for k, v in split.items()})


def test_flop_counter_counts_the_cpu_ops_torch_leaves_out():
    """oneDNN's linear (coati's rollout) counts as F.linear does; sdpa's CPU flash kernel, forward and backward,
    as the same attention written out in matmuls, which torch's own table counts."""
    import torch
    import torch.nn.functional as F

    workloads = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "workloads.py"))
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 5, 16, generator=g), torch.randn(24, 16, generator=g), torch.randn(24, generator=g)

    def counted(fn):
        with workloads.flop_counter() as counter:
            fn()
        return counter.get_total_flops()

    onednn = counted(lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
    assert onednn == counted(lambda: F.linear(x, w, b)) == 2 * 3 * 5 * 24 * 16

    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, requires_grad=True) for _ in range(3))

    def flash():
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    def written_out():
        scores = (q @ k.transpose(-1, -2)) / 8 ** 0.5
        (scores.softmax(-1) @ v).sum().backward()

    assert counted(flash) == counted(written_out) == 3 * 4 * 2 * 3 * 7 * 7 * 8  # forward 2 products, backward 4


def test_second_pass_and_cudnn_attention_switch_are_reported(efficiency):
    """The timed batches run twice (a gap is per-shape setup); --no_cudnn_attention turns torch's backend off."""
    import torch

    try:
        report = efficiency.main(["--model", "gpt2", *TINY, "--no_cudnn_attention"])
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
    assert report["cudnn_attention"] is False
    assert report["seconds_per_step"] > 0 and report["seconds_per_step_again"] > 0


def test_run_reports_gpu_memory_where_the_runs_had_a_gpu(monkeypatch):
    """A GPU run's table gives accelerator memory (what --offload_frozen saves there); a CPU run's, peak RSS. The
    measurements see the project first on PYTHONPATH and keep what was there."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))  # run.py imports its neighbour workloads.py
    run = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "run.py"))
    a = run.parse_args(["--repeats", "1", "--stages", "ppo", "--models", "gpt2"])

    def result(side, gpu, offload=False):
        r = {"side": side, "stage": "ppo", "model": "gpt2", "offload": offload, "repeat": 0, "samples": 32,
             "tokens": 2400, "seconds": 2.0 if side == "ours" else 3.0, "cpu_seconds": 2.0, "steps": 2,
             "peak_rss_mb": 1500.0}
        return {**r, "peak_gpu_mb": gpu} if gpu is not None else r

    info = {"machine": "m", "torch": "t", "transformers": "tf", "trl": "trl", "load_start": 0.0, "load_end": 0.0}
    for gpu, label, figures in ((None, "peak RSS MB", ("| 1500 | 1500 |",)),
                                ((300.0, 500.0, 260.0), "peak GPU MB", ("| 300 | 500 |", "--offload_frozen | 260 |"))):
        results = [result("ours", gpu and gpu[0]), result("trl", gpu and gpu[1]),
                   result("ours", gpu and gpu[2], offload=True)]
        info["memory"] = run.memory_label(results)
        text = run.markdown(run.summarise(results, a), a, info)
        assert info["memory"] == label and f"ours {label} | TRL {label} |" in text
        for figure in figures:
            assert figure in text
        assert ("On a CPU-only machine" in text) == (gpu is None)
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    assert run.child_env()["PYTHONPATH"].split(os.pathsep) == [ROOT, "/opt/site"]


def test_run_writes_its_table_after_every_repeat(monkeypatch, tmp_path):
    """A run stopped by a time limit in its second repeat (as on a lent GPU) keeps the first repeat's table."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    run = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "run.py"))
    monkeypatch.setattr(run, "versions", lambda python: {"torch": "t", "transformers": "tf", "trl": "trl",
                                                         "gpu": False})
    real_run = run.subprocess.run

    def setup_or_real(cmd, *args, **kwargs):  # the models and data setup is not needed here
        if "setup" in cmd:
            return types.SimpleNamespace(returncode=0, stderr="")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(run.subprocess, "run", setup_or_real)

    def run_one(a, work, side, stage, model, offload, tag, extra=()):
        if tag.startswith("r1-"):
            raise KeyboardInterrupt  # the limit strikes during the second repeat
        return {"side": side, "stage": stage, "model": model, "offload": offload, "samples": 40, "tokens": 4000,
                "seconds": 2.0 if side == "ours" else 3.0, "cpu_seconds": 2.0, "steps": 10, "peak_rss_mb": 500.0,
                "load_avg": 0.0}

    monkeypatch.setattr(run, "run_one", run_one)
    monkeypatch.setattr(run, "matmul_rate", lambda a, gpu: 50e9)
    out = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        run.main(["--out", str(out), "--work", str(tmp_path / "work"), "--repeats", "2", "--stages", "sft",
                  "--models", "gpt2", "--checkpoint_batch", "0"])
    text = (out / "results.md").read_text()
    assert "1 of 2 interleaved repeats" in text and "**1.50x** (1.50)" in text
    assert not (out / "results.md.tmp").exists()


def test_run_counts_each_sides_flops_and_reports_what_the_matmul_rate_allows(monkeypatch, tmp_path):
    """After the timed repeats, one --count_flops run per side; the arithmetic table divides their FLOPs by the
    work and by the timed runs' seconds, and gives the episode coati's arithmetic alone would take."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    run = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "run.py"))
    monkeypatch.setattr(run, "versions", lambda python: {"torch": "t", "transformers": "tf", "trl": "trl",
                                                         "gpu": False, "simd": "AVX2"})
    monkeypatch.setattr(run.subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0, stderr=""))
    rates = iter([40e9, 50e9])  # before and after the runs
    monkeypatch.setattr(run, "matmul_rate", lambda a, gpu: next(rates))
    calls = []

    def run_one(a, work, side, stage, model, offload, tag, extra=()):
        calls.append((tag, tuple(extra)))
        r = {"side": side, "stage": stage, "model": model, "offload": offload, "samples": 32, "tokens": 2400,
             "steps": 2, "peak_rss_mb": 500.0, "load_avg": 0.0, "cpu_seconds": 2.0,
             "seconds": 2.0 if side == "ours" else 3.0,  # 1.0 and 1.5 s per episode
             "phases": {"generation": 0.5, "scoring": 0.5, "training": 1.0, "other": 0.0}}
        if "--count_flops" in extra:
            gflop = {"ours": 20, "trl": 24}[side]  # 10 and 12 GFLOP per episode
            r.update(flops=gflop * 1e9, phase_flops={"generation": 2e9, "scoring": 4e9,
                                                     "training": (gflop - 6) * 1e9, "other": 0.0})
        return r

    monkeypatch.setattr(run, "run_one", run_one)
    out = tmp_path / "bench"
    run.main(["--out", str(out), "--work", str(tmp_path / "work"), "--repeats", "1", "--stages", "ppo",
              "--models", "gpt2", "--offload_models", "", "--checkpoint_batch", "0"])
    assert [c for c in calls if c[1]] == [("flops-ppo-gpt2-ours", ("--count_flops",)),
                                          ("flops-ppo-gpt2-trl", ("--count_flops",))]
    text = (out / "results.md").read_text()
    assert f"CPU cores, {run.cpu_name()}, torch's AVX2 kernels" in text
    assert "40.0, 50.0 GFLOP/s (before, after the runs)" in text
    # per episode: 10 and 12 GFLOP; at 1.0 and 1.5 s, 10 and 8 GFLOP/s, 20% and 16% of the higher rate
    assert "| PPO episode | gpt2 | episode | 10.00 | 12.00 | 0.83 | 10.0 | 8.0 | 20% | 16% |" in text
    assert "| gpt2 | training | 7.00 | 9.00 | 0.14 | 0.50 | 0.18 | 0.50 |" in text
    # 10 GFLOP at 50 GFLOP/s is 0.2 s; TRL's 1.5 s episode over that
    assert "gpt2: 0.20 s of its 1.00 s, against TRL's 1.50 s: 7.50x" in text
    counted = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sum("flops" in r for r in counted) == 2


def test_cpu_name_keeps_family_and_model(tmp_path):
    run = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "run.py"))
    block = "processor\t: {}\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\n"
    (tmp_path / "cpuinfo").write_text(block.format(0) + block.format(1))
    assert run.cpu_name(str(tmp_path / "cpuinfo")) == "AMD EPYC (family 23, model 1)"


def test_gpu_checks_script_passes_only_flags_its_scripts_accept(tmp_path, monkeypatch):
    """benchmarks/gpu_checks.sh is meant for a lent GPU, where a stale flag would waste the session's device
    time. Its --dry listing names every GPU step, and each command must parse with that script's own parser."""
    script = os.path.join(ROOT, "benchmarks", "gpu_checks.sh")
    done = subprocess.run(["bash", script, "--dry"], env=dict(os.environ, OUT=str(tmp_path)), capture_output=True,
                          text=True, check=True)
    commands = [shlex.split(line[len("RUN "):]) for line in done.stdout.splitlines() if line.startswith("RUN ")]
    assert [c[1] for c in commands] == ["benchmarks/efficiency.py", "benchmarks/efficiency.py",
                                        "benchmarks/gpu_strategies.py", "benchmarks/gpu_strategies.py"]
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))  # gpu_strategies imports run.py as `run`
    parsed = [flag_tables.load_module(os.path.join(ROOT, c[1])).parse_args(c[2:]) for c in commands]
    full, lora, gemini, strategies = parsed
    for a in (full, lora):
        assert (a.device, a.dtype, a.preset, a.pad_to_multiple_of) == ("cuda", "bf16", "polyglot-ko-1.3b", 64)
        assert a.layers is None and a.width is None  # the preset's own 24 x 2048
    assert (full.lora_rank, lora.lora_rank) == (0, 8)
    assert (gemini.stages, gemini.strategies, gemini.dtype) == ("rm,ppo", "naive,colossalai_gemini", "bf16")
    assert (strategies.stages, strategies.strategies, strategies.dtype) == ("sft", "naive,fsdp", "bf16")
    # Each step runs under `timeout`; the limits leave room in the lent machine's 600 s per call.
    limits = [int(x) for x in re.findall(r"^\s*step \w+ (\d+) ", open(script).read().split("else\n", 1)[1], re.M)]
    assert len(limits) == 4 and sum(limits) <= 570
    assert all(a.out.startswith(str(tmp_path)) for a in parsed)

    wrong = subprocess.run(["bash", script, "--gpu"], env=dict(os.environ, OUT=str(tmp_path / "refused")),
                           capture_output=True, text=True)
    assert wrong.returncode == 2
    assert "unknown argument '--gpu'" in wrong.stderr
    assert not (tmp_path / "refused").exists()  # refused before anything is written


@pytest.mark.parametrize("stage", ["dpo", "dpo_pre"])
def test_dpo_workload_runs_and_reports_pairs(tmp_path, stage):
    """A tiny real run of coati's DPO measurement (reference live and precomputed); TRL's side too where trl is
    importable. The figures are only checked to be counts of the work done."""
    import importlib.util

    work, env = tmp_path / "work", dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    script = os.path.join(ROOT, "benchmarks", "workloads.py")
    subprocess.run([sys.executable, script, "setup", "--work", str(work), "--sft_rows", "4", "--rm_pairs", "6"],
                   check=True, env=env, capture_output=True)
    sides = ["ours"] + (["trl"] if importlib.util.find_spec("trl") else [])
    for side in sides:
        done = subprocess.run([sys.executable, script, "run", "--work", str(work), "--scratch", str(tmp_path / side),
                               "--side", side, "--stage", stage, "--model", "gpt2", "--batch_size", "2",
                               "--max_len", "128"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        assert (result["side"], result["stage"], result["samples"], result["steps"]) == (side, stage, 6, 3)
        assert result["tokens"] > 6 * 2 and result["seconds"] > 0 and result["peak_rss_mb"] > 0
def test_run_reports_grpo_answers_per_second_and_its_memory_against_ppo(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    run = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "run.py"))
    a = run.parse_args(["--repeats", "1", "--stages", "ppo,grpo", "--models", "gpt2", "--generations", "4"])
    assert "generations" in run.WORK_FLAGS and run.TARGETS["grpo"] == 1.5

    def result(side, stage, mb):
        return {"side": side, "stage": stage, "model": "gpt2", "offload": False, "repeat": 0, "samples": 64,
                "tokens": 4800, "seconds": 4.0 if side == "ours" else 8.0, "cpu_seconds": 4.0, "steps": 2,
                "peak_rss_mb": mb}

    results = [result("ours", "ppo", 1500.0), result("trl", "ppo", 1700.0), result("ours", "grpo", 900.0),
               result("trl", "grpo", 1100.0)]
    info = {"machine": "m", "torch": "t", "transformers": "tf", "trl": "trl", "load_start": 0.0, "load_end": 0.0,
            "memory": "peak RSS MB"}
    text = run.markdown(run.summarise(results, a), a, info)
    assert "| GRPO | gpt2 | 16.00 | 8.00 | 1200 | 600 | **2.00x** (2.00) | 1.00x | >= 1.5x: met | 900 | 1100 |" in text
    assert "coati's memory, GRPO against PPO on the same model (peak RSS MB): gpt2: GRPO 900, PPO 1500" in text
    assert "8 prompts x 4 answers of 32 tokens" in text
    # TRL 1.16 has no PPO trainer: without its side the PPO row fails, and coati's PPO memory still compares
    text = run.markdown(run.summarise([r for r in results if (r["side"], r["stage"]) != ("trl", "ppo")], a), a, info)
    assert "| PPO episode | gpt2 | failed: see logs |" in text
    assert "gpt2: GRPO 900, PPO 1500" in text


@pytest.mark.parametrize("side", ["ours", "trl"])
def test_grpo_workload_runs_the_same_work_on_both_sides(side, tmp_path, capsys):
    """A tiny GRPO measurement: rollout_batch x generations answers of response_len tokens per episode, counted."""
    if side == "trl":
        pytest.importorskip("trl")
    workloads = flag_tables.load_module(os.path.join(ROOT, "benchmarks", "workloads.py"))
    work = str(tmp_path / "work")
    workloads.setup(work, 4, 4)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workloads.main(["run", "--work", work, "--scratch", str(scratch), "--side", side, "--stage", "grpo", "--model",
                    "gpt2", "--episodes", "2", "--rollout_batch", "2", "--generations", "2", "--batch_size", "1",
                    "--ppo_epochs", "1", "--response_len", "4"])
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["stage"] == "grpo" and result["samples"] == 2 * 2 * 2 and result["steps"] == 2
    assert result["response_tokens"] == 8 * 4 and result["seconds"] > 0 and result["peak_rss_mb"] > 0
    assert workloads.bench_reward(["p", "q"], responses=["aab", "abc"]) == [0.2, 0.3]
