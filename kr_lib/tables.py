"""Tables as a book page shows them: the columns that matter, numbers a reader can read, no index.

    book_table(frame, ["design", "K", "R", "K/R", "df"])       # a pandas Styler, rendered by the page
    book_table(frame, digits=3, percent=["share K/R > 1"])

Every results, theory and survey page shows its DataFrames through here, so that a table fits the book's
content column: integers with thousands separators (a budget prints as 29,146, not 29146.000000), other
numbers to ``digits`` significant figures, fractions as percentages where asked, missing values as a dash,
compact cell padding, and long text cells wrapped.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
from pandas.io.formats.style import Styler

#: Compact cells: the book theme's tables have no padding and never wrap, so wide frames run off the column.
_STYLES = [
    {"selector": "", "props": [("font-size", "0.82em"), ("border-collapse", "collapse"), ("max-width", "100%")]},
    {"selector": "th, td", "props": [("padding", "0.2em 0.55em"), ("text-align", "right")]},
    {"selector": "td", "props": [("white-space", "normal"), ("overflow-wrap", "anywhere")]},
    {"selector": "th", "props": [("white-space", "normal")]},
]


def format_number(value, digits: int = 3) -> str:
    """One cell as text: ints (and whole floats of at least 1,000) with separators, other floats to
    ``digits`` significant figures, None/NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class BookTable(Styler):
    """A Styler that also renders as a Markdown table: the HTML build shows the styled table, while builders
    that take no HTML (the PDF's LaTeX) take the Markdown instead of the Styler's ``repr`` text.
    ``cell_text`` maps each column to the function that writes its cells (as the Styler formats them)."""

    def __init__(self, data: pd.DataFrame, cell_text: dict | None = None, **kwargs):
        super().__init__(data, **kwargs)
        self.cell_text = cell_text or {}  # pandas' own copies pass data alone: str for every column

    def _repr_markdown_(self) -> str:
        def line(values) -> str:
            return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

        rows = ([self.cell_text.get(c, str)(v) for c, v in zip(self.data.columns, row)] for row in self.data.itertuples(index=False))
        return "\n".join([line(self.data.columns), line(["---"] * self.data.shape[1]), *map(line, rows)])


def book_table(frame: pd.DataFrame, columns: Iterable[str] | None = None, digits: int = 3,
               percent: Iterable[str] = (), max_rows: int | None = None):
    """``frame`` (a DataFrame of any shape) as a Styler for a page: only ``columns`` (in that order; all by
    default), the first ``max_rows`` rows, numbers by :func:`format_number`, ``percent`` columns as
    percentages, no index. Raises ``KeyError`` naming a missing column."""
    columns = list(frame.columns if columns is None else columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"no column(s) {missing} in the table; it has {list(frame.columns)}")
    shown = frame.loc[:, columns]
    if max_rows is not None:
        shown = shown.head(max_rows)
    percent = set(percent)
    formats = {c: (lambda v: "–" if pd.isna(v) else f"{v:.1%}") if c in percent else
               (lambda v, d=digits: format_number(v.item() if hasattr(v, "item") else v, d)) for c in columns}
    return BookTable(shown, formats).format(formats).hide(axis="index").set_table_styles(_STYLES)
