"""Tokenizer folders coati writes load on both stacks (transformers 5, and 4.51 of requirements-colossalai.txt),
with a tokenizer that has extra special tokens as Polyglot-Ko's has. .ci/colossalai.sh runs this file there."""

from __future__ import annotations

import copy
import glob
import json
import os
import subprocess

import pytest
from conftest import ROOT, script_env

EXTRA = ["<|sep|>", "<|acc|>"]


@pytest.fixture
def extra_tok(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": EXTRA})
    return tok


def test_saved_folder_keeps_the_extra_special_tokens_in_a_form_both_stacks_read(extra_tok, tmp_path):
    from coati.checkpoint import save_tokenizer
    from coati.models.loading import load_tokenizer

    save_tokenizer(extra_tok, str(tmp_path))
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # transformers 4.51 reads extra_special_tokens as a dict of named tokens: a list there is an AttributeError.
    assert not isinstance(cfg.get("extra_special_tokens"), list), cfg
    assert cfg["tokenizer_class"] != "TokenizersBackend"
    tok = load_tokenizer(str(tmp_path))
    assert set(EXTRA) <= set(tok.all_special_tokens)
    ids = tok("<|sep|>안녕<|acc|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == extra_tok.convert_tokens_to_ids("<|sep|>") and ids[-1] == extra_tok.convert_tokens_to_ids("<|acc|>")
    assert tok.decode(ids, skip_special_tokens=True) == "안녕"


def test_a_list_of_extra_special_tokens_is_rewritten_and_a_named_set_kept():
    from coati.checkpoint import portable_tokenizer_config

    cfg = {"tokenizer_class": "TokenizersBackend", "extra_special_tokens": EXTRA,
           "additional_special_tokens": ["<|sep|>"]}
    assert portable_tokenizer_config(cfg)
    assert cfg == {"tokenizer_class": "PreTrainedTokenizerFast", "additional_special_tokens": ["<|sep|>", "<|acc|>"]}
    named = {"tokenizer_class": "PreTrainedTokenizerFast", "extra_special_tokens": {"image_token": "<img>"}}
    assert not portable_tokenizer_config(named) and named["extra_special_tokens"] == {"image_token": "<img>"}


def test_a_folder_listing_extra_special_tokens_loads_through_load_tokenizer(extra_tok, tmp_path):
    """A folder as transformers 5 writes it on its own (a Polyglot-Ko download saved elsewhere, an output of an
    older coati): load_tokenizer reads it on either stack."""
    from coati.checkpoint import save_tokenizer
    from coati.models.loading import load_tokenizer

    save_tokenizer(extra_tok, str(tmp_path))
    path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("additional_special_tokens", None)
    cfg["extra_special_tokens"] = EXTRA
    path.write_text(json.dumps(cfg))
    assert set(EXTRA) <= set(load_tokenizer(str(tmp_path)).all_special_tokens)


def _other_stack_python() -> str | None:
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        return None
    cache = os.environ.get("COATI_CI_CACHE", os.path.expanduser("~/.cache/coati-ci"))
    found = sorted(glob.glob(os.path.join(cache, "colossalai-*", "bin", "python")))
    return next((p for p in found if os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(p)), ".complete"))),
                None)


def test_a_stage_output_with_extra_special_tokens_loads_on_the_colossalai_stack(tiny_models, extra_tok, tmp_path):
    """An SFT output folder written here, its tokenizer holding extra special tokens, opens in transformers 4.51
    (tokenizer, model, inference.py)."""
    other = _other_stack_python()
    if other is None:
        pytest.skip("needs the transformers 5 stack here and .ci/colossalai.sh's environment built")
    from transformers import AutoModelForCausalLM

    from coati.checkpoint import save_hf_model

    model = AutoModelForCausalLM.from_pretrained(tiny_models("gpt2"))
    model.resize_token_embeddings(len(extra_tok))
    save_hf_model(model, extra_tok, str(tmp_path))
    code = ("import sys; from transformers import AutoTokenizer; "
            "t = AutoTokenizer.from_pretrained(sys.argv[1]); print(sorted(t.all_special_tokens))")
    res = subprocess.run([other, "-c", code, str(tmp_path)], env=script_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert set(EXTRA) <= set(eval(res.stdout.strip().splitlines()[-1]))
    res = subprocess.run([other, "inference.py", "--model_path", str(tmp_path), "--prompt", "안녕?", "--greedy", "True",
                          "--max_new_tokens", "3"], cwd=ROOT, env=script_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
