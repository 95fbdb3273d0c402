"""Rewards as code: plain Python functions that score decoded answers, instead of a reward model.

A reward function is called once per batch as NAME(prompts, responses, **columns) and returns one number
per answer:
- prompts: the rows' prompt texts as written in the data (before any instruction template), one per
  answer, so a prompt sampled G times appears G times;
- responses: the decoded answers, aligned with prompts;
- columns: every other column of the prompt rows (e.g. `answer`), as lists aligned with prompts.
A function should take **kwargs so it ignores the columns it does not use.

Functions are named on the command line as FILE.py:NAME, package.module:NAME, or the bare name of a
function shipped here (exact_answer, format_check, length_penalty).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence

import torch

from coati.errors import UserError

RewardFn = Callable[..., Sequence[float]]

# `답:` / `Answer:` at the start of a line; the answer is the rest of that line
_MARKER = re.compile(r"^[ \t]*(?:답|answer)[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_QUOTES = "'\"‘’“”「」『』`"
_TRAILING = ".。!！?？,;:"


# --- loading ---------------------------------------------------------------------------------------


def load_reward_fn(spec: str, flag: str = "--reward_fn") -> RewardFn:
    """The callable named by spec: FILE.py:NAME, package.module:NAME or a shipped function's bare name.

    Any problem (bad form, file or module missing or failing to import, no such name, not callable) is a
    UserError of one line naming flag and spec.
    """
    if ":" not in spec:
        if spec in SHIPPED:
            return SHIPPED[spec]
        raise UserError(f"{flag} {spec!r}: give FILE.py:NAME or package.module:NAME, or one of the shipped "
                        f"functions {', '.join(SHIPPED)}")
    where, name = spec.rsplit(":", 1)
    if not where or not name.isidentifier():
        raise UserError(f"{flag} {spec!r}: give FILE.py:NAME or package.module:NAME, NAME an identifier")
    module = _load_file(where, spec, flag) if where.endswith(".py") else _load_module(where, spec, flag)
    if not hasattr(module, name):
        raise UserError(f"{flag} {spec!r}: {where} defines no {name!r}; check the name after the colon")
    fn = getattr(module, name)
    if not callable(fn):
        raise UserError(f"{flag} {spec!r}: {name} in {where} is a {type(fn).__name__}, not a function")
    return fn


def _load_file(path: str, spec: str, flag: str):
    if not os.path.isfile(path):
        raise UserError(f"{flag} {spec!r}: file {path} does not exist")
    # a name per absolute path, so two files that are both called rewards.py do not replace each other
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(f"coati_reward_{digest}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:
        raise UserError(f"{flag} {spec!r}: importing {path} failed: {_one_line(err)}") from err
    return module


def _load_module(name: str, spec: str, flag: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise UserError(f"{flag} {spec!r}: no module {err.name!r}; install it or give a FILE.py") from err
    except Exception as err:
        raise UserError(f"{flag} {spec!r}: importing {name} failed: {_one_line(err)}") from err


# --- calling ---------------------------------------------------------------------------------------


def reward_columns(rows: Sequence[dict], prompt_key: str) -> dict[str, list]:
    """Every column of rows except prompt_key, as lists aligned with rows (None where a row lacks it)."""
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(k for k in row if k != prompt_key))
    return {k: [row.get(k) for row in rows] for k in keys}


def score_each(
    fns: Sequence[RewardFn],
    weights: Sequence[float] | None,
    prompts: Sequence[str],
    responses: Sequence[str],
    columns: dict[str, Sequence] | None = None,
    flag: str = "--reward_weights",
    row_names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Score N answers with every function and add the scores up.

    prompts, responses: N texts each; columns: name -> N values. Returns (total, each): total (N,) the
    weighted sum of the functions' scores; each: name -> (N,) that function's unweighted scores, kept per
    answer so a trainer can average them over a whole episode and over processes; all float32. weights None
    means 1 for each function; a count other than len(fns) is a UserError naming flag.
    A function that raises, returns a count other than N, or a value that is not a finite number stops the
    run with a UserError of one line naming the function and the row (counted from 1, with the start of
    its prompt); row_names, one per answer, name the rows instead (e.g. "--prompt_dataset row 17").
    """
    columns = dict(columns or {})
    n = len(prompts)
    if len(responses) != n or any(len(v) != n for v in columns.values()):
        raise ValueError("prompts, responses and every column must have the same length")
    if weights is None:
        weights = [1.0] * len(fns)
    if len(weights) != len(fns):
        raise UserError(f"{flag} has {len(weights)} value(s) but {len(fns)} reward function(s) are given; "
                        "give one weight per function, in the same order")
    total = torch.zeros(n, dtype=torch.float64)
    each: dict[str, torch.Tensor] = {}
    for fn, weight in zip(fns, weights):
        scores = torch.tensor(_scores(fn, prompts, responses, columns, row_names), dtype=torch.float64)
        key, k = _name(fn), 2
        while key in each:  # two functions with one name (from different files) keep both figures
            key, k = f"{_name(fn)}#{k}", k + 1
        each[key] = scores.float()
        total += float(weight) * scores
    return total.float(), each


