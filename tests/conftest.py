"""Shared fixtures: the shipped tokenizer and tiny random checkpoints of every family, built offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ["gpt2", "bloom", "opt", "llama", "gptneox"]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models make bf16's slow path on a CPU without native bf16 harmless; tests/test_memory.py checks the refusal.
os.environ.setdefault("COATI_ALLOW_SLOW_BF16", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """family -> folder of a tiny random checkpoint (built once per session)."""
    from coati.kit import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    cache: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in cache:
            cache[family] = build_tiny_model(family, str(root / family))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def tokenizer():
    from coati.kit import TOKENIZER_DIR
    from coati.models.loading import load_tokenizer

    return load_tokenizer(TOKENIZER_DIR, max_len=256)


def write_json(path, rows, bom: bool = False) -> str:
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    return str(path)


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return str(path)


def run_script(args: list[str], nproc: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a stage script as a user would: plain python, or torchrun with `nproc` processes."""
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    return subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=timeout)


def script_env() -> dict:
    """A stage's environment: one thread, the project first on PYTHONPATH and what was there kept (a colossalai
    installed with --target over the modern stack, say)."""
    path = os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH"))))
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
