"""``kr results DATASET``: the aggregated table of a dataset's result records (mean and spread over seeds).
A file that is not a valid record is reported (and the exit code is 1), never skipped silently."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from kr_lib.atomic import atomic_open
from kr_lib.data import DATASETS
from kr_lib.project import add_project_argument, find_project, project_of
from kr_lib.runs.records import aggregate, read_records, records_table
from kr_lib.validate import writable_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset name (the folder <results-dir>/<dataset>)")
    parser.add_argument("--results-dir", default=None, help="results root (default: the project's results/)")
    parser.add_argument("--runs", action="store_true", help="one row per run instead of per configuration")
    parser.add_argument("--csv", default=None, metavar="FILE", help="also write the table as CSV")
    add_project_argument(parser)


def _fill_hint(dataset: str, project) -> str:
    """How to make records for ``dataset``: its sweep file if the project has one, else ``kr ablate``."""
    if project is not None and (project / "sweeps" / f"{dataset}.yaml").is_file():
        return f"kr sweep sweeps/{dataset}.yaml --preset quick"
    return f"kr ablate {dataset}"


def run(args) -> int:
    if args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; known: {', '.join(DATASETS)}")
    if args.results_dir is not None:
        results_dir, project = Path(args.results_dir), project_of(Path.cwd())
        if not results_dir.is_dir():
            raise FileNotFoundError(f"--results-dir {results_dir} is not a folder"
                                    + ("" if not results_dir.exists() else " (it is a file)")
                                    + "; give the results root that holds <dataset>/<run_id>.json")
    else:
        project = find_project(args.project)
        results_dir = project / "results"
    if args.csv:
        writable_file(args.csv, "--csv")  # before reading anything
    folder = results_dir / args.dataset
    records, corrupt = read_records(folder)
    for bad in corrupt:
        print(f"corrupt record {bad.path}: {bad.reason}", file=sys.stderr)
    if not records:
        print(f"no result records in {folder}" + (f" ({len(corrupt)} corrupt)" if corrupt else "")
              + f"; fill it with: {_fill_hint(args.dataset, project)}")
        return 1 if corrupt else 0
    table = records_table(records)
    out = table if args.runs else aggregate(table)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    counts = table["status"].value_counts().to_dict()
    print(f"{len(records)} records in {folder}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f"; {len(corrupt)} corrupt (above)" if corrupt else ""))
    if args.csv:
        with atomic_open(args.csv, "w", encoding="utf-8", newline="") as fh:
            out.to_csv(fh, index=False)
    return 1 if corrupt else 0
