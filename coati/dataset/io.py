"""Read rows from what users have on disk: JSON arrays, JSON Lines, parquet, `datasets` folders, hub names.

Every failure is a UserError naming the file and the line or row, raised before any model is loaded.
"""

from __future__ import annotations

import json
import os

from coati.errors import UserError


def load_rows(source: str, max_size: int | None = None, subset: str | None = None, split: str = "train",
              flag: str = "--dataset") -> list[dict]:
    """All rows of `source` as a list of dicts (the first `max_size` when given)."""
    if os.path.isdir(source):
        rows = _load_saved_dataset(source, split, flag)
    elif os.path.isfile(source):
        if source.endswith(".parquet"):
            rows = _load_parquet(source, flag)
        else:
            rows = _load_json_like(source, flag)
    elif source.count("/") == 1 and not source.startswith((".", "/", "~")):
        rows = _load_hub(source, subset, split, flag)
    else:
        raise UserError(f"{flag} {source} does not exist; give a .json/.jsonl/.parquet file, a folder saved by "
                        "datasets, or a hub name like Dahoas/rm-static")
    if not rows:
        raise UserError(f"{flag} {source} holds no rows; it must contain at least one example")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{flag} {source} row {i} is a {type(row).__name__}, not an object with named fields")
    return rows[:max_size] if max_size else rows


def _load_json_like(path: str, flag: str) -> list[dict]:
    # KoChatGPT ships JSON arrays named *.jsonl, so the content decides, not the suffix.
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"{flag} {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from err
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{flag} {path} is empty; it must contain at least one example")
    if stripped[0] == "[":
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise UserError(f"{flag} {path} line {err.lineno} column {err.colno}: invalid JSON ({err.msg})") from err
        return rows
    if stripped[0] == "{":
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                if lineno == 1 and _is_single_object(stripped):
                    return _single_object_rows(stripped, path, flag)
                raise UserError(f"{flag} {path} line {lineno}: invalid JSON ({err.msg}); expected one object per "
                                "line (JSON Lines) or one JSON array") from err
        return rows
    raise UserError(f"{flag} {path} is neither a JSON array nor JSON Lines (it starts with {stripped[:20]!r})")


def _is_single_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _single_object_rows(text: str, path: str, flag: str) -> list[dict]:
    # A pretty-printed object of columns ({"prompt": [...], "chosen": [...]}) is a table turned sideways.
    obj = json.loads(text)
    columns = [v for v in obj.values() if isinstance(v, list)]
    if columns and len(columns) == len(obj) and len({len(c) for c in columns}) == 1:
        return [dict(zip(obj, vals)) for vals in zip(*obj.values())]
    raise UserError(f"{flag} {path} holds a single JSON object; expected a JSON array of rows or JSON Lines")


def _load_parquet(path: str, flag: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise UserError(f"{flag} {path} is not a readable parquet file ({err})") from err


def _load_saved_dataset(path: str, split: str, flag: str) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(path)
    except Exception as err:  # datasets raises FileNotFoundError or its own errors for a non-dataset folder
        raise UserError(f"{flag} {path} is a folder but not one saved by datasets.save_to_disk ({err})") from err
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise UserError(f"{flag} {path} has splits {list(ds)} but no '{split}'")
        ds = ds[split]
    return ds.to_list()


def _load_hub(name: str, subset: str | None, split: str, flag: str) -> list[dict]:
    from datasets import load_dataset

    try:
        return load_dataset(name, subset, split=split).to_list()
    except Exception as err:  # offline, unknown name or missing split: all the user's to fix
        raise UserError(f"{flag} {name}: could not load it from the hub ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); check the name and your network, "
                        "or pass a local file") from err


def require_keys(rows: list[dict], keys: list[str], where: str, hint: str = "") -> None:
    """Every row has every key; otherwise name the missing key, the row and the keys that are there.

    where: where the rows came from, as the message names it (e.g. "--dataset data.json")."""
    for i, row in enumerate(rows):
        for key in keys:
            if key not in row:
                raise UserError(f"{where} row {i} has no key '{key}' (keys found: {', '.join(map(str, row))})"
                                + (f"; {hint}" if hint else ""))


def require_keys_somewhere(rows: list[dict], keys: list[str], where: str, hint: str = "") -> None:
    """Each key is in at least one row. A key no row has is a wrong flag or a wrong file (an error naming the
    keys that are there); a key only some rows lack marks bad rows, which the readers skip and count."""
    for key in keys:
        if not any(key in row for row in rows):
            found = ", ".join(map(str, rows[0]))
            raise UserError(f"{where} row 0 has no key '{key}' and neither has any other row (keys found: {found})"
                            + (f"; {hint}" if hint else ""))


class ReadReport:
    """What became of a file's rows: read, used, cut at max_len, and dropped with the reason and row numbers.

    Row numbers count from 1 (the first row of the file is row 1). The scripts print `summary()` once, so a
    run on a file with a few bad rows goes on and says so instead of stopping or training on wrong data."""

    SHOWN = 5  # row numbers named per reason; the rest are counted

    def __init__(self, source: str = "--dataset", unit: str = "rows"):
        self.source, self.unit = source, unit
        self.read = self.used = self.truncated = 0
        self.dropped_rows: dict[str, list[int]] = {}
        self.keep_len = 0  # the smallest --max_len that keeps every row dropped for length (0: none was)
        self.format: str | None = None  # the preference format the rows were read in, where one applies

    def drop(self, row_number: int, why: str) -> None:
        self.dropped_rows.setdefault(why, []).append(row_number)

    def drop_for_length(self, row_number: int, why: str, needed: int) -> None:
        """Drop a row that --max_len leaves nothing to learn from; `needed` is the --max_len that would keep it."""
        self.drop(row_number, why)
        self.keep_len = max(self.keep_len, needed)

    @property
    def dropped(self) -> int:
        return sum(map(len, self.dropped_rows.values()))

    def reasons(self) -> str:
        parts = []
        for why, numbers in self.dropped_rows.items():
            shown = ", ".join(map(str, numbers[: self.SHOWN])) + (", ..." if len(numbers) > self.SHOWN else "")
            parts.append(f"{len(numbers)} {why}: {'row' if len(numbers) == 1 else 'rows'} {shown}")
        if self.keep_len:
            parts.append(f"--max_len {self.keep_len} would keep the {self.unit} dropped for length")
        return "; ".join(parts)

    def summary(self) -> str:
        """e.g. '--dataset d.jsonl: read 60 rows, used 57, truncated 2, dropped 3 (3 with no assistant turn: rows
        4, 9, 17)'."""
        line = (f"{self.source}: read {self.read} {self.unit}, used {self.used}, truncated {self.truncated}, "
                f"dropped {self.dropped}")
        return line + (f" ({self.reasons()})" if self.dropped else "")
