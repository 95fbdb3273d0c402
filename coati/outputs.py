"""What every stage script builds and writes around its trainer: the epoch stages' loaders, schedule, checkpoints
and resume; metrics.jsonl, opened where a resumed run left off; and the final output folder. A new stage calls
these instead of repeating them."""

from __future__ import annotations

import contextlib
import os
import sys


def open_run_log(args, stage: str, strategy, resume_state: dict | None):
    """metrics.jsonl (and TensorBoard / wandb when asked) in --log_dir, else --save_path; rank 0 writes.

    resume_state: the trainer state of the checkpoint being resumed (None for a fresh run); the lines logged
    after its step belong to the run that died and are dropped."""
    from coati.cli import args_record
    from coati.trainer.metrics import MetricsLogger

    return MetricsLogger(args.log_dir or args.save_path, enabled=strategy.is_rank0,
                         use_tensorboard=args.use_tensorboard, use_wandb=args.use_wandb, run_name=stage,
                         config=args_record(args),
                         resume_step=resume_state["global_step"] if resume_state is not None else None)


def start_epoch_run(*, args, stage: str, strategy, model, optimizer, train_set, eval_set, collate,
                    states: dict | None = None) -> dict:
    """Everything an epoch stage (SFT, RM, DPO) builds between its model and its trainer, from the shared flags.

    The training loader is shuffled (grouped by length with --group_by_length), the eval loader is not; the
    cosine schedule spans the run's optimizer steps; the checkpointer also keeps `states` (objects with
    state_dict / load_state_dict, e.g. precomputed reference log-probs); with --resume_checkpoint the weights,
    optimizer, scheduler, RNG and states come back before metrics.jsonl is opened at that step. Returns the
    keyword arguments the epoch trainers share (strategy, model, optimizer, scheduler, loaders, logger,
    checkpointer and the loop flags) plus "resumed": the loop state to restore after the trainer is built,
    or None."""
    from coati.checkpoint import Checkpointer
    from coati.optim import cosine_schedule

    train_loader = strategy.dataloader(train_set, args.batch_size, collate, shuffle=True,
                                       lengths=train_set.lengths() if args.group_by_length else None)
    eval_loader = strategy.dataloader(eval_set, args.batch_size, collate, shuffle=False) if eval_set else None
    steps = -(-len(train_loader) // args.accumulation_steps) * args.max_epochs
    scheduler = cosine_schedule(optimizer, steps, args.warmup_ratio)
    checkpointer = Checkpointer(strategy, args.save_path, interval=args.save_interval,
                                max_checkpoints=args.max_checkpoints, models={"model": model},
                                optimizers={"model": optimizer}, schedulers={"model": scheduler}, states=states)
    resumed = checkpointer.load(args.resume_checkpoint) if args.resume_checkpoint else None
    return dict(strategy=strategy, model=model, optimizer=optimizer, scheduler=scheduler,
                train_loader=train_loader, eval_loader=eval_loader, checkpointer=checkpointer,
                logger=open_run_log(args, stage, strategy, resumed), accumulation_steps=args.accumulation_steps,
                max_epochs=args.max_epochs, max_grad_norm=args.max_grad_norm, log_interval=args.log_interval,
                eval_interval=args.eval_interval, skip_nonfinite=args.skip_nonfinite, resumed=resumed)


def save_outputs(*, strategy, args, progress, checkpointer, logger, model, tokenizer, plot_keys: list[str],
                 plot_file: str, title: str, summary: str) -> None:
    """The end of a stage: close the log, write a resumable checkpoint with --need_optim_ckpt, replace
    --save_path with the model folder (plus args.json and the plot), print `summary` on rank 0, and end the
    processes. Every rank calls it: sharded strategies gather the weights to save them. progress: what holds
    the run's position (global_step, state_dict()): an EpochLoop, or the PPO trainer."""
    from coati.checkpoint import atomic_dir, write_json
    from coati.cli import args_record
    from coati.trainer.metrics import plot_metrics

    logger.close()
    if args.need_optim_ckpt:  # a full checkpoint: optimizer, scheduler and RNG states, resumable
        checkpointer.save(progress.global_step, progress.state_dict())
    # Rank 0 writes; the folder appears complete or not at all.
    with atomic_dir(args.save_path) if strategy.is_rank0 else contextlib.nullcontext() as out:
        strategy.save_hf(model, tokenizer, out, args.merge_lora)
        if strategy.is_rank0:
            write_json(os.path.join(out, "args.json"), args_record(args))
            plot_metrics(logger.records, plot_keys, os.path.join(out, plot_file), title)
    if strategy.is_rank0:
        print(summary, file=sys.stderr)
    strategy.barrier()
    strategy.close()
