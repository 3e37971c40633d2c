"""``kr measure RECORD`` / ``kr measure DATASET``: the measured redundancy of trained networks, one row per block
(K, R, K/R, effective rank, 99 % components, accuracy unpruned and pruned to R and R/2 directions);
``--csv F`` writes every column (spectra as space-separated numbers)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a result record (results/<dataset>/<run_id>.json) or a dataset name "
                                       "(every record with saved weights in results/<dataset>)")
    parser.add_argument("--dataset", default=None, help="refuse records that are not this dataset's")
    parser.add_argument("--results-dir", default=None, help="the results root for a DATASET (default: the checkout's results/)")
    parser.add_argument("--ranks", type=int, nargs="+", default=None,
                        help="the r of the pruning test (default: K, K/2, R, R/2 and the powers of two of each block)")
    parser.add_argument("--fit-limit", type=int, default=5000,
                        help="training samples for the spectrum and the principal directions (default 5000)")
    parser.add_argument("--test-limit", type=int, default=None, help="test samples for the accuracies (default: all)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--no-channel-removal", action="store_true",
                        help="skip the Torch-Pruning magnitude channel removal (one extra test pass per block)")
    parser.add_argument("--csv", default=None, help="write the whole table to this CSV file (atomically)")


def _targets(args) -> list[Path]:
    from kr_lib.data import DATASETS
    from kr_lib.measured import records_with_weights
    from kr_lib.runs.records import REPO_ROOT

    target = Path(args.target)
    if target.is_file():
        return [target]
    if target.is_dir():
        folder = target
    elif args.target in DATASETS:
        if args.dataset is not None and args.dataset != args.target:
            raise ValueError(f"--dataset {args.dataset} disagrees with the dataset {args.target} to measure")
        args.dataset = args.target
        folder = Path(args.results_dir or REPO_ROOT / "results") / args.target
    else:
        raise ValueError(f"{args.target} is neither a record file, a results folder nor a dataset name "
                         f"(accepted: {', '.join(DATASETS)})")
    have, lack = records_with_weights(folder)
    if not have:
        example = f"kr reproduce {lack[0]} --save-weights" if lack else f"kr sweep sweeps/{args.target}.yaml"
        raise ValueError(f"no completed record in {folder} has saved weights ({len(lack)} without); "
                         f"make them with: {example}")
    return have


def csv_table(table: pd.DataFrame) -> pd.DataFrame:
    """The measured table with its list columns as text: arrays as space-separated numbers, the pruned
    accuracies as ``r:accuracy`` pairs."""
    out = table.copy()
    for col in out.columns:
        sample = next((v for v in out[col] if v is not None and not (isinstance(v, float) and np.isnan(v))), None)
        if isinstance(sample, dict):
            out[col] = [" ".join(f"{k}:{v:.6g}" for k, v in d.items()) if isinstance(d, dict) else "" for d in out[col]]
        elif isinstance(sample, (list, tuple, np.ndarray)):
            out[col] = [" ".join(f"{x:.6g}" for x in v) if isinstance(v, (list, tuple, np.ndarray)) else ""
                        for v in out[col]]
    return out


def run(args) -> int:
    from kr_lib.atomic import write_text_atomic
    from kr_lib.measured import SUMMARY_COLUMNS, measure_records

    for name in ("fit_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 2:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 2, got {value}")
    paths = _targets(args)
    table = measure_records(paths, dataset=args.dataset, ranks=args.ranks, fit_limit=args.fit_limit,
                            test_limit=args.test_limit, device=args.device,
                            channel_removal=not args.no_channel_removal)
    cols = (["run_id"] if len(paths) > 1 else []) + SUMMARY_COLUMNS
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 10_000):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"spectrum: {table.attrs.get('fit_split')}; accuracies: {table.attrs.get('test_split')}; "
          f"channel removal: {'Torch-Pruning ' + table.attrs['torch_pruning'] if table.attrs.get('torch_pruning') else 'off'}")
    if args.csv:
        write_text_atomic(csv_table(table).to_csv(index=False), args.csv)
        print(f"wrote {args.csv}")
    return 0
