"""Run a few training steps of one stage under one strategy, checkpoint, resume, and record what the strategy
tests compare. Models load in the run's --dtype, as the stage scripts load them.

    python tests/strategy_worker.py --stage sft|rm|ppo|grpo|dpo --out DIR [--steps 4] [--resume_at 2] [--cpu_shim] \
        -- <flags of that stage's script>

Under torchrun for the distributed strategies, plain python for naive. Every rank sees its share of the same
global batches (the strategy's sampler), so two ranks must reproduce one naive process. Writes into DIR (rank 0):
- worker.json: per-step losses and gradient norms; with --resume_at k also the losses of steps k+1.. of a
  fresh run resumed from the checkpoint written after step k;
- final/: the trained model after the last step, written by `strategy.save_hf` (a plain HF folder);
- checkpoint-k/: that checkpoint, by `coati.checkpoint.Checkpointer` (what --need_optim_ckpt and
  --save_interval write: weights, each rank's optimizer state, scheduler, RNG);
- resumed/: the resumed run's model after the last step.

PPO: one rollout of the whole global prompt batch is made on every rank before training (same seed, same
weights, so the same samples everywhere), with responses of a fixed length so that per-rank token means
average to the global one; each rank then trains on its slice of every minibatch. The steps are the
actor + critic updates of `PPOTrainer.train_step`, the loss recorded is policy loss + value loss.

GRPO: the same with --algo grpo (no critic; --num_generations answers per prompt, scored by the reward model
built from --pretrain), the loss recorded is the policy loss plus any KL loss term.

DPO: `DPOTrainer.train_step` with the reference computed on the fly (a frozen copy; with --lora_rank the policy
with its adapters off), so the reference forward runs under every strategy too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from coati.checkpoint import Checkpointer  # noqa: E402
from coati.dataset.io import load_rows  # noqa: E402
from coati.models.loading import apply_lora, load_causal_lm, load_sequence_scorer, load_tokenizer  # noqa: E402
from coati.models.registry import resolve_family  # noqa: E402
from coati.models.value import ValueModel  # noqa: E402
from coati.optim import cosine_schedule  # noqa: E402
from coati.strategies import build_strategy  # noqa: E402


def worker_args():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=("sft", "rm", "ppo", "grpo", "dpo"), default="sft")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--resume_at", type=int, default=0, help="checkpoint after this step and resume from it (0: no)")
    p.add_argument("--cpu_shim", action="store_true", help="install tests/colossalai_cpu_shim.py first")
    p.add_argument("--cpu_offload", action="store_true", help="build_strategy(..., cpu_offload=True)")
    p.add_argument("--micro", type=int, default=1,
                   help="SFT, DPO: split each batch into this many accumulated micro-batches")
    wargs = p.parse_args(argv[:split])
    script = {"sft": "train_sft", "rm": "train_reward_model", "ppo": "train_prompts", "grpo": "train_prompts",
              "dpo": "train_dpo"}[wargs.stage]
    return wargs, __import__(script).parse_args(argv[split + 1:])


class SFT:
    """Batches of SFT rows; `step` is one optimizer step of SFTTrainer over `micro` accumulated micro-batches."""

    def __init__(self, strategy, args, wargs):
        from coati.dataset.sft import Keys, SFTCollator, SFTDataset

        self.strategy, self.args, self.micro = strategy, args, wargs.micro
        self.tok = load_tokenizer(args.pretrain, args.max_len)
        ds = SFTDataset(load_rows(args.dataset), self.tok, args.max_len, args.language,
                        Keys(args.instruction_str, args.input_str, args.output_str))
        loader = strategy.dataloader(ds, args.batch_size, SFTCollator(self.tok.pad_token_id))
        strategy.set_epoch(loader, 0)
        self.batches = list(loader)[:wargs.steps]

    def build(self):
        """(models, optimizers, schedulers) of a fresh run from the pretrained weights, and its trainer."""
        from coati.trainer.sft import SFTTrainer

        args = self.args
        model = load_causal_lm(args.pretrain, resolve_family(args.model, args.pretrain), self.tok, args.dtype)
        model = apply_lora(model, args.lora_rank, args.lora_alpha, 0.0)
        model, opt = self.strategy.prepare_train(model, args.lr, args.weight_decay)
        sched = cosine_schedule(opt, 8, args.warmup_ratio)
        self.strategy.unwrap(model).eval()  # no dropout: every strategy must see the same arithmetic
        self.trainer = SFTTrainer(strategy=self.strategy, model=model, optimizer=opt, scheduler=sched,
                                  train_loader=[None], max_grad_norm=args.max_grad_norm)
        return {"model": model}, {"model": opt}, {"model": sched}

    def step(self, batch) -> float:
        parts = [dict(zip(batch, values)) for values in zip(*(v.chunk(self.micro) for v in batch.values()))]
        return self.trainer.train_step(parts)


class RM:
    """Batches of preference pairs; `step` is one RewardModelTrainer step."""

    def __init__(self, strategy, args, wargs):
        from coati.dataset.preference import PairCollator, PairKeys, PreferenceDataset, rows_to_pairs

        self.strategy, self.args = strategy, args
        self.tok = load_tokenizer(args.pretrain, args.max_len, distinct_pad=True)
        pairs = rows_to_pairs(load_rows(args.dataset), args.data_format,
                              PairKeys(args.prompt_str, args.chosen_str, args.rejected_str), args.dataset)
        ds = PreferenceDataset(pairs, self.tok, args.max_len, args.language)
        loader = strategy.dataloader(ds, args.batch_size, PairCollator(self.tok.pad_token_id))
        strategy.set_epoch(loader, 0)
        self.batches = list(loader)[:wargs.steps]

    def build(self):
        from coati.trainer.rm import RewardModelTrainer

        args = self.args
        hf = load_sequence_scorer(args.pretrain, resolve_family(args.model, args.pretrain), self.tok, args.dtype)
        hf = apply_lora(hf, args.lora_rank, args.lora_alpha, 0.0, "SEQ_CLS")
        model, opt = self.strategy.prepare_train(ValueModel(hf), args.lr, args.weight_decay)
        sched = cosine_schedule(opt, 8, args.warmup_ratio)
        self.strategy.unwrap(model).eval()
        self.trainer = RewardModelTrainer(strategy=self.strategy, model=model, optimizer=opt, scheduler=sched,
                                          train_loader=[None], max_grad_norm=args.max_grad_norm)
        return {"model": model}, {"model": opt}, {"model": sched}

    def step(self, batch) -> float:
        return self.trainer.train_step([batch])["loss"]


class DPO:
    """Batches of preference pairs; `step` is one DPOTrainer step over `micro` accumulated micro-batches."""

    def __init__(self, strategy, args, wargs):
        from coati.dataset.dpo import DPOCollator, DPODataset
        from coati.dataset.preference import PairKeys, rows_to_pairs

        self.strategy, self.args, self.micro = strategy, args, wargs.micro
        self.tok = load_tokenizer(args.pretrain, args.max_len)
        pairs = rows_to_pairs(load_rows(args.dataset), args.data_format,
                              PairKeys(args.prompt_str, args.chosen_str, args.rejected_str), args.dataset,
                              args.ranking_order)
        ds = DPODataset(pairs, self.tok, args.max_len, args.language)
        loader = strategy.dataloader(ds, args.batch_size, DPOCollator(self.tok.pad_token_id))
        strategy.set_epoch(loader, 0)
        self.batches = list(loader)[:wargs.steps]

    def build(self):
        from coati.models.forward import AnswerLogProbs
        from coati.models.loading import disable_dropout
        from coati.trainer.dpo import DPOTrainer

        args, strategy = self.args, self.strategy
        family = resolve_family(args.model, args.pretrain)
        policy = load_causal_lm(args.pretrain, family, self.tok, args.dtype)
        disable_dropout(policy)
        model, opt = strategy.prepare_train(AnswerLogProbs(apply_lora(policy, args.lora_rank, args.lora_alpha, 0.0)),
                                            args.lr, args.weight_decay)
        sched = cosine_schedule(opt, 8, args.warmup_ratio)
        if args.lora_rank > 0:
            ref = model
        else:
            frozen = load_causal_lm(args.pretrain, family, self.tok, args.dtype).requires_grad_(False)
            ref = strategy.prepare(AnswerLogProbs(frozen).eval(), trainable=False)
        self.trainer = DPOTrainer(strategy=strategy, model=model, optimizer=opt, scheduler=sched,
                                  train_loader=[None], ref_model=ref, loss_type=args.loss_type, beta=args.beta,
                                  sft_coef=args.sft_coef, max_grad_norm=args.max_grad_norm)
        return {"model": model}, {"model": opt}, {"model": sched}

    def step(self, batch) -> float:
        # micro-batches of whole pairs: rows i and B + i stay together
        b = len(batch["index"])
        parts = []
        for pairs in torch.arange(b).chunk(self.micro):
            rows = torch.cat([pairs, pairs + b])
            parts.append({k: v[pairs] if k == "index" or k.startswith("ref_") else v[rows] for k, v in batch.items()})
        return self.trainer.train_step(parts)["loss"]


class PPO:
    """One rollout of the global prompt batch (identical on every rank), then actor + critic updates on each
    rank's slice of it; `step` returns policy loss + value loss of one PPOTrainer.train_step."""

    def __init__(self, strategy, args, wargs):
        from coati.dataset.prompt import LeftPadCollator, PromptDataset

        self.strategy, self.args, self.steps = strategy, args, wargs.steps
        self.tok = load_tokenizer(args.pretrain, args.max_len)
        self.family = resolve_family(args.model, args.pretrain)
        ds = PromptDataset(load_rows(args.prompt_dataset), self.tok, args.max_input_len, args.language,
                           args.ppo_instruction_str)
        n = args.experience_batch_size * strategy.world_size
        self.prompts = LeftPadCollator(self.tok.pad_token_id)([ds[i] for i in range(n)])
        self.batches = list(range(wargs.steps))
        self.samples = None

    def build(self):
        from coati.experience.maker import ExperienceMaker
        from coati.trainer.kl import FixedKLController
        from coati.trainer.ppo import PPOTrainer

        args, strategy = self.args, self.strategy
        actor = apply_lora(load_causal_lm(args.pretrain, self.family, self.tok, args.dtype), args.lora_rank,
                           args.lora_alpha, 0.0)
        actor, actor_opt = strategy.prepare_train(actor, args.actor_lr, args.weight_decay)
        models, opts = {"actor": actor}, {"actor": actor_opt}
        critic = critic_opt = None
        if args.algo == "ppo":
            critic = apply_lora(load_sequence_scorer(args.pretrain, self.family, self.tok, args.dtype),
                                args.lora_rank, args.lora_alpha, 0.0, "SEQ_CLS")
            critic, critic_opt = strategy.prepare_train(ValueModel(critic), args.critic_lr, args.weight_decay)
            models["critic"], opts["critic"] = critic, critic_opt
        for m in models.values():
            strategy.unwrap(m).eval()
        if self.samples is None:  # the rollout, once, from the starting weights
            initial = load_causal_lm(args.pretrain, self.family, self.tok, args.dtype).requires_grad_(False).eval()
            reward = ValueModel(load_sequence_scorer(args.pretrain, self.family, self.tok, args.dtype))
            reward.requires_grad_(False)
            gen = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, top_k=args.top_k)
            maker = ExperienceMaker(strategy=strategy, actor=actor, critic=critic,
                                    reward_model=reward.eval().to(strategy.device),
                                    initial_model=initial.to(strategy.device), tokenizer=self.tok,
                                    gen_kwargs=gen, algo=args.algo, num_generations=args.num_generations,
                                    scale_rewards=args.scale_rewards)
            self.samples = maker.make(self.prompts, kl_coef=args.kl_coef)
        self.trainer = PPOTrainer(strategy=strategy, actor=actor, critic=critic, actor_optim=actor_opt,
                                  critic_optim=critic_opt, maker=None, kl_ctl=FixedKLController(args.kl_coef),
                                  prompt_loader=[None], tokenizer=self.tok, eps_clip=args.eps_clip,
                                  eps_clip_high=args.eps_clip_high, loss_agg=args.loss_agg,
                                  kl_loss_coef=args.kl_loss_coef, value_clip=args.value_clip, vf_coef=args.vf_coef,
                                  max_grad_norm=args.max_grad_norm)
        return models, opts, {}

    def step(self, k) -> float:
        from coati.experience.experience import collate

        # Minibatch k: a rotation of the global batch, so every step sees a different split over ranks.
        b = len(self.samples)
        order = [(i + k) % b for i in range(b)]
        per_rank = b // self.strategy.world_size
        mine = order[self.strategy.rank * per_rank:(self.strategy.rank + 1) * per_rank]
        exp = collate([self.samples[i] for i in mine], self.tok.pad_token_id).to(self.strategy.device)
        figures = self.trainer.train_step(exp)
        return figures["policy_loss"] + figures.get("value_loss", 0.0) + figures.get("kl_loss", 0.0)


