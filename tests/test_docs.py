"""README.md, every page in docs/ and the .sh launchers agree with the code: every flag they name exists in the
parser of the script it belongs to, every command they show parses with that program's own parser, every page
is linked from the README and every relative link resolves, and the flag tables in docs/flags.md are what
tools/flag_tables.py generates now. Parsers only: nothing is trained or loaded."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import shlex
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import flag_tables  # noqa: E402

README = "README.md"
FLAGS_PAGE = flag_tables.FLAGS_PAGE  # docs/flags.md
README_MAX_LINES = 300
SCRIPTS = flag_tables.SCRIPTS
SH_TO_SCRIPT = {"train_sft.sh": "train_sft.py", "train_rm.sh": "train_reward_model.py",
                "train_prompts.sh": "train_prompts.py", "train_dpo.sh": "train_dpo.py"}
QUICKSTART = [
    "pip install torch==2.13.0 -r requirements.txt && bash demo.sh",
    "pip install torch==2.13.0 -r requirements-dev.txt && python -m pytest -q",
]
# Programs whose flags are not ours to check.
FOREIGN = {"pip", "pytest", "git", "cd", "export", "source", ".", "ls", "cat", "tensorboard", "rm", "mkdir"}
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")
SHELL = {"bash", "sh", "shell", "console", ""}
BENCHMARKS = ("benchmarks/run.py", "benchmarks/efficiency.py", "benchmarks/gpu_strategies.py",
              "benchmarks/real_shapes.py")  # own parsers
# Shell commands at the start of an inline code span (`python ...`, `torchrun ...`, `bash ...`).
INLINE_COMMAND = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:python3?|torchrun|bash|sh)\s")


# -- parsers ----------------------------------------------------------------------------------------------
@functools.cache
def parser_of(program: str) -> argparse.ArgumentParser:
    """The argparse parser of a script in SCRIPTS, 'torchrun', 'coati.kit', 'coati.memory', 'tools/flag_tables.py' or
    BENCHMARKS."""
    if program in SCRIPTS:
        return flag_tables.script_parser(program)
    if program == "torchrun":
        from torch.distributed.run import get_args_parser

        return get_args_parser()
    if program == "coati.kit":
        from coati import kit

        return flag_tables.capture_parser(lambda: kit.main(["tiny"]))
    if program == "coati.evaluate":
        from coati import evaluate

        return flag_tables.capture_parser(lambda: evaluate.parse_args([]))
    if program == "coati.memory":
        from coati import memory

        return flag_tables.capture_parser(lambda: memory.parse_args([]))
    if program == "tools/flag_tables.py":
        return flag_tables.capture_parser(lambda: flag_tables.main([]))
    if program == "coati.data":
        from coati import data

        return flag_tables.capture_parser(lambda: data.parse_args([]))
    if program in BENCHMARKS:
        module = script_module(program)
        with neighbours_importable(program):
            return flag_tables.capture_parser(lambda: module.parse_args([]))
    raise KeyError(program)


@contextlib.contextmanager
def neighbours_importable(script: str):
    """benchmarks/run.py imports its neighbour workloads.py, at import and inside parse_args."""
    folder = os.path.join(ROOT, os.path.dirname(script))
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


@functools.cache
def script_module(script: str):
    """A script in SCRIPTS or BENCHMARKS, imported by path."""
    with neighbours_importable(script):
        return flag_tables.load_module(os.path.join(ROOT, script))


@functools.cache
def options(program: str) -> frozenset[str]:
    return frozenset(flag_tables.option_strings(parser_of(program)))


def all_options() -> frozenset[str]:
    programs = (*SCRIPTS, "torchrun", "coati.kit", "coati.data", "coati.evaluate", "coati.memory",
                "tools/flag_tables.py")
    return frozenset().union(*(options(p) for p in programs))


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
    if head == "srun" and "torchrun" in rest:  # SLURM starts one torchrun agent per node
        rest, head = rest[rest.index("torchrun"):], "torchrun"
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
            if module in ("coati.kit", "coati.data", "coati.evaluate", "coati.memory"):
                return module, rest[3:], launcher
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


def parse_problem(tokens: list[str], where: str) -> tuple[bool, str | None]:
    """Parse one command with the parser of the program it runs: a script's own parse_args for SCRIPTS and
    BENCHMARKS, the captured parser for coati.kit and tools/flag_tables.py, torchrun's for torchrun's own
    arguments. Returns (whether a parser of ours ran, the problem or None)."""
    program, args, launcher = classify(tokens)
    if program in (None, "?"):
        return False, None
    problems = []
    if launcher:
        try:
            parser_of("torchrun").parse_args([*launcher, program, *args])
        except SystemExit as err:
            if err.code not in (0, None):
                problems.append(f"torchrun rejects {' '.join(launcher)!r}")
    ran = not (program in SCRIPTS and not any(t.endswith(program) for t in tokens))
    if ran:  # not for a .sh launcher, which holds its script's required flags itself
        parse = script_module(program).parse_args if program in (*SCRIPTS, *BENCHMARKS) else parser_of(
            program).parse_args
        try:
            with neighbours_importable(program):
                parse(args)
        except SystemExit as err:
            if err.code not in (0, None):  # --help exits 0
                problems.append(f"{program} rejects {' '.join(args)!r}")
    return ran, (f"{where}: " + "; ".join(problems)) if problems else None


# -- the pages -----------------------------------------------------------------------------------------------
def doc_pages() -> list[str]:
    """Every page in docs/, as a path relative to ROOT."""
    folder = os.path.join(ROOT, "docs")
    return sorted(f"docs/{n}" for n in os.listdir(folder) if n.endswith(".md")) if os.path.isdir(folder) else []


PAGES = [README, *doc_pages()]
# Pages whose commands are checked too, though their prose may name flags of programs we do not parse.
COMMAND_ONLY_PAGES = ["benchmarks/README.md"]


def page_text(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def readme_text() -> str:
    return page_text(README)


def page_parts(text: str, page: str = README):
    """(kind, lang, text, section_script, line_no) for code blocks ('code') and prose lines ('prose').

    A section belongs to a script when its heading names one (`train_sft.py` ...); a deeper heading inherits
    from the one above it unless it names a script itself."""
    parts = []
    named_at: dict[int, str | None] = {}  # heading level -> the script it names
    fence = None
    block: list[str] = []
    lang = ""
    start = 0

    def section() -> str | None:
        return next((s for _, s in sorted(named_at.items(), reverse=True) if s is not None), None)

    for no, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.strip() == fence:
                parts.append(("code", lang, "\n".join(block), section(), start))
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
            level = len(heading.group(1))
            named_at = {k: v for k, v in named_at.items() if k < level}
            named_at[level] = next((s for s in SCRIPTS if s in heading.group(2)), None)
        parts.append(("prose", "", line, section(), no))
    assert fence is None, f"{page} has an unclosed code fence"
    return parts


def readme_parts(text: str):
    return page_parts(text, README)


def page_blocks(page: str) -> list[tuple[str, str, str | None, int]]:
    return [(lang, body, script, no) for kind, lang, body, script, no in page_parts(page_text(page), page)
            if kind == "code"]


def inline_commands(line: str) -> list[str]:
    """The inline code spans of a prose line that are shell commands."""
    return [span for span in re.findall(r"`([^`\n]+)`", line) if INLINE_COMMAND.match(span)]


def page_commands(page: str) -> list[tuple[list[str], int, bool]]:
    """(tokens, line, in a code block) for every command a page shows: shell code blocks and inline spans."""
    found = []
    for kind, lang, body, _, no in page_parts(page_text(page), page):
        if kind == "code" and lang in SHELL:
            found += [(tokens, no, True) for tokens in commands(body)]
        elif kind == "prose":
            found += [(tokens, no, False) for span in inline_commands(body) for tokens in commands(span)]
    return found


def section_flag_problems(text: str, section_script: str | None, where: str) -> list[str]:
    allowed = options(section_script) if section_script else all_options()
    owner = section_script or "any coati script, torchrun, coati.kit, coati.evaluate or coati.memory"
    return [f"{where}: {flag} is not a flag of {owner}" for flag in FLAG.findall(text) if flag not in allowed]


def links(text: str) -> list[tuple[str, int]]:
    """(target, line) of every markdown link and image outside code blocks and code spans."""
    found = []
    for kind, _, body, _, no in page_parts(text):
        if kind == "prose":
            prose = re.sub(r"`[^`\n]*`", "", body)
            found += [(m.group(1), no) for m in re.finditer(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    found, repeats = set(), {}
    for kind, _, body, _, _ in page_parts(text):
        heading = re.match(r"^#{1,6}\s+(.*)", body) if kind == "prose" else None
        if heading:
            base = slug(heading.group(1))
            if base in repeats:
                repeats[base] += 1
                found.add(f"{base}-{repeats[base]}")
            else:
                repeats[base] = 0
                found.add(base)
    return found


# -- (a) flags named in the pages and the .sh files exist --------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_flag_in_the_page_exists_in_its_script(page):
    problems = []
    for kind, lang, body, script, no in page_parts(page_text(page), page):
        where = f"{page}:{no}"
        if kind == "prose":
            checked = set()
            for span in inline_commands(body):
                for tokens in commands(span):
                    problems += check_command_flags(tokens, where)
                    checked |= {t.split("=", 1)[0] for t in tokens if t.startswith("--")}
            leftover = " ".join(f for f in FLAG.findall(body) if f not in checked)
            problems += section_flag_problems(leftover, script, where)
            continue
        if lang not in SHELL:
            problems += section_flag_problems(body, script, where)
            continue
        checked = set()
        for tokens in commands(body):
            problems += check_command_flags(tokens, where)
            checked |= {t.split("=", 1)[0] for t in tokens if t.startswith("--")}
        # Flags that sit only in shell comments belong to the section, like prose; #SBATCH lines are sbatch's.
        comments = "\n".join(line for line in body.splitlines() if not line.startswith("#SBATCH"))
        leftover = " ".join(f for f in FLAG.findall(comments) if f not in checked)
        problems += section_flag_problems(leftover, script, where)
    assert not problems, "\n".join(problems)


def test_prose_flags_are_checked_against_their_section():
    """The section logic itself: a flag of another script in a script's section is caught."""
    text = "## Stage 2 (`train_reward_model.py`)\n\nUse `--loss_fn` and `--output_str`.\n"
    flagged = [p for kind, _, body, script, no in page_parts(text) if kind == "prose"
               for p in section_flag_problems(body, script, f"x:{no}")]
    assert flagged == ["x:3: --output_str is not a flag of train_reward_model.py"]
    assert inline_commands("run `python train_sft.py --help` or `pip install x`") == ["python train_sft.py --help"]


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
    problems += [p for c in cmds if (p := parse_problem(c, "demo.sh")[1])]
    assert not problems, "\n".join(problems)
    assert {classify(c)[0] for c in cmds} >= {"train_sft.py", "train_reward_model.py", "train_prompts.py",
                                              "inference.py"}


