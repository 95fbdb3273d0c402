"""How much of the machine an SFT step uses: model FLOP/s achieved by coati's SFT step over measured matmul FLOP/s.

    python benchmarks/efficiency.py                                   # CPU, fp32, the 6 x 256 GPT-2 of run.py
    python benchmarks/efficiency.py --device cuda --dtype bf16 --layers 12 --width 768 --batch_size 16
    python benchmarks/efficiency.py --breakdown                       # also: where the step's op time goes
    python benchmarks/efficiency.py --device cuda --dtype bf16 --preset polyglot-ko-1.3b --batch_size 32 \
        --pad_to_multiple_of 64 [--lora_rank 8]                       # the real 1.3B shape, full or LoRA

Model FLOPs of one training step over a batch of B rows padded to T tokens (the PaLM appendix convention):

    6 * N * B * T            weights: 2 FLOPs per multiply-add, forward (1x) + backward (2x), N = parameters
                             that take part in a matmul: every 2-D weight of the blocks plus the LM head (V x d),
                             embedding lookups and position tables excluded. With --lora_rank the frozen weights
                             count 4 * N (forward, and the backward's input gradient; no weight gradient) and the
                             adapters 6 * N
    + 12 * L * d * T * B * T attention scores QK^T and weighted sum AV: 2 * 2 * T * d per token per layer forward,
                             x3 for training; counted over the full T x T square as is usual (a causal kernel that
                             skips the masked half does less work, so this slightly flatters a causal model)

Padded positions are computed by the model, so they count; the report also gives the share of real tokens.
The step is coati's own SFTTrainer.train_step (forward, token loss, backward, clip, AdamW, schedule).
The machine figure is the best of several timed (n x n) @ (n x n) matmuls in the same dtype on the same device,
2 n^3 FLOPs each: what this device does on the most favourable kernel, with --threads threads on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# Real architectures with random weights: the config fields of the published checkpoint (its vocabulary size too,
# so the LM head has its real cost; the shipped tokenizer's ids are all below it). --layers / --width scale one
# down (heads of 128, MLP 4 x width), for a quick pass of the same code.
PRESETS = {
    "polyglot-ko-1.3b": dict(model_type="gpt_neox", family="gptneox", num_hidden_layers=24, hidden_size=2048,
                             num_attention_heads=16, intermediate_size=8192, rotary_pct=0.5,
                             use_parallel_residual=True, max_position_embeddings=2048, vocab_size=30080,
                             hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=tuple(DTYPES))
    p.add_argument("--model", default="gpt2", choices=("gpt2", "gptneox"))
    p.add_argument("--preset", default=None, choices=tuple(PRESETS),
                   help="a real architecture instead of --model (random weights); --layers / --width then scale it")
    p.add_argument("--layers", type=int, default=None, help="default 6 (a preset: its own)")
    p.add_argument("--width", type=int, default=None, help="default 256 (a preset: its own)")
    p.add_argument("--lora_rank", type=int, default=0, help="train LoRA adapters of this rank (0: every weight)")
    p.add_argument("--pad_to_multiple_of", type=int, default=None,
                   help="pad each batch to a multiple of N tokens, as the stage scripts' flag does")
    p.add_argument("--micro_batches", type=int, default=1, help="batches accumulated per optimizer step")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--max_len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps, after --warmup untimed ones")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--matmul_n", type=int, default=None, help="matmul size (default 2048 on CPU, 8192 on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    p.add_argument("--breakdown", action="store_true",
                   help="also run the timed steps again under torch.profiler: time per op category, and the FLOP/s "
                        "of the weight matmuls' own kernels")
    p.add_argument("--no_cudnn_attention", action="store_true",
                   help="turn off torch's cuDNN attention backend (SDPA then takes flash or memory-efficient "
                        "attention): on a GPU, cuDNN builds an execution plan per new sequence length")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    return p.parse_args(argv)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(device, dtype, n: int, reps: int = 5) -> float:
    """Best FLOP/s over `reps` timed rounds of (n x n) @ (n x n)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    inner = 10 if device.type == "cuda" else 2
    (a @ b).sum().item()  # warm up kernels and allocator
    best = 0.0
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        for _ in range(inner):
            c = a @ b
        sync(device)
        best = max(best, inner * 2 * n ** 3 / (time.perf_counter() - t))
    del c
    return best


def matmul_params(model) -> int:
    """Parameters that enter a matmul: 2-D weights outside embedding tables, plus the LM head (tied or not)."""
    import torch

    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = sum(p.numel() for p in model.parameters() if p.ndim == 2 and id(p) not in embedding_weights)
    head = model.get_output_embeddings().weight
    if id(head) in embedding_weights:  # tied: the head's matmul is not among the 2-D weights counted above
        n += head.numel()
    return n


