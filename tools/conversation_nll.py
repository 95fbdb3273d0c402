"""Held-out NLL of a causal LM on conversations, split by whose turn a token belongs to.

    python tools/conversation_nll.py --model outputs/sft --dataset held_out.jsonl --chat_template ko

Prints one JSON object: mean NLL per token over the assistant turns' tokens (content and end-of-turn marker,
exactly the tokens SFT trains) and over the user turns' tokens (their content), with the token counts. Run it
on a model before and after conversation SFT: the assistant figure should fall, and the user figure should
not follow it (SFT masks user turns).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def user_spans(template, messages, tokenizer) -> list[tuple[int, int]]:
    """Character spans of each user turn's content in the rendered conversation."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "user":
            continue
        before = len(template.render(messages[:i], tokenizer)) if i else 0
        upto = template.render(messages[: i + 1], tokenizer)
        at = upto.find(m["content"].strip(), before)
        if at >= 0:
            spans.append((at, at + len(m["content"].strip())))
    return spans


def measure(model_dir: str, rows: list[dict], chat_template: str, messages_key: str = "messages",
            tokenizer_dir: str | None = None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from coati.dataset.chat import (
        assistant_spans,
        find_turns,
        load_chat_template,
        normalize_messages,
        trained_token_mask,
    )
    from coati.models.loading import load_tokenizer

    tok = load_tokenizer(tokenizer_dir or model_dir)
    template = load_chat_template(chat_template, tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    sums = {"assistant": [0.0, 0], "user": [0.0, 0]}
    for row in rows:
        messages = normalize_messages(find_turns(row, messages_key))
        text, a_spans = assistant_spans(template, messages, tok)
        ids, a_mask = trained_token_mask(tok, text, a_spans)
        _, u_mask = trained_token_mask(tok, text, user_spans(template, messages, tok))
        x = torch.tensor([ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
        nll = -logp.gather(-1, x[0, 1:, None]).squeeze(-1)  # token t+1 predicted at t
        for name, mask in (("assistant", a_mask), ("user", u_mask)):
            m = torch.tensor(mask[1:])
            sums[name][0] += float(nll[m].sum())
            sums[name][1] += int(m.sum())
    return {f"{k}_nll": round(s / max(n, 1), 4) for k, (s, n) in sums.items()} | \
        {f"{k}_tokens": n for k, (_, n) in sums.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a causal LM folder")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: --model)")
    p.add_argument("--dataset", required=True, help="held-out conversation rows")
    p.add_argument("--chat_template", default="tokenizer", help="tokenizer, ko, en, chatml or a Jinja file")
    p.add_argument("--messages_str", default="messages", help="column holding the turns")
    args = p.parse_args(argv)
    from coati.dataset.io import load_rows

    out = measure(args.model, load_rows(args.dataset), args.chat_template, args.messages_str, args.tokenizer)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
