"""Supervised instruction data: templated prompt, response + EOS, loss on the response only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coati.dataset.io import ReadReport, require_keys_somewhere
from coati.dataset.padding import pad
from coati.dataset.templates import build_prompt
from coati.errors import UserError

IGNORE_INDEX = -100


@dataclass
class Keys:
    """Which column holds what: KoChatGPT uses prompt/completion, Alpaca instruction/input/output."""

    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"


def encode_prompt(tokenizer, text: str) -> list[int]:
    # The tokenizer's own special tokens (LLaMA's BOS) go in front of the prompt, as at generation time.
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def encode_response(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


class LabelledRows(torch.utils.data.Dataset):
    """Rows already tokenised as (input_ids, labels), labels -100 where nothing is trained, with the read report
    of how they were made. Each item: input_ids (L,) and labels (L,)."""

    def __init__(self, source: str):
        self.examples: list[tuple[list[int], list[int]]] = []
        self.report = ReadReport(source)

    @property
    def truncated(self) -> int:
        return self.report.truncated

    @property
    def dropped(self) -> int:
        return self.report.dropped

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx: int) -> dict:
        ids, labels = self.examples[idx]
        return {"input_ids": ids, "labels": labels}

    def lengths(self) -> list[int]:
        return [len(ids) for ids, _ in self.examples]


class SFTDataset(LabelledRows):
    """Tokenised SFT rows. Each item: input_ids (L,) and labels (L,) with the prompt set to -100.

    Prompt and response are tokenised separately, exactly as the prompt is tokenised for generation,
    so the model learns to continue the very token sequence it will see in PPO. Rows over max_len
    keep their prompt and lose the end of the response (counted in `truncated`); rows whose prompt
    alone fills max_len, and rows missing the instruction or the output or holding an empty one, are
    dropped (counted in `dropped`, with their row numbers in `report`).
    """

    def __init__(self, rows: list[dict], tokenizer, max_len: int, language: str = "ko", keys: Keys | None = None,
                 without_prompt: bool = False, source: str = "--dataset"):
        keys = keys or Keys()
        require_keys_somewhere(rows, [keys.instruction, keys.output], source,
                               hint="name the columns with --instruction_str/--input_str/--output_str")
        super().__init__(source)
        for number, row in enumerate(rows, start=1):
            self.report.read += 1
            why = _missing_value(row, (keys.instruction, keys.output))
            if why:
                self.report.drop(number, why)
                continue
            instruction, output = row[keys.instruction], row[keys.output]
            input_text = row.get(keys.input) or ""
            if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(input_text, str):
                raise UserError(f"{source} row {number - 1}: '{keys.instruction}', '{keys.input}' and '{keys.output}' "
                                "must be strings")
            prompt_ids = encode_prompt(tokenizer, build_prompt(instruction, input_text, language, without_prompt))
            response_ids = encode_response(tokenizer, output)
            if len(prompt_ids) >= max_len:
                self.report.drop_for_length(number, f"whose prompt alone fills --max_len {max_len}",
                                            len(prompt_ids) + 1)
                continue
            if len(prompt_ids) + len(response_ids) > max_len:
                self.report.truncated += 1
                response_ids = response_ids[: max_len - len(prompt_ids)]
            self.examples.append((prompt_ids + response_ids, [IGNORE_INDEX] * len(prompt_ids) + response_ids))
        self.report.used = len(self.examples)
        if not self.examples:
            if set(self.report.dropped_rows) == {f"whose prompt alone fills --max_len {max_len}"}:
                raise UserError(f"{source}: every row's prompt is longer than --max_len {max_len}; raise --max_len "
                                f"(--max_len {self.report.keep_len} keeps them all)")
            raise UserError(f"{source}: no usable row ({self.report.reasons()})")



def _missing_value(row: dict, keys) -> str:
    """Why a row cannot be used ('with no 'output'', 'with an empty 'output''), or '' when it can."""
    for key in keys:
        if key not in row:
            return f"with no '{key}'"
        value = row[key]
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"with an empty '{key}'"
    return ""


class SFTCollator:
    """Right-pads a batch (to a multiple of pad_to_multiple_of columns when set). Masks come from lengths, never
    from `ids != pad_id`: pad may equal EOS."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask = pad([it["input_ids"] for it in items], self.pad_token_id, multiple_of=self.multiple_of)
        labels, _ = pad([it["labels"] for it in items], IGNORE_INDEX, multiple_of=self.multiple_of)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
