"""Offline kit: the shipped Korean/English tokenizer and tiny random checkpoints of every family.

Tests and the demo run without a model hub, so they build their models here:

    python -m coati.kit tiny --model llama --out /tmp/tiny-llama      # a folder --pretrain accepts
    python -m coati.kit tokenizer                                       # retrain the shipped tokenizer
"""

from __future__ import annotations

import argparse
import os

from coati.checkpoint import save_tokenizer

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


def main(argv: list[str] | None = None) -> None:
    from coati.models.registry import FAMILIES

    parser = argparse.ArgumentParser(prog="python -m coati.kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser("tiny", help="write a tiny random checkpoint of a family")
    tiny.add_argument("--model", required=True, choices=sorted(FAMILIES))
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--tokenizer", default=TOKENIZER_DIR)
    tiny.add_argument("--seed", type=int, default=0)
    tk = sub.add_parser("tokenizer", help="train the byte-level BPE tokenizer on shipped text")
    tk.add_argument("--corpus", nargs="+", default=[CORPUS])
    tk.add_argument("--out", default=TOKENIZER_DIR)
    tk.add_argument("--vocab_size", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.cmd == "tiny":
        print(build_tiny_model(args.model, args.out, args.tokenizer, args.seed))
    else:
        print(train_tokenizer(args.corpus, args.out, args.vocab_size))


if __name__ == "__main__":
    main()
