"""Conversations and chat templates: rows of turns, rendered to text, trained on the assistant's turns only.

A conversation row holds its turns under `messages` ({"role", "content"}, roles system/user/assistant) or
`conversations` (ShareGPT: {"from", "value"}, from human/gpt/system or user/assistant); `messages_key` names
another column. Templates (`--chat_template`):
  tokenizer  the tokenizer's own chat_template
  ko, en     the instruction templates of coati/dataset/templates.py, one instruction/response block per turn;
             a single turn without a system message renders exactly as build_prompt + response + EOS
  chatml     <|im_start|>role\\n...<|im_end|>\\n
  PATH       a Jinja file, written as for Hugging Face tokenizers (messages, add_generation_prompt, bos_token,
             eos_token; {% generation %} blocks are accepted and ignored)

The trained tokens are found from the rendered text alone, so every template works, marked or not: the
assistant turn i is the text that rendering messages[:i+1] adds to messages[:i] rendered with the generation
prompt, i.e. its content and its end-of-turn marker, never the role header.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from dataclasses import dataclass

from coati.dataset.sft import IGNORE_INDEX, Keys, LabelledRows, SFTDataset
from coati.dataset.templates import TEMPLATES
from coati.errors import UserError

TEMPLATE_CHOICES = ("tokenizer", "ko", "en", "chatml")
TRAIN_ON = ("all", "last")
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
CONVERSATION_KEYS = ("messages", "conversations")


class RowError(ValueError):
    """A row that cannot become a conversation; the message is the reason the read report groups rows by."""


# -- rows -> turns ----------------------------------------------------------------------------------------
def find_turns(row: dict, messages_key: str = "messages"):
    """The row's list of turns (under messages_key, else `messages` or `conversations`), or None."""
    for key in (messages_key, *CONVERSATION_KEYS):
        if key in row:
            return row[key]
    return None


def is_conversation_rows(rows: list[dict], messages_key: str = "messages") -> bool:
    """True when the rows are conversations: some row holds a list of turns under one of the keys."""
    return any(isinstance(find_turns(row, messages_key), list) for row in rows)


def normalize_messages(turns, need_assistant: bool = True) -> list[dict]:
    """Turns in either spelling -> [{"role", "content"}] with roles system/user/assistant.

    Raises RowError for what would otherwise become wrong data: an unknown role, empty content, a system
    message after the first turn, a conversation that starts with the assistant, or (need_assistant) no
    assistant turn at all."""
    if not isinstance(turns, list) or not turns:
        raise RowError("with no list of turns")
    out = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise RowError("with a turn that is not an object")
        if "role" in turn or "content" in turn:
            role, content = turn.get("role"), turn.get("content")
        else:
            role, content = turn.get("from"), turn.get("value")
        name = ROLES.get(role.strip().lower()) if isinstance(role, str) else None
        if name is None:
            raise RowError("with an unknown role")
        if not isinstance(content, str) or not content.strip():
            raise RowError("with an empty turn")
        if name == "system" and out:
            raise RowError("with a system message after the first turn")
        out.append({"role": name, "content": content})
    talk = [m for m in out if m["role"] != "system"]
    if not talk or talk[0]["role"] != "user":
        raise RowError("whose first turn is not the user's")
    if need_assistant and not any(m["role"] == "assistant" for m in talk):
        raise RowError("with no assistant turn")
    return out


