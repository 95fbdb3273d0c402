"""Atomic output folders and Hugging Face saving.

A model folder is written next to its destination and renamed into place, so it appears complete
or not at all, and an existing output survives a run that dies before the end.
"""

from __future__ import annotations

import json
import os
import shutil
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
    from coati.kit import save_tokenizer
    from coati.models.loading import is_peft

    if is_peft(model) and merge_lora:
        model = model.merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    for name, obj in (extra_json or {}).items():
        write_json(os.path.join(out_dir, name), obj)


def write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, default=str)
    os.replace(tmp, path)