def main() -> None:
    wargs, args = worker_args()
    if wargs.cpu_shim:
        import colossalai_cpu_shim

        colossalai_cpu_shim.install()
    strategy = build_strategy(args.strategy, args.seed, mixed_precision=args.dtype, cpu_offload=wargs.cpu_offload)
    norms: list[float] = []
    step = strategy.step
    strategy.step = lambda *a, **k: norms.append(step(*a, **k)) or norms[-1]  # record the returned norms

    stage = {"sft": SFT, "rm": RM, "ppo": PPO, "grpo": PPO, "dpo": DPO}[wargs.stage](strategy, args, wargs)
    trained = "actor" if wargs.stage in ("ppo", "grpo") else "model"

    def run_steps(batches):
        return [stage.step(b) for b in batches]

    def save(models, path):
        os.makedirs(path, exist_ok=True)
        strategy.save_hf(models[trained], stage.tok, path if strategy.is_rank0 else None, merge_lora=True)
        strategy.barrier()

    models, opts, scheds = stage.build()
    k = wargs.resume_at
    out = {"losses": run_steps(stage.batches[:k] if k else stage.batches)}
    if k:
        path = Checkpointer(strategy, wargs.out, models=models, optimizers=opts, schedulers=scheds).save(k, {"step": k})
        out["losses"] += run_steps(stage.batches[k:])
    out["norms"] = list(norms)
    save(models, os.path.join(wargs.out, "final"))

    if k:
        # A fresh run from the pretrained weights, everything restored from the checkpoint on every rank.
        models, opts, scheds = stage.build()
        Checkpointer(strategy, wargs.out, models=models, optimizers=opts, schedulers=scheds).load(path)
        out["resumed_losses"] = run_steps(stage.batches[k:])
        save(models, os.path.join(wargs.out, "resumed"))

    if strategy.is_rank0:
        with open(os.path.join(wargs.out, "worker.json"), "w") as f:
            json.dump(out, f)
    strategy.close()


if __name__ == "__main__":
    main()
