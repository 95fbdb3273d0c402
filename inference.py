"""Try a trained model: generate an answer with the training template, chat, or score with a reward model.

    python inference.py --model_path outputs/ppo --prompt "주말에 뭐 하면 좋을까요?"
    python inference.py --model_path outputs/ppo --language en              # interactive chat
    python inference.py --model_path outputs/rm --prompt "..." --answer "..."  # reward-model score
"""

from __future__ import annotations

import argparse
import os
import sys

from coati.cli import check_sampling
from coati.dataset.templates import LANGUAGES, build_prompt
from coati.errors import UserError, exit_on_user_error


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True, help="a folder written by any coati stage")
    p.add_argument("--prompt", default=None, help="instruction to answer (interactive chat when omitted)")
    p.add_argument("--input", default="", help="optional input / context for the instruction")
    p.add_argument("--answer", default=None, help="with a reward-model folder: the answer to score")
    p.add_argument("--language", default="ko", choices=LANGUAGES, help="prompt template the model was trained with")
    p.add_argument("--without_prompt", action="store_true", help="send the prompt as is, without the template")
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
    from coati.models.loading import check_model_source, is_scorer, load_tokenizer
    from coati.models.registry import read_architectures

    check_model_source(args.model_path, "--model_path")
    if not os.path.isfile(os.path.join(args.model_path, "config.json")):
        raise UserError(f"--model_path {args.model_path} holds no config.json; point it at a stage's --save_path")
    check_sampling(args, greedy=args.greedy)
    import torch

    torch.manual_seed(args.seed)
    tok = load_tokenizer(args.model_path, trust_remote_code=args.trust_remote_code)
    prompt = build_prompt(args.prompt, args.input, args.language, args.without_prompt) if args.prompt else None
    if is_scorer(read_architectures(args.model_path)):
        return score(args, tok, prompt)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model_path, trust_remote_code=args.trust_remote_code).eval()
    if prompt is not None:
        answer = generate(model, tok, prompt, args)
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
        print(generate(model, tok, build_prompt(line, "", args.language, args.without_prompt), args))
    return ""


def generate(model, tok, prompt: str, args) -> str:
    import torch

    from coati.dataset.sft import encode_prompt
    from coati.models.sampling import sample

    ids = torch.tensor([encode_prompt(tok, prompt)])
    with torch.inference_mode():  # nothing here is trained: skip autograd's per-op bookkeeping too
        out = sample(model, ids, torch.ones_like(ids), tok, args.max_new_tokens, do_sample=not args.greedy,
                     top_k=args.top_k, top_p=args.top_p, temperature=args.temperature)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def score(args, tok, prompt: str | None) -> float:
    if prompt is None or args.answer is None:
        raise UserError(f"{args.model_path} is a reward model: give --prompt and --answer to score a pair")
    import torch
    from transformers import AutoModelForSequenceClassification

    from coati.dataset.sft import encode_prompt, encode_response

    model = AutoModelForSequenceClassification.from_pretrained(
        args.model_path, trust_remote_code=args.trust_remote_code).eval()
    ids = torch.tensor([encode_prompt(tok, prompt) + encode_response(tok, args.answer)])
    with torch.no_grad():
        value = float(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0])
    print(f"{value:.4f}")
    return value


if __name__ == "__main__":
    main(parse_args())
