"""Look at a data file the way a stage will train on it.

    python -m coati.data show --dataset data/conversations_ko.jsonl --chat_template ko
    python -m coati.data show --dataset data/kochatgpt_rm_ko.jsonl --stage rm --rows 2

Prints the first rows as the model sees them (rendered through the chat template or the instruction template,
special tokens included, cut at --max_len), the tokens that are trained marked ⟦like this⟧ (coloured instead
when the output is a terminal), each row's token counts, and then the read report of the whole file: rows
read, used, truncated and dropped, with the reasons and row numbers. The flags mean what they mean in the
stages. A file it cannot read, or flags that do not fit the file, give one line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from coati.cli import accept_bool_values, add_preference_data_args
from coati.dataset.templates import LANGUAGES
from coati.errors import UserError, exit_on_user_error

SHIPPED_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "tokenizer")
STAGES = ("auto", "sft", "rm", "ppo", "dpo")
OPEN, CLOSE = "\u27e6", "\u27e7"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from coati.dataset.chat import TRAIN_ON

    p = argparse.ArgumentParser(prog="python -m coati.data", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    accept_bool_values(p)
    p.add_argument("command", choices=("show",), help="show: print rows as a stage sees them")
    p.add_argument("--dataset", required=True, help="the file, folder or hub name a stage would read")
    p.add_argument("--stage", default="auto", choices=STAGES,
                   help="which stage's view: auto guesses from the columns (preference pairs: rm, prompts "
                        "without an answer or conversations ending with the user: ppo, else sft)")
    p.add_argument("--tokenizer", default=SHIPPED_TOKENIZER, help="tokenizer folder (default: the shipped one)")
    p.add_argument("--rows", type=int, default=3, help="how many rows (pairs for rm/dpo) to print")
    p.add_argument("--max_len", type=int, default=512, help="as in the stages: longer sequences are cut")
    p.add_argument("--max_input_len", type=int, default=256, help="ppo: prompt tokens kept (from the end)")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="instruction template language")
    p.add_argument("--chat_template", default=None, help="tokenizer, ko, en, chatml or a Jinja file")
    p.add_argument("--messages_str", default="messages", help="column holding a conversation's turns")
    p.add_argument("--train_on", default="all", choices=TRAIN_ON, help="sft: which assistant turns are trained")
    p.add_argument("--without_prompt", action="store_true", help="do not wrap prompts in the template")
    p.add_argument("--instruction_str", default="instruction", help="sft: key of the instruction")
    p.add_argument("--input_str", default="input", help="sft: key of the optional input")
    p.add_argument("--output_str", default="output", help="sft: key of the response")
    p.add_argument("--ppo_instruction_str", default="instruction", help="ppo: key of the prompt")
    add_preference_data_args(p)
    return p.parse_args(argv)


@exit_on_user_error
def main(args: argparse.Namespace) -> int:
    from coati.cli import check_tokenizer_source
    from coati.dataset.chat import check_chat_template_flag
    from coati.dataset.io import load_rows

    for name in ("rows", "max_len", "max_input_len"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    check_chat_template_flag(args.chat_template)
    check_tokenizer_source(args.tokenizer)
    rows = load_rows(args.dataset, subset=args.subset)
    stage = guess_stage(rows, args) if args.stage == "auto" else args.stage

    from coati.models.loading import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer, args.max_len, distinct_pad=stage in ("rm", "dpo"))
    show = {"sft": show_sft, "ppo": show_ppo, "rm": show_pairs, "dpo": show_pairs}[stage]
    guessed = " (guessed from the columns; --stage to choose)" if args.stage == "auto" else ""
    print(f"{args.dataset} as the {stage} stage sees it{guessed}, tokenizer {args.tokenizer}")
    marks = Marks(sys.stdout.isatty())
    for line in show(rows, tokenizer, args, marks):
        print(line)
    return 0


def guess_stage(rows: list[dict], args) -> str:
    from coati.dataset.chat import find_turns, is_conversation_rows
    from coati.dataset.preference import PairKeys, _key_sample, detect_format

    keys = PairKeys(args.prompt_str, args.chosen_str, args.rejected_str)
    try:
        detect_format(_key_sample(rows), keys)
        return "rm"
    except UserError:
        pass
    if is_conversation_rows(rows, args.messages_str):
        # Prompt files end their conversations with the user's turn; SFT files with the assistant's.
        last = [turns[-1] for turns in (find_turns(row, args.messages_str) for row in rows)
                if isinstance(turns, list) and turns and isinstance(turns[-1], dict)]
        answered = any(t.get("role", t.get("from")) in ("assistant", "gpt") for t in last)
        return "sft" if answered else "ppo"
    return "sft" if any(args.output_str in row for row in rows) else "ppo"


class Marks:
    """How trained text is set apart: ⟦brackets⟧ in a file or pipe, colour on a terminal."""

    def __init__(self, colour: bool):
        self.open, self.close = ("\033[1;32m", "\033[0m") if colour else (OPEN, CLOSE)

    def wrap(self, text: str) -> str:
        return f"{self.open}{text}{self.close}"


def marked_text(tokenizer, ids: list[int], trained: list[bool], marks: Marks) -> str:
    """The decoded ids, each run of trained tokens wrapped; special tokens are shown, as the model reads them."""
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or trained[i] != trained[start]:
            text = tokenizer.decode(ids[start:i], skip_special_tokens=False)
            out.append(marks.wrap(text) if trained[start] else text)
            start = i
    return "".join(out)


def _used_rows(report) -> list[int]:
    """Row numbers (from 1) that became items, in item order: every dataset here keeps at most one item per row."""
    dropped = {n for numbers in report.dropped_rows.values() for n in numbers}
    return [n for n in range(1, report.read + 1) if n not in dropped]


def _dropped_why(report, number: int) -> str:
    return next(why for why, numbers in report.dropped_rows.items() if number in numbers)


def _row_lines(report, count: int, item_lines) -> list[str]:
    """Lines for rows 1..count: an item's lines, or the reason the row was dropped."""
    used = {n: i for i, n in enumerate(_used_rows(report))}
    lines = []
    for number in range(1, min(count, report.read) + 1):
        if number in used:
            lines += item_lines(number, used[number])
        else:
            lines += [f"-- row {number}: dropped, {_dropped_why(report, number)}", ""]
    return lines


