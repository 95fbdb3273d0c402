"""README.md and the .sh launchers agree with the code: every flag they name exists in the parser of the
script it belongs to, every command they show parses, and the flag tables are what tools/flag_tables.py
generates now. Parsers only: nothing is trained or loaded."""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import flag_tables  # noqa: E402

README = os.path.join(ROOT, "README.md")
SCRIPTS = flag_tables.SCRIPTS
SH_TO_SCRIPT = {"train_sft.sh": "train_sft.py", "train_rm.sh": "train_reward_model.py",
                "train_prompts.sh": "train_prompts.py"}
QUICKSTART = [
    "pip install torch==2.13.0 -r requirements.txt && bash demo.sh",
    "pip install torch==2.13.0 -r requirements-dev.txt && python -m pytest -q",
]
# Programs whose flags are not ours to check.
FOREIGN = {"pip", "pytest", "git", "cd", "export", "source", ".", "ls", "cat", "tensorboard", "rm", "mkdir"}
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")
SHELL = {"bash", "sh", "shell", "console", ""}
BENCHMARKS = ("benchmarks/run.py", "benchmarks/efficiency.py", "benchmarks/gpu_strategies.py")  # own parsers


# -- parsers ----------------------------------------------------------------------------------------------
@functools.cache
def parser_of(program: str) -> argparse.ArgumentParser:
    """The argparse parser of a script in SCRIPTS, 'torchrun', 'coati.kit', 'tools/flag_tables.py' or BENCHMARKS."""
    if program in SCRIPTS:
        return flag_tables.script_parser(program)
    if program == "torchrun":
        from torch.distributed.run import get_args_parser

        return get_args_parser()
    if program == "coati.kit":
        from coati import kit

        return flag_tables.capture_parser(lambda: kit.main(["tiny"]))
    if program == "tools/flag_tables.py":
        return flag_tables.capture_parser(lambda: flag_tables.main([]))
    if program in BENCHMARKS:
        import sys

        sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # run.py imports its neighbour workloads.py
        try:
            module = flag_tables.load_module(os.path.join(ROOT, program))
            return flag_tables.capture_parser(lambda: module.parse_args([]))
        finally:
            sys.path.remove(os.path.join(ROOT, "benchmarks"))
    raise KeyError(program)


@functools.cache
def script_module(script: str):
    return flag_tables.load_module(os.path.join(ROOT, script))


@functools.cache
def options(program: str) -> frozenset[str]:
    return frozenset(flag_tables.option_strings(parser_of(program)))


def all_options() -> frozenset[str]:
    return frozenset().union(*(options(p) for p in (*SCRIPTS, "torchrun", "coati.kit", "tools/flag_tables.py")))


# -- shell commands -----------------------------------------------------------------------------------------
def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined."""
    out, current = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def commands(text: str) -> list[list[str]]:
    """Every simple command in a shell snippet, as shlex tokens (comments dropped, split at && || ; |)."""
    found = []
    for line in logical_lines(text):
        tokens = shlex.split(line, comments=True)
        current: list[str] = []
        for tok in tokens:
            if tok in ("&&", "||", ";", "|"):
                found.append(current)
                current = []
            else:
                current.append(tok)
        found.append(current)
    return [c for c in found if c]


def classify(tokens: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(program, its arguments, torchrun's own arguments). program is a script in SCRIPTS, 'coati.kit',
    'tools/flag_tables.py', None for a program whose flags are not ours, or '?' for an unknown one."""
    i = 0
    while i < len(tokens) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[i]):
        i += 1  # VAR=value prefixes
    rest = tokens[i:]
    if not rest:
        return None, [], []
    head = os.path.basename(rest[0])
    launcher: list[str] = []
    if head == "torchrun" or (head.startswith("python") and rest[1:3] == ["-m", "torch.distributed.run"]):
        start = 1 if head == "torchrun" else 3
        j = next((k for k in range(start, len(rest)) if rest[k].endswith(".py")), None)
        if j is None:
            return "?", rest, []
        launcher, rest = rest[start:j], rest[j:]
        head = "python"
        rest = ["python", *rest]
    if head in ("python", "python3"):
        if rest[1:2] == ["-m"]:
            module = rest[2]
            if module == "coati.kit":
                return "coati.kit", rest[3:], launcher
            if module in ("pytest", "coati.summary", "venv", "pip"):
                return None, rest[3:], launcher
            return "?", rest, launcher
        script = rest[1] if len(rest) > 1 else ""
        name = script if script in ("tools/flag_tables.py", *BENCHMARKS) else os.path.basename(script)
        if name in SCRIPTS or name == "tools/flag_tables.py" or name in BENCHMARKS:
            return name, rest[2:], launcher
        return "?", rest, launcher
    if head in ("bash", "sh"):
        target = os.path.basename(rest[1]) if len(rest) > 1 else ""
        if target in SH_TO_SCRIPT:
            return SH_TO_SCRIPT[target], rest[2:], launcher
        if target in ("demo.sh", "colossalai.sh") and not any(t.startswith("--") for t in rest[2:]):
            return None, [], launcher
        return "?", rest, launcher
    if head in FOREIGN:
        return None, rest[1:], launcher
    return "?", rest, launcher


