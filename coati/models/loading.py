"""Load tokenizers and models through the HF Auto* classes, on transformers 4.51 and 5.x alike."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from coati.errors import UserError
from coati.models.registry import Family, read_architectures

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PAD_TOKEN = "<|pad|>"


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def dtype_kwargs(dtype: str) -> dict:
    # transformers 5 renamed from_pretrained's torch_dtype to dtype; 4.51 knows only the old name.
    key = "dtype" if transformers_major() >= 5 else "torch_dtype"
    return {key: DTYPES[dtype]}


def check_model_source(path: str | None, flag: str) -> None:
    """Refuse a model path that cannot hold a model, before anything heavy is imported or loaded.

    A name that does not exist locally and looks like `org/name` is left to the hub (users are online).
    """
    if path is None:
        return
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "adapter_config.json")) and \
                not os.path.isfile(os.path.join(path, "config.json")):
            raise UserError(f"{flag} {path} is a PEFT adapter folder (saved with --no-merge_lora); give a merged "
                            "model folder: run that stage again with --merge_lora, or merge the adapter with "
                            "peft's merge_and_unload and save the result")
        has_weights = any(
            f.endswith((".safetensors", ".bin", ".pt")) or f == "adapter_config.json" for f in os.listdir(path)
        )
        if not os.path.isfile(os.path.join(path, "config.json")) or not has_weights:
            raise UserError(f"{flag} {path} is a folder but holds no model (config.json and weights); "
                            "point it at a Hugging Face model folder")
        return
    if os.path.exists(path):
        if flag in ("--rm_path", "--model_path") and path.endswith((".pt", ".pth", ".bin")):
            return
        raise UserError(f"{flag} {path} is a file, not a model folder; point it at a Hugging Face model folder")
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped local path.
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or path.endswith("/"):
        raise UserError(f"{flag} {path} does not exist; give a local model folder or a hub name like org/model")


def is_scorer(architectures: list[str]) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in architectures)


def check_model_role(path: str, flag: str, scorer: bool) -> None:
    """Refuse a local folder whose config.json says it is the other kind of model. Both load without an error
    and quietly go wrong: a causal LM taken as the reward model scores with a freshly initialised head, and a
    reward model taken as the policy generates from an LM head it never had (or one tied to its embeddings)."""
    archs = read_architectures(path)
    if not archs or is_scorer(archs) == scorer:
        return
    if scorer:
        raise UserError(f"{flag} {path} is a causal language model ({archs[0]} in its config.json), not a reward "
                        "model, so its score head would start random; give the folder train_reward_model.py "
                        "wrote (or a Coati .pt with --rm_pretrain)")
    raise UserError(f"{flag} {path} is a reward model ({archs[0]} in its config.json), not a causal language "
                    "model; give the base model or a folder train_sft.py or train_prompts.py wrote")


def load_tokenizer(path: str, max_len: int | None = None, trust_remote_code: bool = False,
                   distinct_pad: bool = False):
    """AutoTokenizer with a pad token, right padding for training and `model_max_length = max_len`.

    distinct_pad: add a dedicated pad token when pad is missing or equals EOS. Reward models need it:
    HF's sequence classifiers read the score at the last token that is not pad, and our EOS is real.
    """
    from transformers import AutoTokenizer

    with _load_errors(path, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **_extra_tokens_kwargs(path))
    if tok.eos_token is None:
        raise UserError(f"the tokenizer at {path} has no EOS token; coati appends EOS to every response")
    if distinct_pad and (tok.pad_token is None or tok.pad_token_id == tok.eos_token_id):
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    elif tok.pad_token is None:
        # Padding with EOS is safe for causal LMs: masks and labels are built from lengths.
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    if max_len:
        tok.model_max_length = max_len
    return tok


def _extra_tokens_kwargs(path: str) -> dict:
    """transformers 4.51 fails on a folder whose tokenizer_config.json lists extra_special_tokens (transformers 5
    writes them so; coati's own folders no longer do, see checkpoint.save_tokenizer): hand them over as the
    additional special tokens 4.51 knows."""
    cfg_path = os.path.join(path, "tokenizer_config.json")
    if transformers_major() >= 5 or not os.path.isfile(cfg_path):
        return {}
    import json

    with open(cfg_path, encoding="utf-8") as f:
        extra = json.load(f).get("extra_special_tokens")
    return {"extra_special_tokens": {}, "additional_special_tokens": extra} if isinstance(extra, list) else {}


@contextlib.contextmanager
def _load_errors(path: str, what: str):
    """A hub name that cannot be fetched (offline, typo, gated) is the user's to fix: one line, not a traceback."""
    try:
        yield
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"could not load the {what} from {path}: {first} (offline? set a local folder, or log in "
                        "for gated models)") from err


