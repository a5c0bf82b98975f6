"""Some columns of a large CSV as stripped strings, each row with its physical line, at pyarrow's parsing speed.

The exact reader (:func:`.csv_rows.read_csv_rows`, Python's ``csv`` module) tracks physical lines and every ragged row,
at about 50,000 rows a second. A label file of Open Images' size has tens of millions of rows, and almost all of
them are *simple*: no quote character anywhere, no blank line, every line one row with the header's number of
fields. For such a file a row's physical line is its position, so pyarrow's CSV parser may read it;
this module checks that with byte searches and otherwise falls back to the exact reader.
Either way the caller gets the same columns, lines and ragged rows, and the same errors for an unreadable file.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator, Sequence
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


_PARSE_BLOCK = 1 << 26  # pyarrow's default (1 MiB) leaves hundreds of dictionaries to unify
_BLOCK = 1 << 26  # the scan reads 64 MiB at a time: a file of any size costs the scan no more memory than that


@dataclass
class _Scan:
    """What one pass over a file's bytes found (see :func:`_scan`)."""

    header: bytes  # the first line, without a BOM and the line end
    rows: int  # the data rows, one per physical line
    ascii_only: bool
    spaces: bool  # an ASCII space character after the header (stripping may change a value)


def _blocks(path: Path, start: int) -> Iterator[tuple[bytes, bool]]:
    """The file's bytes from ``start`` in blocks, each starting with the last 2 bytes of the block before (so that a
    pattern across two blocks is searched whole, with no copy), and whether it is the last."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(start)
        while True:
            block = f.read(_BLOCK + 2)
            final = f.tell() >= size or len(block) < _BLOCK + 2
            yield block, final
            if final:
                return
            f.seek(-2, io.SEEK_CUR)


def _rows_in(chunk: bytes, final: bool) -> int | None:
    """The line ends of the rows that start in ``chunk`` (all of it if ``final``, else all but its last 2 bytes, which
    the next chunk repeats), or None where a row there is not one simple line: a quote character, a lone carriage
    return, or (in a chunk with a carriage return) a blank line. Without a carriage return a blank line needs no
    search: the parser skips it, so its row count falls short of the line ends and the exact reader takes over. A
    lone carriage return would end a row for the parser and could offset a blank line, so it is searched for."""
    end = len(chunk) if final else len(chunk) - 2
    pair_end = end if final else end + 1  # a two-byte pattern starting before ``end``
    if chunk.find(b'"', 0, end) >= 0:
        return None
    if chunk.find(b"\r") >= 0 and (chunk.find(b"\n\n", 0, pair_end) >= 0 or chunk.find(b"\n\r\n") >= 0
                                   or chunk.count(b"\r", 0, end) != chunk.count(b"\r\n", 0, pair_end)):
        return None
    return chunk.count(b"\n", 0, end)


def _is_ascii(data: bytes) -> bool:
    return np.frombuffer(data, np.uint8).max(initial=0) < 128


def _scan(path: Path) -> _Scan | None:
    """One streaming pass over the file: its header and rows when every physical line after the header is one row,
    None otherwise (the exact reader then reads the file). A file that is not UTF-8 is refused, naming the line
    (decoded a block at a time; only a file with a bad byte is read whole, to name its line)."""
    with open(path, "rb") as f:
        first = f.readline()
    if not first.strip():  # nothing, or a blank first line: the exact reader says which
        return None
    header = first[len(_BOM) if first.startswith(_BOM) else 0:].removesuffix(b"\n")  # its "\r": see _header
    decoder = codecs.getincrementaldecoder("utf-8")()
    ascii_only = _check_utf8(path, decoder, header, True)
    if not first.endswith(b"\n"):  # a header alone
        _check_utf8(path, decoder, b"", ascii_only, final=True)
        return _Scan(header, 0, ascii_only, False)
    line_ends, spaces, chunk = 0, False, b""
    for number, (chunk, final) in enumerate(_blocks(path, len(first) - 1)):  # from the header's line end (counted)
        ascii_only = _check_utf8(path, decoder, chunk if number == 0 else chunk[2:], ascii_only, final)
        spaces = spaces or any(chunk.find(space) >= 0 for space in _ASCII_SPACES)
        found = _rows_in(chunk, final)
        if found is None:
            return None
        line_ends += found
    rows = line_ends - 1 + (not chunk.endswith(b"\n"))
    return _Scan(header, rows, ascii_only, spaces)


def _check_utf8(path: Path, decoder: codecs.IncrementalDecoder, new_bytes: bytes, ascii_so_far: bool,
                final: bool = False) -> bool:
    """Whether the file is ASCII so far; refuses it (naming the line) where its bytes so far are not UTF-8."""
    if ascii_so_far and _is_ascii(new_bytes):
        return True
    try:
        decoder.decode(new_bytes, final=final)
    except UnicodeDecodeError:
        _decode(path, path.read_bytes())  # raises, naming the line of the first bad byte
    return False


def _header(line: bytes) -> list[str] | None:
    """The header's stripped names; None for a header the exact reader must read: a quote anywhere but around a
    whole field (a quoted comma or line break, a stray quote), a lone carriage return."""
    text = line.decode("utf-8").removesuffix("\r")  # one: a second "\r" is a lone one
    fields = text.split(",")
    whole = [len(f) >= 2 and f[0] == f[-1] == '"' and '"' not in f[1:-1] for f in fields]
    if "\r" in text or any('"' in f and not w for f, w in zip(fields, whole)):
        return None
    return [(f[1:-1] if w else f).strip() for f, w in zip(fields, whole)]


def _fast_frame(path: Path, columns: Sequence[str] | None, strip: bool, categorical: bool) -> CsvColumns | None:
    """The columns by pyarrow's parser, or None when the file is not simple (see :func:`_scan`), has fewer than two
    columns (a line of spaces would be a row, not a blank line) or a ragged row (the exact reader names it)."""
    scan = _scan(path)
    header = None if scan is None else _header(scan.header)
    if header is None or len(header) < 2:
        return None
    _refuse_duplicate_columns(path, header, 1)
    columns = header if columns is None else list(columns)
    empty = pd.DataFrame({c: pd.Series([], dtype="category" if categorical else str) for c in columns})
    result = CsvColumns(path, header, 1, empty, np.zeros(0, dtype=np.int64), [], fast=True)
    result.require(columns)
    if scan.rows == 0:
        return result
    names = [f"c{i}" for i in range(len(header))]  # positions: header names may be anything
    wanted = [names[header.index(c)] for c in columns]
    kind = pa.dictionary(pa.int32(), pa.string()) if categorical else pa.string()
    try:  # from a file object: given a path, pyarrow would decompress by the name's suffix (labels.gz)
        with pa.OSFile(str(path)) as source:
            table = pa_csv.read_csv(source, read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1,
                                                                            block_size=_PARSE_BLOCK),
                                    parse_options=pa_csv.ParseOptions(quote_char=False),
                                    convert_options=pa_csv.ConvertOptions(
                                        include_columns=wanted, column_types=dict.fromkeys(wanted, kind),
                                        strings_can_be_null=False))
    except pa.ArrowInvalid:  # a row with too many or too few fields
        return None
    if table.num_rows != scan.rows:  # the byte count and the parser disagree: trust the exact reader
        return None
    if categorical:
        table = table.unify_dictionaries().combine_chunks()
        result.frame = pd.DataFrame({c: _categorical(table.column(w)) for c, w in zip(columns, wanted)})
    else:
        result.frame = table.to_pandas()[wanted].set_axis(columns, axis=1)
    del table
    pa.default_memory_pool().release_unused()  # the parse's buffers, back to the system before the next stage
    if strip and (not scan.ascii_only or scan.spaces):  # else nothing to strip: no copies
        result.frame = result.frame.apply(_strip)
    result.lines = np.arange(2, scan.rows + 2, dtype=np.int32 if scan.rows < 2**31 - 2 else np.int64)
    return result


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column (one chunk) as a pandas categorical, its codes not copied (pyarrow's to_pandas takes about
    three times as long)."""
    array = column.chunk(0)
    return pd.Categorical.from_codes(array.indices.to_numpy(), categories=pd.Index(array.dictionary.to_pandas()),
                                     validate=False)


