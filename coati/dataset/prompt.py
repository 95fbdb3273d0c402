"""PPO prompts: the SFT template around each instruction, left-padded for generation."""

from __future__ import annotations

import torch

from coati.dataset.io import require_keys
from coati.dataset.padding import pad
from coati.dataset.sft import encode_prompt
from coati.dataset.templates import build_prompt


class PromptDataset(torch.utils.data.Dataset):
    """Token ids of templated prompts; prompts over max_input_len keep their end (where the
    template's response marker sits) and are counted in `truncated`."""

    def __init__(self, rows: list[dict], tokenizer, max_input_len: int, language: str = "ko",
                 key: str = "instruction", input_key: str = "input", without_prompt: bool = False,
                 source: str = "--prompt_dataset"):
        require_keys(rows, [key], source, hint="name the prompt column with --ppo_instruction_str")
        self.prompts: list[list[int]] = []
        self.truncated = 0
        for row in rows:
            ids = encode_prompt(tokenizer, build_prompt(str(row[key]), str(row.get(input_key) or ""), language,
                                                        without_prompt))
            if len(ids) > max_input_len:
                self.truncated += 1
                ids = ids[-max_input_len:]
            self.prompts.append(ids)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx: int) -> list[int]:
        return self.prompts[idx]


class LeftPadCollator:
    """Left-pads prompts so every row's last prompt token sits in the same column, where generation starts."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, prompts: list[list[int]]) -> dict[str, torch.Tensor]:
        ids, mask = pad(prompts, self.pad_token_id, left=True)
        return {"input_ids": ids, "attention_mask": mask}