def _footer(reports, template) -> list[str]:
    lines = [f"chat template: {template.name}" if template is not None else
             "template: the --language instruction template (no chat template)"]
    return lines + [r.summary() for r in reports]


def show_sft(rows, tokenizer, args, marks: Marks) -> list[str]:
    from coati.dataset.chat import build_sft_dataset
    from coati.dataset.sft import IGNORE_INDEX, Keys

    ds, template = build_sft_dataset(rows, tokenizer, args.max_len, language=args.language,
                                     keys=Keys(args.instruction_str, args.input_str, args.output_str),
                                     without_prompt=args.without_prompt, chat_template=args.chat_template,
                                     messages_key=args.messages_str, train_on=args.train_on,
                                     source=f"--dataset {args.dataset}")

    def item(number, index):
        it = ds[index]
        trained = [label != IGNORE_INDEX for label in it["labels"]]
        cut = ", cut at --max_len" if len(it["input_ids"]) >= args.max_len else ""
        return [f"-- row {number}: {len(trained)} tokens, {sum(trained)} trained{cut}",
                marked_text(tokenizer, it["input_ids"], trained, marks), ""]

    return _row_lines(ds.report, args.rows, item) + _footer([ds.report], template)


def show_ppo(rows, tokenizer, args, marks: Marks) -> list[str]:
    from coati.dataset.chat import choose_chat_template, is_conversation_rows
    from coati.dataset.prompt import PromptDataset

    template = choose_chat_template(args.chat_template, tokenizer, is_conversation_rows(rows, args.messages_str))
    ds = PromptDataset(rows, tokenizer, args.max_input_len, args.language, args.ppo_instruction_str,
                       without_prompt=args.without_prompt, source=f"--prompt_dataset {args.dataset}",
                       template=template, messages_key=args.messages_str)

    def item(number, index):
        ids = ds[index]
        cut = ", cut to its last --max_input_len" if len(ids) >= args.max_input_len else ""
        return [f"-- row {number}: {len(ids)} prompt tokens{cut}; the policy's answer follows {marks.wrap('here')}",
                tokenizer.decode(ids, skip_special_tokens=False) + marks.wrap("here"), ""]

    return _row_lines(ds.report, args.rows, item) + _footer([ds.report], template)


def show_pairs(rows, tokenizer, args, marks: Marks) -> list[str]:
    """rm and dpo: each pair's shared prompt, then the two answers (the scored tokens) marked."""
    from coati.dataset.chat import choose_chat_template
    from coati.dataset.io import ReadReport
    from coati.dataset.preference import (
        PairKeys,
        PreferenceDataset,
        encode_pair,
        pairs_are_conversations,
        ranking_order_note,
        rows_to_pairs,
    )

    keys = PairKeys(args.prompt_str, args.chosen_str, args.rejected_str)
    source = f"--dataset {args.dataset}"
    row_report = ReadReport(source)
    pairs = rows_to_pairs(rows, args.data_format, keys, args.dataset, args.ranking_order, row_report)
    template = choose_chat_template(args.chat_template, tokenizer, pairs_are_conversations(pairs))
    data = dict(language=args.language, without_prompt=args.without_prompt, template=template)
    ds = PreferenceDataset(pairs, tokenizer, args.max_len, source=source, **data)

    # Which row each pair came from: rows give one pair each, ranking rows n(n-1)/2.
    origin = []
    for number in _used_rows(row_report):
        found = rows_to_pairs([rows[number - 1]], row_report.format, keys, args.dataset, args.ranking_order)
        origin += [number] * len(found)
    lines, kept = [], {n: i for i, n in enumerate(_used_rows(ds.report))}
    for k in range(1, min(args.rows, len(pairs)) + 1):
        if k not in kept:
            lines += [f"-- pair {k} (row {origin[k - 1]}): dropped, {_dropped_why(ds.report, k)}", ""]
            continue
        chosen, rejected = ds[kept[k]]
        n_prompt = len(encode_pair(pairs[k - 1], tokenizer, **data)[0])
        lines += [f"-- pair {k} (row {origin[k - 1]}): prompt {n_prompt} tokens, chosen answer "
                  f"{len(chosen) - n_prompt}, rejected answer {len(rejected) - n_prompt}",
                  tokenizer.decode(chosen[:n_prompt], skip_special_tokens=False),
                  "chosen:   " + marks.wrap(tokenizer.decode(chosen[n_prompt:], skip_special_tokens=False)),
                  "rejected: " + marks.wrap(tokenizer.decode(rejected[n_prompt:], skip_special_tokens=False)), ""]
    footer = _footer([row_report, ds.report], template)
    if row_report.format == "ranking":
        footer.insert(0, ranking_order_note(args.ranking_order))
    return lines + footer


if __name__ == "__main__":
    sys.exit(main(parse_args()))
