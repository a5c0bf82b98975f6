"""The fast CSV column reader: on a simple file pyarrow reads it and the rows, lines and values are the exact
reader's; any file it cannot vouch for (quotes, blank lines, lone carriage returns, ragged rows) goes to the exact
reader, so the answer never depends on which path ran. Also the long-label reader built on it: sparse codes, dense
targets only where they fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from partial_csl.data import csv_columns, long_labels, sparse_targets
from partial_csl.data.csv_columns import read_csv_columns
from partial_csl.data.csv_rows import read_csv_rows
from partial_csl.data.problems import CsvFormatError, LabelFileError

COLUMNS = ["filename", "label", "value"]


def exact(path, columns=COLUMNS):
    """What the exact reader (Python's csv module) makes of the file: rows as stripped strings, with their lines."""
    table = read_csv_rows(path)
    positions = table.column_index(columns)
    rows = [[(row + [""] * len(table.header))[i].strip() for i in positions] for row in table.rows]
    return rows, table.lines


def check_same_as_exact(path, fast):
    got = read_csv_columns(path, COLUMNS)
    rows, lines = exact(path)
    assert got.fast is fast
    assert got.frame.to_numpy().tolist() == rows and got.lines.tolist() == lines
    return got


@pytest.mark.parametrize("text, fast", [
    ("filename,label,value\na.jpg,dog,1\nb.jpg,cat,0\n", True),
    ("filename,label,value\na.jpg,dog,1\nb.jpg,cat,0", True),  # no newline at the end
    ("filename,label,value\r\na.jpg,dog,1\r\nb.jpg,cat,0\r\n", True),  # Windows line ends
    ("\ufefffilename,label,value\na.jpg,dog,1\n", True),  # a byte-order mark
    ("value,extra,filename,label\n1,x, a.jpg ,dog \n0,y,b.jpg,cat\n", True),  # other order, spaces, an extra column
    ("filename,label,value\n", True),  # header only
    ("filename,label,value", True),  # header only, no newline
    ('"filename","label",value\na.jpg,dog,1\n', True),  # a quoted header (as pyarrow and some tools write it)
    ('"x\ny",filename,label,value\n1,a.jpg,dog,1\n', False),  # a line break inside a header name
    ('filename,label,value,"a,b"\na.jpg,dog,1,2,3\n', False),  # a quoted comma in the header
    ('filename,label,value,a"b,"c\na.jpg,dog,1,x\n', False),  # stray quotes: the exact reader's header differs
    ("filename,label,value\na.jpg," + "d" * 140_000 + ",1\n", True),  # a long field (see the next test)
    ("filename,label,value\na.jpg,\"dog, big\",1\nb.jpg,cat,0\n", False),  # a quoted comma
    ("filename,label,value\na.jpg,\"dog\nbig\",1\nb.jpg,cat,0\n", False),  # a quoted newline: lines shift
    ("filename,label,value\na.jpg,dog,1\n\nb.jpg,cat,0\n", False),  # a blank line is skipped, lines kept
    ("\nfilename,label,value\na.jpg,dog,1\n", False),  # a blank first line
    ("filename,label,value\na.jpg,dog,1\rb.jpg,cat,0\n", False),  # a lone carriage return
])
def test_simple_files_are_read_fast_and_every_file_as_the_exact_reader_reads_it(tmp_path, text, fast):
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode("utf-8"))
    check_same_as_exact(path, fast)


def test_fields_longer_than_pythons_csv_limit_are_read_by_either_reader(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b'filename,label,value,"' + b"c" * 140_000 + b'\n"\na.jpg,dog,1,x\n')
    check_same_as_exact(path, fast=False)


def test_a_ragged_row_falls_back_and_is_named_with_its_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\na.jpg,dog,1\nb.jpg,cat,0,extra\nc.jpg,cat\nd.jpg,dog,0\n")
    got = check_same_as_exact(path, fast=False)
    assert [(p.line, p.reason) for p in got.ragged] == [(3, "has 4 fields, the header has 3"),
                                                        (4, "has 2 fields, the header has 3")]


