"""Tables as pages show them (kr_lib.tables)."""
import math

import pandas as pd
import pytest

from kr_lib.tables import book_table, format_number


def test_numbers_read_as_a_reader_writes_them():
    assert format_number(29146.0) == "29,146" and format_number(29146) == "29,146"
    assert format_number(0.123456) == "0.123" and format_number(0.123456, 2) == "0.12"
    assert format_number(float("nan")) == "–" and format_number(None) == "–"
    assert format_number(12.0) == "12" and format_number("dense") == "dense"


def test_book_table_keeps_the_asked_columns_and_formats_them():
    frame = pd.DataFrame({"design": ["a", "b"], "budget": [29146.0, 1000.0], "acc": [0.91234, math.nan],
                          "share": [0.25, 0.5], "noise": [1, 2]})
    html = book_table(frame, ["design", "budget", "acc", "share"], percent=["share"]).to_html()
    assert "29,146" in html and "0.912" in html and "25.0%" in html and "–" in html
    assert "noise" not in html and "29146.000000" not in html
    with pytest.raises(KeyError, match="no column"):
        book_table(frame, ["nope"])


def test_book_table_renders_as_markdown_where_no_html_is_taken():
    """The PDF's LaTeX builder takes no HTML: without a Markdown form a table printed as the Styler's repr."""
    import copy

    frame = pd.DataFrame({"design": ["a|b", "separable"], "budget": [29146.0, 3.0], "share": [0.5, float("nan")]})
    table = book_table(frame, percent=["share"])
    assert table._repr_markdown_().splitlines() == [
        "| design | budget | share |", "| --- | --- | --- |", "| a\\|b | 29,146 | 50.0% |", "| separable | 3 | – |"]
    assert "29,146" in table.to_html() and "Styler" not in table._repr_markdown_()
    assert copy.copy(table)._repr_markdown_().startswith("| design |")  # pandas' copies keep working


def test_pages_show_tables_through_book_table():
    """A page's own ``frame.style`` has no Markdown form: the PDF printed it as ``<...Styler at 0x...>``."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    styled = [f"{nb.name} cell {i}" for nb in sorted((root / "notebooks").glob("*.ipynb"))
              for i, cell in enumerate(json.loads(nb.read_text())["cells"])
              if cell["cell_type"] == "code" and re.search(r"(?<!plt)(?<!mpl)\.style\b(?!\s*=)", "".join(cell["source"]))]
    assert not styled, f"use kr_lib.tables.book_table instead of DataFrame.style in: {styled}"
