"""Stage 1: supervised instruction tuning.

    torchrun --standalone --nproc_per_node=2 train_sft.py --model polyglotko --pretrain EleutherAI/polyglot-ko-1.3b \
        --dataset kochatgpt_1_SFT.jsonl --instruction_str prompt --output_str completion --language ko --save_path sft
"""

from __future__ import annotations

import contextlib
import os
import sys

from coati.cli import base_parser, check_common
from coati.errors import exit_on_user_error


def parse_args(argv: list[str] | None = None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="SFT rows: .json/.jsonl/.parquet, a datasets folder or hub name")
    p.add_argument("--instruction_str", default="instruction", help="key of the instruction in each row")
    p.add_argument("--input_str", default="input", help="key of the optional input in each row")
    p.add_argument("--output_str", default="output", help="key of the response in each row")
    p.add_argument("--accumulation_steps", type=int, default=8, help="micro-batches per optimizer step")
    p.set_defaults(lr=2e-5)
    return p.parse_args(argv)


@exit_on_user_error
def main(args) -> dict:
    from coati.dataset.io import load_rows
    from coati.models.loading import check_model_role
    from coati.models.registry import resolve_family

    # Everything the user can get wrong is checked before a model is loaded.
    check_common(args)
    if args.accumulation_steps <= 0:
        from coati.errors import UserError

        raise UserError(f"--accumulation_steps must be positive, got {args.accumulation_steps}")
    check_model_role(args.pretrain, "--pretrain", scorer=False)
    family = resolve_family(args.model, args.pretrain)
    rows = load_rows(args.dataset, args.max_datasets_size)
    eval_rows = load_rows(args.eval_dataset, flag="--eval_dataset") if args.eval_dataset else None

    from coati.checkpoint import Checkpointer, atomic_dir, write_json
    from coati.cli import args_record
    from coati.dataset.sft import Keys, SFTCollator, SFTDataset
    from coati.models.loading import apply_lora, load_causal_lm, load_tokenizer
    from coati.optim import cosine_schedule
    from coati.strategies import build_strategy
    from coati.trainer.metrics import plot_metrics, resume_and_open_log
    from coati.trainer.sft import SFTTrainer

    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype)
    tokenizer = load_tokenizer(args.tokenizer or args.pretrain, args.max_len, args.trust_remote_code)
    keys = Keys(args.instruction_str, args.input_str, args.output_str)
    train_set = SFTDataset(rows, tokenizer, args.max_len, args.language, keys, args.without_prompt,
                           f"--dataset {args.dataset}")
    eval_set = (SFTDataset(eval_rows, tokenizer, args.max_len, args.language, keys, args.without_prompt,
                           f"--eval_dataset {args.eval_dataset}") if eval_rows else None)
    if strategy.is_rank0:
        print(f"[sft] {len(train_set)} training rows ({train_set.truncated} truncated to --max_len {args.max_len}, "
              f"{train_set.dropped} dropped: prompt alone too long)", file=sys.stderr)

    model = load_causal_lm(args.pretrain, family, tokenizer, args.dtype, args.trust_remote_code, args.grad_checkpoint)
    model = apply_lora(model, args.lora_rank, args.lora_alpha, args.lora_dropout, "CAUSAL_LM")
    model, optimizer = strategy.prepare_train(model, args.lr, args.weight_decay)

    collate = SFTCollator(tokenizer.pad_token_id)
    train_loader = strategy.dataloader(train_set, args.batch_size, collate, shuffle=True,
                                       lengths=train_set.lengths() if args.group_by_length else None)
    eval_loader = strategy.dataloader(eval_set, args.batch_size, collate, shuffle=False) if eval_set else None
    steps = -(-len(train_loader) // args.accumulation_steps) * args.max_epochs
    scheduler = cosine_schedule(optimizer, steps, args.warmup_ratio)
    ckpt = Checkpointer(strategy, args.save_path, args.save_interval, args.max_checkpoints, {"model": model},
                        {"model": optimizer}, {"model": scheduler})
    trainer = SFTTrainer(strategy, model, optimizer, scheduler, train_loader, eval_loader, args.accumulation_steps,
                         args.max_epochs, args.max_grad_norm, None, args.log_interval, args.eval_interval, ckpt,
                         args.skip_nonfinite)
    logger = resume_and_open_log(trainer, ckpt, args, "sft", strategy, args_record(args))
    trainer.fit()
    logger.close()

    if args.need_optim_ckpt:  # a full checkpoint: optimizer, scheduler and RNG states, resumable
        ckpt.save(trainer.global_step, trainer.state_dict())
    # Every rank takes part in saving (sharded strategies gather the weights); rank 0 writes.
    with atomic_dir(args.save_path) if strategy.is_rank0 else contextlib.nullcontext() as out:
        strategy.save_hf(model, tokenizer, out, args.merge_lora)
        if strategy.is_rank0:
            write_json(os.path.join(out, "args.json"), args_record(args))
            plot_metrics(logger.records, ["loss", "lr"], os.path.join(out, "sft_loss.png"), "SFT")
    if strategy.is_rank0:
        print(f"[sft] done: {trainer.global_step} steps, final loss {trainer.last_loss:.4f}"
              + (f", eval loss {trainer.last_eval_loss:.4f}" if trainer.last_eval_loss is not None else "")
              + f"; model in {args.save_path}", file=sys.stderr)
    strategy.barrier()
    strategy.close()
    return {"steps": trainer.global_step, "loss": trainer.last_loss, "eval_loss": trainer.last_eval_loss}


if __name__ == "__main__":
    main(parse_args())
