"""Stage 3: RL of the tuned model: PPO against the reward model, or critic-free GRPO / RLOO / REINFORCE++.

    torchrun --standalone --nproc_per_node=2 train_prompts.py --model polyglotko --pretrain outputs/sft \
        --rm_path outputs/rm --prompt_dataset data/kochatgpt_ppo_ko.jsonl --ppo_instruction_str prompt \
        --pretrain_dataset data/kochatgpt_sft_ko.jsonl --instruction_str prompt --output_str completion \
        --eval_dataset data/kochatgpt_ppo_eval_ko.jsonl --save_path outputs/ppo
    python train_prompts.py --algo grpo --model polyglotko --pretrain outputs/sft-verifiable \
        --prompt_dataset data/verifiable_train_ko.jsonl --ppo_instruction_str prompt --reward_fn exact_answer \
        --eval_dataset data/verifiable_eval_ko.jsonl --save_path outputs/grpo
"""

from __future__ import annotations

import argparse
import os
import sys

from coati.cli import base_parser, check_common, check_sampling
from coati.errors import UserError, exit_on_user_error, is_first_rank

ALGOS = ("ppo", "grpo", "rloo", "reinforce_pp")
CRITIC_LR = 1e-5  # --critic_lr's default, for PPO (the others have no critic)


