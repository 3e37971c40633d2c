"""Result records of ablation runs: atomic writing, reading, aggregation.

A record is one JSON file ``<results>/<dataset>/<run_id>.json`` (the executed notebook
``<run_id>.ipynb`` beside it). ``run_id`` (:mod:`kr_lib.runs.identity`) depends only on the *scientific*
parameters (:data:`~kr_lib.runs.identity.SCIENTIFIC`: dataset, design, K/R, R or budget, depth, epochs, batch size,
optimizer, lr, seed, training subset, ...), never on the device or the folders, so a sweep started
again finds the runs it already finished.

    path = write_record(record, "results")          # results/<dataset>/<run_id>.json, atomically
    records, problems = read_records("results/fashion_mnist")
    table = records_table(records)                   # one row per record (pandas)
    summary = aggregate(table)                       # mean/std/count over seeds

Record fields (schema 1): ``schema``, ``run_id``, ``status`` ("completed", "diverged" or "failed"),
``message``, ``parameters`` (every notebook parameter, resolved), ``mode`` ("fixed_r" or "budget"),
``metrics`` (test/train accuracy and loss of the last epoch, best test accuracy, epochs completed),
``history`` (per epoch), ``model`` (``build_model``'s spec: K_0, R_0, widths, parameter count),
``network`` (``kr_summary`` aggregates, ``df`` and ``naive_count`` of the whole network, FLOPs per
sample), ``blocks`` (the ``kr_report`` rows: K, R, K/R, parameters, FLOPs, df, naive count),
``timing`` (wall time of the whole run and of training, samples per second, peak memory),
``device``, ``machine``, ``versions``, ``git_commit``, ``created`` (UTC, ISO 8601).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..atomic import write_json_atomic
from ..project import find_project
from .identity import (  # noqa: F401 (re-exported: the record's identity lives in kr_lib.runs.identity)
    SCIENTIFIC, STAGED_SUFFIX, canonical, default_output_dir, record_path, run_id, scientific, staged_path,
)

SCHEMA = 1
STATUSES = ("completed", "diverged", "failed")


def __getattr__(name: str):
    # REPO_ROOT was the checkout above the package; it is the project the working directory is in now
    # (kr_lib.project.find_project), so that an installed library never points into site-packages.
    if name == "REPO_ROOT":
        return find_project()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_record(record: Mapping) -> None:
    """Raise ``ValueError`` naming what is missing or wrong in a record."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a record is a JSON object, got {type(record).__name__}")
    missing = [k for k in ("schema", "run_id", "status", "parameters") if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if record["status"] not in STATUSES:
        raise ValueError(f"status {record['status']!r} is not one of {STATUSES}")
    if record["status"] == "completed":
        acc = (record.get("metrics") or {}).get("test_accuracy")
        if not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
            raise ValueError(f"a completed record needs metrics.test_accuracy in [0, 1], got {acc!r}")


def write_record(record: Mapping, output_dir: str | os.PathLike, staged: bool = False) -> Path:
    """Check ``record`` and write it to ``<output_dir>/<dataset>/<run_id>.json`` atomically; return the path.
    ``staged``: write ``<run_id>.json.staged`` instead (see :data:`STAGED_SUFFIX`; :func:`commit_staged`)."""
    validate_record(record)
    path = record_path(output_dir, record["parameters"]["dataset"], record["run_id"])
    return write_json_atomic(record, staged_path(path) if staged else path)


def commit_staged(path: str | os.PathLike) -> Path:
    """Rename the staged record of ``<run_id>.json`` to ``<run_id>.json`` (atomic); return the record path."""
    path = Path(path)
    os.replace(staged_path(path), path)
    return path


def read_record(path: str | os.PathLike) -> dict:
    """One record; ``ValueError`` (with the file name and the reason) when it is not a valid record."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    try:
        validate_record(record)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if path.stem != record["run_id"]:
        raise ValueError(f"{path}: file name does not match its run_id {record['run_id']!r}")
    check_run_id(record)
    return record


def check_run_id(record: Mapping) -> None:
    """Raise ``ValueError`` when a record's parameters do not give its ``run_id`` (the id is a hash of the
    scientific parameters, :func:`~kr_lib.runs.identity.run_id`): a record edited by hand, or one whose
    parameters lack a scientific name, is corrupt -- its numbers are not those of the run its id names."""
    params = record["parameters"]
    if not isinstance(params, Mapping):
        raise ValueError(f"parameters must be a mapping, got {type(params).__name__}")
    missing = [k for k in SCIENTIFIC if k not in params]
    if missing:
        raise ValueError(f"parameters lack {', '.join(missing)}, so they cannot be checked against run_id "
                         f"{record['run_id']!r}")
    expected = run_id(scientific(params))
    if expected != record["run_id"]:
        raise ValueError(f"its parameters give the run id {expected!r}, not its own {record['run_id']!r}: the "
                         "record was edited after the run; delete it (a sweep then runs it again) or restore it")


def recorded_status(path: str | os.PathLike, retry_failed: bool = False) -> str | None:
    """The status of the valid record at ``path``, or None when the run must be done: no record, a corrupt
    one (redone; ``kr results`` reports it until then), or a failed one with ``retry_failed``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        status = read_record(path)["status"]
    except ValueError:
        return None
    return None if (retry_failed and status == "failed") else status