# -- (b) every command in the pages parses with its program's own parser -----------------------------------
@pytest.mark.parametrize("page", PAGES + COMMAND_ONLY_PAGES)
def test_every_command_parses(page):
    problems = []
    for tokens, no, _ in page_commands(page):
        where = f"{page}:{no}"
        program = classify(tokens)[0]
        if page in COMMAND_ONLY_PAGES:
            if program == "?":
                continue  # a program this test does not know; its prose is not ours to police
            problems += check_command_flags(tokens, where)
        _, problem = parse_problem(tokens, where)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_enough_commands_are_parsed():
    parsed = {page: sum(parse_problem(tokens, page)[0] for tokens, _, _ in page_commands(page)) for page in PAGES}
    assert sum(parsed.values()) >= 25, parsed
    assert parsed[README] >= 4, f"README.md should show one parsed command per stage and inference.py: {parsed}"


def test_a_bad_command_is_caught():
    assert parse_problem(["python", "train_sft.py", "--dataset", "x", "--max_epochs", "many"], "x:1")[1]
    assert parse_problem(["torchrun", "--nproc_per_node", "2", "train_sft.py"], "x:1")[1]  # --dataset is required
    assert parse_problem(["python", "-m", "coati.kit", "tiny", "--model", "gpt2"], "x:1")[1]  # --out is required
    assert check_command_flags(["bash", "train_rm.sh", "--no_such_flag"], "x:1")
    assert not parse_problem(["python", "train_sft.py", "--dataset", "x", "--max_epochs", "2"], "x:1")[1]


