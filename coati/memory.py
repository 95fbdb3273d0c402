"""Predicted peak memory per process of a coati stage, from the model's config alone (no weights are loaded).

    python -m coati.memory --pretrain polyglot-ko-1.3b --stage ppo --lora_rank 8 --dtype bf16
    python -m coati.memory --pretrain runs/sft-ko-1.3b --stage sft --batch_size 4 --max_len 512 --grad_checkpoint
    python -m coati.memory --gpu_table                  # which 24/40/80 GB GPU fits which model and stage

--pretrain is a model folder (its config.json is read) or a `python -m coati.kit preset` name. The terms:
weights of every model the stage holds, trainable state (gradients, AdamW's two moments, fp32 master weights of
bf16 parameters), the activations of the largest step, the KV cache of decoding, and the process's runtime.
The activation constants are what autograd saves per token and layer in each family, counted from the
architecture (tests/test_memory.py checks them against the tensors torch actually saves); measured peaks on the
1.3B shape are in benchmarks/README.md ("Real shapes").
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass

from coati.errors import UserError, exit_on_user_error

GiB = 2**30
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# What a process holds besides the terms above. CPU: python, torch, transformers, tokenizer and data (0.42 GiB, a
# tiny model's whole run) plus 0.6 GiB that the 1.3B runs held beyond the arithmetic (allocator and BLAS working
# buffers, loading copies), calibrated on benchmarks/README.md's "Real shapes". GPU: the CUDA context and the
# caching allocator's slack.
RUNTIME = {"cpu": 1.0 * GiB, "cuda": 1.0 * GiB}


@dataclass(frozen=True)
class Shape:
    """The numbers of a causal LM's config that memory depends on."""
    family: str  # config model_type: "gpt_neox" or "llama"
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False
    saved_dtype: str | None = None  # the checkpoint's dtype, when its config says

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    # -- parameter counts -------------------------------------------------------------------------------------
    def layer_params(self) -> int:
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        if self.family == "gpt_neox":  # fused qkv and dense with biases, a 2-matrix MLP with biases, 2 LayerNorms
            return (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
        return 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o, k, v; gate, up, down; 2 RMSNorms, no biases

    def backbone_params(self) -> int:
        final_norm = 2 * self.hidden if self.family == "gpt_neox" else self.hidden
        return self.vocab * self.hidden + self.layers * self.layer_params() + final_norm

    def lm_params(self) -> int:
        """The causal LM: backbone and LM head (none of its own when tied to the embeddings)."""
        return self.backbone_params() + (0 if self.tied else self.vocab * self.hidden)

    def scorer_params(self) -> int:
        """Reward model or critic: the backbone and a one-output score head without bias."""
        return self.backbone_params() + self.hidden

    def lora_params(self, rank: int) -> int:
        """peft's "all-linear" LoRA: rank x (in + out) for every linear layer of every block."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        per_layer = (4 * h + 2 * h + (h + i) + (i + h)) if self.family == "gpt_neox" else \
            (2 * h + 2 * (h + kv) + 2 * h + 2 * (h + i) + (i + h))
        return self.layers * rank * per_layer

    # -- activations: bytes autograd saves per token --------------------------------------------------------
    def layer_activation_bytes(self, dtype: str, lora_rank: int = 0) -> int:
        """Bytes one block saves for its backward per token, without checkpointing.

        GPT-NeoX: the input, both LayerNorm outputs, q, k, v, the attention output and the linear inputs (8h),
        the MLP's pre- and post-GELU (2I). LLaMA: 8h, k and v (2 kv_dim), gate, up, SiLU and their product
        (4I); in bf16 its RMSNorms also keep an fp32 copy of their input (4h bytes). Small terms: the attention
        log-sum-exp per head (fp32) and the norms' statistics. LoRA (peft, fp32 adapters, dropout on): each
        adapted linear keeps its dropped-out input, and in bf16 also the fp32 copy fed to lora_A, plus the rank-r
        output; LLaMA's adapted q and k keep their pre-rotary outputs (2h)."""
        b, h, i = BYTES[dtype], self.hidden, self.intermediate
        low = b < 4
        if self.family == "gpt_neox":
            n = b * (8 * h + 2 * i) + 4 * self.heads + 4 * b
            adapted_inputs, adapted = 3 * h + i, 4
        else:
            n = b * (8 * h + 2 * self.kv_dim + 4 * i) + 4 * self.heads + 8 + (4 * h if low else 0)
            adapted_inputs, adapted = 6 * h + i, 7
        if lora_rank:
            n += adapted_inputs * (4 + (b if low else 0)) + 4 * lora_rank * adapted
            if self.family != "gpt_neox":
                n += 2 * h * b
        return n

    def inference_bytes(self, dtype: str) -> int:
        """Working bytes per token of a no-grad forward: one block's widest intermediates at a time."""
        return BYTES[dtype] * (self.intermediate * (2 if self.family == "gpt_neox" else 3) + 4 * self.hidden)


def shape_from_config(config: dict, where: str) -> Shape:
    model_type = config.get("model_type")
    if model_type not in ("gpt_neox", "llama"):
        raise UserError(f"{where}: model_type '{model_type}' is not one coati.memory knows (gpt_neox, llama); "
                        "give a GPT-NeoX (Polyglot-Ko) or LLaMA config")
    heads = config["num_attention_heads"]
    dtype = config.get("dtype") or config.get("torch_dtype")
    return Shape(family=model_type, layers=config["num_hidden_layers"], hidden=config["hidden_size"], heads=heads,
                 kv_heads=config.get("num_key_value_heads") or heads, intermediate=config["intermediate_size"],
                 vocab=config["vocab_size"], tied=bool(config.get("tie_word_embeddings", False)),
                 saved_dtype={"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype))


def read_shape(pretrain: str) -> Shape:
    """The shape of a model folder (config.json) or of a `coati.kit` preset name."""
    path = os.path.join(pretrain, "config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return shape_from_config(json.load(f), path)
    from coati.kit import PRESETS, preset_fields

    if pretrain.removesuffix("-mini") in PRESETS:
        return shape_from_config(preset_fields(pretrain), f"preset {pretrain}")
    raise UserError(f"--pretrain {pretrain} is neither a model folder with config.json nor a preset "
                    f"({', '.join(PRESETS)}); download the model, or name its preset")


# -- stages: which models a stage holds, and what one step runs ---------------------------------------------
@dataclass(frozen=True)
class Role:
    name: str
    kind: str  # "lm" or "scorer"
    trained: bool
    frozen_copy: bool = False  # a frozen copy of the policy: under LoRA it is the policy with its adapters off
    offloadable: bool = False  # --offload_frozen keeps it in host memory except while it scores


# One row per stage. DPO steps on 2 x batch sequences (chosen and rejected); GRPO (train_prompts.py --algo grpo,
# also rloo and reinforce_pp) holds no critic and rolls out num_generations answers per prompt. A reward model
# is held unless the rewards are all written as code (--reward_fn without --rm_path).
STAGES: dict[str, tuple[Role, ...]] = {
    "sft": (Role("policy", "lm", True),),
    "rm": (Role("reward model", "scorer", True),),
    "ppo": (Role("actor", "lm", True), Role("reference", "lm", False, frozen_copy=True, offloadable=True),
            Role("critic", "scorer", True), Role("reward model", "scorer", False, offloadable=True)),
    "dpo": (Role("policy", "lm", True), Role("reference", "lm", False, frozen_copy=True)),
    "grpo": (Role("actor", "lm", True), Role("reference", "lm", False, frozen_copy=True, offloadable=True),
             Role("reward model", "scorer", False, offloadable=True)),
}
SHARDED = ("fsdp", "colossalai_gemini")  # weights, gradients and optimizer states split over the processes


@dataclass
class Estimate:
    terms: dict[str, float]  # name -> bytes per process, on the run's device
    notes: list[str]
    host: float = 0.0  # bytes kept in host memory instead (offloaded models, a CPU optimizer)

    @property
    def total(self) -> float:
        return sum(self.terms.values())


def estimate(shape: Shape, stage: str, *, lora_rank: int = 0, dtype: str = "fp32", strategy: str = "naive",
             nproc: int = 1, batch_size: int = 4, max_len: int = 512, experience_batch_size: int = 8,
             train_batch_size: int = 8, max_input_len: int = 256, max_new_tokens: int = 128,
             num_generations: int = 4, grad_checkpoint: bool = False, offload_frozen: bool = False,
             reward_model: bool = True, device: str = "cpu") -> Estimate:
    """Bytes per process for each term of a stage's peak (see the module docstring)."""
    b, notes = BYTES[dtype], []
    shard = nproc if strategy in SHARDED else 1
    offloaded = 0.0
    weights = trainable_full = trainable_lora = 0.0
    for role in STAGES[stage]:
        if role.name == "reward model" and stage in ("ppo", "grpo") and not reward_model:
            notes.append("no reward model: the rewards are written as code")
            continue
        if role.frozen_copy and lora_rank:
            notes.append(f"{role.name}: the {STAGES[stage][0].name} with its LoRA adapters off (no second copy)")
            continue
        params = shape.lm_params() if role.kind == "lm" else shape.scorer_params()
        if role.offloadable and offload_frozen and device != "cpu":
            offloaded += params * b
            continue
        weights += params * b
        if role.trained and lora_rank:
            trainable_lora += shape.lora_params(lora_rank) + (shape.hidden if role.kind == "scorer" else 0)
        elif role.trained:
            trainable_full += params
    terms = {"weights": weights / shard}
    # peft keeps adapters in fp32; their gradient is fp32 too. Full tuning: a gradient in the weights' dtype, and
    # for bf16 an fp32 master of each weight (coati.optim.MasterWeightAdamW, as ZeRO and FSDP do).
    terms["LoRA adapters (fp32)"] = trainable_lora * 4
    grads = trainable_lora * 4 + trainable_full * b
    masters = trainable_full * 4 if b < 4 else 0.0
    optim = (trainable_lora + trainable_full) * 8 + masters
    if strategy.startswith("colossalai_zero2"):
        grads, optim = grads / nproc, optim / nproc
    elif shard > 1:
        grads, optim = grads / shard, optim / shard
    if strategy == "ddp" and nproc > 1:
        grads *= 2  # DDP's all-reduce buckets hold a second copy of every gradient
    if strategy == "colossalai_zero2_cpu":
        offloaded += optim
        optim = 0.0
        notes.append("colossalai_zero2_cpu: optimizer states and masters in host memory")
    terms["gradients"], terms["optimizer states"] = grads, optim

    # Activations of the largest step, and decoding's KV cache.
    saved = shape.layer_activation_bytes(dtype, lora_rank)
    per_token_layers = shape.layers * (shape.hidden * b if grad_checkpoint else saved) + \
        (saved if grad_checkpoint else 0)  # checkpointing keeps each layer's input and recomputes one layer

    def train_step(seqs: int, length: int, lm_positions: int) -> float:
        # The head: logits in the dtype, their fp32 copy, log-softmax and its gradient (fp32).
        head = seqs * lm_positions * shape.vocab * (b + 12)
        return seqs * length * (per_token_layers + saved) + head  # + one layer's gradients while backpropagating

    kv = 0.0
    if stage in ("sft", "rm", "dpo"):
        seqs = batch_size * (2 if stage in ("rm", "dpo") else 1)
        activations = train_step(seqs, max_len, max_len if stage != "rm" else 0)
        notes.append(f"step: {seqs} sequences x {max_len} tokens")
    else:
        length = max_input_len + max_new_tokens
        rows = experience_batch_size * (num_generations if stage == "grpo" else 1)
        kv = rows * length * shape.layers * 2 * shape.kv_dim * b
        scoring = rows * length * shape.inference_bytes(dtype) + rows * (max_new_tokens + 1) * shape.vocab * 4
        update = train_step(train_batch_size, length, max_new_tokens + 1)
        activations = max(scoring, update)
        notes.append(f"rollout: {rows} sequences x {length} tokens (KV cache); update: {train_batch_size} sequences")
    terms["activations"] = activations
    terms["KV cache"] = kv
    terms["runtime"] = RUNTIME[device]
    return Estimate(terms=terms, notes=notes, host=offloaded)


def report(shape: Shape, name: str, stage: str, est: Estimate, args) -> str:
    lines = [f"coati.memory: {name} ({shape.family}, {shape.layers} layers, hidden {shape.hidden}, vocabulary "
             f"{shape.vocab}): {shape.lm_params() / 1e9:.3f} B parameters",
             f"stage {stage}, {'LoRA r' + str(args.lora_rank) if args.lora_rank else 'full fine-tuning'}, "
             f"{args.dtype}, --strategy {args.strategy}, {args.nproc} process(es), device {args.device}"
             + (", --grad_checkpoint" if args.grad_checkpoint else ""),
             "", f"{'predicted peak per process':<28}{'GiB':>8}"]
    lines += [f"  {k:<26}{v / GiB:>8.2f}" for k, v in est.terms.items()]
    lines.append(f"  {'total':<26}{est.total / GiB:>8.2f}")
    if est.host:
        lines.append(f"  {'(in host memory)':<26}{est.host / GiB:>8.2f}")
    lines += ["", *[f"- {n}" for n in est.notes], f"- {dtype_advice(args.device)}"]
    return "\n".join(lines)


def dtype_advice(device: str) -> str:
    """Which dtype this machine's device can train in (see coati.strategies.check_dtype)."""
    from coati.strategies import native_bf16

    if device == "cuda":
        return "on a GPU: bf16 from compute capability 8.0 (A100, H100, RTX 30xx and later), fp32 everywhere"
    native = native_bf16("cpu")
    here = {True: "this CPU computes bf16 natively: bf16 or fp32",
            False: "this CPU has no native bf16 (no avx512_bf16/amx_bf16): fp32 only (the stages refuse bf16)",
            None: "this CPU's flags are unknown: fp32 is safe"}[native]
    return f"dtype on the CPU: {here}"


# -- the GPU table of docs/real-models.md ----------------------------------------------------------------------
GPU_SIZES = (24, 40, 80)
TABLE_MODELS = ("polyglot-ko-1.3b", "polyglot-ko-5.8b", "polyglot-ko-12.8b", "llama-7b")


def gpu_table() -> str:
    """Markdown: per stage and tuning (rows) and model (columns), the predicted peak and the smallest of one 24, 40
    or 80 GB GPU it fits in (95% of it), in bf16 with --grad_checkpoint, one process, batch 4 x 512 tokens (SFT, RM,
    DPO), 8 prompts x (256 + 128) tokens and minibatches of 8 (PPO, GRPO; GRPO 4 answers per prompt)."""
    from coati.kit import preset_fields

    shapes = {name: shape_from_config(preset_fields(name), name) for name in TABLE_MODELS}
    rows = ["| stage | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    for stage in STAGES:
        for lora in (8, 0):
            cells = []
            for shape in shapes.values():
                gb = estimate(shape, stage, lora_rank=lora, dtype="bf16", device="cuda", grad_checkpoint=True).total / 1e9
                fits = next((f"{s} GB" for s in GPU_SIZES if gb <= s * 0.95), "more than one 80 GB GPU")
                cells.append(f"{gb:.0f} GB: {fits}")
            label = f"{stage.upper()}, {'LoRA r8' if lora else 'full'}"
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m coati.memory", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pretrain", help="model folder (config.json) or a coati.kit preset name")
    p.add_argument("--stage", default="sft", choices=tuple(STAGES),
                   help="grpo also stands for rloo and reinforce_pp (no critic)")
    p.add_argument("--lora_rank", type=int, default=0, help="LoRA rank on all linear layers; 0 = full tuning")
    p.add_argument("--dtype", default="fp32", choices=tuple(BYTES), help="weights dtype")
    p.add_argument("--strategy", default="naive",
                   choices=("naive", "ddp", "fsdp", "colossalai_zero2", "colossalai_zero2_cpu", "colossalai_gemini"))
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) the run spreads over")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the run computes")
    p.add_argument("--batch_size", type=int, default=4, help="SFT rows / RM and DPO pairs per micro-batch")
    p.add_argument("--max_len", type=int, default=512, help="tokens per sequence (SFT, RM, DPO)")
    p.add_argument("--experience_batch_size", type=int, default=8, help="PPO/GRPO prompts per rollout")
    p.add_argument("--train_batch_size", type=int, default=8, help="PPO/GRPO sequences per update minibatch")
    p.add_argument("--max_input_len", type=int, default=256, help="PPO/GRPO prompt tokens")
    p.add_argument("--max_new_tokens", type=int, default=128, help="PPO/GRPO response tokens")
    p.add_argument("--num_generations", type=int, default=4, help="GRPO answers per prompt")
    p.add_argument("--grad_checkpoint", action="store_true", help="activation checkpointing")
    p.add_argument("--offload_frozen", action="store_true",
                   help="PPO/GRPO: reference and reward model in host memory except while they score (GPU)")
    p.add_argument("--no_reward_model", dest="reward_model", action="store_false",
                   help="PPO/GRPO rewarded only by functions (--reward_fn without --rm_path): no reward model held")
    p.add_argument("--gpu_table", action="store_true", help="print the GPU-size table of docs/real-models.md")
    return p.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.gpu_table:
        print(gpu_table())
        return
    if not args.pretrain:
        raise UserError("--pretrain is required: a model folder or a preset name (python -m coati.kit preset --help)")
    for name in ("nproc", "batch_size", "max_len", "experience_batch_size", "train_batch_size", "max_input_len",
                 "max_new_tokens", "num_generations"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    shape = read_shape(args.pretrain)
    est = estimate(shape, args.stage, **{k: getattr(args, k) for k in (
        "lora_rank", "dtype", "strategy", "nproc", "batch_size", "max_len", "experience_batch_size",
        "train_batch_size", "max_input_len", "max_new_tokens", "num_generations", "grad_checkpoint",
        "offload_frozen", "reward_model", "device")})
    print(report(shape, args.pretrain, args.stage, est, args))


if __name__ == "__main__":
    main()
