"""``kr results DATASET``: the aggregated table of a dataset's result records (mean and spread over seeds).
A file that is not a valid record is reported (and the exit code is 1), never skipped silently."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.records import aggregate, read_records, records_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset name (the folder <results-dir>/<dataset>)")
    parser.add_argument("--results-dir", default=None, help="results root (default: the project's results/)")
    parser.add_argument("--runs", action="store_true", help="one row per run instead of per configuration")
    parser.add_argument("--csv", default=None, metavar="FILE", help="also write the table as CSV")
    add_project_argument(parser)


def run(args) -> int:
    results_dir = Path(args.results_dir) if args.results_dir is not None else find_project(args.project) / "results"
    folder = results_dir / args.dataset
    records, corrupt = read_records(folder)
    for bad in corrupt:
        print(f"corrupt record {bad.path}: {bad.reason}", file=sys.stderr)
    if not records:
        print(f"no result records in {folder}" + (f" ({len(corrupt)} corrupt)" if corrupt else "")
              + f"; fill it with: kr sweep sweeps/{args.dataset}.yaml --preset quick")
        return 1 if corrupt else 0
    table = records_table(records)
    out = table if args.runs else aggregate(table)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    counts = table["status"].value_counts().to_dict()
    print(f"{len(records)} records in {folder}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f"; {len(corrupt)} corrupt (above)" if corrupt else ""))
    if args.csv:
        out.to_csv(args.csv, index=False)
    return 1 if corrupt else 0
