"""Held-out evaluation of trained policies: answer prompts with each model, score the answers, compare models.

    python -m coati.evaluate --model_path outputs/sft outputs/dpo --prompt_dataset held_out.json \
        --prompt_str prompt --rm_path outputs/rm [--reward_fn exact_answer] [--samples 2] [--max_new_tokens 64]

Every model answers every prompt greedily (unless --no-greedy) and --samples times by sampling, rendered with the
one prompt rule the stages train with (coati.dataset.preference.render_prompt: the --language template, or a
chat template for conversations and --chat_template). Answers are scored by the reward model (--rm_path: its
score of prompt + answer, tokenised as train_reward_model.py saw its pairs) and/or reward functions (--reward_fn,
as train_prompts.py calls them). Printed per model and mode: the mean reward-model score, each function's mean,
and the win rate of each model over the first one (answers to the same prompt compared by their total score;
a tie counts half). DPO, PPO and GRPO runs are compared with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys

from coati.cli import BoolOptional, accept_bool_values, check_sampling
from coati.dataset.templates import LANGUAGES
from coati.errors import UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    accept_bool_values(p)
    p.add_argument("--model_path", nargs="+", required=True,
                   help="policy folders to compare; the first is the baseline of the win rates")
    p.add_argument("--prompt_dataset", required=True, help="held-out rows holding prompts (any file load_rows reads)")
    p.add_argument("--prompt_str", default="prompt", help="key of the prompt in each row (text or message list)")
    p.add_argument("--max_prompts", type=int, default=None, help="use only the first N rows")
    p.add_argument("--rm_path", default=None, help="reward-model folder that scores the answers")
    p.add_argument("--reward_fn", action="append", default=[],
                   help="reward function FILE.py:NAME, package.module:NAME or a shipped name (repeatable)")
    p.add_argument("--greedy", action=BoolOptional, default=True, help="answer greedily (--no-greedy: skip)")
    p.add_argument("--samples", type=int, default=1, help="sampled answers per prompt and model (0: none)")
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--max_input_len", type=int, default=256, help="prompt tokens kept (the last ones)")
    p.add_argument("--max_len", type=int, default=512, help="longest prompt + answer the reward model scores")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_k", type=int, default=50)
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--batch_size", type=int, default=8, help="prompts decoded or scored together")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="prompt template language")
    p.add_argument("--chat_template", default=None,
                   help="tokenizer, ko, en, chatml or a Jinja file (default: conversations use the tokenizer's own)")
    p.add_argument("--without_prompt", action="store_true", help="send prompts as they are, without the template")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled answers (the same for every model)")
    p.add_argument("--out", default=None, help="also write the figures and every answer to this JSON file")
    p.add_argument("--trust_remote_code", action="store_true")
    return p.parse_args(argv)


def check_args(args) -> None:
    from coati.dataset.chat import check_chat_template_flag
    from coati.models.loading import check_model_role, check_model_source

    if not args.rm_path and not args.reward_fn:
        raise UserError("nothing scores the answers: give --rm_path, --reward_fn, or both")
    if args.samples < 0 or (args.samples == 0 and not args.greedy):
        raise UserError(f"--samples must be >= 0, and with --no-greedy positive (got {args.samples})")
    if args.batch_size <= 0 or args.max_input_len <= 0 or args.max_len <= 0:
        raise UserError("--batch_size, --max_input_len and --max_len must be positive")
    check_sampling(args, greedy=args.samples == 0)
    check_chat_template_flag(args.chat_template)
    if len(set(args.model_path)) < len(args.model_path):
        raise UserError("--model_path names a folder twice; give each model once (a copy of the folder compares a "
                        "model with itself)")
    for path in args.model_path:
        check_model_source(path, "--model_path")
        check_model_role(path, "--model_path", scorer=False)
    if args.rm_path:
        check_model_source(args.rm_path, "--rm_path")
        check_model_role(args.rm_path, "--rm_path", scorer=True)


def modes(args) -> list[tuple[str, bool]]:
    """(name, do_sample): 'greedy', then 'sampled' --samples times over."""
    return ([("greedy", False)] if args.greedy else []) + [("sampled", True)] * args.samples


def answer_prompts(path: str, prompts: list, args, device) -> dict[str, list[str]]:
    """mode -> answers of the model at `path`: greedy, one per prompt; sampled, --samples passes over the prompts
    one after the other."""
    import torch

    from coati.dataset.chat import choose_chat_template, end_of_turn_text
    from coati.dataset.preference import encode_prompt_ids
    from coati.dataset.prompt import LeftPadCollator
    from coati.models.loading import load_causal_lm, load_tokenizer
    from coati.models.registry import resolve_family
    from coati.models.sampling import sample

    tok = load_tokenizer(path, trust_remote_code=args.trust_remote_code)
    template = choose_chat_template(args.chat_template, tok, any(isinstance(p, list) for p in prompts))
    stop = end_of_turn_text(template, tok) if template is not None else ""
    model = load_causal_lm(path, resolve_family("auto", path), tok, trust_remote_code=args.trust_remote_code)
    model = model.to(device).eval()
    ids = [encode_prompt_ids(p, tok, template=template, language=args.language,
                             without_prompt=args.without_prompt)[-args.max_input_len:] for p in prompts]
    collate = LeftPadCollator(tok.pad_token_id)
    answers: dict[str, list[str]] = {}
    torch.manual_seed(args.seed)  # every model draws from the same stream
    for name, do_sample in modes(args):
        out = answers.setdefault(name, [])
        for start in range(0, len(ids), args.batch_size):
            batch = collate(ids[start:start + args.batch_size])
            with torch.inference_mode():
                seqs = sample(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), tok,
                              args.max_new_tokens, do_sample=do_sample, top_k=args.top_k, top_p=args.top_p,
                              temperature=args.temperature)
            for row in seqs[:, batch["input_ids"].shape[1]:].tolist():
                text = tok.decode(row, skip_special_tokens=True)
                out.append((text.split(stop)[0] if stop else text).strip())
    del model
    return answers


def reward_model_scorer(prompts: list, args, device):
    """scores(prompts, answers) -> the reward model's score of each prompt + answer, tokenised as its training
    pairs were (encode_pair). The model loads once."""
    import torch

    from coati.dataset.chat import choose_chat_template
    from coati.dataset.padding import pad
    from coati.dataset.preference import Pair, encode_pair
    from coati.models.loading import load_sequence_scorer, load_tokenizer
    from coati.models.registry import resolve_family
    from coati.models.value import ValueModel

    tok = load_tokenizer(args.rm_path, args.max_len, args.trust_remote_code, distinct_pad=True)
    template = choose_chat_template(args.chat_template, tok, any(isinstance(p, list) for p in prompts))
    rm = ValueModel(load_sequence_scorer(args.rm_path, resolve_family("auto", args.rm_path), tok,
                                         trust_remote_code=args.trust_remote_code)).to(device).eval()

    def scores(prompts: list, answers: list[str]) -> list[float]:
        seqs = []
        for prompt, answer in zip(prompts, answers):
            prompt_ids, answer_ids, _ = encode_pair(Pair(prompt, answer, answer), tok, template=template,
                                                    language=args.language, without_prompt=args.without_prompt)
            ids = prompt_ids + answer_ids
            seqs.append(ids[: args.max_len - 1] + ids[-1:] if len(ids) > args.max_len else ids)
        out = []
        for start in range(0, len(seqs), args.batch_size):
            ids, mask = pad(seqs[start:start + args.batch_size], tok.pad_token_id)
            with torch.inference_mode():
                out += rm(ids.to(device), mask.to(device)).float().cpu().tolist()
        return out

    return scores


def win_rate(scores: list[float], baseline: list[float]) -> float:
    """Share of answers scoring above the baseline's answer to the same prompt (and sample); ties count half."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline))
    return wins / max(len(scores), 1)


