"""Flags every stage shares, and the checks that run before any model is loaded."""

from __future__ import annotations

import argparse
import importlib.util
import os

from coati.dataset.chat import TRAIN_ON
from coati.dataset.templates import LANGUAGES
from coati.errors import UserError
from coati.models.registry import MODEL_CHOICES
from coati.strategies import STRATEGIES


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def parse_bool(text: str) -> bool:
    """'True'/'False' and the usual spellings; the original guide wrote `--need_optim_ckpt True`."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False (or {'/'.join(TRUE_WORDS[1:] + FALSE_WORDS[1:])}), "
                                     f"got {text!r}")


class BoolFlag(argparse._StoreTrueAction):
    """A store_true flag that also takes a value: `--flag`, `--flag True` and `--flag False` (off).

    Registered as the parser's "store_true" action, so every such flag of every script accepts a value; it
    stays a _StoreTrueAction for tools that read parsers (the flag tables)."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None, **kwargs):
        argparse.Action.__init__(self, option_strings=option_strings, dest=dest, nargs="?", const=True,
                                 default=default, type=parse_bool, required=required, help=help,
                                 metavar="BOOL", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if values is None else values)


def accept_bool_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every store_true flag added to `parser` from now on, a script's own too, also takes True/False after it."""
    parser.register("action", "store_true", BoolFlag)
    return parser


class BoolOptional(argparse.BooleanOptionalAction):
    """--flag / --no-flag as before, and `--flag False` too."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.nargs, self.type, self.metavar = "?", parse_bool, "BOOL"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.option_strings and option_string.startswith("--no-"):
            setattr(namespace, self.dest, False if values is None else not values)
        else:
            setattr(namespace, self.dest, True if values is None else values)


def base_parser(description: str, epochs: bool = True) -> argparse.ArgumentParser:
    """Shared flags; `epochs=False` (PPO) leaves out the epoch/batch/eval/schedule flags it has no use for (it
    has its own learning rates and logs once per episode)."""
    p = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    accept_bool_values(p)
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
        p.add_argument("--group_by_length", action=BoolOptional, default=True,
                       help="batch examples of similar length together (less padding, same data each epoch)")
    p.add_argument("--max_len", type=int, default=512, help="longest tokenised sequence; longer rows are cut")
    p.add_argument("--pad_to_multiple_of", type=int, default=None,
                   help="pad each batch's length up to a multiple of N (fewer distinct shapes for GPU kernels; "
                        "unset: to the longest row)")
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
    p.add_argument("--merge_lora", action=BoolOptional, default=True,
                   help="merge LoRA into the saved model (--no-merge_lora saves a PEFT adapter folder)")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="prompt template language")
    p.add_argument("--chat_template", default=None,
                   help="how conversations are rendered: tokenizer (its own chat_template), ko, en, chatml, or a "
                        "Jinja file; unset: conversation data uses the tokenizer's own, instruction rows the "
                        "--language template")
    p.add_argument("--messages_str", default="messages",
                   help="column holding a conversation's turns (ShareGPT 'conversations' is read as well)")
    p.add_argument("--train_on", default="all", choices=TRAIN_ON,
                   help="which assistant turns of a conversation are trained: all, or only the last")
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
                   help="checkpoint folder to continue from; 'latest' (the newest in --save_path); 'auto' (the newest if "
                        "there is one, else start fresh: for torchrun's restarts)")
    p.add_argument("--skip_nonfinite", action="store_true",
                   help="skip a step whose loss or gradient is inf/NaN instead of stopping the run")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="weights dtype (trained bf16/fp16 weights are stepped through fp32 master copies); bf16 is "
                        "refused on a device without native bf16 (a CPU without avx512_bf16/amx_bf16, a GPU "
                        "before compute capability 8.0), where it runs many times slower than fp32")
    p.add_argument("--trust_remote_code", action="store_true", help="allow model code from the checkpoint")
    return p


def add_preference_data_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags that say how preference rows are read (train_reward_model.py and train_dpo.py)."""
    from coati.dataset.preference import FORMATS, RANKING_ORDERS

    p.add_argument("--subset", default=None, help="hub config or data folder of the dataset (e.g. harmless-base)")
    p.add_argument("--data_format", default="auto", choices=FORMATS, help="how rows encode preferences")
    p.add_argument("--prompt_str", default="prompt", help="key of the prompt in pair rows")
    p.add_argument("--chosen_str", default="chosen", help="key of the preferred response")
    p.add_argument("--rejected_str", default="rejected", help="key of the rejected response")
    p.add_argument("--ranking_order", default="slots", choices=RANKING_ORDERS,
                   help="what a ranking row's `ranking` lists: slots (ranking[k] is the completion holding the "
                        "k-th best answer, as KoChatGPT's generator writes it) or ranks (ranking[i] is "
                        "completion_i's rank, 0 best)")
    p.add_argument("--eval_split", type=float, default=0.1,
                   help="share of rows held out for evaluation when --eval_dataset is not given")
    return p