# torch.profiler op names by category; the first category whose word is in the name takes the op.
OP_CATEGORIES = (
    ("weight matmuls", ("aten::mm", "aten::addmm")),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "aten::bmm", "aten::baddbmm")),
    ("activation", ("gelu", "silu", "relu")),
    ("norm layers", ("layer_norm", "rms_norm")),
    ("optimizer", ("adam", "_foreach", "vector_norm")),  # vector_norm: the gradient-norm clip
)


def op_breakdown(run_steps, device, weight_flops: float) -> dict:
    """Run `run_steps()` under torch.profiler; return the self time of each op category (seconds) and the FLOP/s
    of the weight matmuls' kernels alone: `weight_flops` (their FLOPs in those steps) over their self time.

    aten::mm / aten::addmm are the linear layers and the LM head in forward and backward; the attention scores
    run inside the fused attention kernel (or bmm where a family has no sdpa) and are counted as attention.
    On CUDA the kernels' device time is read, on the CPU the ops' own time.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_steps()
        sync(device)
    times = {name: 0.0 for name, _ in OP_CATEGORIES} | {"other": 0.0}
    others = {}
    for event in prof.key_averages():
        if event.device_type != DeviceType.CPU:
            continue  # a CUDA kernel's own row: its time is already in the self device time of the op that launched it
        us = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        category = next((name for name, words in OP_CATEGORIES if any(w in event.key for w in words)), "other")
        times[category] += us / 1e6
        if category == "other" and us > 0:
            others[event.key] = us / 1e6
    total = sum(times.values())
    return {
        "seconds": times, "share": {k: v / total for k, v in times.items()},
        "top_other_ops": dict(sorted(others.items(), key=lambda kv: -kv[1])[:6]),
        "weight_matmul_flops_per_s": weight_flops / times["weight matmuls"] if times["weight matmuls"] else None,
    }


def trained_and_frozen(model) -> tuple[int, int]:
    """Matmul parameters (as `matmul_params` counts them) that are trained, and those that are frozen."""
    import torch

    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    trained = sum(p.numel() for p in model.parameters()
                  if p.ndim == 2 and id(p) not in embedding_weights and p.requires_grad)
    head = model.get_output_embeddings().weight
    if id(head) in embedding_weights and head.requires_grad:
        trained += head.numel()
    return trained, matmul_params(model) - trained


def preset_config(args, ids: dict):
    """The preset's config; --layers / --width scale it down (heads of 128 channels, MLP 4 x width)."""
    from transformers import AutoConfig

    fields = dict(PRESETS[args.preset])
    model_type = fields.pop("model_type")
    fields.pop("family")
    if args.layers:
        fields["num_hidden_layers"] = args.layers
    if args.width:
        fields.update(hidden_size=args.width, intermediate_size=4 * args.width,
                      num_attention_heads=max(1, args.width // 128))
    return AutoConfig.for_model(model_type, **fields, **{k: v for k, v in ids.items() if k != "vocab_size"})


def build(args):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from coati.dataset.io import load_rows
    from coati.dataset.sft import Keys, SFTCollator, SFTDataset
    from coati.models.loading import apply_lora, swap_activation
    from coati.models.registry import FAMILIES
    from coati.optim import build_optimizer, cosine_schedule
    from coati.strategies.base import Strategy
    from coati.trainer.sft import SFTTrainer

    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "coati", "assets", "tokenizer"))
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id)
    layers, width = args.layers or 6, args.width or 256
    heads = max(1, width // 64)
    family = PRESETS[args.preset]["family"] if args.preset else args.model
    if args.preset:
        config = preset_config(args, ids)
    elif args.model == "gpt2":
        config = AutoConfig.for_model("gpt2", n_embd=width, n_layer=layers, n_head=heads,
                                      n_positions=max(512, args.max_len), resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, **ids)
    else:
        config = AutoConfig.for_model("gpt_neox", hidden_size=width, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=4 * width,
                                      max_position_embeddings=max(512, args.max_len), hidden_dropout=0.0,
                                      attention_dropout=0.0, **ids)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    with device:  # initialised where it runs: a 1.3B model's random init on the CPU alone takes a while
        model = AutoModelForCausalLM.from_config(config).to(dtype=dtype)
    swap_activation(model, FAMILIES[family])  # as coati's loader does: GPT-2's GELU as one fused kernel
    model = apply_lora(model, args.lora_rank, 16, 0.0)  # as the stage scripts do, without dropout
    rows = load_rows(os.path.join(ROOT, "data", "kochatgpt_sft_ko.jsonl"))
    data = SFTDataset(rows, tok, args.max_len, "ko", Keys("prompt", "input", "completion"))
    strategy = Strategy(seed=42)
    strategy.device = device  # the naive strategy, on the device asked for
    optimizer = build_optimizer(model, 2e-5)
    need = (args.warmup + args.steps) * args.batch_size * args.micro_batches
    loader = strategy.dataloader(torch.utils.data.Subset(data, range(min(need, len(data)))), args.batch_size,
                                 SFTCollator(tok.pad_token_id, args.pad_to_multiple_of), shuffle=True)
    trainer = SFTTrainer(strategy=strategy, model=model, optimizer=optimizer,
                         scheduler=cosine_schedule(optimizer, args.warmup + args.steps), train_loader=loader)
    return model, trainer, loader, config, device, dtype


def main(argv=None) -> dict:
    import torch

    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: this torch sees no CUDA device (a CPU build, or no GPU here)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)
    model, trainer, loader, config, device, dtype = build(args)
    k = args.micro_batches
    batches = list(loader)
    steps = [batches[i:i + k] for i in range(0, len(batches) - k + 1, k)]  # k micro-batches per optimizer step
    if len(steps) < args.warmup + args.steps:
        sys.exit(f"only {len(batches)} batches of shipped data; lower --steps/--batch_size/--micro_batches")
    n_mm = matmul_params(model)
    n_trained, n_frozen = trained_and_frozen(model)
    per_token = 6 * n_trained + 4 * n_frozen  # weight FLOPs per token of a training step (docstring)
    layers, width = config.num_hidden_layers, config.hidden_size
    model.train()
    for step in steps[:args.warmup]:
        trainer.train_step(step)
    timed = steps[args.warmup:args.warmup + args.steps]
    micro = [mb for step in timed for mb in step]
    flops = sum((per_token + 12 * layers * width * mb["input_ids"].shape[1]) * mb["input_ids"].numel() for mb in micro)
    padded = sum(mb["input_ids"].numel() for mb in micro)
    real = sum(int(mb["attention_mask"].sum()) for mb in micro)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed_pass() -> float:
        sync(device)
        t = time.perf_counter()
        for step in timed:
            trainer.train_step(step)
        sync(device)
        return time.perf_counter() - t

    seconds = timed_pass()
    # The same batches again: every padded length has now been seen once. A gap between the two passes is
    # per-shape setup (kernel plans, allocator growth), which a long run pays once per distinct length.
    seconds_again = timed_pass()
    n = args.matmul_n or (8192 if device.type == "cuda" else 2048)
    peak = matmul_flops_per_s(device, dtype, n)
    achieved = flops / seconds
    report = {
        "device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "model": f"{args.preset or args.model} {layers} x {width}", "matmul_params": n_mm,
        "trained_matmul_params": n_trained, "lora_rank": args.lora_rank,
        "total_params": sum(p.numel() for p in model.parameters()), "steps": args.steps,
        "batch_size": args.batch_size, "micro_batches": k, "pad_to_multiple_of": args.pad_to_multiple_of,
        "padded_lengths": sorted({mb["input_ids"].shape[1] for mb in micro}),
        "seconds_per_step": seconds / args.steps,
        "seconds_per_step_again": seconds_again / args.steps, "tokens_per_s": padded / seconds,
        "real_token_share": real / padded, "model_flops_per_s": achieved, "matmul_flops_per_s": peak,
        "utilisation": achieved / peak, "matmul_n": n, "cudnn_attention": not args.no_cudnn_attention,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    if args.breakdown:
        report["breakdown"] = op_breakdown(lambda: [trainer.train_step(step) for step in timed], device,
                                         per_token * padded)  # the weight matmuls' FLOPs in those steps
    print(f"{report['model']} ({n_mm / 1e6:.2f}M matmul params"
          + (f", LoRA r{args.lora_rank}: {n_trained / 1e6:.2f}M of them trained" if args.lora_rank else "")
          + f"), {args.dtype} on {device}"
          + (f" with {report['threads']} thread(s)" if report["threads"] else "") + ":\n"
          f"  SFT step: {report['seconds_per_step'] * 1000:.0f} ms, {report['tokens_per_s']:.0f} tokens/s "
          f"({100 * report['real_token_share']:.0f}% real, the rest padding); "
          f"{report['seconds_per_step_again'] * 1000:.0f} ms over the same batches again\n"
          f"  model FLOP/s achieved: {achieved / 1e9:.2f} GFLOP/s\n"
          f"  matmul FLOP/s measured ({n} x {n}): {peak / 1e9:.2f} GFLOP/s\n"
          f"  utilisation: {100 * report['utilisation']:.1f}%"
          + (f"\n  peak GPU memory: {report['peak_gpu_bytes'] / 2**30:.1f} GiB" if report["peak_gpu_bytes"] else ""))
    if args.breakdown:
        bd = report["breakdown"]
        print("  op time under torch.profiler: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in bd["share"].items()))
        print(f"  weight matmul kernels alone: {bd['weight_matmul_flops_per_s'] / 1e9:.2f} GFLOP/s "
              f"({100 * bd['weight_matmul_flops_per_s'] / peak:.0f}% of the measured matmul FLOP/s)")
        print("  largest 'other' ops: " + ", ".join(f"{k} {1000 * v / args.steps:.1f} ms/step"
                                                   for k, v in bd["top_other_ops"].items()))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
