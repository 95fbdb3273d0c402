"""Preference data: every format users have, turned into (prompt, chosen, rejected) pairs.

Formats (detected from the columns, or forced with --data_format):
  ranking    KoChatGPT: prompt, completion_0..n-1, ranking; expanded into all n(n-1)/2 pairs. ranking_order
             says what `ranking` lists: "slots" (ranking[k] is the completion holding the k-th best answer, as
             KoChatGPT's generator writes it) or "ranks" (ranking[i] is completion_i's rank, 0 is best)
  hh         Anthropic/hh-rlhf: chosen / rejected are whole dialogues ("\\n\\nHuman: ... \\n\\nAssistant: ...")
  pairs      Dahoas/rm-static, Dahoas/instruct-synthetic-prompt-responses and your own files:
             prompt / chosen / rejected (other names with --prompt_str/--chosen_str/--rejected_str)
  chat       conversations: chosen / rejected as message lists sharing their leading turns (UltraFeedback
             binarized), or prompt as a message list with string answers
  orca       system / question / chosen / rejected (orca-dpo-pairs-ko)
  summarize  openai/summarize_from_feedback: info.post, summaries[0..1].text, choice
  webgpt     openai/webgpt_comparisons: question.full_text, answer_0/1, score_0/1 (ties dropped)

Rows missing a value, or holding an empty one, are dropped and counted (ReadReport); a key no row has is an
error. A prompt that is a conversation, or any prompt under a --chat_template, is rendered through the chat
template; render_prompt is the one rule the reward model, PPO and DPO all use, so they see the same text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from coati.dataset.chat import ChatTemplate, RowError, encode_text, normalize_messages
from coati.dataset.io import ReadReport
from coati.dataset.padding import pad
from coati.dataset.sft import encode_prompt, encode_response
from coati.dataset.templates import build_prompt
from coati.errors import UserError

FORMATS = ("auto", "ranking", "hh", "pairs", "chat", "orca", "summarize", "webgpt")
RANKING_ORDERS = ("slots", "ranks")


@dataclass
class Pair:
    """prompt: a string, or a conversation (a list of {"role", "content"} ending with a user turn);
    chosen / rejected: the two answers as plain text."""

    prompt: str | list[dict]
    chosen: str
    rejected: str
    templated: bool = True  # False when the prompt already carries its own dialogue format


@dataclass
class PairKeys:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"


class _Empty(ValueError):
    """A required value that is there but empty: the row is dropped, not the run stopped."""


def has_own_template(prompt: str) -> bool:
    """A prompt that already ends in its own answer cue (rm-static/hh's 'Human: ... Assistant:', summarize's
    'TL;DR:') is left as it is in every stage: wrapped in one stage and not in another, the reward model would
    score a text the policy never generated from."""
    return "Assistant:" in prompt or prompt.rstrip().endswith("TL;DR:")


def render_prompt(prompt: str | list[dict], tokenizer=None, *, template: ChatTemplate | None = None,
                  language: str = "ko", without_prompt: bool = False, input_text: str = "",
                  templated: bool = True) -> str:
    """The text a policy answers, the same for the reward model, PPO and DPO.

    A conversation goes through `template` with the generation prompt. A string that carries its own template
    (has_own_template, or templated=False), or any string under without_prompt, is used as it is (stripped).
    Otherwise a string is wrapped: in `template` as one user turn (input_text after a blank line) when given,
    else in the --language instruction template of build_prompt."""
    if isinstance(prompt, list):
        if template is None:
            raise UserError("the data holds conversation prompts, and no chat template was chosen; pass "
                            "--chat_template ko, en, chatml or a Jinja file")
        return template.render(prompt, tokenizer, add_generation_prompt=True)
    if without_prompt or not templated or has_own_template(prompt):
        return build_prompt(prompt, input_text, language, without_prompt=True)
    if template is None:
        return build_prompt(prompt, input_text, language)
    content = f"{prompt.strip()}\n\n{input_text.strip()}" if input_text and input_text.strip() else prompt.strip()
    return template.render([{"role": "user", "content": content}], tokenizer, add_generation_prompt=True)


def _wrapped(prompt: str | list[dict], template: ChatTemplate | None, without_prompt: bool,
             templated: bool = True) -> bool:
    if isinstance(prompt, list):
        return True
    return template is not None and not (without_prompt or not templated or has_own_template(prompt))


def encode_prompt_ids(prompt: str | list[dict], tokenizer, *, template: ChatTemplate | None = None,
                      language: str = "ko", without_prompt: bool = False, input_text: str = "",
                      templated: bool = True) -> list[int]:
    """Token ids of render_prompt's text: what the policy generates from in PPO and what the reward model's
    and DPO's sequences start with."""
    text = render_prompt(prompt, tokenizer, template=template, language=language, without_prompt=without_prompt,
                         input_text=input_text, templated=templated)
    if _wrapped(prompt, template, without_prompt, templated):
        return encode_text(tokenizer, text)["input_ids"]
    return encode_prompt(tokenizer, text) if text else []


