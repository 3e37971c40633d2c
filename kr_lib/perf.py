"""Timing, peak memory and result records for the benchmarks (``benchmarks/``) and the Performance page.

Speed is always a ratio against a baseline measured in the same run: ``compare`` calls the candidates
in turn, repeat after repeat (the order rotating), so that a busy moment of a shared machine slows all
of them alike; a result is the median over the repeats. On CUDA every timing synchronizes the device.

On the CPU of a shared machine, ``clock="cpu"`` times the process's CPU time instead of wall time.

A benchmark writes one JSON record (``make_record`` / ``write_record``)::

    {"benchmark": "blocks", "device": "cpu", "quick": true, "command": "python benchmarks/...",
     "date": "2026-11-28T00:10:00+00:00", "machine": {...}, "versions": {...}, "commit": "...",
     "note": "...", "parameters": {...}, "rows": [{...}, ...], "summary": {...}}

``rows`` is a list of flat dicts (one table); ``load_results`` reads every record of a folder,
``rows_frame`` turns one into a pandas DataFrame; ``other_results`` and ``flat_scalars`` read JSON
results written in another layout.
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json_atomic

__all__ = ["synchronize", "compare", "time_call", "median", "ratio", "peak_memory", "make_record", "write_record",
           "load_results", "results_dir", "other_results", "is_record", "flat_scalars", "rows_frame", "runs_table", "RECORD_KEYS", "SHARED_MACHINE_NOTE", "CLOCKS"]

#: Keys every benchmark record has (``load_results`` checks them).
RECORD_KEYS = ("benchmark", "device", "quick", "command", "date", "machine", "note", "rows")

#: The note recorded by runs on the project's shared 2-core build machine.
SHARED_MACHINE_NOTE = ("measured on a shared 2-core machine while other processes (other agents' tests) were "
                       "running: absolute times are noisy; candidates were interleaved round by round and the "
                       "ratios are of medians from the same rounds")


def synchronize(device: str | torch.device | None) -> None:
    """Wait for queued kernels on ``device`` (CUDA); a no-op on the CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


#: Clocks ``time_call`` and ``compare`` accept: wall-clock time, or the CPU time of this process (all
#: its threads), which other processes on a shared machine barely disturb (CPU runs only).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _clock(clock: str, device) -> Callable[[], float]:
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"clock='cpu' measures host CPU time and is meaningless on {device}; use clock='wall'")
    return CLOCKS[clock]


def time_call(fn: Callable[[], Any], device: str | torch.device | None = None, number: int = 1,
              clock: str = "wall") -> float:
    """Seconds per call of ``fn`` (mean over ``number`` back-to-back calls), the device synchronized.

    ``clock="cpu"`` counts this process's CPU time instead of wall time (see ``CLOCKS``).
    """
    if number < 1:
        raise ValueError(f"number must be a positive int, got {number!r}")
    now = _clock(clock, device)
    synchronize(device)
    start = now()
    for _ in range(number):
        fn()
    synchronize(device)
    return (now() - start) / number


def compare(fns: Mapping[str, Callable[[], Any]], *, device: str | torch.device | None = None, repeats: int = 5,
            warmup: int = 1, number: int = 1, clock: str = "wall") -> dict[str, list[float]]:
    """Time several candidates interleaved: ``repeats`` rounds, each calling every candidate once
    (``number`` calls, averaged), in an order rotating by one per round. ``warmup`` untimed rounds first.
    ``clock``: ``"wall"`` or ``"cpu"`` (see ``CLOCKS``).

    Returns ``{name: [seconds per call, one per round]}``; use ``median`` and ``ratio`` on it.
    """
    if not fns:
        raise ValueError("compare needs at least one candidate")
    _clock(clock, device)
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats!r}, warmup={warmup!r}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(fns[name], device, number, clock))
    return times


def median(values) -> float:
    """The median of a non-empty sequence of numbers."""
    values = list(values)
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def ratio(times: Mapping[str, list[float]], baseline: str, candidate: str) -> float:
    """``median(baseline) / median(candidate)``: > 1 means the candidate is faster."""
    for name in (baseline, candidate):
        if name not in times:
            raise KeyError(f"no timings for {name!r}; have {sorted(times)}")
    return median(times[baseline]) / median(times[candidate])


