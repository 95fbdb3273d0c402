"""Atomic output folders and Hugging Face saving.

A model folder is written next to its destination and renamed into place, so it appears complete
or not at all, and an existing output survives a run that dies before the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager

# Files a run writes into save_path while it trains; carried over when the final model replaces an old one.
RUN_FILES_PREFIXES = ("checkpoint-", "metrics.jsonl", "tensorboard")


@contextmanager
def atomic_dir(path: str, carry_run_files: bool = True):
    """Yield a fresh temporary folder; on success it replaces `path`, on error it is removed."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.exists(path):
        os.rename(tmp, path)
        return
    old = f"{path}.old-{os.getpid()}"
    os.rename(path, old)
    os.rename(tmp, path)
    if carry_run_files:
        for name in os.listdir(old):
            if name.startswith(RUN_FILES_PREFIXES) or name.endswith(".png"):
                if not os.path.exists(os.path.join(path, name)):
                    os.rename(os.path.join(old, name), os.path.join(path, name))
    shutil.rmtree(old, ignore_errors=True)


def save_hf_model(model, tokenizer, out_dir: str, merge_lora: bool = True, extra_json: dict | None = None) -> None:
    """Write a folder that the plain HF Auto classes open: config, model.safetensors, tokenizer.

    A peft model is merged first (unless merge_lora is off: then an adapter folder that
    peft's AutoPeftModel classes open, with the base model's name in adapter_config.json).
    """
    from coati.models.loading import is_peft

    if is_peft(model) and merge_lora:
        model = model.merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    for name, obj in (extra_json or {}).items():
        write_json(os.path.join(out_dir, name), obj)


def save_tokenizer(tokenizer, out_dir: str) -> None:
    """save_pretrained, with a tokenizer_config.json that transformers 4.51 can also load.

    transformers 5 writes tokenizer_class "TokenizersBackend", a class 4.51 does not know; PreTrainedTokenizerFast
    names the same tokenizer.json and loads in both. It also writes a tokenizer's extra special tokens
    (Polyglot-Ko's, any added with additional_special_tokens) as a list under extra_special_tokens, which 4.51
    reads as a dict of named tokens and fails on (AttributeError); both read them under additional_special_tokens.
    """
    tokenizer.save_pretrained(out_dir)
    cfg_path = os.path.join(out_dir, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    changed = portable_tokenizer_config(cfg)
    if changed:
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)


def portable_tokenizer_config(cfg: dict) -> bool:
    """Rewrite a tokenizer_config.json's content in place so both stacks load it; True when something changed."""
    changed = False
    if cfg.get("tokenizer_class") in (None, "TokenizersBackend"):
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        changed = True
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, list):
        known = cfg.get("additional_special_tokens") or []
        cfg["additional_special_tokens"] = known + [t for t in extra if t not in known]
        del cfg["extra_special_tokens"]
        changed = True
    return changed


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, default=str)
    os.replace(tmp, path)


