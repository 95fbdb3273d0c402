"""Print what each stage of a run produced: `python -m coati.summary outputs/sft outputs/rm outputs/ppo outputs/dpo`."""

from __future__ import annotations

import json
import os
import sys


def _records(folder: str) -> list[dict]:
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _args(folder: str) -> dict:
    path = os.path.join(folder, "args.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _algo(folder: str) -> str:
    """The RL algorithm of an output folder, from its args.json (PPO when it names none)."""
    return str(_args(folder).get("algo", "ppo")).upper().replace("REINFORCE_PP", "REINFORCE++")


def describe(folder: str) -> str:
    """One line for a stage's output folder, from its metrics.jsonl."""
    recs = _records(folder)
    train = [r for r in recs if r.get("split", "train") == "train"]
    evals = [r for r in recs if r.get("split") == "eval"]
    plots = sorted(f for f in os.listdir(folder) if f.endswith(".png")) if os.path.isdir(folder) else []
    if not recs:
        return f"{folder}: no metrics.jsonl"
    if "reward" in train[-1]:
        k = max(1, len(train) // 4)
        first = sum(r["reward"] for r in train[:k]) / k
        last = sum(r["reward"] for r in train[-k:]) / k
        text = (f"{_algo(folder):<4} {len(train)} episodes, {train[-1]['step']} updates: reward {first:+.3f} -> "
                f"{last:+.3f}, KL {train[-1]['kl']:.3f}")
        if evals and "eval_reward" in evals[0]:
            text += (f"\n     held-out reward, greedy {evals[0]['eval_reward']:+.3f} -> {evals[-1]['eval_reward']:+.3f}, "
                     f"sampled {evals[0]['eval_reward_sampled']:+.3f} -> {evals[-1]['eval_reward_sampled']:+.3f} "
                     "(before -> after training)")
        elif evals:
            text += f"; held-out reward {evals[-1]['reward_before']:+.3f} -> {evals[-1]['reward']:+.3f}"
    elif "chosen_reward" in train[-1]:
        loss_type = _args(folder).get("loss_type", "dpo")
        text = f"DPO  {train[-1]['step']} steps{'' if loss_type == 'dpo' else f' ({loss_type})'}: "
        if evals:  # one step's loss is one batch's, and batches of pairs differ a lot: the held-out figures
            text += (f"held-out loss {evals[0]['eval_loss']:.4f} -> {evals[-1]['eval_loss']:.4f}, accuracy "
                     f"{evals[0]['eval_accuracy']:.3f} -> {evals[-1]['eval_accuracy']:.3f}, margin "
                     f"{evals[-1]['eval_margin']:.3f}")
        else:
            k = max(1, len(train) // 4)
            text += (f"loss {sum(r['loss'] for r in train[:k]) / k:.4f} -> "
                     f"{sum(r['loss'] for r in train[-k:]) / k:.4f} (first and last quarter of the steps)")
    elif "acc" in train[-1]:
        text = f"RM   {train[-1]['step']} steps: loss {train[-1]['loss']:.4f}"
        if evals:
            text += f", held-out accuracy {evals[0]['acc']:.3f} -> {evals[-1]['acc']:.3f}, margin {evals[-1]['dist']:.3f}"
    else:
        text = f"SFT  {train[-1]['step']} steps: loss {train[0]['loss']:.4f} -> {train[-1]['loss']:.4f}"
        if evals:
            text += f", eval loss {evals[-1]['loss']:.4f}"
    return f"{text}\n     model: {folder}/  plots: {', '.join(plots) or 'none'}"


def main(folders: list[str]) -> None:
    print("\n== coati run summary ==")
    for folder in folders:
        print(describe(folder))


if __name__ == "__main__":
    main(sys.argv[1:] or ["outputs/sft", "outputs/rm", "outputs/ppo"])
