"""Offline kit: the shipped Korean/English tokenizer and tiny random checkpoints of every family.

Tests and the demo run without a model hub, so they build their models here:

    python -m coati.kit tiny --model llama --out /tmp/tiny-llama      # a folder --pretrain accepts
    python -m coati.kit preset polyglot-ko-1.3b --out /tmp/pko-1.3b     # a real architecture, random weights
    python -m coati.kit tokenizer                                       # retrain the shipped tokenizer
"""

from __future__ import annotations

import argparse
import os

from coati.checkpoint import save_tokenizer
from coati.errors import UserError, exit_on_user_error

TOKENIZER_DIR = os.path.join(os.path.dirname(__file__), "assets", "tokenizer")
CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tokenizer_corpus.txt")
EOS, PAD = "<|endoftext|>", "<|pad|>"


def train_tokenizer(corpus_files: list[str], out_dir: str = TOKENIZER_DIR, vocab_size: int = 3000) -> str:
    """Byte-level BPE over the shipped text, saved as a Hugging Face tokenizer folder.

    Byte-level with no normaliser, so any Hangul (or any text) round-trips exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(corpus_files, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD, unk_token=None,
        clean_up_tokenization_spaces=False, model_max_length=2048,
    )
    save_tokenizer(fast, out_dir)
    return out_dir


def build_tiny_model(family: str, out_dir: str, tokenizer_dir: str = TOKENIZER_DIR, seed: int = 0) -> str:
    """A randomly initialised causal LM of `family` (hidden 64, 2 layers) with the tokenizer, in out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coati.models.registry import tiny_config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_config(family, len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    save_tokenizer(tok, out_dir)
    return out_dir


# Real architectures: the config.json fields of the published checkpoints (EleutherAI/polyglot-ko-*, TinyLlama-1.1B,
# Llama-2-7B). `build_preset` writes one with random weights; `coati.memory` reads the shapes without building.
# vocab_size is the checkpoint's own; a built preset takes the shipped tokenizer's instead (see build_preset).
_NEOX = dict(model_type="gpt_neox", hidden_act="gelu", rotary_pct=0.5, rotary_emb_base=10000,
             use_parallel_residual=True, max_position_embeddings=2048, layer_norm_eps=1e-5,
             tie_word_embeddings=False, vocab_size=30080)
_LLAMA = dict(model_type="llama", hidden_act="silu", rms_norm_eps=1e-5, rope_theta=10000.0,
              tie_word_embeddings=False, vocab_size=32000)
PRESETS: dict[str, dict] = {
    "polyglot-ko-1.3b": dict(_NEOX, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16,
                             intermediate_size=8192),
    "polyglot-ko-5.8b": dict(_NEOX, hidden_size=4096, num_hidden_layers=28, num_attention_heads=16,
                             intermediate_size=16384),
    "polyglot-ko-12.8b": dict(_NEOX, hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                              intermediate_size=20480),
    # TinyLlama-1.1B's shape: grouped-query attention, 32 query heads sharing 4 key/value heads.
    "llama-1b": dict(_LLAMA, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                     intermediate_size=5632, max_position_embeddings=2048),
    "llama-7b": dict(_LLAMA, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                     intermediate_size=11008, max_position_embeddings=4096),
}
MINI = "-mini"  # suffix of a preset's scaled-down twin: same fields and code path, 2 layers x 64


def preset_fields(name: str) -> dict:
    """The config fields of preset `name`, or of its scaled-down twin `name-mini`: 2 layers, hidden 64, 4 heads,
    with the preset's MLP ratio and query-to-key/value head ratio kept, so the tests run the same code."""
    base = name.removesuffix(MINI)
    if base not in PRESETS:
        choices = ", ".join(sorted(PRESETS) + sorted(p + MINI for p in PRESETS))
        raise UserError(f"preset '{name}' is unknown; choose one of {choices}")
    fields = dict(PRESETS[base])
    if name.endswith(MINI):
        heads = fields["num_attention_heads"]
        ratio = heads // fields.get("num_key_value_heads", heads)
        fields.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=fields["intermediate_size"] * 64 // fields["hidden_size"])
        if "num_key_value_heads" in fields:
            fields["num_key_value_heads"] = max(1, 4 // ratio)
    return fields


def build_preset(name: str, out_dir: str, tokenizer_dir: str = TOKENIZER_DIR, seed: int = 0,
                 dtype: str = "fp32") -> str:
    """Preset `name` with random weights and the shipped tokenizer, saved in `dtype`, in out_dir.

    The vocabulary is the tokenizer's (3,000 tokens), not the checkpoint's (30,080 or 32,000): the embeddings
    and the LM head shrink, every layer is as published. A 1.3B preset in fp32 takes about 5 GB on disk."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    fields = preset_fields(name)
    fields.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    config = AutoConfig.for_model(**fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    model.save_pretrained(out_dir)
    save_tokenizer(tok, out_dir)
    return out_dir


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from coati.models.registry import FAMILIES

    parser = argparse.ArgumentParser(prog="python -m coati.kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser("tiny", help="write a tiny random checkpoint of a family")
    tiny.add_argument("--model", required=True, choices=sorted(FAMILIES))
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--tokenizer", default=TOKENIZER_DIR)
    tiny.add_argument("--seed", type=int, default=0)
    pre = sub.add_parser("preset", help="write a real architecture (random weights, the shipped tokenizer)")
    pre.add_argument("name", help=f"one of {', '.join(PRESETS)}, or NAME{MINI} for its 2-layer x 64 twin")
    pre.add_argument("--out", required=True)
    pre.add_argument("--tokenizer", default=TOKENIZER_DIR)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="dtype of the saved weights")
    tk = sub.add_parser("tokenizer", help="train the byte-level BPE tokenizer on shipped text")
    tk.add_argument("--corpus", nargs="+", default=[CORPUS])
    tk.add_argument("--out", default=TOKENIZER_DIR)
    tk.add_argument("--vocab_size", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.cmd == "tiny":
        print(build_tiny_model(args.model, args.out, args.tokenizer, args.seed))
    elif args.cmd == "preset":
        print(build_preset(args.name, args.out, args.tokenizer, args.seed, args.dtype))
    else:
        print(train_tokenizer(args.corpus, args.out, args.vocab_size))


if __name__ == "__main__":
    main()