def check_command_flags(tokens: list[str], where: str) -> list[str]:
    """Problems with the flags of one command (empty when all is well)."""
    program, args, launcher = classify(tokens)
    problems = []
    if program == "?":
        flags = [t for t in tokens if t.startswith("--")]
        if flags:
            problems.append(f"{where}: unknown program in {' '.join(tokens)!r}; teach tests/test_docs.py about it")
        return problems
    for flag in (t.split("=", 1)[0] for t in launcher if t.startswith("--")):
        if flag not in options("torchrun"):
            problems.append(f"{where}: torchrun has no {flag}")
    if program is None:
        return problems
    for flag in (t.split("=", 1)[0] for t in args if t.startswith("--")):
        if flag not in options(program):
            problems.append(f"{where}: {program} has no {flag} (in {' '.join(tokens)[:120]!r})")
    return problems


def parse_problem(tokens: list[str], where: str) -> str | None:
    """Run the script's own parse_args on a command that invokes one of SCRIPTS directly."""
    program, args, _ = classify(tokens)
    if program not in SCRIPTS or not any(t.endswith(program) for t in tokens):
        return None
    module = script_module(program)
    try:
        module.parse_args(args)
    except SystemExit as err:
        if err.code not in (0, None):  # --help exits 0
            return f"{where}: {program} rejects {' '.join(args)!r}"
    return None


# -- README structure -------------------------------------------------------------------------------------
def readme_text() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def readme_parts(text: str):
    """(kind, lang, text, section_script, line_no) for code blocks ('code') and prose lines ('prose').

    A section belongs to a script when its heading names one (`train_sft.py` ...); ### inherits from ##."""
    parts = []
    h2 = h3 = None
    fence = None
    block: list[str] = []
    lang = ""
    start = 0
    for no, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.strip() == fence:
                parts.append(("code", lang, "\n".join(block), h3 if h3 is not None else h2, start))
                fence = None
            else:
                block.append(line)
            continue
        m = re.match(r"^(`{3,})(.*)$", line.strip())
        if m:
            fence, lang, block, start = m.group(1), m.group(2).strip().lower(), [], no
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)", line)
        if heading:
            named = next((s for s in SCRIPTS if s in heading.group(2)), None)
            if len(heading.group(1)) <= 2:
                h2, h3 = named, None
            else:
                h3 = named or h2
        parts.append(("prose", "", line, h3 if h3 is not None else h2, no))
    assert fence is None, "README.md has an unclosed code fence"
    return parts


def readme_blocks(text: str) -> list[tuple[str, str, str | None, int]]:
    return [(lang, body, script, no) for kind, lang, body, script, no in readme_parts(text) if kind == "code"]


def section_flag_problems(text: str, section_script: str | None, where: str) -> list[str]:
    allowed = options(section_script) if section_script else all_options()
    owner = section_script or "any coati script, torchrun or coati.kit"
    return [f"{where}: {flag} is not a flag of {owner}" for flag in FLAG.findall(text) if flag not in allowed]


# -- (a) flags named in README and the .sh files exist --------------------------------------------------
def test_every_flag_in_readme_exists_in_its_script():
    problems = []
    for kind, lang, body, script, no in readme_parts(readme_text()):
        where = f"README.md:{no}"
        if kind == "prose" or lang not in SHELL:
            problems += section_flag_problems(body, script, where)
            continue
        checked = set()
        for tokens in commands(body):
            problems += check_command_flags(tokens, where)
            checked |= {t.split("=", 1)[0] for t in tokens if t.startswith("--")}
        # Flags that sit only in shell comments belong to the section, like prose.
        leftover = " ".join(f for f in FLAG.findall(body) if f not in checked)
        problems += section_flag_problems(leftover, script, where)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("sh", sorted(SH_TO_SCRIPT))
