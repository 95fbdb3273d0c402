"""Stage 1: supervised instruction tuning.

    torchrun --standalone --nproc_per_node=2 train_sft.py --model polyglotko --pretrain EleutherAI/polyglot-ko-1.3b \
        --dataset kochatgpt_1_SFT.jsonl --instruction_str prompt --output_str completion --language ko --save_path sft
"""

from __future__ import annotations

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
    check_model_role(args.pretrain, "--pretrain", scorer=False)
    family = resolve_family(args.model, args.pretrain)
    rows = load_rows(args.dataset, args.max_datasets_size)
    eval_rows = load_rows(args.eval_dataset, flag="--eval_dataset") if args.eval_dataset else None

    from coati.dataset.chat import build_sft_dataset, set_chat_template
    from coati.dataset.sft import Keys, SFTCollator
    from coati.models.loading import apply_lora, load_causal_lm, load_tokenizer
    from coati.outputs import save_outputs, start_epoch_run
    from coati.strategies import build_strategy
    from coati.trainer.sft import SFTTrainer

    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype)
    tokenizer = load_tokenizer(args.tokenizer or args.pretrain, args.max_len, args.trust_remote_code)
    # Conversation rows go through a chat template (the flag's, else the tokenizer's own); instruction rows
    # keep the --language template unless a --chat_template is given. Held-out rows follow the same one.
    data = dict(language=args.language, keys=Keys(args.instruction_str, args.input_str, args.output_str),
                without_prompt=args.without_prompt, messages_key=args.messages_str, train_on=args.train_on)
    train_set, template = build_sft_dataset(rows, tokenizer, args.max_len, chat_template=args.chat_template,
                                            source=f"--dataset {args.dataset}", **data)
    eval_set = build_sft_dataset(eval_rows, tokenizer, args.max_len,
                                 chat_template=template.name if template else args.chat_template,
                                 source=f"--eval_dataset {args.eval_dataset}", **data)[0] if eval_rows else None
    if strategy.is_rank0:
        for ds in filter(None, (train_set, eval_set)):
            print(f"[sft] {ds.report.summary()}", file=sys.stderr)
        if template is not None:
            print(f"[sft] chat template: {template.name}, training on {args.train_on} assistant turns",
                  file=sys.stderr)

    model = load_causal_lm(args.pretrain, family, tokenizer, args.dtype, args.trust_remote_code, args.grad_checkpoint)
    model = apply_lora(model, args.lora_rank, args.lora_alpha, args.lora_dropout, "CAUSAL_LM")
    model, optimizer = strategy.prepare_train(model, args.lr, args.weight_decay)

    # Loaders, schedule, checkpoints and metrics.jsonl; with --resume_checkpoint the states come back first.
    run = start_epoch_run(args=args, stage="sft", strategy=strategy, model=model, optimizer=optimizer,
                          train_set=train_set, eval_set=eval_set,
                          collate=SFTCollator(tokenizer.pad_token_id, args.pad_to_multiple_of))
    resumed = run.pop("resumed")
    trainer = SFTTrainer(**run)
    if resumed is not None:
        trainer.loop.load_state_dict(resumed)
    trainer.fit()

    if template is not None:
        set_chat_template(tokenizer, template)  # the next stage and inference.py render the same way
    summary = (f"[sft] done: {trainer.loop.global_step} steps, final loss {trainer.last_loss:.4f}"
               + (f", eval loss {trainer.last_eval_loss:.4f}" if trainer.last_eval_loss is not None else "")
               + f"; model in {args.save_path}")
    save_outputs(strategy=strategy, args=args, progress=trainer.loop, checkpointer=run["checkpointer"],
                 logger=run["logger"], model=model,
                 tokenizer=tokenizer, plot_keys=["loss", "lr"], plot_file="sft_loss.png", title="SFT",
                 summary=summary)
    return {"steps": trainer.loop.global_step, "loss": trainer.last_loss, "eval_loss": trainer.last_eval_loss}


if __name__ == "__main__":
    main(parse_args())
