"""DPO data: each preference pair tokenised as one prompt and two answers, for a policy that scores both.

A pair becomes prompt + chosen and prompt + rejected, each answer ending in its end of turn (EOS outside chat
templates), the very same prompt tokens in both, with labels -100 on the prompt so only answer tokens count. The
text is preference.encode_pair's, the one prompt rule the reward model and PPO follow too: every preference
format the reward model reads, conversations and --chat_template included. The collator stacks the chosen rows
and then the rejected rows into one batch of 2B rows, so one forward pass gives the log-probs of both answers.

Every kept pair has an index (its position in the dataset). Reference log-probs computed once before training
(--precompute_ref) are stored by that index with `set_reference_logps`, and from then on every item and batch
carries them, so the reference model need not stay in memory.
"""

from __future__ import annotations

import torch

from coati.dataset.chat import ChatTemplate, RowError
from coati.dataset.io import ReadReport
from coati.dataset.padding import padded_width
from coati.dataset.preference import Pair, encode_pair
from coati.dataset.sft import IGNORE_INDEX
from coati.errors import UserError


def scored_tokens(prompt_len: int, answer_len: int) -> int:
    """How many answer tokens get a log-prob: position 0 is never predicted, so with no prompt the first
    answer token is context only."""
    return answer_len - (0 if prompt_len > 0 else 1)


