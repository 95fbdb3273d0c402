"""PPO prompts: the SFT template around each instruction, left-padded for generation."""

from __future__ import annotations

import torch

from coati.dataset.chat import RowError, find_turns, is_conversation_rows, normalize_messages, prompt_part
from coati.dataset.io import ReadReport, require_keys_somewhere
from coati.dataset.padding import pad
from coati.dataset.preference import encode_prompt_ids
from coati.errors import UserError


class PromptDataset(torch.utils.data.Dataset):
    """Token ids of templated prompts; prompts over max_input_len keep their end (where the
    template's response marker sits) and are counted in `truncated`.

    Prompts render through preference.render_prompt, the rule the reward model's pairs follow too: a prompt
    that carries its own dialogue format ('Human: ... Assistant:') is left as it is. Conversation rows
    (turns under messages_key, `messages` or `conversations`) give their turns up to the last user turn,
    rendered by `template`. Rows with no prompt or an empty one are dropped and counted in `report`."""

    def __init__(self, rows: list[dict], tokenizer, max_input_len: int, language: str = "ko",
                 key: str = "instruction", input_key: str = "input", without_prompt: bool = False,
                 source: str = "--prompt_dataset", *, template=None, messages_key: str = "messages"):
        conversations = is_conversation_rows(rows, messages_key)
        if not conversations:
            require_keys_somewhere(rows, [key], source, hint="name the prompt column with --ppo_instruction_str")
        self.prompts: list[list[int]] = []
        self.row_ids: list[int] = []  # each prompt's row in `rows` (0-based), for what reward functions read
        self.report = ReadReport(source, unit="prompts")
        for number, row in enumerate(rows, start=1):
            self.report.read += 1
            if conversations:
                try:
                    prompt = prompt_part(normalize_messages(find_turns(row, messages_key), need_assistant=False))
                    ids = encode_prompt_ids(prompt, tokenizer, template=template)
                except RowError as err:
                    self.report.drop(number, str(err))
                    continue
            else:
                value = row.get(key)
                if value is None or not str(value).strip():
                    self.report.drop(number, f"with no '{key}'" if key not in row else f"with an empty '{key}'")
                    continue
                ids = encode_prompt_ids(str(value), tokenizer, template=template, language=language,
                                        without_prompt=without_prompt, input_text=str(row.get(input_key) or ""))
            if len(ids) > max_input_len:
                self.report.truncated += 1
                ids = ids[-max_input_len:]
            self.prompts.append(ids)
            self.row_ids.append(number - 1)
        self.report.used = len(self.prompts)
        if not self.prompts:
            raise UserError(f"{source}: no usable prompt ({self.report.reasons()})")

    @property
    def truncated(self) -> int:
        return self.report.truncated

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx: int) -> list[int]:
        return self.prompts[idx]


class LeftPadCollator:
    """Left-pads prompts so every row's last prompt token sits in the same column, where generation starts (to a
    multiple of pad_to_multiple_of columns when set)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, prompts: list) -> dict:
        """prompts: token-id lists, or RowPrompts items, whose row index, text and columns ride along."""
        if prompts and isinstance(prompts[0], dict):
            ids, mask = pad([p["ids"] for p in prompts], self.pad_token_id, left=True, multiple_of=self.multiple_of)
            names = dict.fromkeys(k for p in prompts for k in p["columns"])
            return {"input_ids": ids, "attention_mask": mask, "index": torch.tensor([p["index"] for p in prompts]),
                    "texts": [p["text"] for p in prompts],
                    "columns": {k: [p["columns"].get(k) for p in prompts] for k in names}}
        ids, mask = pad(prompts, self.pad_token_id, left=True, multiple_of=self.multiple_of)
        return {"input_ids": ids, "attention_mask": mask}


class RowPrompts(torch.utils.data.Dataset):
    """A PromptDataset's prompts with what reward functions read of their rows: the row's index, its prompt
    text before the template (a conversation's last user turn) and every other column."""

    def __init__(self, prompts: PromptDataset, rows: list[dict], key: str = "instruction",
                 messages_key: str = "messages"):
        self.prompts = prompts
        self.items = []
        for i in prompts.row_ids:
            row, text = rows[i], rows[i].get(key)
            turns = find_turns(row, messages_key)
            if text is None and isinstance(turns, list):
                text = prompt_part(normalize_messages(turns, need_assistant=False))[-1]["content"]
            others = {k: v for k, v in row.items() if k != key and v is not turns}
            self.items.append({"index": i, "text": str(text), "columns": others})

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx: int) -> dict:
        return {"ids": self.prompts[idx], **self.items[idx]}