def render_pair(pair: Pair, tokenizer, *, template: ChatTemplate | None = None, language: str = "ko",
                without_prompt: bool = False) -> tuple[str, str, str]:
    """(prompt_text, chosen_text, rejected_text): prompt_text + chosen_text is the whole chosen sequence, each
    answer ending in its end-of-turn marker (the EOS token outside chat templates)."""
    prompt_text = render_prompt(pair.prompt, tokenizer, template=template, language=language,
                                without_prompt=without_prompt, templated=pair.templated)
    if not _wrapped(pair.prompt, template, without_prompt, pair.templated):
        return prompt_text, pair.chosen + tokenizer.eos_token, pair.rejected + tokenizer.eos_token
    messages = pair.prompt if isinstance(pair.prompt, list) else [{"role": "user", "content": pair.prompt.strip()}]
    answers = []
    for answer in (pair.chosen, pair.rejected):
        full = template.render([*messages, {"role": "assistant", "content": answer}], tokenizer)
        if not full.startswith(prompt_text):
            raise RowError("that the chat template does not render turn by turn (the answer changes the prompt)")
        answers.append(full[len(prompt_text):].rstrip())
    return prompt_text, answers[0], answers[1]


def encode_pair(pair: Pair, tokenizer, *, template: ChatTemplate | None = None, language: str = "ko",
                without_prompt: bool = False) -> tuple[list[int], list[int], list[int]]:
    """Token ids of (prompt, chosen answer, rejected answer), each tokenised on its own as PPO sees them."""
    prompt_ids = encode_prompt_ids(pair.prompt, tokenizer, template=template, language=language,
                                   without_prompt=without_prompt, templated=pair.templated)
    if not _wrapped(pair.prompt, template, without_prompt, pair.templated):
        # Instruction-template pairs tokenise exactly as they always have.
        return prompt_ids, encode_response(tokenizer, pair.chosen), encode_response(tokenizer, pair.rejected)
    _, chosen, rejected = render_pair(pair, tokenizer, template=template, language=language,
                                      without_prompt=without_prompt)
    return (prompt_ids,
            tokenizer(chosen, add_special_tokens=False)["input_ids"],
            tokenizer(rejected, add_special_tokens=False)["input_ids"])


def pairs_are_conversations(pairs: list[Pair]) -> bool:
    return any(isinstance(p.prompt, list) for p in pairs)


def _key_sample(rows: list[dict]) -> dict:
    """Every key any row has, with its first non-empty value: formats are told by the columns of the file,
    so one broken first row does not decide them."""
    sample: dict = {}
    for row in rows:
        for key, value in row.items():
            if sample.get(key) in (None, "", []):
                sample[key] = value
    return sample


def detect_format(row: dict, keys: PairKeys) -> str:
    if "ranking" in row and "completion_0" in row:
        return "ranking"
    if "summaries" in row and "choice" in row:
        return "summarize"
    if "answer_0" in row and "score_0" in row:
        return "webgpt"
    if keys.chosen in row and keys.rejected in row:
        if isinstance(row[keys.chosen], list) or isinstance(row.get(keys.prompt), list):
            return "chat"
        if keys.prompt not in row and "question" in row:
            return "orca"
        return "pairs" if keys.prompt in row else "hh"
    raise UserError(f"cannot tell the preference format from the keys {', '.join(map(str, row))}; expected "
                    f"{keys.prompt}/{keys.chosen}/{keys.rejected}, chosen/rejected dialogues, or KoChatGPT "
                    "prompt/completion_0../ranking (rename keys with --prompt_str/--chosen_str/--rejected_str)")