def prompt_part(messages: list[dict]) -> list[dict]:
    """The turns up to and including the last user turn: what a policy answers in PPO or DPO."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return messages[: last_user + 1]


# -- templates ----------------------------------------------------------------------------------------------
def _instruction_source(language: str) -> str:
    # json.dumps gives \n and \uXXXX escapes, which Jinja string literals decode the same way.
    t = TEMPLATES[language]
    header = json.dumps(t["header"])
    user = json.dumps(f"\n\n{t['instruction']}\n")
    answer = json.dumps(f"\n\n{t['response']}\n")
    return ("{%- if messages and messages[0]['role'] == 'system' -%}"
            "{{- messages[0]['content'] | trim -}}{%- set turns = messages[1:] -%}"
            "{%- else -%}{{- " + header + " -}}{%- set turns = messages -%}{%- endif -%}"
            "{%- for m in turns -%}"
            "{%- if m['role'] == 'user' -%}{{- " + user + " + m['content'] | trim -}}"
            "{%- elif m['role'] == 'assistant' -%}{{- " + answer + " + m['content'] + eos_token -}}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- " + answer + " -}}{%- endif -%}")


CHATML = ("{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
          "{%- endfor -%}{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}")


@functools.cache
def _environment():
    from jinja2 import TemplateError, nodes  # noqa: F401
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """{% generation %}...{% endgeneration %} marks assistant text for HF's own mask; here it only renders."""

        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, loopcontrols])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


@functools.cache
def _compiled(source: str):
    return _environment().from_string(source)


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and the name it was chosen by (a --chat_template choice or a file path)."""

    name: str
    source: str

    def render(self, messages: list[dict], tokenizer, add_generation_prompt: bool = False) -> str:
        """The template's text for `messages`; a template's raise_exception or any Jinja error -> RowError."""
        from jinja2 import TemplateError

        specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        try:
            return _compiled(self.source).render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                **{"bos_token": "", "eos_token": "", **specials})
        except TemplateError as err:
            raise RowError(f"that the chat template refuses ({err})") from err


def _compile_or_refuse(name: str, source: str) -> ChatTemplate:
    from jinja2 import TemplateSyntaxError

    try:
        _compiled(source)
    except TemplateSyntaxError as err:
        raise UserError(f"--chat_template {name}: Jinja syntax error on line {err.lineno} ({err.message})") from err
    return ChatTemplate(name, source)


def tokenizer_template(tokenizer) -> str | None:
    """The tokenizer's own chat template text (the 'default' one of a named set), or None."""
    source = getattr(tokenizer, "chat_template", None)
    if isinstance(source, dict):
        source = source.get("default")
    return source or None


def saved_chat_template(folder: str) -> str | None:
    """The chat template a tokenizer folder carries, read from its files without loading anything:
    chat_template.jinja (transformers 5 writes it there) or tokenizer_config.json's chat_template (a string, or
    HF's list of named templates, whose 'default' counts). None when it has none or is not a local folder."""
    if not os.path.isdir(folder):
        return None
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read() or None
    cfg = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(cfg):
        return None
    with open(cfg, encoding="utf-8") as f:
        source = json.load(f).get("chat_template")
    if isinstance(source, list):
        source = next((t.get("template") for t in source if isinstance(t, dict) and t.get("name") == "default"), None)
    return source or None


def template_label(source: str | None) -> str:
    """A short name for a template's text in messages: ko, en, chatml, or 'a template of its own'."""
    if source is None:
        return "none (instruction rows use the --language template)"
    for name in ("ko", "en"):
        if source.strip() == _instruction_source(name).strip():
            return name
    return "chatml" if source.strip() == CHATML.strip() else "a template of its own"


def flag_template_source(choice: str, tokenizer_folder: str | None) -> str | None:
    """The template text a --chat_template value stands for, before any tokenizer loads ('tokenizer': the one
    saved in tokenizer_folder)."""
    if choice == "tokenizer":
        return saved_chat_template(tokenizer_folder) if tokenizer_folder else None
    if choice in TEMPLATES:
        return _instruction_source(choice)
    if choice == "chatml":
        return CHATML
    return _read_template_file(choice)


def check_chat_template_flag(choice: str | None) -> None:
    """--chat_template names a choice or an existing Jinja file that parses; checked before any model loads."""
    if choice is None or choice in TEMPLATE_CHOICES:
        return
    if not os.path.isfile(choice):
        raise UserError(f"--chat_template {choice} is neither one of {', '.join(TEMPLATE_CHOICES)} nor an existing "
                        "Jinja file")
    _compile_or_refuse(choice, _read_template_file(choice))


