"""Flags every stage shares, and the checks that run before any model is loaded."""

from __future__ import annotations

import argparse
import os

from coati.dataset.templates import LANGUAGES
from coati.errors import UserError
from coati.models.registry import MODEL_CHOICES
from coati.strategies import STRATEGIES


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def base_parser(description: str, epochs: bool = True) -> argparse.ArgumentParser:
    """Shared flags; `epochs=False` (PPO) leaves out the epoch/batch/eval/schedule flags it has no use for (it
    has its own learning rates and logs once per episode)."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--strategy", default="ddp", choices=STRATEGIES,
                   help="how to train across processes (the original guide defaulted to colossalai_zero2, which "
                        "needs requirements-colossalai.txt and a GPU; ddp runs everywhere)")
    p.add_argument("--model", default="bloom", type=str.lower, choices=MODEL_CHOICES,
                   help="model family; 'auto' reads model_type from the checkpoint")
    p.add_argument("--pretrain", default=None, help="model folder or hub name to start from")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or hub name (default: --pretrain)")
    p.add_argument("--save_path", default="output", help="output folder (a Hugging Face model folder)")
    p.add_argument("--need_optim_ckpt", action="store_true", help="also save optimizer and scheduler state")
    if epochs:
        p.add_argument("--max_epochs", type=int, default=3, help="passes over the training data")
        p.add_argument("--batch_size", type=int, default=4, help="micro-batch size per process")
        p.add_argument("--group_by_length", action=argparse.BooleanOptionalAction, default=True,
                       help="batch examples of similar length together (less padding, same data each epoch)")
    p.add_argument("--max_len", type=int, default=512, help="longest tokenised sequence; longer rows are cut")
    if epochs:
        p.add_argument("--lr", type=float, default=None, help="peak learning rate (stage default when unset)")
        p.add_argument("--warmup_ratio", type=float, default=0.03,
                       help="share of steps spent warming up before the cosine decay")
    p.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay (not on biases and norms)")
    p.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm (0 disables)")
    p.add_argument("--seed", type=int, default=42, help="seed of data order, initialisation and sampling")
    p.add_argument("--grad_checkpoint", action="store_true", help="activation checkpointing (less memory)")
    p.add_argument("--lora_rank", type=int, default=0, help="LoRA rank on all linear layers; 0 = full tuning")
    p.add_argument("--lora_alpha", type=int, default=16, help="LoRA scaling (the update is scaled by alpha / rank)")
    p.add_argument("--lora_dropout", type=float, default=0.05, help="dropout on the LoRA branch")
    p.add_argument("--merge_lora", action=argparse.BooleanOptionalAction, default=True,
                   help="merge LoRA into the saved model (--no-merge_lora saves a PEFT adapter folder)")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="prompt template language")
    p.add_argument("--without_prompt", action="store_true",
                   help="do not wrap prompts in the template (the data already has its own prompt wording)")
    p.add_argument("--max_datasets_size", type=int, default=None, help="use only the first N rows")
    if epochs:
        p.add_argument("--eval_dataset", default=None, help="held-out rows in the same format as --dataset")
        p.add_argument("--eval_interval", type=int, default=0,
                       help="evaluate every N optimizer steps (0: at the end of each epoch)")
        p.add_argument("--log_interval", type=int, default=1, help="log every N optimizer steps")
    p.add_argument("--log_dir", default=None,
                   help="where metrics.jsonl and TensorBoard logs go (default: --save_path; the PNG plots always "
                        "go into the output folder)")
    p.add_argument("--use_tensorboard", action="store_true", help="also log to TensorBoard (needs tensorboard)")
    p.add_argument("--use_wandb", action="store_true", help="also log to Weights & Biases (needs wandb, a login)")
    p.add_argument("--save_interval", type=int, default=0, help="write a checkpoint every N steps (0: never)")
    p.add_argument("--max_checkpoints", type=int, default=None, help="keep only the newest N checkpoints")
    p.add_argument("--resume_from", default=None,
                   help="checkpoint folder to continue from, or 'latest' (the newest in --save_path)")
    p.add_argument("--skip_nonfinite", action="store_true",
                   help="skip a step whose loss or gradient is inf/NaN instead of stopping the run")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="weights dtype (trained bf16/fp16 weights are stepped through fp32 master copies)")
    p.add_argument("--trust_remote_code", action="store_true", help="allow model code from the checkpoint")
    return p


def check_sampling(args: argparse.Namespace, greedy: bool = False) -> None:
    """--max_new_tokens / --temperature / --top_k / --top_p of the scripts that sample (PPO, inference); greedy
    decoding reads only the first."""
    if args.max_new_tokens <= 0:
        raise UserError(f"--max_new_tokens must be positive, got {args.max_new_tokens}")
    if greedy:
        return
    if args.temperature <= 0:
        raise UserError(f"--temperature must be positive, got {args.temperature} (inference.py: --greedy for the "
                        "most likely token)")
    if args.top_k < 0:
        raise UserError(f"--top_k must be 0 (off) or positive, got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top_p must be in (0, 1], got {args.top_p} (1 switches it off)")


def check_common(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, and paths that do not hold what they should."""
    from coati.models.loading import check_model_source

    for name in ("max_epochs", "batch_size", "accumulation_steps", "max_len"):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.lora_rank < 0:
        raise UserError(f"--lora_rank must be 0 (off) or positive, got {args.lora_rank}")
    if not 0 <= getattr(args, "warmup_ratio", 0) < 1:
        raise UserError(f"--warmup_ratio must be in [0, 1), got {args.warmup_ratio}")
    if args.pretrain is None:
        raise UserError("--pretrain is required: a model folder or hub name (a tiny one: python -m coati.kit tiny "
                        "--model gpt2 --out tiny-gpt2)")
    check_model_source(args.pretrain, "--pretrain")
    from coati.strategies import check_strategy

    check_strategy(args.strategy, args.dtype)
    if args.tokenizer:
        check_tokenizer_source(args.tokenizer)
    if os.path.isfile(args.save_path):
        raise UserError(f"--save_path {args.save_path} is a file; it must be a folder (it will hold the model)")
    if args.save_interval < 0 or (args.max_checkpoints is not None and args.max_checkpoints <= 0):
        raise UserError("--save_interval must be >= 0 and --max_checkpoints positive")
    from coati.checkpoint import resolve_resume

    args.resume_checkpoint = resolve_resume(args.resume_from, args.save_path)


def check_tokenizer_source(path: str) -> None:
    if os.path.isdir(path) and not any(f.startswith(("tokenizer", "vocab", "spiece")) for f in os.listdir(path)):
        raise UserError(f"--tokenizer {path} holds no tokenizer files (tokenizer.json or vocab files)")
    if not os.path.exists(path) and path.count("/") != 1:
        raise UserError(f"--tokenizer {path} does not exist")


def args_record(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