def rows_to_pairs(rows: list[dict], fmt: str = "auto", keys: PairKeys | None = None, source: str = "--dataset",
                  ranking_order: str = "slots", report: ReadReport | None = None) -> list[Pair]:
    """Every row's preference pairs, in row order. Rows missing a value or holding an empty one are dropped
    and counted in `report` (row numbers from 1); a key that no row has, a wrong type or an inconsistent
    ranking stops the run with the row."""
    keys = keys or PairKeys()
    if ranking_order not in RANKING_ORDERS:
        raise UserError(f"--ranking_order {ranking_order} is unknown; choose one of {', '.join(RANKING_ORDERS)}")
    fmt = detect_format(_key_sample(rows), keys) if fmt == "auto" else fmt
    report = report if report is not None else ReadReport(source)
    report.format = fmt
    pairs: list[Pair] = []
    for i, row in enumerate(rows):
        report.read += 1
        try:
            found = _row_pairs(row, fmt, keys, ranking_order)
        except KeyError as err:
            key = err.args[0]
            if any(key in r for r in rows):
                report.drop(i + 1, f"with no '{key}'")
                continue
            raise UserError(f"{source} row {i} has no key {err} for format '{fmt}' "
                            f"(keys found: {', '.join(map(str, row))})") from err
        except _Empty as err:
            report.drop(i + 1, str(err))
            continue
        except RowError as err:
            report.drop(i + 1, str(err))
            continue
        except (TypeError, ValueError) as err:
            raise UserError(f"{source} row {i}: {err}") from err
        if not found:
            report.drop(i + 1, "that are ties")
            continue
        report.used += 1
        pairs.extend(found)
    if not pairs:
        raise UserError(f"{source}: no preference pairs" + (f" ({report.reasons()})" if report.dropped else ""))
    return pairs


def ranking_order_note(order: str) -> str:
    """The line a stage prints when it reads ranking rows: which meaning of `ranking` it used."""
    meaning = ("ranking[k] is the completion holding the k-th best answer, as KoChatGPT's generator writes it"
               if order == "slots" else "ranking[i] is the rank of completion_i, 0 best")
    other = "ranks" if order == "slots" else "slots"
    return f"ranking rows read with --ranking_order {order}: {meaning} (--ranking_order {other} reads the other way)"


def _row_pairs(row: dict, fmt: str, keys: PairKeys, ranking_order: str = "slots") -> list[Pair]:
    if fmt == "ranking":
        return ranking_pairs(row, ranking_order)
    if fmt == "pairs":
        prompt = _text(row[keys.prompt], keys.prompt)
        chosen, rejected = _text(row[keys.chosen], keys.chosen), _text(row[keys.rejected], keys.rejected)
        # rm-static prompts are already "Human: ... Assistant:" dialogues: wrapping them again would be noise.
        return [_distinct(Pair(prompt, chosen, rejected, templated=not has_own_template(prompt)))]
    if fmt == "chat":
        return [_distinct(_chat_pair(row, keys))]
    if fmt == "orca":
        system = row.get("system")
        prompt = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
        prompt.append({"role": "user", "content": _text(row["question"], "question")})
        return [_distinct(Pair(prompt, _text(row[keys.chosen], keys.chosen), _text(row[keys.rejected],
                                                                                   keys.rejected)))]
    if fmt == "hh":
        chosen, rejected = _text(row[keys.chosen], keys.chosen), _text(row[keys.rejected], keys.rejected)
        cut = chosen.rfind("Assistant:") + len("Assistant:") if "Assistant:" in chosen else 0
        prompt = chosen[:cut] if rejected.startswith(chosen[:cut]) else ""
        return [_distinct(Pair(prompt, chosen[len(prompt):], rejected[len(prompt):], templated=False))]
    if fmt == "summarize":
        info = row["info"]
        post = info.get("post") or info.get("article") or ""
        prompt = f"{info.get('title') or ''}\n{post}\nTL;DR:".strip()
        texts = [s["text"] for s in row["summaries"]]
        choice = int(row["choice"])
        return [_distinct(Pair(prompt, texts[choice].strip(), texts[1 - choice].strip(), templated=False))]
    if fmt == "webgpt":
        s0, s1 = float(row["score_0"]), float(row["score_1"])
        if s0 == s1:
            return []
        q = row["question"]
        prompt = q["full_text"] if isinstance(q, dict) else str(q)
        a0, a1 = row["answer_0"], row["answer_1"]
        return [Pair(prompt, a0 if s0 > s1 else a1, a1 if s0 > s1 else a0)]
    raise UserError(f"--data_format {fmt} is unknown; choose one of {', '.join(FORMATS)}")


