"""flatprint.io.text: what the text formats share. Expected values are written out by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest

from flatprint.errors import FormatError
from flatprint.io.text import format_error, format_numbers, read_text_source


def test_format_error_names_what_it_knows():
    both = format_error("a.swc", "bad row", line=3)
    assert (str(both), both.source, both.line) == ("a.swc, line 3: bad row", "a.swc", 3)
    assert str(format_error(None, "bad row", line=3)) == "line 3: bad row"
    only_file = format_error("info", "not JSON")
    assert (str(only_file), only_file.line) == ("info: not JSON", None)
    assert str(format_error(None, "empty")) == "empty" and isinstance(only_file, FormatError)


def test_read_text_source_tells_paths_from_text(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text("v 1 2 3\n")
    assert read_text_source(path) == ("v 1 2 3\n", str(path))
    assert read_text_source(str(path)) == ("v 1 2 3\n", str(path))
    assert read_text_source("v 1 2 3") == ("v 1 2 3", None)  # several tokens, not a file
    assert read_text_source(b"# c\xc3\xa9\n") == ("# c\u00e9\n", None)
    assert read_text_source(io.StringIO("f 1 2 3\n")) == ("f 1 2 3\n", None)
    with pytest.raises(FileNotFoundError):
        read_text_source(str(tmp_path / "missing.obj"))  # one token: a path
    with pytest.raises(TypeError, match="not int"):
        read_text_source(3)


def test_format_numbers_shortest_exact_forms():
    assert format_numbers(np.array([15784.0, -0.0, 0.1, 1e-7])) == ["15784", "0", "0.1", "1e-07"]
    assert format_numbers(np.array([18.2843], dtype=np.float32)) == ["18.2843"]
    assert format_numbers([1, 2]) == ["1", "2"]
    with pytest.raises(ValueError, match="'radius' has a non-finite value at row 1"):
        format_numbers([1.0, np.nan], "radius")