# -- training checkpoints: checkpoint-<step>/ inside save_path -------------------------------------------
class Checkpointer:
    """Writes and restores everything a run needs to continue exactly: weights, optimizer and scheduler
    states, RNG states of every rank, and the trainer's position (step, epoch, batches consumed).

    Also catches SIGTERM/SIGINT: the trainer asks `stop_requested()` at each step boundary, and all
    ranks agree on the answer so they stop at the same step.

    states: anything else a run must not recompute on resume (DPO's precomputed reference log-probs): objects
    with state_dict() -> dict of tensors and load_state_dict(dict), the same on every rank; rank 0 writes
    state-<name>.pt and every rank loads it.
    """

    def __init__(self, strategy, save_path: str, *, interval: int = 0, max_checkpoints: int | None = None,
                 models: dict | None = None, optimizers: dict | None = None, schedulers: dict | None = None,
                 states: dict | None = None):
        self.strategy, self.save_path, self.interval = strategy, save_path, interval
        self.max_checkpoints = max_checkpoints
        self.models, self.optimizers, self.schedulers = models or {}, optimizers or {}, schedulers or {}
        self.states = {k: v for k, v in (states or {}).items() if v is not None}
        self._signal: str | None = None
        self._install_handlers()

    def _install_handlers(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self._signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def stop_requested(self) -> bool:
        import torch

        flag = torch.tensor(1.0 if self._signal else 0.0)
        return bool(self.strategy.all_reduce(flag, "sum").item() > 0)

    def after_step(self, step: int, trainer_state: dict, unit: int | None = None) -> None:
        """Called at each step boundary: periodic checkpoint, and checkpoint-then-stop on a signal.

        The interval counts `unit` when given (PPO: episodes), else steps; folders are named by step."""
        if self.interval and (step if unit is None else unit) % self.interval == 0:
            self.save(step, trainer_state)
        if self.stop_requested():
            path = self.path(step)
            if not os.path.isdir(path):
                self.save(step, trainer_state)
            from coati.errors import TrainingInterrupted

            raise TrainingInterrupted(self._signal or "SIGTERM", path)

    def path(self, step: int) -> str:
        return os.path.join(self.save_path, f"checkpoint-{step}")

    def save(self, step: int, trainer_state: dict) -> str:
        import torch

        s = self.strategy
        final = self.path(step)
        tmp = f"{final}.tmp"
        if s.is_rank0:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        s.barrier()
        for name, model in self.models.items():
            state = s.model_state_dict(model)  # a collective for sharded strategies: every rank calls it
            if s.is_rank0:
                _save_weights(state, os.path.join(tmp, f"{name}.safetensors"))
        for name, opt in self.optimizers.items():
            torch.save(s.optimizer_state_dict(opt, self.models.get(name)),
                       os.path.join(tmp, f"optimizer-{name}.rank{s.rank}.pt"))
        torch.save(_rng_state(), os.path.join(tmp, f"rng.rank{s.rank}.pt"))
        if s.is_rank0:
            torch.save({k: v.state_dict() for k, v in self.schedulers.items()}, os.path.join(tmp, "schedulers.pt"))
            for name, obj in self.states.items():
                torch.save(obj.state_dict(), os.path.join(tmp, f"state-{name}.pt"))
            write_json(os.path.join(tmp, "trainer_state.json"), {**trainer_state, "world_size": s.world_size})
        s.barrier()
        if s.is_rank0:
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            self._prune()
        s.barrier()
        return final

    def _prune(self) -> None:
        if not self.max_checkpoints:
            return
        for old in list_checkpoints(self.save_path)[: -self.max_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: str) -> dict:
        """Restore weights, optimizers, schedulers and this rank's RNG; returns the trainer state."""
        import torch

        s = self.strategy
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            state = json.load(f)
        if state.get("world_size", 1) != s.world_size:
            from coati.errors import UserError

            raise UserError(f"--resume_from {path} was written by {state['world_size']} processes; resume it with "
                            f"the same number (this run has {s.world_size})")
        for name, model in self.models.items():
            s.load_model_state_dict(model, _load_weights(os.path.join(path, f"{name}.safetensors")))
        for name, opt in self.optimizers.items():
            s.load_optimizer_state_dict(opt, self.models.get(name), torch.load(
                os.path.join(path, f"optimizer-{name}.rank{s.rank}.pt"), map_location="cpu", weights_only=True))
        scheds = torch.load(os.path.join(path, "schedulers.pt"), weights_only=True)
        for name, sched in self.schedulers.items():
            sched.load_state_dict(scheds[name])
        for name, obj in self.states.items():
            file = os.path.join(path, f"state-{name}.pt")
            if os.path.isfile(file):  # a checkpoint written before the state existed has none to restore
                obj.load_state_dict(torch.load(file, weights_only=True))
        _set_rng_state(torch.load(os.path.join(path, f"rng.rank{s.rank}.pt"), weights_only=True))
        if s.is_rank0:  # said aloud: under --resume_from auto, starting fresh and resuming look alike otherwise
            print(f"[coati] resuming from {path} (step {state.get('global_step')})", file=sys.stderr)
        return state


def list_checkpoints(save_path: str) -> list[str]:
    """Complete checkpoint-<step> folders in save_path, oldest first.

    A checkpoint is written into checkpoint-<step>.tmp and renamed only after every rank has written its files,
    so a folder under the final name is complete; a rank killed while saving leaves only the .tmp folder, which
    is ignored here. A folder without trainer_state.json (one that pruning was deleting when the run died) is
    ignored too."""
    if not os.path.isdir(save_path):
        return []
    found = [(int(n.split("-", 1)[1]), os.path.join(save_path, n)) for n in os.listdir(save_path)
             if n.startswith("checkpoint-") and n.split("-", 1)[1].isdigit()]
    return [p for _, p in sorted(found) if os.path.isfile(os.path.join(p, "trainer_state.json"))]


def resolve_resume(resume_from: str | None, save_path: str) -> str | None:
    """The checkpoint folder for --resume_from: a path; 'latest', the newest in save_path (one must exist); or
    'auto', the newest if there is one, else None. None: start fresh.

    'auto' lets the same command line start a run and continue it, which is what torchrun's --max_restarts
    needs: the restarted processes get the arguments of the first start."""
    if not resume_from:
        return None
    from coati.errors import UserError

    if resume_from in ("latest", "auto"):
        found = list_checkpoints(save_path)
        if not found and resume_from == "latest":
            raise UserError(f"--resume_from latest: no checkpoint-<step> folder in {save_path}; start without "
                            "--resume_from (or with --resume_from auto) or point it at a checkpoint folder")
        return found[-1] if found else None
    if not os.path.isfile(os.path.join(resume_from, "trainer_state.json")):
        raise UserError(f"--resume_from {resume_from} is not a checkpoint folder (no trainer_state.json); "
                        "give a checkpoint-<step> folder, 'latest' or 'auto'")
    return resume_from


def _save_weights(state: dict, path: str) -> None:
    """safetensors refuses tensors that share memory (tied embeddings): keep one name per storage."""
    from safetensors.torch import save_file

    seen, unique, aliases = {}, {}, {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tensor.shape, tensor.dtype) if tensor.device.type != "meta" else name
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = tensor.detach().cpu().contiguous()
    save_file(unique, path, metadata={"aliases": json.dumps(aliases)})


def _load_weights(path: str) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = load_file(path)
    with safe_open(path, framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for name, target in aliases.items():
        state[name] = state[target]
    return state


def _rng_state() -> dict:
    import random

    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
