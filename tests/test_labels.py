import numpy as np
import pandas as pd
import pytest
from conftest import file_digest
from PIL import Image

from partial_csl.data.images import resolve_image_path
from partial_csl.data.labels import LabelFileError, _parse_column, read_attribute_csv
from partial_csl.data.schema import AttributeSchema, default_schema, load_schema


def test_default_schema_layout():
    schema = default_schema()
    assert schema.num_classes == 21
    assert schema.class_names[:2] == ["neck_0", "neck_1"]
    assert schema.class_names[7] == "sleeve_length_0" and schema.class_names[11] == "pattern_0"
    assert schema.group_slices() == {"neck": slice(0, 7), "sleeve_length": slice(7, 11), "pattern": slice(11, 21)}


def test_encoding_known_value_annotates_whole_group():
    schema = default_schema()
    targets = schema.encode(np.array([[3, -1, 9]]))
    expected = np.zeros(21, dtype=np.float32)
    expected[3] = 1
    expected[7:11] = -1
    expected[20] = 1
    np.testing.assert_array_equal(targets[0], expected)
    np.testing.assert_array_equal(schema.decode(targets), [[3, -1, 9]])


def test_custom_schema_from_yaml(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("groups:\n  - {name: colour, classes: [red, green]}\n  - {name: size, classes: 3}\n")
    schema = load_schema(path)
    assert schema.class_names == ["red", "green", "size_0", "size_1", "size_2"]
    with pytest.raises(ValueError, match="duplicate class names"):
        AttributeSchema.from_dict({"groups": [{"name": "a", "classes": ["x", "y"]},
                                              {"name": "b", "classes": ["x", "z"]}]})


def test_reader_parses_missing_tokens_floats_and_column_order(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("pattern,extra,filename,sleeve_length,neck\n9.0,zz,a.png,NaN,3\n,zz,b.png,#N/A,nan\n"
                    "1,zz,c.png,NA,6\n")
    table = read_attribute_csv(path, default_schema())
    assert table.filenames == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(table.values, [[3, -1, 9], [-1, -1, -1], [6, -1, 1]])


def test_every_bad_row_is_reported_with_line_column_and_value(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("ok.png", "dup.png"):
        Image.new("RGB", (8, 8)).save(images / name)
    (images / "corrupt.png").write_bytes(b"not an image at all")
    path = tmp_path / "bad.csv"
    path.write_text("filename,neck,sleeve_length,pattern\n"
                    "ok.png,1,2,3\n"            # line 2: fine
                    "dup.png,7,0,0\n"           # line 3: neck out of range
                    "dup.png,1,x,0\n"           # line 4: duplicate + not a number
                    ",1,1,1\n"                  # line 5: empty filename
                    "missing.png,1,1,2.5\n"     # line 6: missing image + not whole
                    "corrupt.png,1,1,1\n"       # line 7: corrupt image
                    "../outside.png,1,1,1\n")   # line 8: outside the folder
    before = file_digest(path)
    with pytest.raises(LabelFileError) as info:
        read_attribute_csv(path, default_schema(), image_dir=images)
    message = str(info.value)
    assert str(path) in message
    expected = [
        "line 3, column 'neck', value '7': out of range 0..6",
        "line 4, column 'filename', value 'dup.png': duplicate of line 3",
        "line 4, column 'sleeve_length', value 'x': not a number",
        "line 5, column 'filename', value '': empty filename",
        "line 6, column 'filename', value 'missing.png': image file not found",
        "line 6, column 'pattern', value '2.5': not a whole number",
        "line 7, column 'filename', value 'corrupt.png': unreadable or corrupt image",
        "line 8, column 'filename', value '../outside.png': points outside the image folder",
    ]
    for text in expected:
        assert text in message
    assert len(info.value.problems) == len(expected)
    assert file_digest(path) == before


def test_skip_mode_keeps_good_rows_and_returns_the_rejected(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("filename,neck,sleeve_length,pattern\na.png,1,2,3\nb.png,99,2,3\nc.png,#N/A,1,1\n")
    table = read_attribute_csv(path, default_schema(), on_bad_rows="skip")
    assert table.filenames == ["a.png", "c.png"]
    assert [(r.line, r.column, r.value) for r in table.rejected] == [(3, "neck", "99")]


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("filename,neck,pattern\na.png,1,2\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sleeve_length'\]"):
        read_attribute_csv(path, default_schema())


def test_resolve_image_path_refuses_escapes(tmp_path):
    assert resolve_image_path(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    for bad in ("../x.png", "/etc/passwd", "a/../../x.png"):
        with pytest.raises(ValueError, match="outside the image folder"):
            resolve_image_path(tmp_path, bad)


@pytest.mark.parametrize("cell, expected", [
    (" 3 ", (3, None)), ("3.0", (3, None)), ("+2", (2, None)), ("2.", (2, None)), (".0", (0, None)),
    ("1e0", (1, None)), ("#N/A", (-1, None)), ("", (-1, None)), (" nan ", (-1, None)), ("N/a", (-1, None)),
    ("2.5", (-1, "not a whole number")), ("1e400", (-1, "not a whole number")),
    ("-Infinity", (-1, "not a whole number")), ("inf", (-1, "not a whole number")), ("abc", (-1, "not a number")),
    ("3 4", (-1, "not a number")),
    ("-1", (-1, "out of range 0..6")), ("7", (-1, "out of range 0..6")), ("6", (6, None)),
])
def test_attribute_cells_are_parsed_a_column_at_a_time_with_the_cell_rules(cell, expected):
    values, problems = _parse_column(pd.Series(["0", cell, "1"], dtype=str), num_classes=7)
    assert (values[1], problems[1]) == expected and values[[0, 2]].tolist() == [0, 1] and problems[0] is None
