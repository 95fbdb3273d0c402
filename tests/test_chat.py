"""Conversations and chat templates: row normalising, templates, assistant-token masks, the default rule."""

from __future__ import annotations

import copy

import pytest

from coati.dataset.chat import (
    ChatSFTDataset,
    RowError,
    assistant_spans,
    build_sft_dataset,
    check_chat_template_flag,
    choose_chat_template,
    end_of_turn_text,
    is_conversation_rows,
    load_chat_template,
    normalize_messages,
    set_chat_template,
)
from coati.dataset.sft import IGNORE_INDEX, SFTDataset
from coati.dataset.templates import build_prompt
from coati.errors import UserError

SYS, U1, A1, U2, A2 = ("친절하게 답하세요.", "김치찌개 끓이는 법 알려 주세요.", "먼저 김치를 볶으세요.",
                       "돼지고기도 넣나요?", "네, 함께 볶으면 좋아요.")
CONVO = [{"role": "system", "content": SYS}, {"role": "user", "content": U1}, {"role": "assistant", "content": A1},
         {"role": "user", "content": U2}, {"role": "assistant", "content": A2}]
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


@pytest.fixture(scope="module")
def chat_tok(tokenizer):
    """The shipped tokenizer with the chat markers of ChatML and Llama 3 as single special tokens."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|start_header_id|>",
                                                          "<|end_header_id|>", "<|eot_id|>"]})
    return tok


def _pieces(tok, pieces):
    """Expected (input_ids, labels) from hand-cut (text, trained) pieces; every cut is at a special token or
    before/after a newline, where the tokenizer splits anyway."""
    ids, labels = [], []
    for text, trained in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def _trained_spans(tok, item):
    """Decoded runs of consecutive trained tokens."""
    runs, current = [], []
    for t, label in zip(item["input_ids"], item["labels"]):
        if label != IGNORE_INDEX:
            assert label == t
            current.append(t)
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    return runs


# -- rows ---------------------------------------------------------------------------------------------------
def test_both_spellings_normalise_to_the_same_turns():
    share = [{"from": "system", "value": SYS}, {"from": "human", "value": U1}, {"from": "gpt", "value": A1},
             {"from": "user", "value": U2}, {"from": "assistant", "value": A2}]
    assert normalize_messages(share) == CONVO
    assert normalize_messages([{"role": "User", "content": U1}, {"role": "GPT", "content": A1}]) == CONVO[1:3]
    assert is_conversation_rows([{"conversations": share}]) and is_conversation_rows([{"turns": CONVO}], "turns")
    assert not is_conversation_rows([{"instruction": "a", "output": "b"}])


@pytest.mark.parametrize("turns, why", [
    ([{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}], "with an unknown role"),
    ([{"role": "user", "content": " "}, {"role": "assistant", "content": "y"}], "with an empty turn"),
    ([{"role": "user", "content": "x"}], "with no assistant turn"),
    ([{"role": "assistant", "content": "y"}, {"role": "user", "content": "x"}], "whose first turn is not the user's"),
    ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}],
     "with a system message after the first turn"),
    ("not a list", "with no list of turns"),
])
def test_malformed_turns_are_refused_with_the_reason(turns, why):
    with pytest.raises(RowError, match=why):
        normalize_messages(turns)


def test_bad_rows_are_dropped_and_counted_with_row_numbers(tokenizer):
    good = {"messages": CONVO}
    rows = [good, {"messages": CONVO[:2]}, good, {"conversations": [{"from": "alien", "value": "x"}]},
            {"other": 1}, good]
    ds = ChatSFTDataset(rows, tokenizer, 256, load_chat_template("ko", tokenizer), source="c.jsonl")
    assert len(ds) == 3 and ds.dropped == 3 and ds.truncated == 0
    assert ds.report.dropped_rows == {"with no assistant turn": [2], "with an unknown role": [4],
                                      "with no list of turns": [5]}
    assert ds.report.summary() == ("c.jsonl: read 6 rows, used 3, truncated 0, dropped 3 (1 with no assistant turn: "
                                   "row 2; 1 with an unknown role: row 4; 1 with no list of turns: row 5)")
    with pytest.raises(UserError, match=r"c.jsonl row 0 has no key 'messages' \(nor 'conversations'\).*keys found: "
                                        r"instruction.*--messages_str"):
        ChatSFTDataset([{"instruction": "x"}] * 2, tokenizer, 256, load_chat_template("ko", tokenizer),
                       source="c.jsonl")
    with pytest.raises(UserError, match="no usable conversation .2 with no assistant turn: rows 1, 2"):
        ChatSFTDataset([{"messages": CONVO[:2]}] * 2, tokenizer, 256, load_chat_template("ko", tokenizer))


# -- templates and masks --------------------------------------------------------------------------------------
def test_one_turn_without_system_renders_and_trains_exactly_like_an_instruction_row(tokenizer):
    for language in ("ko", "en"):
        template = load_chat_template(language, tokenizer)
        text = template.render([{"role": "user", "content": U1}, {"role": "assistant", "content": A1}], tokenizer)
        assert text == build_prompt(U1, "", language) + A1 + tokenizer.eos_token
        chat = ChatSFTDataset([{"messages": [{"role": "user", "content": U1}, {"role": "assistant", "content": A1}]}],
                              tokenizer, 256, template)
        plain = SFTDataset([{"instruction": U1, "output": A1}], tokenizer, 256, language)
        assert chat[0] == plain[0]


def test_ko_mask_multi_turn(tokenizer):
    eos = tokenizer.eos_token
    ds = ChatSFTDataset([{"messages": CONVO}], tokenizer, 256, load_chat_template("ko", tokenizer))
    assert ds[0] == dict(zip(("input_ids", "labels"), _pieces(tokenizer, [
        (f"{SYS}\n\n### 명령어:\n{U1}\n\n### 응답:\n", False), (A1, True), (eos, True),
        (f"\n\n### 명령어:\n{U2}\n\n### 응답:\n", False), (A2, True), (eos, True)])))
    assert _trained_spans(tokenizer, ds[0]) == [A1 + eos, A2 + eos]


def test_chatml_mask_multi_turn(chat_tok):
    ds = ChatSFTDataset([{"messages": CONVO}], chat_tok, 256, load_chat_template("chatml", chat_tok))
    s, e = "<|im_start|>", "<|im_end|>"
    assert ds[0] == dict(zip(("input_ids", "labels"), _pieces(chat_tok, [
        (s, False), (f"system\n{SYS}", False), (e, False), ("\n", False),
        (s, False), (f"user\n{U1}", False), (e, False), ("\n", False),
        (s, False), ("assistant\n", False), (A1, True), (e, True), ("\n", False),
        (s, False), (f"user\n{U2}", False), (e, False), ("\n", False),
        (s, False), ("assistant\n", False), (A2, True), (e, True), ("\n", False)])))
    assert _trained_spans(chat_tok, ds[0]) == [A1 + e, A2 + e]


def test_llama3_style_jinja_file_mask_multi_turn_and_last_only(chat_tok, tmp_path):
    path = tmp_path / "llama3.jinja"
    path.write_text(LLAMA3, encoding="utf-8")
    template = load_chat_template(str(path), chat_tok)
    h, he, eot = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"

    def turn(role, content, trained):
        return [(h, False), (role, False), (he, False), ("\n\n", False), (content, trained), (eot, trained)]

    expected = [(chat_tok.bos_token, False), *turn("system", SYS, False), *turn("user", U1, False),
                *turn("assistant", A1, True), *turn("user", U2, False), *turn("assistant", A2, True)]
    ds = ChatSFTDataset([{"messages": CONVO}], chat_tok, 256, template)
    assert ds[0] == dict(zip(("input_ids", "labels"), _pieces(chat_tok, expected)))
    assert _trained_spans(chat_tok, ds[0]) == [A1 + eot, A2 + eot]
    last = ChatSFTDataset([{"messages": CONVO}], chat_tok, 256, template, train_on="last")
    only_last = [(chat_tok.bos_token, False), *turn("system", SYS, False), *turn("user", U1, False),
                 *turn("assistant", A1, False), *turn("user", U2, False), *turn("assistant", A2, True)]
    assert last[0] == dict(zip(("input_ids", "labels"), _pieces(chat_tok, only_last)))
    assert _trained_spans(chat_tok, last[0]) == [A2 + eot]
    assert end_of_turn_text(template, chat_tok) == eot


def test_generation_markers_are_accepted_and_change_nothing(chat_tok):
    from coati.dataset.chat import CHATML, ChatTemplate

    marked = CHATML.replace("{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}",
                            "{{- '<|im_start|>' + m['role'] + '\\n' -}}{% generation %}{{- m['content'] + "
                            "'<|im_end|>' -}}{% endgeneration %}{{- '\\n' -}}")
    assert marked != CHATML
    plain, gen = ChatTemplate("chatml", CHATML), ChatTemplate("marked", marked)
    assert gen.render(CONVO, chat_tok) == plain.render(CONVO, chat_tok)
    assert assistant_spans(gen, CONVO, chat_tok) == assistant_spans(plain, CONVO, chat_tok)


def test_truncation_cuts_and_a_row_whose_first_trained_token_is_cut_is_dropped(tokenizer):
    template = load_chat_template("ko", tokenizer)
    ids_full = ChatSFTDataset([{"messages": CONVO}], tokenizer, 1000, template)[0]["input_ids"]
    first = ChatSFTDataset([{"messages": CONVO}], tokenizer, 1000, template)[0]["labels"].index(
        tokenizer(A1, add_special_tokens=False)["input_ids"][0])
    ds = ChatSFTDataset([{"messages": CONVO}] * 2, tokenizer, first + 1, template)
    assert ds.truncated == 2 and len(ds) == 2 and ds[0]["input_ids"] == ids_full[: first + 1]
    assert ds[0]["labels"][-1] == ids_full[first]
    too_short = [{"messages": CONVO}, {"messages": [{"role": "user", "content": "짧게"},
                                                    {"role": "assistant", "content": "네."}]}]
    ds = ChatSFTDataset(too_short, tokenizer, first, template)
    assert len(ds) == 1 and ds.report.dropped_rows == {f"whose first trained token lies beyond --max_len {first}": [1]}


def test_a_template_that_rewrites_earlier_turns_drops_the_rows(tokenizer):
    from coati.dataset.chat import ChatTemplate

    counting = ChatTemplate("counting", "{{ messages | length }} turns\n" + load_chat_template("ko", tokenizer).source)
    with pytest.raises(UserError, match="does not render turn by turn"):
        ChatSFTDataset([{"messages": CONVO}], tokenizer, 256, counting)


def test_a_template_that_refuses_a_row_drops_it(tokenizer):
    from coati.dataset.chat import ChatTemplate

    strict = ChatTemplate("strict", "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}"
                                    "{% endif %}" + load_chat_template("ko", tokenizer).source)
    ds = ChatSFTDataset([{"messages": CONVO}, {"messages": CONVO[1:]}], tokenizer, 256, strict)
    assert len(ds) == 1 and ds.report.dropped_rows == {"that the chat template refuses (no system)": [1]}


# -- choosing and saving a template -----------------------------------------------------------------------------
def test_default_rule_and_explicit_choices(tokenizer, tmp_path):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(UserError, match="no chat template of its own; pass --chat_template ko, en, chatml or a Jinja"):
        choose_chat_template(None, bare, conversations=True)
    assert choose_chat_template(None, bare, conversations=False) is None
    assert choose_chat_template("en", bare, conversations=False).name == "en"
    with pytest.raises(UserError, match="--chat_template tokenizer: this tokenizer has no chat template"):
        choose_chat_template("tokenizer", bare, conversations=True)
    own = copy.deepcopy(tokenizer)
    set_chat_template(own, load_chat_template("chatml", own))
    chosen = choose_chat_template(None, own, conversations=True)
    assert chosen.name == "tokenizer" and chosen.source == load_chat_template("chatml", own).source
    with pytest.raises(UserError, match="--chat_template nope.jinja is neither one of tokenizer, ko, en, chatml"):
        check_chat_template_flag("nope.jinja")
    (tmp_path / "bad.jinja").write_text("line one\n{% for m in messages %}", encoding="utf-8")
    with pytest.raises(UserError, match="bad.jinja: Jinja syntax error on line 2"):
        check_chat_template_flag(str(tmp_path / "bad.jinja"))


@pytest.mark.parametrize("name", ["ko", "chatml"])
def test_saved_template_renders_the_same_in_the_next_stage_and_in_transformers(tokenizer, tmp_path, name):
    from transformers import AutoTokenizer

    tok = copy.deepcopy(tokenizer)
    template = load_chat_template(name, tok)
    set_chat_template(tok, template)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    reloaded = choose_chat_template(None, again, conversations=True)
    for add in (False, True):
        msgs = CONVO if not add else CONVO[:4]
        ours = template.render(msgs, tok, add_generation_prompt=add)
        assert reloaded.render(msgs, again, add_generation_prompt=add) == ours
        assert again.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add) == ours


def test_build_sft_dataset_follows_the_rule(tokenizer):
    rows = [{"instruction": U1, "output": A1}, {"instruction": U2, "output": ""}]
    ds, template = build_sft_dataset(rows, tokenizer, 256, language="ko")
    assert template is None and isinstance(ds, SFTDataset) and len(ds) == 1
    assert ds.report.dropped_rows == {"with an empty 'output'": [2]}
    ds, template = build_sft_dataset(rows, tokenizer, 256, chat_template="ko")
    assert template.name == "ko" and isinstance(ds, ChatSFTDataset)
    assert ds[0] == SFTDataset(rows[:1], tokenizer, 256, "ko")[0] and ds.report.dropped_rows == {
        "with an empty turn": [2]}
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(UserError, match="--chat_template"):
        build_sft_dataset([{"messages": CONVO}], bare, 256)
    ds, template = build_sft_dataset([{"chat": CONVO}], tokenizer, 256, chat_template="chatml", messages_key="chat",
                                     train_on="last")
    assert _trained_spans(tokenizer, ds[0]) == [A2 + "<|im_end|>"]


def test_shipped_conversation_files_are_what_the_generator_writes_and_read_whole(tokenizer, tmp_path):
    import filecmp
    import importlib.util
    import os

    from conftest import ROOT

    from coati.dataset.io import load_rows
    from coati.dataset.preference import rows_to_pairs

    names = ["conversations_ko.jsonl", "conversations_sharegpt_ko.jsonl", "preference_conversations_ko.jsonl"]
    spec = importlib.util.spec_from_file_location("make_conversations", os.path.join(ROOT, "data",
                                                                                      "make_conversations.py"))
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.main(tmp_path)
    for name in names:
        assert filecmp.cmp(tmp_path / name, os.path.join(ROOT, "data", name), shallow=False), name
    template = load_chat_template("ko", tokenizer)
    for name, n in zip(names[:2], (60, 10)):
        ds = ChatSFTDataset(load_rows(os.path.join(ROOT, "data", name)), tokenizer, 512, template)
        assert len(ds) == n and ds.dropped == 0 and ds.truncated == 0
        users = [sum(m["role"] == "user" for m in normalize_messages(
            r.get("messages") or r.get("conversations"))) for r in load_rows(os.path.join(ROOT, "data", name))]
        assert set(users) == {2, 3}
    pairs = rows_to_pairs(load_rows(os.path.join(ROOT, "data", names[2])))
    assert len(pairs) == 60 and all(p.prompt[-1]["role"] == "user" and p.chosen != p.rejected for p in pairs)
    bad = [text for texts in generator.REJECTED.values() for text in texts]
    assert all(p.rejected in bad and len(p.chosen) > len(p.rejected) for p in pairs)