def _distinct(pair: Pair) -> Pair:
    if pair.chosen.strip() == pair.rejected.strip():
        raise RowError("whose chosen and rejected answers are the same")
    return pair


def _chat_pair(row: dict, keys: PairKeys) -> Pair:
    """(a) chosen/rejected message lists sharing their leading turns: the shared turns are the prompt, the
    last assistant messages the answers (a string prompt stands in when they share nothing); (b) a prompt
    message list with string answers."""
    raw_chosen, raw_rejected = row[keys.chosen], row[keys.rejected]
    if isinstance(raw_chosen, list) and isinstance(raw_rejected, list):
        chosen = normalize_messages(raw_chosen, need_assistant=False) if raw_chosen[:1] and \
            _role_of(raw_chosen[0]) != "assistant" else _answers_only(raw_chosen)
        rejected = normalize_messages(raw_rejected, need_assistant=False) if raw_rejected[:1] and \
            _role_of(raw_rejected[0]) != "assistant" else _answers_only(raw_rejected)
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        tail_c, tail_r = chosen[shared:], rejected[shared:]
        if not tail_c and not tail_r:
            raise RowError("whose chosen and rejected answers are the same")
        if len(tail_c) != 1 or len(tail_r) != 1 or {tail_c[0]["role"], tail_r[0]["role"]} != {"assistant"}:
            raise RowError("whose chosen and rejected differ in more than their last assistant turn")
        prompt = chosen[:shared]
        if not prompt:
            text = row.get(keys.prompt)
            if not isinstance(text, str) or not text.strip():
                raise RowError("whose chosen and rejected share no prompt turns")
            prompt = [{"role": "user", "content": text}]
        if prompt[-1]["role"] != "user":
            raise RowError("whose prompt does not end with a user turn")
        return Pair(prompt, tail_c[0]["content"], tail_r[0]["content"])
    if not isinstance(row.get(keys.prompt), list):
        raise TypeError(f"'{keys.chosen}' and '{keys.rejected}' must both be message lists, or '{keys.prompt}' one")
    prompt = normalize_messages(row[keys.prompt], need_assistant=False)
    if prompt[-1]["role"] != "user":
        raise RowError("whose prompt does not end with a user turn")
    return Pair(prompt, _text(raw_chosen, keys.chosen), _text(raw_rejected, keys.rejected))


def _role_of(turn) -> str | None:
    if not isinstance(turn, dict):
        return None
    role = turn.get("role", turn.get("from"))
    return {"gpt": "assistant"}.get(role, role) if isinstance(role, str) else None


def _answers_only(turns: list) -> list[dict]:
    # A list holding just the answer ([{"role": "assistant", ...}]): the prompt sits under the prompt key.
    if len(turns) != 1:
        raise RowError("whose first turn is not the user's")
    content = turns[0].get("content", turns[0].get("value"))
    if not isinstance(content, str) or not content.strip():
        raise RowError("with an empty turn")
    return [{"role": "assistant", "content": content}]


