"""Stage 4: preference optimisation without a reward model (DPO, IPO, SimPO, ORPO).

    torchrun --standalone --nproc_per_node=2 train_dpo.py --model polyglotko --pretrain outputs/sft \
        --dataset data/kochatgpt_rm_ko.jsonl --loss_type dpo --beta 0.1 --save_path outputs/dpo
"""

from __future__ import annotations

import gc
import os
import sys

from coati.cli import (
    add_preference_data_args,
    base_parser,
    check_common,
    print_preference_reports,
    read_preference_data,
)
from coati.errors import UserError, exit_on_user_error
from coati.losses import DEFAULT_SIMPO_GAMMA, PREFERENCE_LOSSES


def parse_args(argv: list[str] | None = None):
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Dahoas/rm-static",
                   help="preference rows in any format the reward model reads: a file or folder, or a hub name")
    add_preference_data_args(p)
    p.add_argument("--loss_type", default="dpo", choices=PREFERENCE_LOSSES,
                   help="dpo: sigmoid of the log-ratio margin; ipo: squared, per-token log-ratios; simpo and orpo: "
                        "no reference model")
    p.add_argument("--beta", type=float, default=0.1,
                   help="strength β: dpo/ipo's KL weight, simpo's scale of the mean log-prob margin (simpo usually "
                        "wants ~2)")
    p.add_argument("--label_smoothing", type=float, default=0.0,
                   help="share of labels taken as flipped (conservative DPO), in [0, 0.5); dpo and simpo")
    p.add_argument("--simpo_gamma", type=float, default=DEFAULT_SIMPO_GAMMA,
                   help="simpo's target margin γ between the scaled mean log-probs")
    p.add_argument("--orpo_alpha", type=float, default=0.1,
                   help="orpo: weight of the odds-ratio term beside the chosen answer's NLL")
    p.add_argument("--sft_coef", type=float, default=0.0,
                   help="adds this times the chosen answer's mean token NLL to any loss type")
    p.add_argument("--ref_model", default=None,
                   help="frozen reference model (default: --pretrain); with --lora_rank the reference is "
                        "--pretrain with the adapters off; simpo and orpo use none")
    p.add_argument("--precompute_ref", action="store_true",
                   help="compute the reference log-probs of every pair in one pass before training, keep them "
                        "(checkpoints too) and free the reference model")
    p.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    p.set_defaults(lr=5e-7, max_epochs=1)
    return p.parse_args(argv)


def check_dpo_flags(args) -> None:
    """The preference-loss flags; refused in one line before any model loads."""
    if args.beta <= 0 or args.orpo_alpha <= 0:
        raise UserError(f"--beta and --orpo_alpha must be positive, got {args.beta} and {args.orpo_alpha}")
    if not 0 <= args.label_smoothing < 0.5:
        raise UserError(f"--label_smoothing must be in [0, 0.5), got {args.label_smoothing}")
    if args.label_smoothing > 0 and args.loss_type not in ("dpo", "simpo"):
        raise UserError(f"--label_smoothing applies to --loss_type dpo and simpo, not {args.loss_type}")
    if args.simpo_gamma < 0 or args.sft_coef < 0:
        raise UserError(f"--simpo_gamma and --sft_coef must be >= 0, got {args.simpo_gamma} and {args.sft_coef}")
    if args.ref_model and args.lora_rank > 0 and os.path.abspath(args.ref_model) != os.path.abspath(args.pretrain):
        raise UserError(f"--ref_model {args.ref_model} with --lora_rank {args.lora_rank}: the reference is "
                        "--pretrain with the adapters off; leave out --ref_model, or train without LoRA")