def _model_kwargs(family: Family, dtype: str, trust_remote_code: bool) -> dict:
    kwargs = dict(dtype_kwargs(dtype), trust_remote_code=trust_remote_code)
    if family.attn_implementation:
        kwargs["attn_implementation"] = family.attn_implementation
    return kwargs


def swap_activation(model, family: Family) -> None:
    """Replace the family's slow activation modules by the faster equal ones (see Family.fast_activation)."""
    if not family.fast_activation:
        return
    from transformers.activations import ACT2FN

    slow, fast = (type(ACT2FN[name]) for name in family.fast_activation)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is slow:
                setattr(module, name, fast())


def _finish(model, tokenizer, grad_checkpoint: bool, family: Family | None = None):
    if family is not None:
        swap_activation(model, family)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if grad_checkpoint:
        enable_checkpointing(model)
    return model


def enable_checkpointing(model) -> None:
    """Activation checkpointing of every layer (non-reentrant), and no KV cache, which it cannot keep."""
    # transformers 5.2x renamed it (the old name warns, and goes in v6); 4.51, the ColossalAI pin, has only the old
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


def load_causal_lm(path: str, family: Family, tokenizer, dtype: str = "fp32", trust_remote_code: bool = False,
                   grad_checkpoint: bool = False):
    """AutoModelForCausalLM in the given dtype, embeddings grown to the tokenizer, pad id set."""
    from transformers import AutoModelForCausalLM

    with _load_errors(path, "model"):
        model = AutoModelForCausalLM.from_pretrained(path, **_model_kwargs(family, dtype, trust_remote_code))
    return _finish(model, tokenizer, grad_checkpoint, family)


def load_sequence_scorer(path: str, family: Family, tokenizer, dtype: str = "fp32",
                         trust_remote_code: bool = False, grad_checkpoint: bool = False):
    """AutoModelForSequenceClassification with one label: a reward model or a critic.

    From a causal LM checkpoint the `score` head is new; it is initialised N(0, std=1/(d_model+1)) as in
    Coati. From a reward-model folder the trained head is loaded as is.
    """
    from transformers import AutoModelForSequenceClassification

    with _load_errors(path, "model"):
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, **_model_kwargs(family, dtype, trust_remote_code)
        )
    model = _finish(model, tokenizer, grad_checkpoint, family)
    if "score.weight" not in _checkpoint_keys(path):
        torch.nn.init.normal_(model.score.weight, std=1.0 / (model.score.in_features + 1))
    return model


def _checkpoint_keys(path: str) -> set[str]:
    """Parameter names stored in a local safetensors checkpoint (empty when unknown)."""
    if not os.path.isdir(path):
        return set()
    keys: set[str] = set()
    from safetensors import safe_open

    for f in os.listdir(path):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(path, f), framework="pt") as st:
                keys.update(st.keys())
    return keys


def disable_dropout(model) -> None:
    """No dropout anywhere in `model` (its config's attention dropout too), kept in training mode.

    Preference training compares the policy's log-probs with a reference that runs without dropout: with
    dropout on, the implicit rewards of a policy equal to its reference would not start at 0 (TRL's DPOTrainer
    turns it off as well). Call it before apply_lora: LoRA's own dropout is a regulariser of the adapters."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for name in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout", "dropout"):
        if isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, 0.0)
    for module in model.modules():  # attention classes that read a float at call time (LLaMA, GPT-NeoX)
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def apply_lora(model, rank: int, alpha: int, dropout: float, task_type: str = "CAUSAL_LM"):
    """Wrap with peft LoRA on every linear layer; for a scorer the new head stays fully trainable."""
    if rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )
    if getattr(model.config, "use_cache", True) is False and model.supports_gradient_checkpointing:
        # Checkpointed blocks need an input that requires grad, which frozen embeddings do not give.
        model.enable_input_require_grads()
    with warnings.catch_warnings():
        # peft reads transformers 5's deprecated `is_gradient_checkpointing`; the FutureWarning is about peft's
        # code, and nothing a user of coati can act on.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def adapters_disabled(model):
    """Context in which a LoRA-wrapped model (or DDP around one) computes as its base model: peft switches
    its adapters off for the block. PPO's reference under LoRA is the actor seen this way, so the frozen base
    weights are held once, not twice."""
    inner = model.module if hasattr(model, "module") else model
    if not is_peft(inner):
        raise TypeError(f"adapters_disabled needs a peft model, got {type(inner).__name__}")
    return inner.disable_adapter()
