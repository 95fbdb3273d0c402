"""metrics.jsonl, optional TensorBoard / wandb, and PNG curves. Only rank 0 writes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

import torch


class MetricsLogger:
    """Appends one JSON object per logged step or eval to `<log_dir>/metrics.jsonl`."""

    def __init__(self, log_dir: str | None, enabled: bool = True, use_tensorboard: bool = False,
                 use_wandb: bool = False, run_name: str = "coati", config: dict | None = None,
                 resume_step: int | None = None):
        self.enabled = enabled and log_dir is not None
        self.path = os.path.join(log_dir, "metrics.jsonl") if self.enabled else None
        self.records: list[dict] = []
        self.tb = self.wandb = None
        if not self.enabled:
            return
        os.makedirs(log_dir, exist_ok=True)
        if resume_step is not None and os.path.exists(self.path):
            # Keep what was logged up to the checkpoint; later lines belong to the run that died.
            with open(self.path, encoding="utf-8") as f:
                self.records = [r for r in map(json.loads, filter(str.strip, f)) if r.get("step", 0) <= resume_step]
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records)
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(log_dir, "tensorboard"))
        if use_wandb:
            import wandb

            self.wandb = wandb.init(project="coati", name=run_name, config=config or {})

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: (float(v) if hasattr(v, "item") else v) for k, v in record.items()}
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        step = record.get("step", len(self.records))
        numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("step", "epoch")}
        if self.tb is not None:
            for k, v in numbers.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def summed_counts(strategy, *counts: int) -> list[float]:
    """Counts summed over ranks, in float64: a long run's token count passes float32's 2**24 exact integers."""
    return strategy.all_reduce(torch.tensor(counts, dtype=torch.float64), "sum").tolist()


class Throughput:
    """Samples and real (unpadded) tokens per second on all ranks together, over the span since the last reading.

    Evaluation and checkpoint saves inside `paused()` are left out of the span, so the figure is the training
    rate alone, comparable between runs that evaluate or save at different intervals. Every rank must call
    `read` at the same steps: it sums the counts over ranks.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.samples = self.tokens = 0
        self.since, self.excluded = time.perf_counter(), 0.0

    def add(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens

    @contextlib.contextmanager
    def paused(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - start

    def read(self) -> dict:
        samples, tokens = summed_counts(self.strategy, self.samples, self.tokens)
        now = time.perf_counter()
        span = max(now - self.since - self.excluded, 1e-9)
        self.samples = self.tokens = 0
        self.since, self.excluded = now, 0.0
        return {"samples_per_s": samples / span, "tokens_per_s": tokens / span}


def plot_metrics(records: list[dict], keys: list[str], out_path: str, title: str) -> str | None:
    """One panel per key against step (train and eval rows drawn apart); None if nothing to plot."""
    panels = []
    for key in keys:
        for kind in ("train", "eval"):
            # an eval row may name its figure eval_<key> (DPO's eval_accuracy): drawn in the same panel
            names = (key,) if kind == "train" else (key, f"eval_{key}")
            pts = [(r["step"], r[name]) for r in records for name in names
                   if name in r and r.get("split", "train") == kind and _finite(r[name])]
            if pts:
                panels.append((key, kind, pts))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(key for key, _, _ in panels))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    for key, kind, pts in panels:
        ax = axes[0][names.index(key)]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o" if kind == "eval" or len(xs) < 30 else None, markersize=3, label=kind)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