@pytest.mark.parametrize("data, message", [
    (b"filename,label,value\na.jpg,d\xf6g,1\n", "labels.csv, line 2: not UTF-8 text (byte 0xf6)"),
    (b"", "labels.csv: empty file: no header line"),
    (b"  \n\n", "labels.csv: empty file: no header line"),
    (b"filename,label,label\na.jpg,dog,1\n", "labels.csv, line 1: duplicated column 'label' (columns 2 and 3"),
    (b"filename,class,value\na.jpg,dog,1\n", "labels.csv, line 1: missing column(s) ['label']"),
])
def test_unreadable_files_get_the_exact_readers_errors(tmp_path, data, message):
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    with pytest.raises(CsvFormatError) as err:
        read_csv_columns(path, COLUMNS)
    assert message in str(err.value)


def test_a_large_random_file_reads_the_same_by_both_paths(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"img{rng.integers(0, 500)}.jpg, c{rng.integers(0, 40)} ,{rng.integers(0, 2)}" for _ in range(5000)]
    simple, quoted = tmp_path / "simple.csv", tmp_path / "quoted.csv"
    simple.write_text("filename,label,value\n" + "\n".join(rows) + "\n")
    quoted.write_text('filename,label,value\n"x.jpg",c0,1\n' + "\n".join(rows) + "\n")
    fast, slow = check_same_as_exact(simple, True), check_same_as_exact(quoted, False)
    assert fast.frame.to_numpy().tolist() == slow.frame.to_numpy().tolist()[1:]


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8])
def test_the_streaming_scan_finds_every_pattern_across_block_boundaries(tmp_path, monkeypatch, block):
    """The scan reads the file in blocks (64 MiB; here a few bytes) and must find a quote, a blank line, a lone
    carriage return and the row count wherever a block boundary falls."""
    monkeypatch.setattr(csv_columns, "_BLOCK", block)
    rng = np.random.default_rng(block)
    pieces = ["a.jpg,dog,1", "b.jpg,cat,0", " c.jpg ,dog,1", "d.jpg,cat,1"]
    for case in range(40):
        rows = [pieces[i] for i in rng.integers(0, 4, size=rng.integers(1, 6))]
        line_end = "\r\n" if case % 3 == 0 else "\n"
        text = "filename,label,value" + line_end + line_end.join(rows) + ("" if case % 4 == 1 else line_end)
        spoiler = ['"', "\n", "\r", ""][case % 4]
        if spoiler:
            at = int(rng.integers(len("filename,label,value") + 2, len(text) - 1))
            text = text[:at] + (spoiler + "\n" if spoiler == "\n" else spoiler) + text[at:]
        path = tmp_path / f"labels{case}.csv"
        path.write_bytes(text.encode())
        try:
            rows_exact, lines = exact(path)
        except CsvFormatError:
            continue
        got = read_csv_columns(path, COLUMNS)
        ragged = any(len(r.split(",")) != 3 for r in text.replace("\r\n", "\n").split("\n")[1:] if r)
        assert got.fast is (not spoiler and not ragged), repr(text)
        assert got.frame.to_numpy().tolist() == rows_exact and got.lines.tolist() == lines, repr(text)