def _read_template_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"--chat_template {path} is not UTF-8 text (byte {err.start})") from err


def load_chat_template(choice: str, tokenizer) -> ChatTemplate:
    """The template a --chat_template value names: tokenizer, ko, en, chatml, or a path to a Jinja file."""
    if choice == "tokenizer":
        source = tokenizer_template(tokenizer)
        if source is None:
            raise UserError("--chat_template tokenizer: this tokenizer has no chat template of its own; choose "
                            "ko, en, chatml or a Jinja file")
        return _compile_or_refuse(choice, source)
    if choice in TEMPLATES:
        return ChatTemplate(choice, _instruction_source(choice))
    if choice == "chatml":
        return ChatTemplate(choice, CHATML)
    check_chat_template_flag(choice)
    return _compile_or_refuse(choice, _read_template_file(choice))


def choose_chat_template(choice: str | None, tokenizer, conversations: bool) -> ChatTemplate | None:
    """The default rule. A --chat_template given wins. Otherwise conversation data uses the tokenizer's own
    template (a UserError naming the choices when it has none), and instruction rows get None: they keep the
    --language template of build_prompt, as before."""
    if choice is not None:
        return load_chat_template(choice, tokenizer)
    if not conversations:
        return None
    if tokenizer_template(tokenizer) is None:
        raise UserError("the data holds conversations, and the tokenizer has no chat template of its own; pass "
                        "--chat_template ko, en, chatml or a Jinja file")
    return load_chat_template("tokenizer", tokenizer)


def set_chat_template(tokenizer, template: ChatTemplate) -> None:
    """Make the tokenizer carry `template`, so the folder it is saved to renders the same way in the next stage
    (and in Hugging Face's apply_chat_template). Saving is the caller's."""
    tokenizer.chat_template = template.source


def end_of_turn_text(template: ChatTemplate, tokenizer) -> str:
    """What the template writes after an assistant's content ('<|im_end|>', the EOS token, ...): generation
    should stop there."""
    marker = "\u2063COATI\u2063"
    text = template.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}], tokenizer)
    return text[text.index(marker) + len(marker):].strip() if marker in text else ""


# -- text -> trained spans -> tokens ------------------------------------------------------------------------
def assistant_spans(template: ChatTemplate, messages: list[dict], tokenizer,
                    train_on: str = "all") -> tuple[str, list[tuple[int, int]]]:
    """(full text, character spans to train on). A span is an assistant turn's content and end-of-turn marker:
    the text messages[:i+1] adds to messages[:i] rendered with the generation prompt, trailing whitespace
    left out. train_on="last" keeps only the last assistant turn."""
    if train_on not in TRAIN_ON:
        raise UserError(f"--train_on {train_on} is unknown; choose one of {', '.join(TRAIN_ON)}")
    full = template.render(messages, tokenizer)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on == "last":
        turns = turns[-1:]
    spans = []
    for i in turns:
        before = template.render(messages[:i], tokenizer, add_generation_prompt=True)
        upto = template.render(messages[: i + 1], tokenizer)
        # Templates that rewrite earlier turns (drop past reasoning, say) have no fixed text per turn.
        if not (upto.startswith(before) and full.startswith(upto)):
            raise RowError("that the chat template does not render turn by turn (an earlier turn changes later)")
        end = len(upto.rstrip())
        if end > len(before):
            spans.append((len(before), end))
    return full, spans


def encode_text(tokenizer, text: str, **kwargs):
    """Tokenise a rendered text; the tokenizer adds its BOS unless the template already wrote it."""
    bos = tokenizer.bos_token
    add = not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add, **kwargs)