def test_each_stage_has_torchrun_and_sh_examples():
    blocks = "\n".join(body for page in PAGES for lang, body, _, _ in page_blocks(page) if lang in SHELL)
    invoked = [classify(c) for c in commands(blocks)]
    for sh, script in SH_TO_SCRIPT.items():
        assert re.search(rf"torchrun .*{re.escape(script)}", " ".join(logical_lines(blocks))), script
        assert re.search(rf"bash {re.escape(sh)}", blocks), sh
    assert any(p == "inference.py" for p, _, _ in invoked)


def test_readme_shows_one_torchrun_example_per_stage_in_its_section():
    for script in SH_TO_SCRIPT.values():
        shown = [no for lang, body, section, no in page_blocks(README) if lang in SHELL and section == script
                 for tokens in commands(body) if tokens[0] == "torchrun" and classify(tokens)[0] == script]
        assert shown, f"README.md has no torchrun example of {script} in a section named after it"


# -- (c) the README: short, and it opens with the Quickstart -----------------------------------------------
def test_quickstart_first_block_is_exactly_the_two_commands():
    text = readme_text()
    section = text.split("\n## Quickstart\n", 1)
    assert len(section) == 2, "README.md has no '## Quickstart' section"
    m = re.search(r"^```[^\n]*\n(.*?)\n```", section[1], re.S | re.M)
    assert m, "the Quickstart has no code block"
    assert m.group(1).splitlines() == QUICKSTART


