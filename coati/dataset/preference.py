"""Preference data: every format users have, turned into (prompt, chosen, rejected) pairs.

Formats (detected from the columns, or forced with --data_format):
  ranking    KoChatGPT: prompt, completion_0..n-1, ranking (ranking[i] is completion_i's rank, 0 is best);
             expanded into all n(n-1)/2 pairs
  hh         Anthropic/hh-rlhf: chosen / rejected are whole dialogues ("\\n\\nHuman: ... \\n\\nAssistant: ...")
  pairs      Dahoas/rm-static, Dahoas/instruct-synthetic-prompt-responses and your own files:
             prompt / chosen / rejected (other names with --prompt_str/--chosen_str/--rejected_str)
  summarize  openai/summarize_from_feedback: info.post, summaries[0..1].text, choice
  webgpt     openai/webgpt_comparisons: question.full_text, answer_0/1, score_0/1 (ties dropped)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from coati.dataset.padding import pad
from coati.dataset.sft import encode_prompt, encode_response
from coati.dataset.templates import build_prompt
from coati.errors import UserError

FORMATS = ("auto", "ranking", "hh", "pairs", "summarize", "webgpt")


@dataclass
class Pair:
    prompt: str
    chosen: str
    rejected: str
    templated: bool = True  # False when the prompt already carries its own dialogue format


@dataclass
class PairKeys:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"


def detect_format(row: dict, keys: PairKeys) -> str:
    if "ranking" in row and "completion_0" in row:
        return "ranking"
    if "summaries" in row and "choice" in row:
        return "summarize"
    if "answer_0" in row and "score_0" in row:
        return "webgpt"
    if keys.chosen in row and keys.rejected in row:
        return "pairs" if keys.prompt in row else "hh"
    raise UserError(f"cannot tell the preference format from the keys {', '.join(map(str, row))}; expected "
                    f"{keys.prompt}/{keys.chosen}/{keys.rejected}, chosen/rejected dialogues, or KoChatGPT "
                    "prompt/completion_0../ranking (rename keys with --prompt_str/--chosen_str/--rejected_str)")


def rows_to_pairs(rows: list[dict], fmt: str = "auto", keys: PairKeys | None = None,
                  source: str = "--dataset") -> list[Pair]:
    """Every row's preference pairs, in row order."""
    keys = keys or PairKeys()
    fmt = detect_format(rows[0], keys) if fmt == "auto" else fmt
    pairs: list[Pair] = []
    for i, row in enumerate(rows):
        try:
            pairs.extend(_row_pairs(row, fmt, keys))
        except KeyError as err:
            raise UserError(f"{source} row {i} has no key {err} for format '{fmt}' "
                            f"(keys found: {', '.join(map(str, row))})") from err
        except (TypeError, ValueError) as err:
            raise UserError(f"{source} row {i}: {err}") from err
    if not pairs:
        raise UserError(f"{source}: no preference pairs (every comparison was a tie?)")
    return pairs


def _row_pairs(row: dict, fmt: str, keys: PairKeys) -> list[Pair]:
    if fmt == "ranking":
        return ranking_pairs(row)
    if fmt == "pairs":
        prompt = _text(row[keys.prompt], keys.prompt)
        # rm-static prompts are already "Human: ... Assistant:" dialogues: wrapping them again would be noise.
        return [Pair(prompt, _text(row[keys.chosen], keys.chosen), _text(row[keys.rejected], keys.rejected),
                     templated="Assistant:" not in prompt)]
    if fmt == "hh":
        chosen, rejected = _text(row[keys.chosen], keys.chosen), _text(row[keys.rejected], keys.rejected)
        cut = chosen.rfind("Assistant:") + len("Assistant:") if "Assistant:" in chosen else 0
        prompt = chosen[:cut] if rejected.startswith(chosen[:cut]) else ""
        return [Pair(prompt, chosen[len(prompt):], rejected[len(prompt):], templated=False)]
    if fmt == "summarize":
        info = row["info"]
        post = info.get("post") or info.get("article") or ""
        prompt = f"{info.get('title') or ''}\n{post}\nTL;DR:".strip()
        texts = [s["text"] for s in row["summaries"]]
        choice = int(row["choice"])
        return [Pair(prompt, texts[choice].strip(), texts[1 - choice].strip(), templated=False)]
    if fmt == "webgpt":
        s0, s1 = float(row["score_0"]), float(row["score_1"])
        if s0 == s1:
            return []
        q = row["question"]
        prompt = q["full_text"] if isinstance(q, dict) else str(q)
        a0, a1 = row["answer_0"], row["answer_1"]
        return [Pair(prompt, a0 if s0 > s1 else a1, a1 if s0 > s1 else a0)]
    raise UserError(f"--data_format {fmt} is unknown; choose one of {', '.join(FORMATS)}")


def ranking_pairs(row: dict) -> list[Pair]:
    """KoChatGPT ranking row -> all n(n-1)/2 pairs, better completion first (lower rank is better)."""
    n = sum(1 for k in row if k.startswith("completion_"))
    completions = [_text(row[f"completion_{i}"], f"completion_{i}") for i in range(n)]
    ranking = row["ranking"]
    if not isinstance(ranking, list) or len(ranking) != n:
        raise ValueError(f"'ranking' must list one rank per completion ({n}), got {ranking!r}")
    if len(set(ranking)) != n:
        raise ValueError(f"'ranking' {ranking!r} gives two completions the same rank")
    order = sorted(range(n), key=lambda i: ranking[i])
    return [Pair(row["prompt"], completions[order[a]], completions[order[b]])
            for a in range(n) for b in range(a + 1, n)]


def _text(value, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def split_rows(rows: list[dict], eval_ratio: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out a share of ROWS (not pairs), so no prompt appears in both train and eval."""
    if len(rows) < 2 or eval_ratio <= 0:
        return rows, []
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(round(len(rows) * eval_ratio)))
    held = set(idx[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


class PreferenceDataset(torch.utils.data.Dataset):
    """Tokenised pairs: chosen and rejected are prompt + response + EOS, cut to max_len with EOS kept last."""

    def __init__(self, pairs: list[Pair], tokenizer, max_len: int, language: str = "ko",
                 without_prompt: bool = False):
        self.items: list[tuple[list[int], list[int]]] = []
        self.truncated = 0
        eos = tokenizer.eos_token_id
        for p in pairs:
            text = build_prompt(p.prompt, "", language, without_prompt=without_prompt or not p.templated)
            prompt_ids = encode_prompt(tokenizer, text) if text else []
            seqs = []
            for response in (p.chosen, p.rejected):
                ids = prompt_ids + encode_response(tokenizer, response)
                if len(ids) > max_len:
                    self.truncated += 1
                    ids = ids[: max_len - 1] + [eos]
                seqs.append(ids)
            self.items.append((seqs[0], seqs[1]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[list[int], list[int]]:
        return self.items[idx]

    def lengths(self) -> list[int]:
        """Padded length of each pair (its longer side), for length-grouped batching."""
        return [max(len(c), len(r)) for c, r in self.items]


class PairCollator:
    """Stacks chosen rows then rejected rows into one right-padded batch of 2B: one forward scores both."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        ids, mask = pad([c for c, _ in items] + [r for _, r in items], self.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask}
