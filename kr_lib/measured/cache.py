"""The measurement cache: each trained network's per-block rows, kept beside its record, so that the chapter
"Does K/R measure the redundancy of trained networks?" and the evidence page read them instead of measuring
every network at every book build.

    params = measurement_parameters(fit_limit=2000)          # DEFAULTS, checked, with the overrides
    table = measured_table(paths, dataset="fashion_mnist")   # cached rows where valid, the rest measured
    table = cached_table(paths)                               # cached rows only (valid ones), nothing measured

One JSON file per network, ``results/<dataset>/measured/<run_id>.json`` (beside the records; ``read_records``
reads only the folder's own ``*.json``, so the cache is never taken for a record), written atomically as soon
as that network is measured: an interrupted ``kr measure DATASET`` keeps every network it finished. An entry
is valid only for its **key**: the SHA-256 of the weights file, the measurement parameters
(:data:`DEFAULTS`'s names) and the hash of the code that computes the rows (:data:`MEASUREMENT_CODE`). Any
difference and the entry is *stale*: measured again, never reused. The file holds no machine path.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .measure import COLUMNS, DROP_THRESHOLD, LIST_COLUMNS, RECORD_COLUMNS, check_record, measure_record

__all__ = ["DEFAULTS", "MEASUREMENT_CODE", "CACHE_FOLDER", "measurement_parameters", "code_hash", "cache_path",
           "cache_key", "cache_status", "read_cached", "write_cached", "measured_table", "cached_table"]

#: The measurement parameters, at the chapter's values (``notebooks/measured_redundancy.ipynb`` and ``kr measure``
#: default to these): the spectrum from the first 2000 training images (at least 32,000 K-vectors per block
#: on Fashion-MNIST, against K <= 128 dimensions), the accuracies on the whole test split.
DEFAULTS = {"fit_limit": 2000, "test_limit": None, "ranks": None, "batch_size": 256, "channel_removal": True,
            "threshold": DROP_THRESHOLD}

#: The code that computes a row (relative to the checkout): a change to any of them makes every entry stale.
#: The rule, the figures and the page's words are not in it: they read rows, they do not make them.
MEASUREMENT_CODE = ("kr_lib/measured/measure.py", "kr_lib/measured/pruning.py", "kr_lib/measured/spectrum.py")

CACHE_FOLDER = "measured"
FORMAT = 1
#: Columns that hold arrays (restored as float64 arrays) and the r -> accuracy mapping (restored with int keys).
_ARRAYS = ("eigenvalues", "projection eigenvalues", "kernel singular values")


def measurement_parameters(**overrides) -> dict:
    """:data:`DEFAULTS` with ``overrides`` (unknown names refused), checked: limits whole numbers >= 2 or None,
    ``ranks`` None or positive whole numbers (sorted, descending), ``batch_size`` >= 1. ``channel_removal`` is
    what will happen: False when Torch-Pruning is not installed, so that an entry says what it holds."""
    from .pruning import torch_pruning_available

    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown measurement parameter(s) {sorted(unknown)}; accepted: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **overrides}
    for name in ("fit_limit", "test_limit"):
        v = p[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2):
            raise ValueError(f"{name} must be a whole number of samples >= 2 or None (all), got {v!r}")
        p[name] = None if v is None else int(v)
    if p["ranks"] is not None:
        r = list(p["ranks"])
        if not r or any(isinstance(v, bool) or int(v) != v or v < 1 for v in r):
            raise ValueError(f"ranks must be positive whole numbers or None (each block's grid), got {p['ranks']!r}")
        p["ranks"] = sorted({int(v) for v in r}, reverse=True)
    if isinstance(p["batch_size"], bool) or int(p["batch_size"]) != p["batch_size"] or p["batch_size"] < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {p['batch_size']!r}")
    p["batch_size"] = int(p["batch_size"])
    p["channel_removal"] = bool(p["channel_removal"]) and torch_pruning_available()
    p["threshold"] = float(p["threshold"])
    return p


def code_hash() -> str:
    """:func:`kr_lib.provenance.files_hash` of :data:`MEASUREMENT_CODE`."""
    from ..provenance import files_hash

    return files_hash(MEASUREMENT_CODE)


def cache_path(record_path: str | os.PathLike) -> Path:
    """``<folder>/<run_id>.json`` -> ``<folder>/measured/<run_id>.json``."""
    record_path = Path(record_path)
    return record_path.parent / CACHE_FOLDER / record_path.name


def cache_key(record_path: str | os.PathLike, parameters: dict, code: str | None = None) -> dict:
    """What an entry is valid for: the weights file's SHA-256 (read from the file, not the record), the
    parameters (:func:`measurement_parameters`) and the code hash."""
    from ..runs.weights import file_sha256, weights_path

    return {"weights_sha256": file_sha256(weights_path(record_path)), "parameters": dict(parameters),
            "code": code or code_hash()}


def _read_entry(record_path: Path) -> dict | None:
    path = cache_path(record_path)
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
    except ValueError:
        return None  # a damaged entry is measured again
    return entry if isinstance(entry, dict) and entry.get("format") == FORMAT else None


def cache_status(paths, parameters: dict) -> dict[Path, str]:
    """Record path -> ``"cached"`` (an entry with this key), ``"stale"`` (an entry with another key) or
    ``"missing"``."""
    code = code_hash()
    out = {}
    for p in map(Path, paths):
        entry = _read_entry(p)
        out[p] = ("missing" if entry is None else
                  "cached" if entry.get("key") == cache_key(p, parameters, code) else "stale")
    return out


def _json_value(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {str(k): a for k, a in v.items()}
    return v


def write_cached(record_path: str | os.PathLike, parameters: dict, table: pd.DataFrame,
                 measured: dict | None = None) -> Path:
    """Write ``table`` (the rows of :func:`~kr_lib.measured.measure_record` for this record) as its entry,
    atomically; ``measured``: how the measurement went (device, seconds), stored beside the rows."""
    from ..atomic import write_json_atomic

    record_path = Path(record_path)
    rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    entry = {"format": FORMAT, "run_id": record_path.stem, "key": cache_key(record_path, parameters),
             "attrs": dict(table.attrs), "measured": dict(measured or {}),
             "dtypes": {c: str(t) for c, t in table.dtypes.items()}, "rows": rows}
    return write_json_atomic(entry, cache_path(record_path))


def _restore(rows: list[dict], dtypes: dict) -> pd.DataFrame:
    """The rows as :func:`~kr_lib.measured.measure_record` gave them: arrays, int-keyed accuracies, and the
    written dtypes (JSON's null back to NaN in float columns)."""
    table = pd.DataFrame(rows)
    for col in table.columns:
        values = list(table[col])
        if col in _ARRAYS:
            table[col] = [np.asarray(v if v is not None else [], dtype=np.float64) for v in values]
        elif col == "pruned accuracy":
            table[col] = [{int(k): (math.nan if a is None else a) for k, a in (v or {}).items()} for v in values]
        elif dtypes.get(col, "object") != "object":
            table[col] = pd.Series([math.nan if v is None else v for v in values], dtype=dtypes[col])
    return table


def read_cached(record_path: str | os.PathLike, parameters: dict) -> pd.DataFrame | None:
    """The cached rows of a record for ``parameters`` (``attrs``: the measurement's), or None when there is no
    entry or its key differs (stale)."""
    record_path = Path(record_path)
    entry = _read_entry(record_path)
    if entry is None or entry.get("key") != cache_key(record_path, parameters):
        return None
    table = _restore(entry["rows"], entry.get("dtypes") or {})
    table.attrs.update(entry.get("attrs") or {}, measured=entry.get("measured") or {})
    return table


def _concat(tables: list[pd.DataFrame], **attrs) -> pd.DataFrame:
    if not tables:
        out = pd.DataFrame(columns=RECORD_COLUMNS + COLUMNS + LIST_COLUMNS)
    else:
        out = pd.concat(tables, ignore_index=True)
        out.attrs.update({k: v for k, v in tables[0].attrs.items() if k != "measured"})
    out.attrs.update(attrs)
    return out


def cached_table(paths, parameters: dict | None = None) -> pd.DataFrame:
    """The valid cached rows of ``paths`` (record files), concatenated; nothing is measured. ``attrs``:
    ``cached`` / ``stale`` / ``missing`` (counts of networks)."""
    parameters = parameters or measurement_parameters()
    status = cache_status(paths, parameters)
    tables = [t for t in (read_cached(p, parameters) for p, s in status.items() if s == "cached") if t is not None]
    counts = pd.Series(list(status.values()), dtype=object).value_counts()
    return _concat(tables, **{s: int(counts.get(s, 0)) for s in ("cached", "stale", "missing")}, measured_now=0)


def measured_table(paths, *, dataset: str | None = None, write: bool = True, force: bool = False,
                   device=None, data_dir=None, progress: bool = True, on_measured=None, **parameters) -> pd.DataFrame:
    """The rows of every record of ``paths``: from the cache where an entry has this key, else measured
    (:func:`~kr_lib.measured.measure_record` with ``parameters``, :data:`DEFAULTS` for the others) and, with
    ``write``, cached at once (``force``: measure and rewrite even valid entries). Every record is checked
    (weights present, ``dataset``, ranks) before any is measured. A tqdm bar counts the networks measured.
    ``on_measured(path, table, seconds)``: called after each network measured (``seconds``: cpu, wall).
    ``attrs``: ``cached`` (read), ``measured_now``, ``stale`` (of those measured, how many had a stale entry)."""
    from ..progress import progress_bar

    params = measurement_parameters(**parameters)
    paths = [Path(p) for p in paths]
    for p in paths:
        check_record(p, dataset, params["ranks"])
    status = {p: "missing" for p in paths} if force else cache_status(paths, params)
    tables, todo = {}, [p for p in paths if status[p] != "cached"]
    for p in paths:
        if p not in todo:
            tables[p] = read_cached(p, params)
    kwargs = {k: params[k] for k in ("fit_limit", "test_limit", "ranks", "batch_size", "channel_removal",
                                     "threshold")}
    for p in progress_bar(todo, enabled=progress and bool(todo), desc="measuring networks", unit="network"):
        cpu, wall = time.process_time(), time.perf_counter()
        table = measure_record(p, dataset=dataset, data_dir=data_dir, device=device, progress=False, **kwargs)
        seconds = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)}
        if write:
            import torch

            write_cached(p, params, table, {"device": table.attrs.get("device"), **seconds,
                                            "torch_threads": torch.get_num_threads(), "torch": torch.__version__})
        if on_measured is not None:
            on_measured(p, table, seconds)
        tables[p] = table
    return _concat([tables[p] for p in paths], cached=len(paths) - len(todo), measured_now=len(todo),
                   stale=sum(status[p] == "stale" for p in todo))
