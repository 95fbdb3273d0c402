"""Markdown tables of every command-line flag, read from the scripts' own argparse parsers.

    python tools/flag_tables.py                  # print the tables
    python tools/flag_tables.py --update         # rewrite the marked tables of docs/flags.md in place
    python tools/flag_tables.py --update PAGE    # ... of another page

Each script's `parse_args` is called with `ArgumentParser.parse_args` patched to hand back the parser
instead of parsing, so nothing is refactored and the tables always describe the code as it is.
In docs/flags.md a table sits between `<!-- flags: SCRIPT -->` and `<!-- /flags -->`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train_sft.py", "train_reward_model.py", "train_prompts.py", "train_dpo.py", "inference.py")
BEGIN = "<!-- flags: {} -->"
END = "<!-- /flags -->"
FLAGS_PAGE = "docs/flags.md"  # the page that holds the tables, relative to ROOT

# Meanings for flags whose argparse help is empty; argparse help wins when there is one.
GLOSSARY = {
    "max_epochs": "passes over the training data",
    "weight_decay": "AdamW weight decay",
    "seed": "random seed",
    "lora_alpha": "LoRA scaling numerator (the update is scaled by alpha / rank)",
    "lora_dropout": "dropout on the LoRA branch",
    "use_tensorboard": "also write TensorBoard event files (`tensorboard/` in the log folder)",
    "use_wandb": "also log to Weights & Biases (imported only when set)",
    "num_episodes": "PPO episodes: collect a buffer of rollouts, then update on it",
    "actor_lr": "actor (policy) learning rate",
    "critic_lr": "critic (value model) learning rate",
    "max_new_tokens": "longest generated response, in tokens",
    "top_k": "sample only among the k most likely tokens (0: no limit)",
    "top_p": "nucleus sampling: the smallest token set with this much probability",
    "temperature": "sampling temperature (lower: closer to greedy)",
    "trust_remote_code": "allow model code from the checkpoint",
}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser captured")
        self.parser = parser


def load_module(path: str):
    """Import a script by its file path (scripts are not in a package)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    name = "coati_script_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capture_parser(call) -> argparse.ArgumentParser:
    """The parser that `call()` builds, taken at its parse_args call instead of parsing."""
    original = argparse.ArgumentParser.parse_args

    def grab(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = grab
    try:
        call()
    except _Captured as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise RuntimeError(f"{call} never called ArgumentParser.parse_args")


def script_parser(script: str) -> argparse.ArgumentParser:
    """The parser of one of SCRIPTS (a file name in the repository root, or a path)."""
    module = load_module(script if os.path.isabs(script) else os.path.join(ROOT, script))
    return capture_parser(lambda: module.parse_args([]))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option a parser accepts, sub-commands' included (`--no-x` for BooleanOptionalAction too)."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found


def _number(value) -> str:
    text = repr(value)
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if action.default else "off"
    if action.default is None:
        return "unset"
    if action.default == "":
        return "empty"
    if isinstance(action.default, bool):
        return "on" if action.default else "off"
    if isinstance(action.default, (int, float)):
        return f"`{_number(action.default)}`"
    return f"`{action.default}`"


def _meaning(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or GLOSSARY.get(action.dest, "")
    if "%(" in text:
        text = text % {**vars(action), "prog": parser.prog}
    text = " ".join(text.split())
    text = re.sub(r"(?<![`\w-])(--[a-z][\w-]*)", r"`\1`", text)  # flags named in the help read as code
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += ("; " if text else "") + "one of " + ", ".join(f"`{c}`" for c in action.choices)
    return text.replace("|", "\\|")


def rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    """(flag, default, meaning) for every documented option, in the parser's order; -h/--help left out."""
    out = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        names = " / ".join(f"`{s}`" for s in action.option_strings)
        out.append((names, _default(action), _meaning(action, parser)))
    return out


def table(script: str) -> str:
    lines = ["| Flag | Default | Meaning |", "|---|---|---|"]
    lines += [f"| {flag} | {default} | {meaning} |" for flag, default, meaning in rows(script_parser(script))]
    return "\n".join(lines)


def block(script: str) -> str:
    """The marked block as it appears in docs/flags.md."""
    return f"{BEGIN.format(script)}\n{table(script)}\n{END}"


def update(page: str) -> list[str]:
    """Rewrite every marked table in `page`; returns the scripts whose tables changed."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    changed = []
    for script in SCRIPTS:
        pattern = re.compile(re.escape(BEGIN.format(script)) + r".*?" + re.escape(END), re.S)
        new = block(script)
        match = pattern.search(text)
        if match and match.group(0) != new:
            text = text[: match.start()] + new + text[match.end():]
            changed.append(script)
    with open(page, "w", encoding="utf-8") as f:
        f.write(text)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tools/flag_tables.py", description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", default=list(SCRIPTS), help="scripts to tabulate")
    parser.add_argument("--update", metavar="PAGE", nargs="?", const=os.path.join(ROOT, FLAGS_PAGE), default=None,
                        help=f"rewrite the marked tables of this page ({FLAGS_PAGE} when none is named) instead of "
                             "printing")
    args = parser.parse_args(argv)
    if args.update:
        changed = update(args.update)
        print(f"{args.update}: updated {', '.join(changed)}" if changed else f"{args.update}: tables up to date")
        return
    for script in args.scripts:
        print(f"### {script}\n\n{block(script)}\n")


if __name__ == "__main__":
    main()
