"""CSV validation for uploaded datasets: shape, consistency, column types and a target column.

Runs on a worker thread (it reads the whole file). Problems raise :class:`CsvProblem` with a
message a person can act on: which line, how many fields, what was expected.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CSV_SUFFIXES", "CsvProblem", "CsvReport", "check_suffix", "validate_csv"]

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_SAMPLE = 64 * 1024
_MAX_DISTINCT = 1000
_TARGET_NAMES = ("target", "label", "labels", "class", "y", "outcome", "churn", "churned",
                 "is_fraud", "fraud", "default", "survived")
_TARGET_HINT = re.compile(r"target|label|churn|outcome|class$", re.I)


class CsvProblem(ValueError):
    """The file is not a usable CSV dataset; the message says why."""


@dataclass(frozen=True)
class CsvReport:
    """What validation found."""

    rows: int
    columns: int
    target_column: str
    summary: str


def check_suffix(filename: str) -> None:
    """Refuse names that are not CSV files.

    Raises:
        CsvProblem: The suffix is not one of :data:`CSV_SUFFIXES`.
    """
    suffix = Path(filename).suffix.lower()
    if suffix not in CSV_SUFFIXES:
        shown = suffix or "no extension"
        raise CsvProblem(f"only CSV files are accepted ({', '.join(CSV_SUFFIXES)}), got "
                         f"{filename!r} ({shown})")


def _dialect(sample: str, filename: str) -> type[csv.Dialect] | csv.Dialect:
    if filename.lower().endswith(".tsv"):
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _guess_target(header: list[str]) -> str:
    lowered = {h.strip().lower(): h for h in header}
    for name in _TARGET_NAMES:
        if name in lowered:
            return lowered[name]
    for name in header:
        if _TARGET_HINT.search(name.strip()):
            return name
    return header[-1]


def _pick_target(header: list[str], wanted: str | None) -> str:
    if not wanted:
        return _guess_target(header)
    if wanted in header:
        return wanted
    folded = [h for h in header if h.strip().lower() == wanted.strip().lower()]
    if folded:
        return folded[0]
    shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
    raise CsvProblem(f"target column {wanted!r} is not in the header (columns: {shown})")


def _read_text(path: Path) -> io.TextIOWrapper:
    with path.open("rb") as raw:
        head = raw.read(_SAMPLE)
    if not head:
        raise CsvProblem("the file is empty")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise CsvProblem(f"not a text CSV file: binary data (a NUL byte at offset {nul})")
    return path.open("r", encoding="utf-8-sig", newline="")


def validate_csv(path: Path, filename: str, target_column: str | None = None) -> CsvReport:
    """Check that ``path`` holds a rectangular CSV table with a header and data rows.

    Args:
        path: The uploaded file.
        filename: Its (sanitized) name, for the suffix and messages.
        target_column: The column to predict; guessed when omitted (a column named like
            ``target``/``label``/``class``/``churn``, else the last one).

    Returns:
        Rows, columns, the target column and a one-line summary.

    Raises:
        CsvProblem: Not CSV, empty, not UTF-8 text, ragged rows, a header without data, one
            column only, duplicate column names, or an unknown target column.
    """
    check_suffix(filename)
    line = 0
    try:
        with _read_text(path) as text:
            sample = text.read(_SAMPLE)
            text.seek(0)
            reader = csv.reader(text, _dialect(sample, filename), strict=True)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise CsvProblem("the file has no header row")
            header = [h.strip() for h in header]
            columns = len(header)
            if columns < 2:
                raise CsvProblem("only one column found: a dataset needs feature columns and a "
                                 "target, separated by ',', ';', TAB or '|'")
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise CsvProblem(f"duplicate column names: {', '.join(map(repr, dupes))}")
            target = _pick_target(header, target_column)
            t_index = header.index(target)
            numeric = [True] * columns
            missing = 0
            distinct: set[str] = set()
            rows = 0
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != columns:
                    raise CsvProblem(f"line {reader.line_num} has {len(row)} fields, expected "
                                     f"{columns} like the header (malformed CSV)")
                rows += 1
                for i, value in enumerate(row):
                    value = value.strip()
                    if not value:
                        missing += 1
                    elif numeric[i] and not _is_number(value):
                        numeric[i] = False
                if len(distinct) <= _MAX_DISTINCT:
                    distinct.add(row[t_index].strip())
    except UnicodeDecodeError as exc:
        raise CsvProblem(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start} of a block): save the file as UTF-8 CSV") from None
    except csv.Error as exc:
        raise CsvProblem(f"malformed CSV after line {line}: {exc}") from None
    if rows == 0:
        raise CsvProblem("the file has a header but no data rows")
    features = columns - 1
    n_numeric = sum(1 for i, flag in enumerate(numeric) if flag and i != t_index)
    classes = (f"{_MAX_DISTINCT}+ distinct values" if len(distinct) > _MAX_DISTINCT
               else f"{len(distinct)} distinct value{'s' if len(distinct) != 1 else ''}")
    summary = (f"Dataset with {features} feature{'s' if features != 1 else ''} "
               f"({n_numeric} numeric, {features - n_numeric} text) and target {target!r} "
               f"({classes}); {rows:,} rows, {missing:,} missing values")
    return CsvReport(rows=rows, columns=columns, target_column=target, summary=summary)