@exit_on_user_error
def main(args) -> dict:
    check_args(args)
    from coati.dataset.io import load_rows, require_keys_somewhere
    from coati.rewards import load_reward_fn, reward_columns, score_each

    fns = [load_reward_fn(spec) for spec in args.reward_fn]
    rows = load_rows(args.prompt_dataset, args.max_prompts, flag="--prompt_dataset")
    require_keys_somewhere(rows, [args.prompt_str], f"--prompt_dataset {args.prompt_dataset}", "set --prompt_str")
    rows = [r for r in rows if r.get(args.prompt_str)]
    prompts = [r[args.prompt_str] for r in rows]
    columns = reward_columns(rows, args.prompt_str)
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    answers = {path: answer_prompts(path, prompts, args, device) for path in args.model_path}
    rm_scores = reward_model_scorer(prompts, args, device) if args.rm_path else None

    results: dict[str, dict[str, dict]] = {}
    for path in args.model_path:
        for mode, texts in answers[path].items():
            k = len(texts) // len(prompts)  # answers per prompt in this mode
            mode_prompts = [p for _ in range(k) for p in prompts]
            figures: dict = {"answers": len(texts)}
            total = torch.zeros(len(texts))
            if args.rm_path:
                scores = torch.tensor(rm_scores(mode_prompts, texts))
                figures["rm_score"] = float(scores.mean())
                total += scores
            if fns:
                text_prompts = [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False)
                                for p in mode_prompts]
                fn_total, each = score_each(fns, None, text_prompts, texts, {c: v * k for c, v in columns.items()})
                figures.update({f"reward_{name}": float(v.double().mean()) for name, v in each.items()})
                total += fn_total
            figures["_total"] = total.tolist()
            results.setdefault(path, {})[mode] = figures
    base = args.model_path[0]
    for path in args.model_path[1:]:
        for mode, figures in results[path].items():
            figures["win_rate"] = win_rate(figures["_total"], results[base][mode]["_total"])
    lines = ["model | mode | answers | " + " | ".join(k for k in _figure_keys(results))]
    for path, by_mode in results.items():
        for mode, figures in by_mode.items():
            shown = [f"{figures[k]:.4f}" if k in figures else "-" for k in _figure_keys(results)]
            lines.append(f"{path} | {mode} | {figures['answers']} | " + " | ".join(shown))
    print("\n".join(lines))
    for by_mode in results.values():
        for figures in by_mode.values():
            figures.pop("_total")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"results": results, "answers": answers}, f, ensure_ascii=False, indent=1)
    return results


def _figure_keys(results: dict) -> list[str]:
    keys: dict[str, None] = {}
    for by_mode in results.values():
        for figures in by_mode.values():
            keys.update(dict.fromkeys(k for k in figures if k not in ("answers", "_total")))
    return list(keys)


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
