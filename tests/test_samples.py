"""The shipped demo data is what data/make_samples.py writes from data/sample_words/, and the tokenizer
corpus holds the prompt templates exactly as coati.dataset.templates builds them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, script_env

from coati.dataset.templates import TEMPLATES, build_prompt

DATA = os.path.join(ROOT, "data")
SHIPPED = ["kochatgpt_sft_ko.jsonl", "kochatgpt_rm_ko.jsonl", "kochatgpt_ppo_ko.jsonl", "kochatgpt_ppo_eval_ko.jsonl",
           "alpaca_en.json", "pairs_en.jsonl", "prompts_en.json", "tokenizer_corpus.txt"]


def test_make_samples_rewrites_every_shipped_file_byte_for_byte(tmp_path):
    # the script writes beside itself, so run a copy: the checkout's files stay untouched
    work = tmp_path / "data"
    work.mkdir()
    shutil.copy(os.path.join(DATA, "make_samples.py"), work)
    shutil.copytree(os.path.join(DATA, "sample_words"), work / "sample_words")
    proc = subprocess.run([sys.executable, str(work / "make_samples.py")], env=script_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in SHIPPED:
        with open(os.path.join(DATA, name), "rb") as f:
            assert (work / name).read_bytes() == f.read(), f"data/{name} differs from what make_samples.py writes"
    held_out = {r["prompt"] for r in json.loads((work / "kochatgpt_ppo_eval_ko.jsonl").read_text(encoding="utf-8"))}
    trained = {r["prompt"] for r in json.loads((work / "kochatgpt_ppo_ko.jsonl").read_text(encoding="utf-8"))}
    assert len(held_out) == 60 and not held_out & trained


def test_tokenizer_corpus_templates_are_the_ones_training_builds():
    with open(os.path.join(DATA, "tokenizer_corpus.txt"), encoding="utf-8") as f:
        corpus = f.read()
    ko_instruction, ko_input = "다음 문장을 영어로 번역하세요.", "저는 사과를 좋아해요."
    assert build_prompt(ko_instruction, ko_input, "ko") + "I like apples." in corpus
    for language, t in TEMPLATES.items():
        # every header in the corpus is followed by the instruction marker, as build_prompt writes it
        headers = {t["header"], t["header_input"]}
        built = sum(corpus.count(f"{h}\n\n{t['instruction']}\n") for h in headers)
        first_words = t["header"].split()[0]
        assert built > 0 and corpus.count(first_words) == built + 1, language  # + 1: the bare template words