def ranking_pairs(row: dict, ranking_order: str = "slots") -> list[Pair]:
    """KoChatGPT ranking row -> all n(n-1)/2 pairs, better completion first.

    ranking_order "ranks": ranking[i] is the rank of completion_i (lower is better). "slots": ranking[k] is
    the index of the completion holding the k-th best answer. The two agree whenever the permutation is its
    own inverse ([0, 1, 2], [1, 0, 2], ...) and disagree on 3-cycles such as [1, 2, 0]."""
    n = sum(1 for k in row if k.startswith("completion_"))
    prompt = _text(row["prompt"], "prompt")
    completions = [_text(row[f"completion_{i}"], f"completion_{i}") for i in range(n)]
    ranking = row["ranking"]
    if not isinstance(ranking, list) or len(ranking) != n:
        raise ValueError(f"'ranking' must list one rank per completion ({n}), got {ranking!r}")
    if ranking_order == "slots":
        if sorted(ranking) != list(range(n)):
            raise ValueError(f"'ranking' {ranking!r} is not an order of the completions 0..{n - 1} "
                             "(read with --ranking_order slots)")
        order = list(ranking)
    else:
        if len(set(ranking)) != n:
            raise ValueError(f"'ranking' {ranking!r} gives two completions the same rank")
        order = sorted(range(n), key=lambda i: ranking[i])
    return [Pair(prompt, completions[order[a]], completions[order[b]])
            for a in range(n) for b in range(a + 1, n)]


def _text(value, key: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Empty(f"with an empty '{key}'")
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
    """Tokenised pairs: chosen and rejected are prompt + answer + end of turn (EOS outside chat templates), cut
    to max_len with that last token kept.

    A pair that cutting leaves with identical sides (a prompt that alone fills max_len, or answers that only
    differ past it) teaches nothing and is dropped, counted in `report` with its number among the pairs."""

    def __init__(self, pairs: list[Pair], tokenizer, max_len: int, language: str = "ko",
                 without_prompt: bool = False, *, template: ChatTemplate | None = None, source: str = "--dataset"):
        self.items: list[tuple[list[int], list[int]]] = []
        self.truncated = 0  # sequences (sides) cut, as before; report.truncated counts pairs
        self.report = ReadReport(source, unit="pairs")
        for number, p in enumerate(pairs, start=1):
            self.report.read += 1
            try:
                prompt_ids, *answers = encode_pair(p, tokenizer, template=template, language=language,
                                                   without_prompt=without_prompt)
            except RowError as err:
                self.report.drop(number, str(err))
                continue
            seqs, cut = [], 0
            for answer_ids in answers:
                ids = prompt_ids + answer_ids
                if len(ids) > max_len:
                    cut += 1
                    ids = ids[: max_len - 1] + ids[-1:]
                seqs.append(ids)
            if seqs[0] == seqs[1]:
                why = (f"whose prompt alone fills --max_len {max_len}" if len(prompt_ids) >= max_len - 1 else
                       f"whose chosen and rejected are the same once cut to --max_len {max_len}")
                full = [prompt_ids + a for a in answers]
                first_diff = next((i for i, (a, b) in enumerate(zip(*full)) if a != b), min(map(len, full)))
                if full[0] == full[1]:
                    self.report.drop(number, why)  # identical as written: no --max_len helps
                else:  # the cut keeps ids[: max_len - 1] and the last token
                    self.report.drop_for_length(number, why, first_diff + 2)
                continue
            self.truncated += cut
            self.report.truncated += bool(cut)
            self.items.append((seqs[0], seqs[1]))
        self.report.used = len(self.items)
        if pairs and not self.items:
            hint = "; raise --max_len" if all("--max_len" in why for why in self.report.dropped_rows) else ""
            raise UserError(f"{source}: no usable preference pair ({self.report.reasons()}){hint}")

    @property
    def dropped(self) -> int:
        return self.report.dropped

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[list[int], list[int]]:
        return self.items[idx]

    def lengths(self) -> list[int]:
        """Padded length of each pair (its longer side), for length-grouped batching."""
        return [max(len(c), len(r)) for c, r in self.items]


class PairCollator:
    """Stacks chosen rows then rejected rows into one right-padded batch of 2B (to a multiple of
    pad_to_multiple_of columns when set): one forward scores both."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id, self.multiple_of = pad_token_id, pad_to_multiple_of

    def __call__(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        ids, mask = pad([c for c, _ in items] + [r for _, r in items], self.pad_token_id,
                        multiple_of=self.multiple_of)
        return {"input_ids": ids, "attention_mask": mask}