class DPODataset(torch.utils.data.Dataset):
    """Tokenised pairs for DPO, IPO, SimPO and ORPO.

    Items: index, prompt_len and the full chosen_ids / rejected_ids (prompt included); with reference log-probs
    set, also ref_chosen_logps / ref_rejected_logps. Over max_len, an answer loses its end (no EOS then: the
    answer is unfinished, not ended) and the prompt is never cut. Pairs are dropped, and counted, when:
      dropped_no_answer  the prompt leaves no room for a single scored answer token within max_len;
      dropped_identical  chosen and rejected are the same tokens (as written, or once cut to max_len), which
                         gives no preference to learn;
      dropped_template   the chat template cannot render the pair turn by turn, or refuses it.
    truncated counts the kept pairs with at least one answer cut.
    """

    def __init__(self, pairs: list[Pair], tokenizer, max_len: int, language: str = "ko",
                 without_prompt: bool = False, *, template: ChatTemplate | None = None, source: str = "--dataset"):
        self.items: list[tuple[list[int], list[int], list[int]]] = []  # prompt, chosen answer, rejected answer
        self.truncated = self.dropped_no_answer = self.dropped_identical = self.dropped_template = 0
        self.report = ReadReport(source, unit="pairs")  # the same counts with reasons and pair numbers, printed
        for number, p in enumerate(pairs, 1):
            self.report.read += 1
            try:
                prompt_ids, *answers = encode_pair(p, tokenizer, template=template, language=language,
                                                   without_prompt=without_prompt)
            except RowError as err:
                self.dropped_template += 1
                self.report.drop(number, str(err))
                continue
            room = max_len - len(prompt_ids)
            if any(scored_tokens(len(prompt_ids), min(len(a), room)) < 1 for a in answers):
                self.dropped_no_answer += 1
                self.report.drop_for_length(number, f"whose prompt leaves no answer token within --max_len {max_len}",
                                            len(prompt_ids) + 2)
                continue
            cut = any(len(a) > room for a in answers)
            chosen, rejected = (a[:room] for a in answers)
            if chosen == rejected:
                self.dropped_identical += 1
                self.report.drop(number, "whose answers are the same tokens" + (" once cut to --max_len" if cut else ""))
                continue
            self.truncated += int(cut)
            self.items.append((prompt_ids, chosen, rejected))
        self.report.truncated, self.report.used = self.truncated, len(self.items)
        if not self.items:
            raise UserError(f"{source}: no usable preference pair within --max_len {max_len} "
                            f"({self.dropped_no_answer} left no room for an answer, {self.dropped_identical} had "
                            f"identical answers, {self.dropped_template} the chat template could not render); "
                            "raise --max_len or check the data")
        self._ref: torch.Tensor | None = None  # (N, 2) float32: chosen, rejected; nan until set
        self._ref_complete = False

    @property
    def dropped(self) -> int:
        return self.dropped_no_answer + self.dropped_identical + self.dropped_template

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        prompt, chosen, rejected = self.items[idx]
        item = {"index": idx, "prompt_len": len(prompt), "chosen_ids": prompt + chosen,
                "rejected_ids": prompt + rejected}
        if self._ref_complete:
            item["ref_chosen_logps"] = self._ref[idx, 0].item()
            item["ref_rejected_logps"] = self._ref[idx, 1].item()
        return item

    def lengths(self) -> list[int]:
        """Padded length of each pair (its longer row), for length-grouped batching."""
        return [len(p) + max(len(c), len(r)) for p, c, r in self.items]

    def set_reference_logps(self, index: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        """Store the reference model's summed answer log-probs of the pairs at `index` (a batch's "index").

        index, chosen, rejected: (B,). Call once per batch of a pass over the data (any order, any split
        across ranks); items carry reference log-probs only when every pair has them (`has_reference_logps`).
        """
        if self._ref is None:
            self._ref = torch.full((len(self.items), 2), float("nan"))
        idx = index.long().cpu()
        self._ref[idx, 0] = chosen.detach().float().cpu()
        self._ref[idx, 1] = rejected.detach().float().cpu()
        # a half-filled table must never reach a batch: a missing value would train as nan
        self._ref_complete = not bool(torch.isnan(self._ref).any())

    def has_reference_logps(self) -> bool:
        return self._ref_complete

    def reference_logps(self) -> torch.Tensor | None:
        """(N, 2) float32 of chosen, rejected reference log-probs (nan where not set yet), e.g. to save them."""
        return self._ref

    def state_dict(self) -> dict:
        """The reference log-probs once complete (what a checkpoint keeps, so a resume need not recompute them)."""
        return {"reference_logps": self._ref.clone()} if self._ref_complete else {}

    def load_state_dict(self, state: dict) -> None:
        table = state.get("reference_logps")
        if table is None:
            return
        if table.shape != (len(self.items), 2):
            raise UserError(f"the checkpoint's reference log-probs cover {table.shape[0]} pairs, this data has "
                            f"{len(self.items)}; resume with the data the run started with")
        self.set_reference_logps(torch.arange(len(self.items)), table[:, 0], table[:, 1])


class DPOCollator:
    """Right-pads chosen rows then rejected rows into one batch of 2B.

    Returns input_ids, attention_mask and labels (2B, W), labels -100 on prompt and padding; index (B,); and
    ref_chosen_logps / ref_rejected_logps (B,) when the items carry them. Row i and row B + i are one pair.
    The mask comes from the lengths, never from `ids != pad_id`: pad may equal EOS. W is the longest row, rounded
    up to a multiple of pad_to_multiple_of when set.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        rows = [(it["chosen_ids"], it["prompt_len"]) for it in items]
        rows += [(it["rejected_ids"], it["prompt_len"]) for it in items]
        width = padded_width((len(ids) for ids, _ in rows), self.multiple_of)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, prompt_len) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, prompt_len: len(ids)] = torch.tensor(ids[prompt_len:])
            mask[i, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels,
                 "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
        with_ref = ["ref_chosen_logps" in it for it in items]
        if any(with_ref):
            if not all(with_ref):
                raise ValueError("some items of the batch carry reference log-probs and some do not")
            batch["ref_chosen_logps"] = torch.tensor([it["ref_chosen_logps"] for it in items], dtype=torch.float32)
            batch["ref_rejected_logps"] = torch.tensor([it["ref_rejected_logps"] for it in items],
                                                       dtype=torch.float32)
        return batch