@dataclass
class CorruptRecord:
    """A file under a results folder that could not be read as a record, and why."""

    path: Path
    reason: str


def read_records(folder: str | os.PathLike) -> tuple[list[dict], list[CorruptRecord]]:
    """Every record ``*.json`` directly in ``folder`` (sorted by name) and the files that are not valid
    records -- returned, never dropped silently. A missing folder gives ``([], [])``."""
    folder = Path(folder)
    records, corrupt = [], []
    if not folder.is_dir():
        return records, corrupt
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(read_record(path))
        except ValueError as err:
            corrupt.append(CorruptRecord(path, str(err).removeprefix(f"{path}: ")))
    return records, corrupt


#: Columns of :func:`records_table`, in order.
TABLE_COLUMNS = ["run_id", "status", "design", "mode", "kr_ratio", "kr_fraction", "R", "K", "param_budget",
                 "budget_error", "parameters", "df", "naive_count", "flops", "weighted_kr", "seed", "epochs",
                 "train_limit", "test_accuracy", "best_test_accuracy", "test_loss", "train_accuracy", "wall_time_s",
                 "run_time_s", "device", "preset"]


def run_time_s(record: Mapping) -> float | None:
    """Seconds a run cost: its record's ``timing.wall_time_s``, which covers only the last process when the
    run was cut off and resumed from an epoch checkpoint, plus the training time of the epochs finished
    before (``history[i].train_time_s`` for epochs up to ``timing.resumed_from_epoch``; their evaluation
    and start-up time is not recorded, so a resumed run's cost is slightly understated). None when the
    record has no wall time."""
    timing = record.get("timing") or {}
    wall = timing.get("wall_time_s")
    if wall is None:
        return None
    resumed = timing.get("resumed_from_epoch") or 0
    earlier = sum(h.get("train_time_s") or 0 for h in record.get("history") or [] if h.get("epoch", 0) <= resumed)
    return wall + earlier