def test_every_flag_in_stage_sh_exists(sh):
    script = SH_TO_SCRIPT[sh]
    with open(os.path.join(ROOT, sh), encoding="utf-8") as f:
        text = f.read()
    runs = [c for c in commands(text) if c[0] == "torchrun"]
    assert len(runs) == 1, f"{sh} should hold one torchrun line, found {len(runs)}"
    program, args, launcher = classify(runs[0])
    assert program == script, f"{sh} launches {program}, expected {script}"
    problems = check_command_flags(runs[0], sh)
    # Flags mentioned in the comments refer to the same script.
    comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line and
                         not line.startswith("#!"))
    problems += [f"{sh} comment: {script} has no {f}" for f in FLAG.findall(comments) if f not in options(script)]
    assert not problems, "\n".join(problems)
    assert "--model" in args and "--save_path" in args


def test_every_flag_and_command_in_demo_sh():
    with open(os.path.join(ROOT, "demo.sh"), encoding="utf-8") as f:
        text = f.read()
    cmds = commands(text)
    problems = [p for c in cmds for p in check_command_flags(c, "demo.sh")]
    problems += [p for c in cmds if (p := parse_problem(c, "demo.sh"))]
    assert not problems, "\n".join(problems)
    assert {classify(c)[0] for c in cmds} >= {"train_sft.py", "train_reward_model.py", "train_prompts.py",
                                              "inference.py"}


# -- (b) every README command that runs a script parses ------------------------------------------------------
def test_every_readme_command_parses():
    parsed, problems = 0, []
    for lang, body, _, no in readme_blocks(readme_text()):
        if lang not in SHELL:
            continue
        for tokens in commands(body):
            program, _, _ = classify(tokens)
            if program in SCRIPTS and any(t.endswith(program) for t in tokens):
                parsed += 1
                if problem := parse_problem(tokens, f"README.md:{no}"):
                    problems.append(problem)
    assert not problems, "\n".join(problems)
    assert parsed >= 10, f"only {parsed} script commands found in README.md code blocks"


def test_each_stage_has_torchrun_and_sh_examples():
    blocks = "\n".join(body for lang, body, _, _ in readme_blocks(readme_text()) if lang in SHELL)
    invoked = [classify(c) for c in commands(blocks)]
    for sh, script in SH_TO_SCRIPT.items():
        assert re.search(rf"torchrun .*{re.escape(script)}", " ".join(logical_lines(blocks))), script
        assert re.search(rf"bash {re.escape(sh)}", blocks), sh
    assert any(p == "inference.py" for p, _, _ in invoked)


# -- (c) the Quickstart's first code block ---------------------------------------------------------------------
def test_quickstart_first_block_is_exactly_the_two_commands():
    text = readme_text()
    section = text.split("\n## Quickstart\n", 1)
    assert len(section) == 2, "README.md has no '## Quickstart' section"
    m = re.search(r"^```[^\n]*\n(.*?)\n```", section[1], re.S | re.M)
    assert m, "the Quickstart has no code block"
    assert m.group(1).splitlines() == QUICKSTART


# -- (d) the flag tables are current ------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_flag_table_matches_the_parser(script):
    text = readme_text()
    begin = flag_tables.BEGIN.format(script)
    assert text.count(begin) == 1, f"README.md should hold one {begin} block"
    current = text[text.index(begin):text.index(flag_tables.END, text.index(begin)) + len(flag_tables.END)]
    assert current == flag_tables.block(script), (
        f"the {script} flag table in README.md is stale; run: python tools/flag_tables.py --update README.md")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_a_meaning(script):
    missing = [flag for flag, _, meaning in flag_tables.rows(parser_of(script)) if not meaning]
    assert not missing, f"{script}: no help text for {missing}; add help= or a GLOSSARY entry in tools/flag_tables.py"


def test_flag_table_sits_in_its_stage_section():
    for kind, _, body, script, no in readme_parts(readme_text()):
        m = re.match(r"<!-- flags: (\S+) -->", body) if kind == "prose" else None
        if m:
            assert m.group(1) == script, f"README.md:{no}: the {m.group(1)} table is in the {script} section"


# -- templates shown in README are the ones the code builds ------------------------------------------------
@pytest.mark.parametrize("language,input_text", [("ko", ""), ("ko", "{input}"), ("en", "")])
def test_readme_templates_match_build_prompt(language, input_text):
    from coati.dataset.templates import build_prompt

    expected = build_prompt("{instruction}", input_text, language).rstrip("\n")
    shown = [body for lang, body, _, _ in readme_blocks(readme_text()) if lang == "text"]
    assert expected in shown, f"README.md shows no {language} template equal to:\n{expected}"


def test_flag_tables_tool_prints_every_table(capsys):
    flag_tables.main([])
    out = capsys.readouterr().out
    for script in SCRIPTS:
        assert flag_tables.block(script) in out
