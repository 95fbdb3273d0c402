"""Stage 2: reward-model training on preference pairs or rankings.

    torchrun --standalone --nproc_per_node=2 train_reward_model.py --model polyglotko --pretrain outputs/sft \
        --dataset data/kochatgpt_rm_ko.jsonl --loss_fn log_sig --save_path outputs/rm
"""

from __future__ import annotations

import sys

from coati.cli import (
    add_preference_data_args,
    base_parser,
    check_common,
    print_preference_reports,
    read_preference_data,
)
from coati.errors import exit_on_user_error


def parse_args(argv: list[str] | None = None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Dahoas/rm-static",
                   help="preference rows: a file or folder, or a hub name (Anthropic/hh-rlhf, Dahoas/rm-static, "
                        "openai/summarize_from_feedback, openai/webgpt_comparisons, "
                        "Dahoas/instruct-synthetic-prompt-responses)")
    add_preference_data_args(p)
    p.add_argument("--model_path", default=None,
                   help="continue training a reward model: its folder, or a legacy Coati .pt with --pretrain")
    p.add_argument("--loss_fn", "--loss_func", dest="loss_fn", default="log_sig", choices=("log_sig", "log_exp"),
                   help="log_sig: -log sigmoid(r_c - r_r) (OpenAI); log_exp: log(1 + exp(r_r - r_c)) (Anthropic)")
    p.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    p.set_defaults(lr=5e-6, max_epochs=1)
    return p.parse_args(argv)


@exit_on_user_error
def main(args) -> dict:
    from coati.models.loading import check_model_source
    from coati.models.registry import resolve_family
    from coati.models.value import is_legacy_file

    # Everything the user can get wrong is checked before a model is loaded.
    check_common(args)
    check_model_source(args.model_path, "--model_path")
    legacy = is_legacy_file(args.model_path)
    start_from = args.model_path if args.model_path and not legacy else args.pretrain
    family = resolve_family(args.model, start_from)
    train_pairs, eval_pairs, reports = read_preference_data(args)

    from coati.dataset.chat import choose_chat_template, set_chat_template
    from coati.dataset.preference import PairCollator, PreferenceDataset, pairs_are_conversations
    from coati.models.loading import apply_lora, load_sequence_scorer, load_tokenizer
    from coati.models.value import ValueModel, load_legacy_state_dict
    from coati.outputs import save_outputs, start_epoch_run
    from coati.strategies import build_strategy
    from coati.trainer.rm import RewardModelTrainer

    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype)
    tokenizer = load_tokenizer(args.tokenizer or start_from, args.max_len, args.trust_remote_code, distinct_pad=True)
    # Prompts render by the one rule PPO and DPO follow too (preference.render_prompt), through the template
    # the flag names, or the tokenizer's own for conversation pairs.
    template = choose_chat_template(args.chat_template, tokenizer, pairs_are_conversations(train_pairs + eval_pairs))
    data = dict(language=args.language, without_prompt=args.without_prompt, template=template)
    train_set = PreferenceDataset(train_pairs, tokenizer, args.max_len, source=f"--dataset {args.dataset}", **data)
    eval_set = PreferenceDataset(eval_pairs, tokenizer, args.max_len, source=reports[-1].source, **data) \
        if eval_pairs else None
    if strategy.is_rank0:
        print_preference_reports("rm", args, reports, [train_set, eval_set], template)

    hf = load_sequence_scorer(start_from, family, tokenizer, args.dtype, args.trust_remote_code, args.grad_checkpoint)
    if legacy:
        for note in load_legacy_state_dict(hf, args.model_path):
            print(f"[rm] {args.model_path}: {note}", file=sys.stderr)
    hf = apply_lora(hf, args.lora_rank, args.lora_alpha, args.lora_dropout, "SEQ_CLS")
    model, optimizer = strategy.prepare_train(ValueModel(hf), args.lr, args.weight_decay)

    # Loaders, schedule, checkpoints and metrics.jsonl; with --resume_checkpoint the states come back first.
    run = start_epoch_run(args=args, stage="rm", strategy=strategy, model=model, optimizer=optimizer,
                          train_set=train_set, eval_set=eval_set,
                          collate=PairCollator(tokenizer.pad_token_id, args.pad_to_multiple_of))
    resumed = run.pop("resumed")
    trainer = RewardModelTrainer(**run, loss_fn=args.loss_fn)
    if resumed is not None:
        trainer.loop.load_state_dict(resumed)
    trainer.fit()

    if template is not None:
        set_chat_template(tokenizer, template)  # PPO checks that the actor renders the same way
    last = trainer.last
    figures = f"eval acc {last['eval_acc']:.3f}, dist {last['eval_dist']:.3f}" if "eval_acc" in last else \
        f"train acc {last.get('acc', float('nan')):.3f}"
    summary = (f"[rm] done: {trainer.loop.global_step} steps, loss {last.get('loss', float('nan')):.4f}, {figures}; "
               f"model in {args.save_path}")
    save_outputs(strategy=strategy, args=args, progress=trainer.loop, checkpointer=run["checkpointer"],
                 logger=run["logger"], model=model,
                 tokenizer=tokenizer, plot_keys=["loss", "acc", "dist"], plot_file="rm_accuracy.png",
                 title="Reward model", summary=summary)
    return {"steps": trainer.loop.global_step, **trainer.last}


if __name__ == "__main__":
    main(parse_args())