def read_preference_data(args: argparse.Namespace) -> tuple[list, list, list]:
    """(train pairs, eval pairs, read reports) of the stages that take add_preference_data_args: --dataset,
    and --eval_dataset or else the --eval_split share of --dataset's rows, held out before any pair is made."""
    from coati.dataset.io import ReadReport, load_rows
    from coati.dataset.preference import PairKeys, rows_to_pairs, split_rows

    if not 0 <= args.eval_split < 1:
        raise UserError(f"--eval_split must be in [0, 1), got {args.eval_split}")
    keys = PairKeys(args.prompt_str, args.chosen_str, args.rejected_str)
    rows = load_rows(args.dataset, args.max_datasets_size, args.subset)
    if args.eval_dataset:
        eval_rows = load_rows(args.eval_dataset, flag="--eval_dataset", subset=args.subset,
                              split="test" if not os.path.exists(args.eval_dataset) else "train")
    else:
        rows, eval_rows = split_rows(rows, args.eval_split, args.seed)
    reports = [ReadReport(f"--dataset {args.dataset}")]
    train_pairs = rows_to_pairs(rows, args.data_format, keys, args.dataset, args.ranking_order, reports[0])
    eval_pairs = []
    if eval_rows:
        reports.append(ReadReport(f"--eval_dataset {args.eval_dataset}" if args.eval_dataset else
                                  f"--dataset {args.dataset} (held out by --eval_split)"))
        eval_pairs = rows_to_pairs(eval_rows, args.data_format, keys, args.eval_dataset or args.dataset,
                                   args.ranking_order, reports[1])
    return train_pairs, eval_pairs, reports


def print_preference_reports(stage: str, args: argparse.Namespace, reports: list, datasets: list,
                             template) -> None:
    """What a pair stage read (rows, pairs made, truncated and dropped, with reasons), the ranking order used
    and the chat template in force; rank 0 calls it."""
    import sys

    from coati.dataset.preference import ranking_order_note

    if reports[0].format == "ranking":
        print(f"[{stage}] {ranking_order_note(args.ranking_order)}", file=sys.stderr)
    for report in reports + [ds.report for ds in datasets if ds is not None]:
        print(f"[{stage}] {report.summary()}", file=sys.stderr)
    if template is not None:
        print(f"[{stage}] chat template: {template.name}", file=sys.stderr)


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

    check_logging_backends(args)
    for name in ("max_epochs", "batch_size", "accumulation_steps", "max_len", "pad_to_multiple_of"):
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
    from coati.dataset.chat import check_chat_template_flag

    check_chat_template_flag(getattr(args, "chat_template", None))
    from coati.strategies import check_dtype, check_strategy

    check_strategy(args.strategy, args.dtype)
    check_dtype(args.dtype)
    if args.tokenizer:
        check_tokenizer_source(args.tokenizer)
    if os.path.isfile(args.save_path):
        raise UserError(f"--save_path {args.save_path} is a file; it must be a folder (it will hold the model)")
    if args.save_interval < 0 or (args.max_checkpoints is not None and args.max_checkpoints <= 0):
        raise UserError("--save_interval must be >= 0 and --max_checkpoints positive")
    from coati.checkpoint import resolve_resume

    args.resume_checkpoint = resolve_resume(args.resume_from, args.save_path)


def check_logging_backends(args: argparse.Namespace) -> None:
    """--use_wandb / --use_tensorboard need their package: say so now, not after the models have loaded."""
    for flag, package in (("use_wandb", "wandb"), ("use_tensorboard", "tensorboard")):
        if getattr(args, flag, False) and importlib.util.find_spec(package) is None:
            raise UserError(f"--{flag} needs the {package} package, which is not installed; pip install {package} "
                            f"or leave out --{flag}")


def check_tokenizer_source(path: str) -> None:
    if os.path.isdir(path) and not any(f.startswith(("tokenizer", "vocab", "spiece")) for f in os.listdir(path)):
        raise UserError(f"--tokenizer {path} holds no tokenizer files (tokenizer.json or vocab files)")
    if not os.path.exists(path) and path.count("/") != 1:
        raise UserError(f"--tokenizer {path} does not exist")


def args_record(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