def parse_args(argv: list[str] | None = None):
    from coati.models.registry import MODEL_CHOICES

    p = base_parser(__doc__.splitlines()[0], epochs=False)
    p.add_argument("--algo", default="ppo", choices=ALGOS,
                   help="ppo (actor, critic, reward model, reference) or a critic-free algorithm that compares "
                        "--num_generations answers per prompt: grpo, rloo, reinforce_pp")
    p.add_argument("--num_generations", type=int, default=None,
                   help="answers sampled per prompt (default 1 for ppo, 4 for the others; grpo and rloo need 2+)")
    p.add_argument("--scale_rewards", default="group", choices=("group", "batch", "none"),
                   help="grpo: divide each answer's reward minus its group mean by the group's std, the batch's "
                        "std, or nothing (Dr. GRPO)")
    p.add_argument("--reinforce_baseline", default="none", choices=("none", "group"),
                   help="reinforce_pp: subtract each prompt's mean score first (group) or not")
    p.add_argument("--reward_fn", action="append", default=None, metavar="FILE.py:NAME",
                   help="reward written as code (repeatable): FILE.py:NAME, package.module:NAME or a shipped "
                        "name (exact_answer, format_check, length_penalty); summed with --rm_path's score")
    p.add_argument("--reward_weights", type=float, nargs="+", default=None,
                   help="one weight per --reward_fn, in order (default: 1 each)")
    p.add_argument("--missing_eos_penalty", type=float, default=0.0,
                   help="subtracted from the reward of an answer that ends without EOS")
    p.add_argument("--filter_groups", action="store_true",
                   help="leave groups whose answers all got the same reward out of the update (their share is "
                        "logged as zero_std_groups)")
    p.add_argument("--loss_agg", default="token", choices=("token", "sequence"),
                   help="policy loss: mean over all answer tokens of the batch, or per answer then over answers")
    p.add_argument("--kl_loss_coef", type=float, default=0.0,
                   help="weight of a k3 KL(policy || reference) loss term (GRPO's beta)")
    p.add_argument("--eval_interval", type=int, default=0,
                   help="score --eval_dataset every N episodes as well (0: before and after training only)")
    p.add_argument("--rm_model", default=None, type=str.lower, choices=MODEL_CHOICES,
                   help="reward-model family (default: read from the reward model's config)")
    p.add_argument("--rm_pretrain", default=None, help="base model of a legacy .pt --rm_path")
    p.add_argument("--rm_path", default=None, help="reward model: a train_reward_model.py folder or a Coati .pt "
                   "(optional with --reward_fn)")
    p.add_argument("--prompt_dataset", default=None, help="prompt rows (.json/.jsonl/.parquet/folder/hub name)")
    p.add_argument("--ppo_instruction_str", default="instruction", help="key of the prompt in --prompt_dataset")
    p.add_argument("--pretrain_dataset", default=None, help="SFT rows for the ptx loss (optional)")
    p.add_argument("--instruction_str", default="instruction", help="key of the instruction in --pretrain_dataset")
    p.add_argument("--input_str", default="input", help="key of the input in --pretrain_dataset")
    p.add_argument("--output_str", default="output", help="key of the response in --pretrain_dataset")
    p.add_argument("--eval_dataset", default=None,
                   help="held-out prompts: greedy and sampled answers scored before and after training")
    p.add_argument("--num_episodes", type=int, default=10, help="rollout-then-update rounds")
    p.add_argument("--num_collect_steps", type=int, default=10, help="rollout batches per episode")
    p.add_argument("--num_update_steps", type=int, default=5, help="passes over the episode's buffer")
    p.add_argument("--experience_batch_size", type=int, default=8, help="prompts per rollout batch")
    p.add_argument("--train_batch_size", type=int, default=8, help="samples per PPO minibatch")
    p.add_argument("--group_by_length", action=argparse.BooleanOptionalAction, default=True,
                   help="put rollouts of similar length in the same PPO minibatch (less padding)")
    p.add_argument("--ptx_batch_size", type=int, default=1, help="pretrain rows per minibatch for the ptx loss")
    p.add_argument("--ptx_coef", type=float, default=0.9,
                   help="actor loss = (1 - ptx_coef) * policy_loss + ptx_coef * ptx_loss (with --pretrain_dataset)")
    p.add_argument("--kl_coef", type=float, default=None,
                   help="per-token KL penalty in the reward against the initial model (default 0.1 for ppo and "
                        "reinforce_pp, 0 for grpo and rloo)")
    p.add_argument("--target_kl", type=float, default=None, help="adapt kl_coef towards this KL (off when unset)")
    p.add_argument("--kl_horizon", type=float, default=10000, help="horizon of the adaptive KL controller")
    p.add_argument("--reward_clip", type=float, default=None, help="clip reward-model scores to +-this")
    p.add_argument("--actor_lr", type=float, default=1e-6, help="actor (policy) learning rate, constant")
    p.add_argument("--critic_lr", type=float, default=None,
                   help=f"critic (value model) learning rate, constant; ppo only (default {CRITIC_LR})")
    p.add_argument("--max_input_len", type=int, default=256, help="prompt tokens kept (from the end)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="longest sampled response")
    p.add_argument("--top_k", type=int, default=0,
                   help="sample among the k likeliest tokens (0: all; a cut makes the rollout off-policy)")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (1.0: off)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--gamma", type=float, default=1.0, help="GAE discount")
    p.add_argument("--lam", type=float, default=0.95, help="GAE lambda")
    p.add_argument("--eps_clip", type=float, default=0.2, help="policy ratio clip")
    p.add_argument("--eps_clip_high", type=float, default=None,
                   help="upper policy ratio clip, 1 + this (default: --eps_clip; DAPO's clip-higher uses more)")
    p.add_argument("--value_clip", type=float, default=0.2, help="value clip (0 disables)")
    p.add_argument("--vf_coef", type=float, default=1.0, help="weight of the value loss")
    p.add_argument("--offload_frozen", action="store_true",
                   help="keep the initial and reward models on the CPU except while they score (under LoRA the "
                        "initial model is the actor with its adapters off, so only the reward model moves)")
    p.add_argument("--allow_template_mismatch", action="store_true",
                   help="run although the actor and the reward model carry different chat templates")
    args = p.parse_args(argv)
    if args.num_generations is None:
        args.num_generations = 1 if args.algo == "ppo" else 4
    if args.kl_coef is None:
        args.kl_coef = 0.1 if args.algo in ("ppo", "reinforce_pp") else 0.0
    args.critic_lr_given = args.critic_lr is not None
    if args.critic_lr is None:
        args.critic_lr = CRITIC_LR
    if args.eps_clip_high is None:
        args.eps_clip_high = args.eps_clip
    return args


def check_algo_args(args) -> list:
    """The algorithm's flags; returns the loaded reward functions. All before any model loads."""
    from coati.rewards import load_reward_fn

    group = args.algo in ("grpo", "rloo")
    if args.num_generations < 1:
        raise UserError(f"--num_generations must be positive, got {args.num_generations}")
    if group and args.num_generations < 2:
        raise UserError(f"--algo {args.algo} compares the answers to one prompt and needs --num_generations of 2 "
                        f"or more, got {args.num_generations}; give 4 (the default) or more")
    if args.algo == "reinforce_pp" and args.reinforce_baseline == "group" and args.num_generations < 2:
        raise UserError("--reinforce_baseline group needs --num_generations of 2 or more, got "
                        f"{args.num_generations}")
    if args.filter_groups and args.num_generations < 2:
        raise UserError(f"--filter_groups needs groups: --num_generations of 2 or more, got {args.num_generations}")
    if args.algo != "ppo" and args.critic_lr_given:
        raise UserError(f"--critic_lr is for ppo; --algo {args.algo} has no critic, leave --critic_lr out")
    for name in ("kl_coef", "kl_loss_coef", "missing_eos_penalty"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} must be 0 or positive, got {getattr(args, name)}")
    if not 0 < args.eps_clip < 1 or args.eps_clip_high <= 0:
        raise UserError(f"--eps_clip must be in (0, 1) and --eps_clip_high positive, got {args.eps_clip} and "
                        f"{args.eps_clip_high}")
    if args.eval_interval < 0:
        raise UserError(f"--eval_interval must be 0 (off) or positive, got {args.eval_interval}")
    if args.reward_weights is not None and not args.reward_fn:
        raise UserError("--reward_weights weighs --reward_fn functions; give --reward_fn too")
    fns = [load_reward_fn(spec) for spec in args.reward_fn or []]
    if args.reward_weights is not None and len(args.reward_weights) != len(fns):
        raise UserError(f"--reward_weights has {len(args.reward_weights)} value(s) but {len(fns)} --reward_fn are "
                        "given; give one weight per function, in the same order")
    return fns


def check_args(args) -> list:
    """Every flag, path and reward function, before any model loads; returns the reward functions."""
    from coati.models.loading import check_model_role, check_model_source
    from coati.models.value import is_legacy_file

    check_common(args)
    check_model_role(args.pretrain, "--pretrain", scorer=False)
    if not args.prompt_dataset:
        raise UserError("--prompt_dataset is required: rows with an instruction per prompt")
    if not args.rm_path and not args.reward_fn:
        raise UserError("--rm_path or --reward_fn is required: the folder written by train_reward_model.py (or a "
                        "Coati .pt with --rm_pretrain), or a reward function such as --reward_fn exact_answer")
    if args.rm_path:
        check_model_source(args.rm_path, "--rm_path")
        if is_legacy_file(args.rm_path):
            if not args.rm_pretrain:
                raise UserError(f"--rm_path {args.rm_path} is a .pt state dict; also give --rm_pretrain, the base "
                                "model it was trained from")
            check_model_source(args.rm_pretrain, "--rm_pretrain")
        else:
            check_model_role(args.rm_path, "--rm_path", scorer=True)
            if args.rm_pretrain and is_first_rank():
                print(f"[{args.algo}] --rm_pretrain {args.rm_pretrain} is ignored: --rm_path {args.rm_path} is a "
                      "model folder (--rm_pretrain only names the base model of a legacy .pt)", file=sys.stderr)
    for name in ("num_episodes", "num_collect_steps", "num_update_steps", "experience_batch_size",
                 "train_batch_size", "ptx_batch_size", "max_input_len"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if not 0 <= args.ptx_coef <= 1:
        raise UserError(f"--ptx_coef must be in [0, 1], got {args.ptx_coef}")
    check_sampling(args)
    check_same_template(args)
    return check_algo_args(args)


def check_same_template(args) -> None:
    """The reward model scores what the actor writes after its prompt: rendered in another chat template, the
    prompts would be text the reward model never learnt to score. Compares the templates saved in the folders
    (and the --chat_template in force for the actor); a legacy .pt or a hub name carries none to compare."""
    from coati.dataset.chat import flag_template_source, saved_chat_template, template_label
    from coati.models.value import is_legacy_file

    actor_folder = args.tokenizer or args.pretrain
    if args.allow_template_mismatch or not args.rm_path or is_legacy_file(args.rm_path) or not os.path.isdir(actor_folder):
        return
    if args.chat_template and args.chat_template != "tokenizer":
        actor, where = flag_template_source(args.chat_template, actor_folder), f"--chat_template {args.chat_template}"
    else:
        actor, where = saved_chat_template(actor_folder), f"{'--tokenizer' if args.tokenizer else '--pretrain'} " \
            f"{actor_folder}"
    reward = saved_chat_template(args.rm_path)
    if (actor or "").strip() != (reward or "").strip():
        raise UserError(f"the actor's chat template ({where}: {template_label(actor)}) differs from the reward "
                        f"model's (--rm_path {args.rm_path}: {template_label(reward)}), so the reward model would "
                        "score prompts rendered in a template it was not trained on; train both with the same "
                        "--chat_template, or pass --allow_template_mismatch")


@exit_on_user_error
def main(args) -> dict:
    from coati.dataset.io import load_rows
    from coati.models.registry import resolve_family
    from coati.models.value import is_legacy_file

    # Everything the user can get wrong is checked before a model is loaded.
    reward_fns = check_args(args)
    algo, tag = args.algo, f"[{args.algo}]"
    family = resolve_family(args.model, args.pretrain)
    legacy_rm = bool(args.rm_path) and is_legacy_file(args.rm_path)
    rm_source = (args.rm_pretrain if legacy_rm else args.rm_path) or None
    rm_family = (resolve_family(args.rm_model or "auto", rm_source, "--rm_model") if args.rm_model or
                 os.path.isdir(rm_source) else family) if rm_source else None
    prompt_rows = load_rows(args.prompt_dataset, args.max_datasets_size, flag="--prompt_dataset")
    ptx_rows = load_rows(args.pretrain_dataset, flag="--pretrain_dataset") if args.pretrain_dataset else None
    eval_rows = load_rows(args.eval_dataset, flag="--eval_dataset") if args.eval_dataset else None
    # A critic only for PPO; the frozen reference only when a KL term reads it.
    use_critic = algo == "ppo"
    use_reference = args.kl_coef > 0 or args.kl_loss_coef > 0

    from coati.checkpoint import Checkpointer
    from coati.dataset.chat import (
        build_sft_dataset,
        choose_chat_template,
        is_conversation_rows,
        set_chat_template,
    )
    from coati.dataset.prompt import LeftPadCollator, PromptDataset, RowPrompts
    from coati.dataset.sft import Keys, SFTCollator
    from coati.experience.maker import ADAPTERS_OFF, ExperienceMaker
    from coati.models.loading import apply_lora, load_causal_lm, load_sequence_scorer, load_tokenizer
    from coati.models.value import ValueModel, load_legacy_state_dict
    from coati.outputs import open_run_log, save_outputs
    from coati.strategies import build_strategy
    from coati.trainer.kl import AdaptiveKLController, FixedKLController
    from coati.trainer.ppo import PPOTrainer

    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype)
    tokenizer = load_tokenizer(args.tokenizer or args.pretrain, args.max_len, args.trust_remote_code)
    rm_tokenizer = None
    if rm_source:
        rm_tokenizer = load_tokenizer(rm_source, args.max_len, args.trust_remote_code, distinct_pad=True)
        check_same_vocabulary(tokenizer, rm_tokenizer, rm_source)
    # Prompts render by the reward model's rule (preference.render_prompt): conversation rows through the
    # template the flag names, else the tokenizer's own; ptx rows as SFT reads them, in the same template.
    conversations = any(is_conversation_rows(r, args.messages_str) for r in (prompt_rows, eval_rows or []))
    template = choose_chat_template(args.chat_template, tokenizer, conversations)
    prompt_data = dict(without_prompt=args.without_prompt, template=template, messages_key=args.messages_str)
    prompts = PromptDataset(prompt_rows, tokenizer, args.max_input_len, args.language, args.ppo_instruction_str,
                            source=f"--prompt_dataset {args.prompt_dataset}", **prompt_data)
    eval_prompts = PromptDataset(eval_rows, tokenizer, args.max_input_len, args.language, args.ppo_instruction_str,
                                 source=f"--eval_dataset {args.eval_dataset}", **prompt_data) if eval_rows else None
    ptx_set = build_sft_dataset(ptx_rows, tokenizer, args.max_len, language=args.language,
                                keys=Keys(args.instruction_str, args.input_str, args.output_str),
                                without_prompt=args.without_prompt,
                                chat_template=template.name if template else args.chat_template,
                                messages_key=args.messages_str, train_on=args.train_on,
                                source=f"--pretrain_dataset {args.pretrain_dataset}")[0] if ptx_rows else None
    if strategy.is_rank0:
        for ds in filter(None, (prompts, eval_prompts, ptx_set)):
            print(f"{tag} {ds.report.summary()}", file=sys.stderr)
        if template is not None:
            print(f"{tag} chat template: {template.name}", file=sys.stderr)
        print(f"{tag} models: actor" + (", critic" if use_critic else "") + (", reward model" if rm_source else "")
              + (", reference" if use_reference else " (no reference: --kl_coef and --kl_loss_coef are 0)")
              + (f"; rewards: {', '.join(args.reward_fn)}" if args.reward_fn else ""), file=sys.stderr)

    # Reward functions read each prompt's text before the template and its row's other columns.
    prompts = RowPrompts(prompts, prompt_rows, args.ppo_instruction_str, args.messages_str)
    eval_prompts = RowPrompts(eval_prompts, eval_rows, args.ppo_instruction_str, args.messages_str) \
        if eval_prompts else None

    # Actor and its frozen reference from --pretrain; reward model and critic from the stage-2 model (the critic
    # from --pretrain when only reward functions score). Under LoRA the reference is the actor with its adapters
    # switched off (ADAPTERS_OFF): the base weights are held once. No KL term, no reference at all.
    actor = load_causal_lm(args.pretrain, family, tokenizer, args.dtype, args.trust_remote_code, args.grad_checkpoint)
    actor = apply_lora(actor, args.lora_rank, args.lora_alpha, args.lora_dropout, "CAUSAL_LM")
    initial = None
    if use_reference:
        initial = ADAPTERS_OFF if args.lora_rank > 0 else load_causal_lm(
            args.pretrain, family, tokenizer, args.dtype, args.trust_remote_code).requires_grad_(False).eval()
    reward_hf = load_sequence_scorer(rm_source, rm_family, rm_tokenizer, args.dtype, args.trust_remote_code) \
        if rm_source else None
    critic_hf = load_sequence_scorer(rm_source or args.pretrain, rm_family or family, rm_tokenizer or tokenizer,
                                     args.dtype, args.trust_remote_code, args.grad_checkpoint) if use_critic else None
    if legacy_rm:
        for hf in filter(None, (reward_hf, critic_hf)):
            notes = load_legacy_state_dict(hf, args.rm_path)
        for note in notes:
            print(f"{tag} {args.rm_path}: {note}", file=sys.stderr)
    reward_model = ValueModel(reward_hf).requires_grad_(False).eval() if reward_hf is not None else None

    actor, actor_optim = strategy.prepare_train(actor, args.actor_lr, args.weight_decay)
    critic = critic_optim = None
    if use_critic:
        critic_hf = apply_lora(critic_hf, args.lora_rank, args.lora_alpha, args.lora_dropout, "SEQ_CLS")
        critic, critic_optim = strategy.prepare_train(ValueModel(critic_hf), args.critic_lr, args.weight_decay)
    frozen_device = "cpu" if args.offload_frozen else strategy.device
    if initial is not None and initial is not ADAPTERS_OFF:
        initial = initial.to(frozen_device)
    reward_model = reward_model.to(frozen_device) if reward_model is not None else None

    prompt_collate = LeftPadCollator(tokenizer.pad_token_id, args.pad_to_multiple_of)
    prompt_loader = strategy.dataloader(prompts, args.experience_batch_size, prompt_collate,
                                        shuffle=True, drop_last=len(prompts) >= args.experience_batch_size)
    ptx_loader = strategy.dataloader(ptx_set, args.ptx_batch_size,
                                     SFTCollator(tokenizer.pad_token_id, args.pad_to_multiple_of),
                                     shuffle=True) if ptx_set else None
    eval_loader = strategy.dataloader(eval_prompts, args.experience_batch_size, prompt_collate, shuffle=False) \
        if eval_prompts else None
    kl_ctl = AdaptiveKLController(args.kl_coef, args.target_kl, args.kl_horizon) if args.target_kl else \
        FixedKLController(args.kl_coef)
    gen_kwargs = dict(max_new_tokens=args.max_new_tokens, top_k=args.top_k, top_p=args.top_p,
                      temperature=args.temperature)
    maker = ExperienceMaker(strategy=strategy, actor=actor, critic=critic, reward_model=reward_model,
                            initial_model=initial, tokenizer=tokenizer, gen_kwargs=gen_kwargs,
                            reward_fns=reward_fns, reward_weights=args.reward_weights, algo=algo,
                            num_generations=args.num_generations, scale_rewards=args.scale_rewards,
                            reinforce_baseline=args.reinforce_baseline, filter_groups=args.filter_groups,
                            missing_eos_penalty=args.missing_eos_penalty, gamma=args.gamma, lam=args.lam,
                            reward_clip=args.reward_clip, offload_frozen=args.offload_frozen)
    models, optimizers = {"actor": actor}, {"actor": actor_optim}
    if critic is not None:
        models["critic"], optimizers["critic"] = critic, critic_optim
    ckpt = Checkpointer(strategy, args.save_path, interval=args.save_interval,
                        max_checkpoints=args.max_checkpoints, models=models, optimizers=optimizers)
    # Weights, optimizers and RNG come back first; metrics.jsonl is then kept up to that step.
    resumed = ckpt.load(args.resume_checkpoint) if args.resume_checkpoint else None
    logger = open_run_log(args, algo, strategy, resumed)
    trainer = PPOTrainer(strategy=strategy, actor=actor, critic=critic, actor_optim=actor_optim,
                         critic_optim=critic_optim, maker=maker, kl_ctl=kl_ctl, prompt_loader=prompt_loader,
                         tokenizer=tokenizer, ptx_loader=ptx_loader, eval_loader=eval_loader,
                         eval_interval=args.eval_interval, num_episodes=args.num_episodes,
                         num_collect_steps=args.num_collect_steps, num_update_steps=args.num_update_steps,
                         train_batch_size=args.train_batch_size, ptx_coef=args.ptx_coef, eps_clip=args.eps_clip,
                         eps_clip_high=args.eps_clip_high, loss_agg=args.loss_agg, kl_loss_coef=args.kl_loss_coef,
                         value_clip=args.value_clip, vf_coef=args.vf_coef, max_grad_norm=args.max_grad_norm,
                         logger=logger, seed=args.seed, checkpointer=ckpt, skip_nonfinite=args.skip_nonfinite,
                         group_by_length=args.group_by_length,
                         pad_to_multiple_of=args.pad_to_multiple_of)
    if resumed is not None:
        trainer.load_state_dict(resumed)

    trainer.fit()

    h, evals = trainer.history, trainer.evals
    k = max(1, len(h) // 4)
    first, last = (sum(x["reward"] for x in h[:k]) / k, sum(x["reward"] for x in h[-k:]) / k)
    held_out = ""
    if evals:
        held_out = (f"; held-out reward greedy {evals[0]['eval_reward']:.3f} -> {evals[-1]['eval_reward']:.3f}, "
                    f"sampled {evals[0]['eval_reward_sampled']:.3f} -> {evals[-1]['eval_reward_sampled']:.3f}")
    summary = (f"{tag} done: {trainer.episode} episodes, {trainer.global_step} updates; mean reward "
               f"{first:.3f} (first {k}) -> {last:.3f} (last {k}), kl {h[-1]['kl']:.3f}{held_out}; "
               f"actor in {args.save_path}")
    plot_keys = ["reward", "eval_reward", "kl", "policy_loss"] + (["value_loss"] if use_critic else [])
    if template is not None:
        set_chat_template(tokenizer, template)  # inference.py renders the same way
    save_outputs(strategy=strategy, args=args, progress=trainer, checkpointer=ckpt, logger=logger, model=actor,
                 tokenizer=tokenizer, plot_keys=plot_keys, plot_file=f"{algo}_reward_kl.png",
                 title=algo.upper(), summary=summary)
    return {"history": h, "evals": evals, "eval_before": trainer.eval_before, "eval_after": trainer.eval_after,
            "models": {"critic": critic is not None, "reference": initial is not None,
                       "reward_model": reward_model is not None}}


def check_same_vocabulary(actor_tok, rm_tok, rm_source: str) -> None:
    """The reward model reads the actor's token ids, so both must share a vocabulary."""
    a, r = actor_tok.get_vocab(), rm_tok.get_vocab()
    if any(r.get(tok) != idx for tok, idx in a.items() if tok != actor_tok.pad_token):
        raise UserError(f"the reward model at {rm_source} uses a different tokenizer from --pretrain; train it from "
                        "the same base model (or the SFT output)")


if __name__ == "__main__":
    main(parse_args())