def test_readme_opens_with_the_quickstart():
    parts = readme_parts(readme_text())
    headings = [(body, no) for kind, _, body, _, no in parts if kind == "prose" and re.match(r"^##?\s", body)]
    assert headings[0][0].startswith("# "), "README.md should start with its title"
    assert headings[1][0] == "## Quickstart", f"the first section of README.md is {headings[1][0]!r}"
    assert headings[1][1] <= 10, "the intro before the Quickstart should be a few lines"
    first_block = next((lang, body) for kind, lang, body, _, _ in parts if kind == "code")
    assert first_block == ("bash", "\n".join(QUICKSTART)), "the Quickstart block must be the README's first"


def test_readme_is_at_most_300_lines():
    n = len(readme_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move detail into docs/ (at most {README_MAX_LINES})"


# -- (d) every page is linked, and every relative link resolves -------------------------------------------
def test_every_docs_page_is_linked_from_the_readme():
    pages = doc_pages()
    assert FLAGS_PAGE in pages
    linked = {os.path.normpath(target.split("#", 1)[0]) for target, _ in links(readme_text())}
    missing = [p for p in pages if os.path.normpath(p) not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", PAGES + COMMAND_ONLY_PAGES)
def test_every_relative_link_resolves(page):
    problems = []
    for target, no in links(page_text(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, resolved)):
            problems.append(f"{page}:{no}: {target} points at {resolved}, which does not exist")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(page_text(resolved)):
            problems.append(f"{page}:{no}: {resolved} has no heading for #{anchor}")
    assert not problems, "\n".join(problems)


def test_anchor_slugs_follow_github():
    text = "# A\n## Stage 1: SFT (`train_sft.py`)\n## Memory: an ESTIMATE, not a measurement\n## A\n"
    assert anchors(text) == {"a", "stage-1-sft-train_sftpy", "memory-an-estimate-not-a-measurement", "a-1"}


# -- (e) the flag tables are current ------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_flag_table_matches_the_parser(script):
    text = page_text(FLAGS_PAGE)
    begin = flag_tables.BEGIN.format(script)
    assert text.count(begin) == 1, f"{FLAGS_PAGE} should hold one {begin} block"
    current = text[text.index(begin):text.index(flag_tables.END, text.index(begin)) + len(flag_tables.END)]
    assert current == flag_tables.block(script), (
        f"the {script} flag table in {FLAGS_PAGE} is stale; run: python tools/flag_tables.py --update")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_has_a_meaning(script):
    missing = [flag for flag, _, meaning in flag_tables.rows(parser_of(script)) if not meaning]
    assert not missing, f"{script}: no help text for {missing}; add help= or a GLOSSARY entry in tools/flag_tables.py"


def test_flag_table_sits_in_its_stage_section():
    for page in PAGES:
        for kind, _, body, script, no in page_parts(page_text(page), page):
            m = re.match(r"<!-- flags: (\S+) -->", body) if kind == "prose" else None
            if m:
                assert page == FLAGS_PAGE, f"{page}:{no}: flag tables belong in {FLAGS_PAGE}"
                assert m.group(1) == script, f"{page}:{no}: the {m.group(1)} table is in the {script} section"


def test_flag_tables_tool_updates_a_stale_page(tmp_path):
    stale = tmp_path / "flags.md"
    stale.write_text("# x\n\n<!-- flags: inference.py -->\n| old |\n<!-- /flags -->\n", encoding="utf-8")
    assert flag_tables.update(str(stale)) == ["inference.py"]
    assert flag_tables.block("inference.py") in stale.read_text(encoding="utf-8")


# -- templates shown in the docs are the ones the code builds ----------------------------------------------
@pytest.mark.parametrize("language,input_text", [("ko", ""), ("ko", "{input}"), ("en", "")])
def test_documented_templates_match_build_prompt(language, input_text):
    from coati.dataset.templates import build_prompt

    expected = build_prompt("{instruction}", input_text, language).rstrip("\n")
    shown = [body for page in PAGES for lang, body, _, _ in page_blocks(page) if lang == "text"]
    assert expected in shown, f"no page shows a {language} template equal to:\n{expected}"


def test_flag_tables_tool_prints_every_table(capsys):
    flag_tables.main([])
    out = capsys.readouterr().out
    for script in SCRIPTS:
        assert flag_tables.block(script) in out