class _RssSampler(threading.Thread):
    """Polls this process's resident set size every ``interval`` seconds, keeping the largest."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self.interval = interval
        self.peak = self._process.memory_info().rss
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._done.wait(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, self._process.memory_info().rss)


def peak_memory(fn: Callable[[], Any], device: str | torch.device | None = None,
                interval: float = 0.001) -> tuple[Any, int]:
    """Run ``fn`` once; return ``(its result, peak memory in bytes above what was in use before)``.

    CUDA: ``torch.cuda.max_memory_allocated`` (exact, PyTorch's allocator). CPU: the process's
    resident set size sampled every ``interval`` seconds by a thread (covers PyTorch and NumPy alike;
    a peak shorter than the interval can be missed, and memory the allocator keeps from earlier calls
    is reused without showing). Either way the result is kept alive until the peak is read.
    """
    gc.collect()
    if device is not None and torch.device(device).type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        synchronize(device)
        return result, max(0, torch.cuda.max_memory_allocated(device) - before)
    sampler = _RssSampler(interval)
    before = sampler.peak
    sampler.start()
    try:
        result = fn()
    finally:
        peak = sampler.stop()
    return result, max(0, peak - before)


# ----------------------------------------------------------------------------- records
def make_record(benchmark: str, device: str | torch.device, rows: list[dict], *, quick: bool, command: str,
                parameters: Mapping[str, Any] | None = None, summary: Mapping[str, Any] | None = None,
                note: str = SHARED_MACHINE_NOTE) -> dict[str, Any]:
    """A benchmark record (the module docstring's schema) stamped with the date, machine, versions and commit."""
    from .provenance import git_commit, machine, versions

    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("rows must be a list of dicts (one per table row)")
    return {
        "benchmark": str(benchmark), "device": str(device), "quick": bool(quick), "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(), "commit": git_commit(), "note": note,
        "parameters": dict(parameters or {}), "rows": [dict(r) for r in rows], "summary": dict(summary or {}),
    }


def write_record(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` as indented JSON, atomically (a temporary file, then ``os.replace``)."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"not a benchmark record: missing {missing} (make one with make_record)")
    return write_json_atomic(dict(record), path)


def results_dir(folder: str | os.PathLike | None = None) -> Path:
    """The benchmark records folder: ``folder`` when given, else the first that exists of
    ``benchmarks/results`` under the working directory, under its parent (a notebook in ``notebooks/``),
    and in the checkout ``kr_lib`` was imported from. FileNotFoundError lists where it looked."""
    if folder is not None:
        return Path(folder)
    candidates = [Path.cwd() / "benchmarks/results", Path.cwd().parent / "benchmarks/results",
                  Path(__file__).resolve().parent.parent / "benchmarks/results"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no benchmarks/results folder in " + ", ".join(str(c) for c in candidates)
                            + " (run python benchmarks/run_all.py, or pass the folder)")


def _read_json(folder: str | os.PathLike) -> dict[str, Any]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no benchmark results folder at {folder} (run python benchmarks/run_all.py)")
    data = {}
    for path in sorted(folder.glob("*.json")):
        try:
            data[path.stem] = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    return data


def is_record(data: Any) -> bool:
    """True when ``data`` has every key of ``RECORD_KEYS`` and a list of rows."""
    return isinstance(data, dict) and all(k in data for k in RECORD_KEYS) and isinstance(data["rows"], list)


def load_results(folder: str | os.PathLike, strict: bool = False) -> dict[str, dict[str, Any]]:
    """Every benchmark record in ``folder`` (``*.json``), keyed by file stem (e.g. ``blocks_cpu``).

    JSON files in another layout are left out (``other_results`` reads them), or with ``strict=True``
    raise ValueError naming the file and the missing keys. FileNotFoundError when there is no folder.
    """
    records = {}
    for stem, data in _read_json(folder).items():
        if is_record(data):
            records[stem] = data
        elif strict:
            missing = [k for k in RECORD_KEYS if not isinstance(data, dict) or k not in data]
            raise ValueError(f"{Path(folder) / (stem + '.json')} is not a benchmark record: missing {missing}")
    return records


def other_results(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON files of ``folder`` that are not ``make_record`` records, keyed by file stem, as parsed."""
    return {stem: data for stem, data in _read_json(folder).items() if not is_record(data)}


def flat_scalars(data: Any, prefix: str = "") -> dict[str, Any]:
    """The scalar leaves of nested dicts as ``{"a.b.c": value}`` (lists are left out): a table of any record."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flat_scalars(value, f"{prefix}{key}."))
    elif not isinstance(data, (list, tuple)):
        out[prefix.rstrip(".")] = data
    return out


def runs_table(records: Mapping[str, Mapping[str, Any]]):
    """One row per record: where and how it ran (device, date, CPU, cores, GPU, threads, clock, quick, command)."""
    import pandas as pd

    rows = []
    for stem, r in records.items():
        params, machine = r.get("parameters") or {}, r.get("machine") or {}
        rows.append({"record": stem, "benchmark": r["benchmark"], "device": r["device"], "date": r["date"],
                     "processor": machine.get("processor"), "cores": machine.get("cpu_count"),
                     "gpu": machine.get("gpu"), "threads": params.get("threads"), "clock": params.get("clock"),
                     "quick": r["quick"], "command": r["command"]})
    return pd.DataFrame(rows)


def rows_frame(record: Mapping[str, Any]):
    """The record's ``rows`` as a pandas DataFrame (columns in first-seen order)."""
    import pandas as pd

    return pd.DataFrame(list(record["rows"]))
