"""The runs of a results page as a CSV download, written from the records when the page is built.

    table = runs_csv_table(records)          # one row a run: every parameter and metric (pandas)
    html = csv_download_html(records, filename)   # a link that downloads it under that file name

The CSV travels inside the executed page (a ``data:`` link), so it is always the one of the records the
page was drawn from: no file beside the page can go stale or be left out of the book's build, and the
link works in Jupyter as on the HTML page. Columns are ``<section>.<field>`` of the record
(``parameters.lr``, ``metrics.test_accuracy``, ``model.K``, ``network.df``, ``timing.wall_time_s``, ...);
lists are written as JSON. Fields that name folders of the machine that ran (``parameters.output_dir``,
``parameters.data_dir``) and the machine itself are left out; the per-epoch history and per-block rows
are in the record files.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Iterable, Mapping

import pandas as pd

#: Sections of a record flattened into the CSV, in order.
SECTIONS = ("parameters", "metrics", "model", "network", "data", "timing")
#: Top-level fields of a record kept as they are.
TOP = ("run_id", "status", "mode", "device", "git_commit", "created")
#: Fields left out: they name folders of the machine the run was made on.
LEFT_OUT = {"parameters.output_dir", "parameters.data_dir"}


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def runs_csv_table(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per record: :data:`TOP` fields, then every field of each of :data:`SECTIONS` as
    ``<section>.<field>`` (nested values as JSON), without :data:`LEFT_OUT`. Rows sorted by run id."""
    rows = []
    for r in sorted(records, key=lambda r: r["run_id"]):
        row = {k: r.get(k) for k in TOP}
        for section in SECTIONS:
            for key, value in (r.get(section) or {}).items():
                name = f"{section}.{key}"
                if name not in LEFT_OUT:
                    row[name] = _cell(value)
        rows.append(row)
    return pd.DataFrame(rows)


def csv_download_html(records: Iterable[Mapping], filename: str, label: str | None = None) -> str:
    """An HTML link that downloads :func:`runs_csv_table` as ``filename`` (a ``data:`` URI: the CSV is in the page)."""
    table = runs_csv_table(records)
    payload = base64.b64encode(table.to_csv(index=False).encode()).decode()
    label = label or f"{filename} ({len(table)} runs, {table.shape[1]} columns)"
    return (f'<a download="{html.escape(filename)}" href="data:text/csv;base64,{payload}">'
            f"Download {html.escape(label)}</a>")
