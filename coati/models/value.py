"""Reward model and critic: one backbone, one linear head, a scalar per token.

Both are a Hugging Face `*ForSequenceClassification` with `num_labels=1` underneath, so a saved reward
model opens with `AutoModelForSequenceClassification` and scores exactly as here: HF reads the score at
the last token that is not pad, and we read it at the last token the attention mask marks as real,
which is the same token because the reward tokenizer's pad is never EOS.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from coati.errors import UserError
from coati.models import fast
from coati.models.forward import position_kwargs, shared_prompt_outputs, shares_prompts
from coati.models.unwrap import innermost
from coati.ops import last_true_index


class ValueModel(nn.Module):
    """Wraps a (possibly LoRA-wrapped) HF sequence classifier.

    forward(input_ids, attention_mask) -> (B,) score at the last real token (reward model);
    forward(..., per_token=True)        -> (B, T) a value for every position (critic); with first=f, positions
                                           f..T-1 only, (B, T - f).
    forward(..., prompt_len=P, repeats=G) -> (B,) scores of rows that come in groups of G answers sharing their
                                           first P columns (a GRPO rollout's): each prompt runs once, where the
                                           model allows it (`coati.models.forward.shares_prompts`).
    Going through forward keeps DDP's gradient hooks in play.
    """

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, per_token: bool = False,
                first: int = 0, prompt_len: int = 0, repeats: int = 1) -> torch.Tensor:
        """(B,) scores, or with per_token (B, T - first) values of positions first..T-1."""
        hf = innermost(self.hf)
        backbone, head = getattr(hf, hf.base_model_prefix), hf.score
        plan = fast.plan(self.hf)  # None off the CPU, or for a peft wrapper (its forward must run as written)
        last = None if per_token else last_true_index(attention_mask)
        shared = repeats > 1 and not per_token and (plan is not None or shares_prompts(backbone))
        with fast.linears(self.hf):
            if shared:  # every row's last real token is at or after its prompt's last, P - 1
                cut = prompt_len - 1
                hidden = (fast.shared_prompt_hidden(plan, input_ids, attention_mask, prompt_len, repeats)
                          if plan is not None else
                          shared_prompt_outputs(backbone, input_ids, attention_mask, prompt_len, repeats,
                                                "last_hidden_state"))
            elif plan is not None:
                # Only the positions read below need the last layer's MLP: the response's, or each row's last token.
                cut = first if per_token else int(last.min())
                hidden = fast.hidden_states(plan, input_ids, attention_mask, cut)
            else:
                cut = 0
                hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                                  **position_kwargs(backbone, attention_mask)).last_hidden_state
            values = head(hidden)[..., 0].float()  # (B, T - cut)
        if per_token:
            values = values[:, first - cut:]
        else:
            values = values.gather(1, (last - cut).unsqueeze(1))[:, 0]  # (B,)
        # A fresh tensor, not a view: FSDP2 hooks backward onto the output, and an in-place op on a view would
        # bypass that hook.
        return values.clone()


def load_legacy_state_dict(hf_model: nn.Module, path: str) -> list[str]:
    """Load a Coati `.pt` reward model (keys `model.*` and `value_head.*`) into an HF sequence classifier.

    Read with weights_only=True: a pickle from the internet must not run code. Returns notes for the log.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for a damaged file
        raise UserError(f"{path} is not a readable PyTorch state dict ({type(err).__name__}); "
                        "give a reward-model folder or a Coati .pt file") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    prefix = hf_model.base_model_prefix
    mapped, notes = {}, []
    for key, value in state.items():
        if key.startswith("model."):
            mapped[f"{prefix}.{key[len('model.'):]}"] = value
        elif key == "value_head.weight":
            mapped["score.weight"] = value
        elif key == "value_head.bias":
            # HF's score layer has no bias; a constant offset changes no ranking, so it is dropped.
            notes.append(f"dropped value_head.bias = {float(value.flatten()[0]):.4f} (HF score heads have no bias)")
        else:
            mapped[key] = value
    missing, unexpected = hf_model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith(("rotary_emb.inv_freq", "masked_bias", ".attn.bias"))]
    if "score.weight" in missing or len(missing) > len(mapped) // 2:
        raise UserError(f"{path} does not match the model from --rm_pretrain/--pretrain ({len(missing)} weights "
                        f"missing, e.g. {missing[:3]}); pair the .pt with the base model it was trained from")
    if unexpected:
        notes.append(f"ignored {len(unexpected)} unexpected keys, e.g. {unexpected[:3]}")
    return notes


def is_legacy_file(path: str | None) -> bool:
    return bool(path) and os.path.isfile(path) and path.endswith((".pt", ".pth", ".bin"))