def trained_token_mask(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[bool]]:
    """Token ids of `text` and, per token, whether it lies in a span (by the fast tokenizer's offsets). A token
    that overlaps a span is trained: a byte-level piece of a character that starts the span belongs to it."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("conversation data needs a fast tokenizer (tokenizer.json) to find the assistant's tokens")
    enc = encode_text(tokenizer, text, return_offsets_mapping=True)
    mask = [any(s < b and max(e, s + 1) > a for a, b in spans) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


# -- datasets -----------------------------------------------------------------------------------------------
class ChatSFTDataset(LabelledRows):
    """Tokenised conversations. Each item: input_ids (L,) and labels (L,), -100 where not trained.

    Rows that are not a usable conversation are dropped and counted in `report` with their row numbers;
    rows over max_len are cut at the end (counted in `truncated`), and dropped when their first trained token
    would be cut."""

    def __init__(self, rows: list[dict], tokenizer, max_len: int, template: ChatTemplate, *,
                 messages_key: str = "messages", train_on: str = "all", source: str = "--dataset"):
        if not any(find_turns(row, messages_key) is not None for row in rows):
            raise UserError(f"{source} row 0 has no key '{messages_key}' (nor 'conversations') and neither has any "
                            f"other row (keys found: {', '.join(map(str, rows[0]))}); name the column with "
                            "--messages_str")
        super().__init__(source)
        for number, row in enumerate(rows, start=1):
            self.report.read += 1
            try:
                messages = normalize_messages(find_turns(row, messages_key))
                text, spans = assistant_spans(template, messages, tokenizer, train_on)
            except RowError as err:
                self.report.drop(number, str(err))
                continue
            ids, mask = trained_token_mask(tokenizer, text, spans)
            if not any(mask[:max_len]):
                self.report.drop_for_length(number, f"whose first trained token lies beyond --max_len {max_len}",
                                            mask.index(True) + 1 if any(mask) else len(ids) + 1)
                continue
            if len(ids) > max_len:
                self.report.truncated += 1
                ids, mask = ids[:max_len], mask[:max_len]
            self.examples.append((ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]))
        self.report.used = len(self.examples)
        if not self.examples:
            raise UserError(f"{source}: no usable conversation ({self.report.reasons()})")


def instruction_rows_as_conversations(rows: list[dict], keys: Keys | None = None) -> list[dict]:
    """Instruction rows as one-turn conversations (instruction and input joined by a blank line), for a
    --chat_template given with instruction data. Rows missing a value keep it missing, to be dropped."""
    keys = keys or Keys()
    out = []
    for row in rows:
        instruction, output = row.get(keys.instruction), row.get(keys.output)
        extra = row.get(keys.input)
        if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
            instruction = f"{instruction.strip()}\n\n{extra.strip()}"
        out.append({"messages": [{"role": "user", "content": instruction},
                                 {"role": "assistant", "content": output}]})
    return out


def build_sft_dataset(rows: list[dict], tokenizer, max_len: int, *, language: str = "ko", keys: Keys | None = None,
                      without_prompt: bool = False, chat_template: str | None = None,
                      messages_key: str = "messages", train_on: str = "all", source: str = "--dataset"):
    """The SFT dataset the flags ask for: conversation rows through the chosen chat template (the default rule
    of choose_chat_template), instruction rows through build_prompt, or through a --chat_template given.
    Returns (dataset, template or None); dataset.report.summary() is the line to print."""
    conversations = is_conversation_rows(rows, messages_key)
    template = choose_chat_template(chat_template, tokenizer, conversations)
    if template is None:
        return SFTDataset(rows, tokenizer, max_len, language, keys, without_prompt, source), None
    if not conversations:
        keys = keys or Keys()
        from coati.dataset.io import require_keys_somewhere

        require_keys_somewhere(rows, [keys.instruction, keys.output], source,
                               hint="name the columns with --instruction_str/--input_str/--output_str")
        rows, messages_key = instruction_rows_as_conversations(rows, keys), "messages"
    return ChatSFTDataset(rows, tokenizer, max_len, template, messages_key=messages_key, train_on=train_on,
                          source=source), template
