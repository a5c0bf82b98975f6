"""Some columns of a large CSV as stripped strings, each row with its physical line, at pyarrow's parsing speed.

The exact reader (:func:`.csv_rows.read_csv_rows`, Python's ``csv`` module) tracks physical lines and every ragged row,
at about 50,000 rows a second. A label file of Open Images' size has tens of millions of rows, and almost all of
them are *simple*: no quote character anywhere, no blank line, every line one row with the header's number of
fields. For such a file a row's physical line is its position, so pyarrow's CSV parser may read it;
this module checks that with byte searches and otherwise falls back to the exact reader.
Either way the caller gets the same columns, lines and ragged rows, and the same errors for an unreadable file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import csv as pa_csv

from .csv_rows import _decode, _refuse_duplicate_columns, read_csv_rows
from .problems import BadRow, CsvFormatError

_BOM = b"\xef\xbb\xbf"
_ASCII_SPACES = [bytes([c]) for c in b" \t\x0b\x0c\x1c\x1d\x1e\x1f"]  # what str.strip() removes, but line ends


@dataclass
class CsvColumns:
    """The wanted columns of a CSV (strings, stripped unless asked not to; a ragged row's missing fields empty), one
    entry per row."""

    path: Path
    header: list[str]
    header_line: int
    frame: pd.DataFrame
    lines: np.ndarray  # the physical line each row starts on
    ragged: list[BadRow]  # rows whose number of fields differs from the header's
    fast: bool  # read by pyarrow's parser (the file was simple), else by the exact reader

    def require(self, columns: Sequence[str]) -> None:
        """CsvFormatError naming the ``columns`` the header lacks."""
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise CsvFormatError(self.path, f"missing column(s) {missing}; found {self.header}", self.header_line)


def _simple_rows(body: bytes, start: int) -> int | None:
    """The number of data rows when every physical line of ``body[start:]`` (the file after its header) is one row:
    no quote character, no blank line, no lone carriage return. None otherwise: the exact reader then reads the
    file. Ragged rows are left to the parser, which refuses them. (Searches from ``start`` copy nothing.)"""
    if body.find(b'"', start) >= 0:
        return None
    if body.find(b"\r", start) >= 0 and body.count(b"\r", start) != body.count(b"\r\n", start):
        return None
    if body.startswith((b"\n", b"\r\n"), start) or body.find(b"\n\n", start) >= 0 or body.find(b"\n\r\n", start) >= 0:
        return None
    return body.count(b"\n", start) + (len(body) > start and not body.endswith(b"\n"))


def _header(line: bytes) -> list[str] | None:
    """The header's stripped names; None for a header the exact reader must read: a quote anywhere but around a
    whole field (a quoted comma or line break, a stray quote), a lone carriage return."""
    text = line.decode("utf-8").removesuffix("\r")
    fields = text.split(",")
    whole = [len(f) >= 2 and f[0] == f[-1] == '"' and '"' not in f[1:-1] for f in fields]
    if "\r" in text or any('"' in f and not w for f, w in zip(fields, whole)):
        return None
    return [(f[1:-1] if w else f).strip() for f, w in zip(fields, whole)]


def _fast_frame(path: Path, data: bytes, columns: Sequence[str] | None, strip: bool) -> CsvColumns | None:
    """The columns by pyarrow's parser, or None when the file is not simple (see :func:`_simple_rows`), has fewer
    than two columns (a line of spaces would be a row, not a blank line) or a ragged row (the exact reader names
    it)."""
    body = data[len(_BOM):] if data.startswith(_BOM) else data
    ascii_only = (max(body, default=0) if len(body) < 4096 else np.frombuffer(body, np.uint8).max()) < 128
    if not ascii_only:
        _decode(path, data)  # not UTF-8: the error names the line of the first bad byte
    header_end = body.find(b"\n") if b"\n" in body else len(body)
    header, rows = _header(body[:header_end]), _simple_rows(body, header_end + 1)
    if header is None or rows is None or len(header) < 2:
        return None
    _refuse_duplicate_columns(path, header, 1)
    columns = header if columns is None else list(columns)
    result = CsvColumns(path, header, 1, pd.DataFrame({c: pd.Series([], dtype=str) for c in columns}),
                        np.zeros(0, dtype=np.int64), [], fast=True)
    result.require(columns)
    if rows == 0:
        return result
    names = [f"c{i}" for i in range(len(header))]  # positions: header names may be anything
    wanted = [names[header.index(c)] for c in columns]
    try:
        table = pa_csv.read_csv(io.BytesIO(body), read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
                                parse_options=pa_csv.ParseOptions(quote_char=False),
                                convert_options=pa_csv.ConvertOptions(
                                    include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string()),
                                    strings_can_be_null=False))
    except pa.ArrowInvalid:  # a row with too many or too few fields
        return None
    if table.num_rows != rows:  # the byte count and the parser disagree: trust the exact reader
        return None
    result.frame = table.to_pandas()[wanted].set_axis(columns, axis=1)
    if strip and (not ascii_only or any(body.find(space, header_end) >= 0 for space in _ASCII_SPACES)):
        result.frame = result.frame.apply(lambda column: column.str.strip())  # else nothing to strip: no copies
    result.lines = np.arange(2, rows + 2)
    return result


def read_csv_columns(path: str | Path, columns: Sequence[str] | None = None, strip: bool = True) -> CsvColumns:
    """``columns`` (default: all) of the UTF-8 CSV at ``path`` with each row's physical line, stripped of surrounding
    spaces unless ``strip`` is False; CsvFormatError for a file that is not UTF-8, empty, has a duplicated header name
    or lacks one of ``columns``. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    data = path.read_bytes()
    fast = _fast_frame(path, data, columns, strip) if data.strip() else None
    if fast is not None:
        return fast
    table = read_csv_rows(path)
    columns = table.header if columns is None else list(columns)
    table.column_index(columns)
    frame = table.frame()[columns]
    if strip:
        frame = frame.apply(lambda column: column.str.strip())
    return CsvColumns(path, table.header, table.header_line, frame, np.asarray(table.lines, dtype=np.int64),
                      list(table.ragged().values()), fast=False)