@exit_on_user_error
def main(args) -> dict:
    from coati.models.loading import check_model_role, check_model_source
    from coati.models.registry import resolve_family
    from coati.trainer.dpo import needs_reference

    # Everything the user can get wrong is checked before a model is loaded.
    check_common(args)
    check_dpo_flags(args)
    check_model_role(args.pretrain, "--pretrain", scorer=False)
    with_reference = needs_reference(args.loss_type)
    if with_reference and args.ref_model:
        check_model_source(args.ref_model, "--ref_model")
        check_model_role(args.ref_model, "--ref_model", scorer=False)
    elif not with_reference and (args.ref_model or args.precompute_ref):
        print(f"[dpo] --loss_type {args.loss_type} uses no reference model: --ref_model and --precompute_ref are "
              "ignored", file=sys.stderr)
    family = resolve_family(args.model, args.pretrain)
    train_pairs, eval_pairs, reports = read_preference_data(args)

    from coati.dataset.chat import choose_chat_template, set_chat_template
    from coati.dataset.dpo import DPOCollator, DPODataset
    from coati.dataset.preference import pairs_are_conversations
    from coati.models.forward import AnswerLogProbs
    from coati.models.loading import apply_lora, disable_dropout, load_causal_lm, load_tokenizer
    from coati.outputs import save_outputs, start_epoch_run
    from coati.strategies import build_strategy
    from coati.trainer.dpo import DPOTrainer, precompute_reference_logps

    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype)
    tokenizer = load_tokenizer(args.tokenizer or args.pretrain, args.max_len, args.trust_remote_code)
    template = choose_chat_template(args.chat_template, tokenizer,
                                    pairs_are_conversations(train_pairs + eval_pairs))
    if template is not None:
        set_chat_template(tokenizer, template)  # the saved folder renders prompts as training did
    data = dict(tokenizer=tokenizer, max_len=args.max_len, language=args.language,
                without_prompt=args.without_prompt, template=template)
    train_set = DPODataset(train_pairs, **data, source=f"--dataset {args.dataset}")
    eval_set = DPODataset(eval_pairs, **data, source=reports[-1].source) \
        if eval_pairs else None
    if strategy.is_rank0:
        print_preference_reports("dpo", args, reports, [train_set, eval_set], template)

    policy = load_causal_lm(args.pretrain, family, tokenizer, args.dtype, args.trust_remote_code,
                            args.grad_checkpoint)
    disable_dropout(policy)  # the reference runs without it: equal weights must give equal log-probs
    policy = apply_lora(policy, args.lora_rank, args.lora_alpha, args.lora_dropout, "CAUSAL_LM")
    model, optimizer = strategy.prepare_train(AnswerLogProbs(policy), args.lr, args.weight_decay)

    collate = DPOCollator(tokenizer.pad_token_id, args.pad_to_multiple_of)
    # Loaders, schedule, checkpoints and metrics.jsonl; with --resume_checkpoint the states come back first.
    # Precomputed reference log-probs travel in every checkpoint, so a resume does not compute them again.
    run = start_epoch_run(args=args, stage="dpo", strategy=strategy, model=model, optimizer=optimizer,
                          train_set=train_set, eval_set=eval_set, collate=collate,
                          states={"reference-train": train_set, "reference-eval": eval_set})
    resumed = run.pop("resumed")

    reference = None
    same_weights = not args.ref_model or os.path.abspath(args.ref_model) == os.path.abspath(args.pretrain)
    if with_reference and not (args.precompute_ref and train_set.has_reference_logps()):
        if args.lora_rank > 0 or (args.precompute_ref and same_weights and resumed is None):
            # the reference is the policy's own weights: with LoRA the adapters go off for its passes; without,
            # the precompute pass runs before the first step changes them. No second copy either way.
            reference = model
        else:
            ref = load_causal_lm(args.ref_model or args.pretrain, family, tokenizer, args.dtype,
                                 args.trust_remote_code)
            reference = strategy.prepare(AnswerLogProbs(ref.requires_grad_(False)).eval(), trainable=False)
    if args.precompute_ref and reference is not None:
        for loader in filter(None, (run["train_loader"], run["eval_loader"])):
            plain = strategy.dataloader(loader.dataset, args.batch_size, collate, shuffle=False)
            precompute_reference_logps(strategy=strategy, reference=reference, policy=model, loader=plain)
        reference = None
        gc.collect()  # a separate reference model's memory goes back before training starts

    beta = args.orpo_alpha if args.loss_type == "orpo" else args.beta
    trainer = DPOTrainer(**run, ref_model=reference, loss_type=args.loss_type, beta=beta,
                         label_smoothing=args.label_smoothing, simpo_gamma=args.simpo_gamma, sft_coef=args.sft_coef)
    if resumed is not None:
        trainer.loop.load_state_dict(resumed)
    trainer.fit()

    last = trainer.last
    figures = (f"eval accuracy {last['eval_accuracy']:.3f}, margin {last['eval_margin']:.3f}"
               if "eval_accuracy" in last else f"train accuracy {last.get('accuracy', float('nan')):.3f}")
    summary = (f"[dpo] done ({args.loss_type}): {trainer.loop.global_step} steps, loss "
               f"{last.get('loss', float('nan')):.4f}, {figures}; model in {args.save_path}")
    save_outputs(strategy=strategy, args=args, progress=trainer.loop, checkpointer=run["checkpointer"],
                 logger=run["logger"], model=model,
                 tokenizer=tokenizer, plot_keys=["loss", "accuracy", "margin"], plot_file="dpo.png",
                 title=f"DPO ({args.loss_type})", summary=summary)
    return {"steps": trainer.loop.global_step, **trainer.last}


if __name__ == "__main__":
    main(parse_args())