def _strip(column: pd.Series) -> pd.Series:
    """The column's values without surrounding spaces; a categorical column's categories are stripped, and merged
    where stripping makes two of them equal."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column.str.strip()
    categories = column.cat.categories
    stripped = categories.str.strip()
    if stripped.equals(categories):
        return column
    codes, merged = pd.factorize(stripped)
    return pd.Series(pd.Categorical.from_codes(codes[column.cat.codes.to_numpy()], categories=merged),
                     index=column.index, name=column.name)


def read_csv_columns(path: str | Path, columns: Sequence[str] | None = None, strip: bool = True,
                     categorical: bool = False) -> CsvColumns:
    """``columns`` (default: all) of the UTF-8 CSV at ``path`` with each row's physical line, stripped of surrounding
    spaces unless ``strip`` is False; CsvFormatError for a file that is not UTF-8, empty, has a duplicated header name
    or lacks one of ``columns``. Blank lines are skipped. With ``categorical`` the columns are pandas categoricals
    (int32 codes and each distinct value once): tens of millions of rows with few distinct values fit in little
    memory, and a check of each distinct value is a check of every row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    fast = _fast_frame(path, columns, strip, categorical)
    if fast is not None:
        return fast
    table = read_csv_rows(path)
    columns = table.header if columns is None else list(columns)
    table.column_index(columns)
    frame = table.frame()[columns]
    if strip:
        frame = frame.apply(_strip)
    if categorical:
        frame = frame.astype("category")
    return CsvColumns(path, table.header, table.header_line, frame, np.asarray(table.lines, dtype=np.int64),
                      list(table.ragged().values()), fast=False)
