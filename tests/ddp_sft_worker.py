"""Run a few SFT steps under a strategy and record losses and whether all ranks hold the same weights.

Launched by tests/test_sft.py, under torchrun for ddp and as plain python for naive.
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coati.dataset.io import load_rows  # noqa: E402
from coati.dataset.sft import Keys, SFTCollator, SFTDataset  # noqa: E402
from coati.models.loading import load_causal_lm, load_tokenizer  # noqa: E402
from coati.models.registry import resolve_family  # noqa: E402
from coati.optim import cosine_schedule  # noqa: E402
from coati.strategies import build_strategy  # noqa: E402
from coati.trainer.sft import SFTTrainer  # noqa: E402
from train_sft import parse_args  # noqa: E402


def main() -> None:
    args = parse_args()
    strategy = build_strategy(args.strategy, args.seed)
    tok = load_tokenizer(args.pretrain, args.max_len)
    ds = SFTDataset(load_rows(args.dataset), tok, args.max_len, args.language,
                    Keys(args.instruction_str, args.input_str, args.output_str))
    model = load_causal_lm(args.pretrain, resolve_family(args.model, args.pretrain), tok)
    model, opt = strategy.prepare_train(model, args.lr)
    loader = strategy.dataloader(ds, args.batch_size, SFTCollator(tok.pad_token_id))
    trainer = SFTTrainer(strategy=strategy, model=model, optimizer=opt,
                         scheduler=cosine_schedule(opt, 4, 0.0), train_loader=loader, max_epochs=1)
    strategy.unwrap(model).eval()  # no dropout: naive and ddp must see identical arithmetic
    losses = []
    for batch in loader:
        losses.append(trainer.train_step([batch]))
    flat = torch.cat([p.detach().flatten() for p in strategy.unwrap(model).parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(strategy.world_size)]
    if strategy.world_size > 1:
        torch.distributed.all_gather(gathered, flat)
    else:
        gathered = [flat]
    if strategy.is_rank0:
        os.makedirs(args.save_path, exist_ok=True)
        with open(os.path.join(args.save_path, "worker.json"), "w") as f:
            json.dump({"losses": losses, "replicas_identical": all(torch.equal(g, flat) for g in gathered)}, f)
    strategy.close()


if __name__ == "__main__":
    main()