def _scores(fn: RewardFn, prompts, responses, columns, row_names=None) -> list[float]:
    name, n = _name(fn), len(prompts)
    try:
        values = fn(list(prompts), list(responses), **{k: list(v) for k, v in columns.items()})
    except Exception as err:
        row = _failing_row(fn, prompts, responses, columns)
        where = f" on {_row(row, prompts, row_names)}" if row is not None else f" on a batch of {n} answers"
        raise UserError(f"reward function {name} raised{where}: {_one_line(err)}") from err
    if isinstance(values, torch.Tensor):
        values = values.tolist() if values.dim() == 1 else [values.tolist()]
    try:
        count = len(values)
    except TypeError:
        raise UserError(f"reward function {name} returned a {type(values).__name__}, not one number per "
                        f"answer (a list of {n})") from None
    if count != n:
        raise UserError(f"reward function {name} returned {count} values for {n} answers; return one "
                        "number per answer, in order")
    scores = []
    for i, value in enumerate(values):
        if not isinstance(value, numbers.Real):
            raise UserError(f"reward function {name} returned {_excerpt(repr(value))} (a "
                            f"{type(value).__name__}, not a number) for {_row(i, prompts, row_names)}")
        if not math.isfinite(value):
            raise UserError(f"reward function {name} returned {value} for {_row(i, prompts, row_names)}; "
                            "rewards must be finite")
        scores.append(float(value))
    return scores


def _failing_row(fn, prompts, responses, columns) -> int | None:
    """The first row that raises on its own, to name in the error; None when each row alone passes."""
    for i in range(len(prompts)):
        try:
            fn([prompts[i]], [responses[i]], **{k: [v[i]] for k, v in columns.items()})
        except Exception:
            return i
    return None


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _row(i: int, prompts, row_names=None) -> str:
    return f"{row_names[i] if row_names else f'row {i + 1}'} (prompt {_excerpt(prompts[i])})"


def _excerpt(text, width: int = 40) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= width else flat[: width - 3] + "...")


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


# --- shipped functions -----------------------------------------------------------------------------


def _clean(text: str) -> str:
    text = text.strip().strip(_QUOTES).strip()
    return text.rstrip(_TRAILING).strip().strip(_QUOTES).strip()


def _number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def extract_answer(response: str) -> str:
    """The part of a response that counts as its answer: the rest of the last `답:` / `Answer:` line if
    there is one, else the whole response, stripped of surrounding whitespace, quotes and end punctuation."""
    marked = _MARKER.findall(response)
    return _clean(marked[-1] if marked else response)


def exact_answer(prompts: Sequence[str], responses: Sequence[str], answer: Sequence | None = None,
                 **_) -> list[float]:
    """1.0 where the response's answer equals the row's `answer` column, else 0.0.

    The response's answer is extract_answer's: the text after the last `답:` / `Answer:` (that line only),
    else the whole response. When `answer` is a number the last number in that text is compared as a
    number ("1,000" and "1000.0" both match 1000), so "답: 42개" and "The answer is 42." score 1.0 for 42.
    Otherwise the texts must be equal after stripping whitespace, surrounding quotes and end punctuation,
    ignoring case (for Latin letters). Needs an `answer` column in the prompt rows.
    """
    if answer is None:
        raise ValueError("exact_answer needs an 'answer' column in the prompt rows")
    out = []
    for response, gold in zip(responses, answer):
        if gold is None:
            raise ValueError("the row has no 'answer'")
        got = extract_answer(response)
        gold_text = _clean(str(gold))
        gold_number = gold if isinstance(gold, numbers.Real) else _number_only(gold_text)
        if gold_number is not None:
            value = _number(got)
            right = value is not None and math.isclose(value, float(gold_number), abs_tol=1e-9)
            out.append(1.0 if right else 0.0)
        else:
            out.append(1.0 if got.casefold() == gold_text.casefold() else 0.0)
    return out


def _number_only(text: str) -> float | None:
    """text as a number when it is nothing but one number, else None (so "3 apples" stays text)."""
    return float(text.replace(",", "")) if _NUMBER.fullmatch(text) else None


def format_check(prompts: Sequence[str], responses: Sequence[str], **_) -> list[float]:
    """1.0 where the response ends with its answer line, else 0.0.

    The required format: the last non-empty line of the response starts with `답:` or `Answer:` (any case,
    spaces allowed around the colon) and has some text after the colon. Text before that line (a working,
    an explanation) is allowed; text after it is not.
    """
    out = []
    for response in responses:
        lines = [line for line in response.splitlines() if line.strip()]
        match = _MARKER.fullmatch(lines[-1]) if lines else None
        out.append(1.0 if match and match.group(1).strip() else 0.0)
    return out


LENGTH_TARGET_CHARS = 100
LENGTH_PENALTY_PER_CHAR = 0.01


def length_penalty(prompts: Sequence[str], responses: Sequence[str], target_chars: int = LENGTH_TARGET_CHARS,
                   per_char: float = LENGTH_PENALTY_PER_CHAR, **_) -> list[float]:
    """-per_char for every character of the stripped response beyond target_chars, else 0.0.

    Defaults: 100 characters free, then -0.01 each, so 50 characters too many cost 0.5, about half of what
    exact_answer gives for a right answer. The penalty has no floor. For other settings wrap it in a
    function of your own: `def short(p, r, **c): return length_penalty(p, r, target_chars=40)`.
    """
    return [-per_char * max(0, len(r.strip()) - target_chars) for r in responses]


SHIPPED: dict[str, RewardFn] = {f.__name__: f for f in (exact_answer, format_check, length_penalty)}
