"""Model families: the one table that knows how GPT-2, BLOOM, OPT, LLaMA and GPT-NeoX differ.

Everything else uses the Hugging Face Auto* classes; a family only adds the quirks below.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from coati.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # config.json's model_type
    attn_implementation: str | None  # None: let transformers choose (sdpa where supported)
    tiny_config: dict  # extra kwargs for a tiny config of this family (hidden 64, 2 layers)
    # (config activation, faster equal one) swapped in after loading; the saved config keeps the original.
    fast_activation: tuple[str, str] | None = None


# Bloom has no sdpa kernel in transformers, so ask for eager explicitly (it warns otherwise).
# OPT's value/score head reads word_embed_proj_dim, which HF's own OPTForSequenceClassification
# already handles, so it needs no entry here.
FAMILIES: dict[str, Family] = {
    # GPT-2's "gelu_new" is the tanh GELU written as five Python-level tensor ops; torch's fused kernel computes the
    # same function (to 1e-7) in one pass.
    "gpt2": Family("gpt2", "gpt2", None, dict(n_embd=64, n_layer=2, n_head=4, n_positions=512),
                   fast_activation=("gelu_new", "gelu_pytorch_tanh")),
    "bloom": Family("bloom", "bloom", "eager", dict(hidden_size=64, n_layer=2, n_head=4)),
    "opt": Family(
        "opt", "opt", None,
        dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
             word_embed_proj_dim=64, max_position_embeddings=512),
    ),
    "llama": Family(
        "llama", "llama", None,
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512),
    ),
    "gptneox": Family(
        "gptneox", "gpt_neox", None,
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=512, rotary_pct=0.5),
    ),
}
# Polyglot-Ko is a GPT-NeoX model with a Korean tokenizer.
FAMILIES["polyglotko"] = Family("polyglotko", "gpt_neox", None, FAMILIES["gptneox"].tiny_config)

ALIASES = {"gpt-neox": "gptneox", "gpt_neox": "gptneox", "polyglot-ko": "polyglotko", "polyglot_ko": "polyglotko"}
MODEL_CHOICES = [*FAMILIES, *ALIASES, "auto"]
MODEL_TYPE_TO_FAMILY = {"gpt2": "gpt2", "bloom": "bloom", "opt": "opt", "llama": "llama", "gpt_neox": "gptneox"}


def read_local_config(path: str) -> dict:
    """A local checkpoint's config.json, or {} for a hub name / missing file."""
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return {}
    try:
        with open(cfg, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{cfg} is not a readable JSON config ({err}); point --pretrain at a model folder") from err
    return config if isinstance(config, dict) else {}


def read_model_type(path: str) -> str | None:
    return read_local_config(path).get("model_type")


def read_architectures(path: str) -> list[str]:
    """The model classes config.json records (`architectures`), [] for a hub name or when unrecorded."""
    return list(read_local_config(path).get("architectures") or [])


def resolve_family(name: str, path: str | None, flag: str = "--model") -> Family:
    """The family for `--model name`, checked against the checkpoint at `path` when it is local."""
    key = ALIASES.get(name.lower(), name.lower())
    model_type = read_model_type(path) if path else None
    if key == "auto":
        if model_type is None:
            raise UserError(f"{flag} auto needs a local checkpoint with config.json; name the family instead "
                            f"({', '.join(FAMILIES)})")
        if model_type not in MODEL_TYPE_TO_FAMILY:
            raise UserError(f"{path}/config.json has model_type '{model_type}', which coati does not support; "
                            f"supported: {', '.join(sorted(MODEL_TYPE_TO_FAMILY))}")
        return FAMILIES[MODEL_TYPE_TO_FAMILY[model_type]]
    if key not in FAMILIES:
        raise UserError(f"{flag} '{name}' is not a supported family; choose one of {', '.join(MODEL_CHOICES)}")
    family = FAMILIES[key]
    if model_type is not None and model_type != family.model_type:
        raise UserError(f"{flag} {name} expects model_type '{family.model_type}' but {path}/config.json says "
                        f"'{model_type}'; pass {flag} auto or the matching family")
    return family


def tiny_config(family: str | Family, vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
    """A randomly initialisable config of the family, hidden 64 and 2 layers, for tests and the demo."""
    from transformers import AutoConfig

    fam = family if isinstance(family, Family) else FAMILIES[ALIASES.get(family, family)]
    return AutoConfig.for_model(
        fam.model_type, vocab_size=vocab_size, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, tie_word_embeddings=True, **fam.tiny_config,
    )
