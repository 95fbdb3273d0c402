"""Try a trained model: generate an answer with the training template, chat, or score with a reward model.

    python inference.py --model_path outputs/ppo --prompt "주말에 뭐 하면 좋을까요?"
    python inference.py --model_path outputs/ppo --language en              # interactive chat
    python inference.py --model_path outputs/rm --prompt "..." --answer "..."  # reward-model score

When the folder's tokenizer carries a chat template (a stage trained on conversations, or with --chat_template,
saves it there), the prompt is rendered as one user turn of a conversation in that template, generation stops
at the template's end of turn, and a reward model scores prompt and answer as it was trained to; otherwise the
--language instruction template wraps the prompt, as in training.
"""

from __future__ import annotations

import argparse
import os
import sys

from coati.cli import accept_bool_values, check_sampling
from coati.dataset.templates import LANGUAGES, build_prompt
from coati.errors import UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    accept_bool_values(p)
    p.add_argument("--model_path", required=True, help="a folder written by any coati stage")
    p.add_argument("--prompt", default=None, help="instruction to answer (interactive chat when omitted)")
    p.add_argument("--input", default="", help="optional input / context for the instruction")
    p.add_argument("--answer", default=None, help="with a reward-model folder: the answer to score")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="prompt template the model was trained with")
    p.add_argument("--without_prompt", action="store_true", help="send the prompt as is, without the template")
    p.add_argument("--chat_template", default=None,
                   help="render the prompt as a conversation in this template (tokenizer, ko, en, chatml or a Jinja "
                        "file); default: the folder's own chat template when it has one, else --language's")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--greedy", action="store_true", help="pick the most likely token instead of sampling")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top_k", type=int, default=50)
    p.add_argument("--top_p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust_remote_code", action="store_true")
    return p.parse_args(argv)


@exit_on_user_error
def main(args) -> str | float:
    from coati.dataset.chat import check_chat_template_flag, load_chat_template, tokenizer_template
    from coati.models.loading import check_model_source, is_scorer, load_tokenizer
    from coati.models.registry import read_architectures

    check_model_source(args.model_path, "--model_path")
    if not os.path.isfile(os.path.join(args.model_path, "config.json")):
        raise UserError(f"--model_path {args.model_path} holds no config.json; point it at a stage's --save_path")
    check_sampling(args, greedy=args.greedy)
    check_chat_template_flag(args.chat_template)
    import torch

    torch.manual_seed(args.seed)
    tok = load_tokenizer(args.model_path, trust_remote_code=args.trust_remote_code)
    choice = args.chat_template or ("tokenizer" if tokenizer_template(tok) and not args.without_prompt else None)
    template = load_chat_template(choice, tok) if choice else None
    if is_scorer(read_architectures(args.model_path)):
        return score(args, tok, template)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model_path, trust_remote_code=args.trust_remote_code).eval()
    if args.prompt is not None:
        answer = generate(model, tok, prompt_ids(tok, args.prompt, args.input, template, args), template, args)
        print(answer)
        return answer
    print("interactive chat; an empty line or Ctrl-D quits", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        print(generate(model, tok, prompt_ids(tok, line, "", template, args), template, args))
    return ""


def prompt_ids(tok, prompt: str, input_text: str, template, args) -> list[int]:
    """The prompt's tokens: one user turn with the generation prompt in `template` (as PPO renders a
    conversation prompt), or the --language instruction template when there is none."""
    from coati.dataset.preference import encode_prompt_ids
    from coati.dataset.sft import encode_prompt

    if template is None:
        return encode_prompt(tok, build_prompt(prompt, input_text, args.language, args.without_prompt))
    return encode_prompt_ids([{"role": "user", "content": _joined(prompt, input_text)}], tok, template=template)


def _joined(prompt: str, input_text: str) -> str:
    return f"{prompt.strip()}\n\n{input_text.strip()}" if input_text.strip() else prompt.strip()


def generate(model, tok, ids: list[int], template, args) -> str:
    """Sample an answer; with a chat template, stop at its end of turn (a single token ends the sampling, a
    longer marker cuts the text) as well as at EOS."""
    import types

    import torch

    from coati.dataset.chat import end_of_turn_text
    from coati.models.sampling import sample

    stop_text = end_of_turn_text(template, tok) if template is not None else ""
    stop_ids = tok(stop_text, add_special_tokens=False)["input_ids"] if stop_text else []
    stopper = tok
    if len(stop_ids) == 1 and stop_ids[0] != tok.eos_token_id:
        # sample() stops at its tokenizer's eos_token_id; the marker's token stands in for it. Pad set to the same
        # id leaves the real EOS drawable; it is cut below.
        stopper = types.SimpleNamespace(eos_token_id=stop_ids[0], pad_token_id=stop_ids[0])
    x = torch.tensor([ids])
    with torch.inference_mode():  # nothing here is trained: skip autograd's per-op bookkeeping too
        out = sample(model, x, torch.ones_like(x), stopper, args.max_new_tokens, do_sample=not args.greedy,
                     top_k=args.top_k, top_p=args.top_p, temperature=args.temperature)
    new = out[0, x.shape[1]:].tolist()
    ends = {tok.eos_token_id, *stop_ids[:1]} if len(stop_ids) == 1 else {tok.eos_token_id}
    new = new[: next((i for i, t in enumerate(new) if t in ends), len(new))]
    text = tok.decode(new, skip_special_tokens=True)
    if len(stop_ids) > 1 and stop_text in text:
        text = text[: text.index(stop_text)]
    return text.strip()


def score(args, tok, template) -> float:
    if args.prompt is None or args.answer is None:
        raise UserError(f"{args.model_path} is a reward model: give --prompt and --answer to score a pair")
    import torch
    from transformers import AutoModelForSequenceClassification

    from coati.dataset.preference import Pair, encode_pair
    from coati.dataset.sft import encode_prompt, encode_response

    model = AutoModelForSequenceClassification.from_pretrained(
        args.model_path, trust_remote_code=args.trust_remote_code).eval()
    if template is None:
        prompt = build_prompt(args.prompt, args.input, args.language, args.without_prompt)
        ids = torch.tensor([encode_prompt(tok, prompt) + encode_response(tok, args.answer)])
    else:  # encoded as train_reward_model.py encodes a conversation pair
        turn = [{"role": "user", "content": _joined(args.prompt, args.input)}]
        prompt_part, answer, _ = encode_pair(Pair(turn, args.answer, args.answer), tok, template=template)
        ids = torch.tensor([prompt_part + answer])
    with torch.no_grad():
        value = float(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0])
    print(f"{value:.4f}")
    return value


if __name__ == "__main__":
    main(parse_args())