def records_table(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per record (columns :data:`TABLE_COLUMNS`), values read from the records, never recomputed
    (``budget_error``: a budget run's relative distance from its budget, ``model.budget_error``)."""
    rows = []
    for r in records:
        p, m, net, model = r["parameters"], r.get("metrics") or {}, r.get("network") or {}, r.get("model") or {}
        rows.append({
            "run_id": r["run_id"], "status": r["status"], "design": model.get("design", p.get("design")),
            "mode": r.get("mode"), "kr_ratio": model.get("kr_ratio"), "kr_fraction": model.get("kr_fraction", p.get("kr_ratio")),
            "R": model.get("R"), "K": model.get("K"), "param_budget": p.get("param_budget"),
            # the budget solver's relative distance from the budget: parameters / param_budget - 1
            "budget_error": model.get("budget_error"),
            "parameters": net.get("total_parameters", model.get("parameters")), "df": net.get("df"),
            "naive_count": net.get("naive_count"), "flops": net.get("flops_per_sample"),
            "weighted_kr": net.get("weighted_kr"), "seed": p.get("seed"), "epochs": p.get("epochs"),
            "train_limit": p.get("train_limit"), "test_accuracy": m.get("test_accuracy"),
            "best_test_accuracy": m.get("best_test_accuracy"), "test_loss": m.get("test_loss"),
            "train_accuracy": m.get("train_accuracy"), "wall_time_s": (r.get("timing") or {}).get("wall_time_s"),
            "run_time_s": run_time_s(r),
            "device": r.get("device"), "preset": (r.get("sweep") or {}).get("preset"),
        })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


#: What identifies one configuration across seeds.
CONFIG_KEYS = ["design", "mode", "kr_fraction", "kr_ratio", "R", "param_budget", "epochs", "train_limit"]


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """Completed runs grouped over seeds: mean, std and count of the test accuracy, and the (seed-free)
    size columns, one row per configuration, sorted by design, mode and K/R; ``failed`` and ``diverged``
    count that configuration's runs of each status (a diverged run trained and its loss blew up; a failed
    one raised), apart."""
    if table.empty:
        return pd.DataFrame(columns=[*CONFIG_KEYS, "K", "parameters", "df", "flops", "seeds", "accuracy_mean",
                                     "accuracy_std", "failed", "diverged"])
    keys = [k for k in CONFIG_KEYS]
    t = table.copy()
    t[keys] = t[keys].astype(object).where(t[keys].notna(), "-")
    done = t[t["status"] == "completed"]
    out = done.groupby(keys, sort=False).agg(
        K=("K", "first"), parameters=("parameters", "first"), df=("df", "first"), flops=("flops", "first"),
        seeds=("seed", "nunique"), accuracy_mean=("test_accuracy", "mean"), accuracy_std=("test_accuracy", "std"),
        run_time_s=("run_time_s", "mean"),
    )
    for status in ("failed", "diverged"):
        out = out.join(t[t["status"] == status].groupby(keys, sort=False).size().rename(status), how="outer")
    out = out.reset_index()
    out[["failed", "diverged"]] = out[["failed", "diverged"]].fillna(0).astype(int)
    out = out.sort_values(["design", "mode", "kr_ratio"], key=lambda s: s.astype(str) if s.name != "kr_ratio" else
                          pd.to_numeric(s, errors="coerce")).reset_index(drop=True)
    out[keys] = out[keys].replace("-", None)
    return out


def same_networks(records: Iterable[Mapping]) -> pd.DataFrame:
    """Completed runs that trained the same network with the same training parameters and seed under
    different names: a fixed-budget run whose solved widths equal a fixed-R run's (the budget solver can
    land on the fixed-R network). One row per such group: run ids, design, K/R, R, seed, parameters and
    each run's test accuracy and torch thread count, plus whether the accuracies are equal (on the CPU they
    are when the thread counts are: the thread count sets the order of floating-point sums). Empty when no
    two runs coincide."""
    groups: dict[str, list[Mapping]] = {}
    for r in records:
        if r.get("status") != "completed" or not r.get("model"):
            continue
        model = {k: v for k, v in r["model"].items() if k not in ("param_budget", "budget_error")}
        training = {k: r["parameters"].get(k) for k in SCIENTIFIC if k not in ("R", "param_budget")}
        key = json.dumps(canonical({"model": model, "training": training}), sort_keys=True)
        groups.setdefault(key, []).append(r)
    rows = []
    for group in groups.values():
        if len(group) < 2:
            continue
        group = sorted(group, key=lambda r: (str(r.get("mode")), r["run_id"]))
        accuracies = [r["metrics"]["test_accuracy"] for r in group]
        model = group[0]["model"]
        rows.append({"run_ids": [r["run_id"] for r in group], "modes": [r.get("mode") for r in group],
                     "design": model.get("design"), "kr_fraction": model.get("kr_fraction"), "R": model.get("R"),
                     "K": model.get("K"), "seed": group[0]["parameters"].get("seed"),
                     "parameters": model.get("parameters"), "devices": [r.get("device") for r in group],
                     "torch_threads": [(r.get("timing") or {}).get("torch_threads") for r in group],
                     "test_accuracies": accuracies, "identical_accuracy": len(set(accuracies)) == 1})
    return pd.DataFrame(rows, columns=["run_ids", "modes", "design", "kr_fraction", "R", "K", "seed", "parameters",
                                       "devices", "torch_threads", "test_accuracies", "identical_accuracy"])


def provenance_summary(records: Iterable[Mapping]) -> dict:
    """Where and how a set of records was made, from the records themselves: sweep presets, devices and
    machines, the summed run time (hours, :func:`run_time_s`), how many runs were resumed from a
    checkpoint, the first and last record dates, the library commits (and how many records ran on a
    checkout with uncommitted changes), the distinct run-code hashes (``versions.run_code``) and how many
    records have none."""
    records = list(records)
    machines = set()
    for r in records:
        m = r.get("machine") or {}
        machines.add(m.get("gpu") or f"{m.get('processor', '?')} CPU, {m.get('cpu_count', '?')} cores")
    created = sorted(r["created"] for r in records if r.get("created"))
    return {
        "records": len(records),
        "presets": sorted({str((r.get("sweep") or {}).get("preset")) for r in records}),
        "devices": sorted({str(r.get("device")) for r in records}),
        "machines": sorted(machines),
        "run_time_hours": sum(run_time_s(r) or 0 for r in records) / 3600,
        "resumed": sum(bool((r.get("timing") or {}).get("resumed_from_epoch")) for r in records),
        "first": created[0] if created else None,
        "last": created[-1] if created else None,
        "commits": sorted({str(r.get("git_commit"))[:12] for r in records}),
        # on a checkout with uncommitted changes to tracked files: the commit alone does not say what ran
        "dirty": sum(str(r.get("git_commit")).endswith("-dirty") for r in records),
        # versions.run_code: hash of the run code as it was on disk (older records lack it)
        "run_code": sorted({v for r in records if (v := (r.get("versions") or {}).get("run_code"))}),
        "without_run_code": sum(not (r.get("versions") or {}).get("run_code") for r in records),
    }


def records_fingerprint(folder: str | os.PathLike) -> str:
    """SHA-256 (12 hex digits) over the names and contents of the ``*.json`` files in ``folder``: changes
    whenever a record is added, removed or rewritten (for caches of pages drawn from records)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