def test_categorical_columns_hold_each_value_once_and_read_as_the_strings(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\na.jpg, dog,1\nb.jpg,dog ,0\na.jpg,cat,1\n")
    for text in (path.read_text(), path.read_text().replace("a.jpg, dog", '"a.jpg", dog')):  # fast, then exact
        path.write_text(text)
        got = read_csv_columns(path, COLUMNS, categorical=True)
        assert all(isinstance(dtype, pd.CategoricalDtype) for dtype in got.frame.dtypes)
        assert sorted(got.frame["label"].cat.categories) == ["cat", "dog"]  # " dog" and "dog " merged once stripped
        assert got.frame.astype(str).to_numpy().tolist() == [["a.jpg", "dog", "1"], ["b.jpg", "dog", "0"],
                                                             ["a.jpg", "cat", "1"]]


def test_long_labels_are_sparse_codes_and_dense_targets_only_where_they_fit(tmp_path, monkeypatch):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\nb.jpg,dog,1\na.jpg,cat,0\nb.jpg,cat,0\nc.jpg,bird,1\n")
    labels = long_labels.parse_long_labels(path)
    assert labels.filenames == ["b.jpg", "a.jpg", "c.jpg"] and labels.class_names == ["bird", "cat", "dog"]
    codes = labels.labels.codes
    assert codes.nnz == 4 and codes.dtype == np.int8 and sorted(codes.data) == [1, 1, 2, 2]  # 2 positive, 1 negative
    assert labels.targets.tolist() == [[-1, 0, 1], [-1, 0, -1], [1, -1, -1]]
    monkeypatch.setattr(sparse_targets, "DENSE_TARGET_LIMIT_BYTES", 3 * 3 * 8 - 1)
    too_large = r"dense targets of 3 images x 3 classes need 0.0 GiB as int64"
    with pytest.raises(sparse_targets.TargetsTooLargeError, match=too_large):
        _ = labels.targets


def test_duplicates_and_conflicts_are_named_with_the_first_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\na.jpg,dog,1\nb.jpg,dog,0\na.jpg,dog,1\nb.jpg,dog,1\nb.jpg,dog,0\n")
    with pytest.raises(LabelFileError) as err:
        long_labels.parse_long_labels(path)
    assert [str(p) for p in err.value.problems] == [
        "line 4, column 'label', value 'dog': a duplicate row (first on line 2)",
        "line 5, column 'label', value 'dog': verified both positive and negative for this image (first on line 3)",
        "line 6, column 'label', value 'dog': verified both positive and negative for this image (first on line 3)"]


def test_a_class_list_that_repeats_a_name_is_refused(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\na.jpg,dog,1\n")
    with pytest.raises(ValueError, match=r"class_names repeats a name: \['dog'\]"):
        long_labels.parse_long_labels(path, ["dog", "cat", "dog"])


@pytest.mark.parametrize("name, data", [
    ("labels.csv", b"filename,label,value\r\r\na.jpg,dog,1\na.jpg,cat,2\n"),  # a lone CR ends the header's line
    ("labels.gz", b"filename,label,value\na.jpg,dog,1\n"),  # a plain file whatever its name says
    ("labels.csv.bz2", b"filename,label,value\na.jpg,dog,1\n"),
    ("labels.csv", "filename,label,value\na.jpg,chien é,1\nb.jpg,cat,0\n".encode()),  # UTF-8, read a block at a time
])
def test_files_a_review_found_read_as_the_exact_reader_reads_them(tmp_path, monkeypatch, name, data):
    monkeypatch.setattr(csv_columns, "_BLOCK", 7)
    path = tmp_path / name
    path.write_bytes(data)
    rows, lines = exact(path)
    for categorical in (False, True):
        got = read_csv_columns(path, COLUMNS, categorical=categorical)
        assert got.frame.astype(str).to_numpy().tolist() == rows and got.lines.tolist() == lines


def test_a_long_csv_with_a_header_only_has_no_label_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,label,value\n")
    assert isinstance(read_csv_columns(path, COLUMNS, categorical=True).frame["label"].dtype, pd.CategoricalDtype)
    with pytest.raises(ValueError, match="no label rows"):
        long_labels.parse_long_labels(path)


def test_a_bad_byte_after_many_blocks_is_named_with_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_columns, "_BLOCK", 5)
    path = tmp_path / "labels.csv"
    path.write_bytes(b"filename,label,value\n" + b"a.jpg,d\xc3\xa9g,1\n" * 3 + b"b.jpg,d\xf6g,0\n")
    with pytest.raises(CsvFormatError, match=r"labels\.csv, line 5: not UTF-8 text \(byte 0xf6\)"):
        read_csv_columns(path, COLUMNS)
