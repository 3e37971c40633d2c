"""``kr measure RECORD`` / ``kr measure DATASET``: the measured redundancy of trained networks, one row per block
(K, R, K/R, effective rank, 99 % components, accuracy unpruned and pruned to R and R/2 directions).
Each network's rows are cached in ``results/<dataset>/measured/<run_id>.json`` as soon as it is measured
(``kr_lib.measured.cache``: keyed by the weights, the parameters and the measuring code), and read from there
the next time; ``--csv F`` writes every column (spectra as space-separated numbers)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from kr_lib.measured.cache import DEFAULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a result record (results/<dataset>/<run_id>.json) or a dataset name "
                                       "(every record with saved weights in results/<dataset>)")
    parser.add_argument("--dataset", default=None, help="refuse records that are not this dataset's")
    parser.add_argument("--results-dir", default=None, help="the results root for a DATASET (default: the checkout's results/)")
    parser.add_argument("--ranks", type=int, nargs="+", default=None,
                        help="the r of the pruning test (default: each block's grid: K halved down to 1, with R and R/2)")
    parser.add_argument("--fit-limit", type=int, default=DEFAULTS["fit_limit"],
                        help=f"training samples for the spectrum and the principal directions (default "
                             f"{DEFAULTS['fit_limit']}, the chapter's)")
    parser.add_argument("--test-limit", type=int, default=DEFAULTS["test_limit"],
                        help="test samples for the accuracies (default: all, the chapter's)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 beside other jobs)")
    parser.add_argument("--no-channel-removal", action="store_true",
                        help="skip the Torch-Pruning magnitude channel removal (two fewer versions per test pass)")
    parser.add_argument("--force", action="store_true", help="measure again even the networks with a valid cache entry")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write results/<dataset>/measured/ (measure everything, keep nothing)")
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
    import torch

    from kr_lib.atomic import write_text_atomic
    from kr_lib.measured import SUMMARY_COLUMNS
    from kr_lib.measured.cache import measured_table, measurement_parameters

    for name in ("fit_limit", "test_limit"):
        value = getattr(args, name)
        if value is not None and value < 2:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 2, got {value}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    params = measurement_parameters(fit_limit=args.fit_limit, test_limit=args.test_limit, ranks=args.ranks,
                                    channel_removal=not args.no_channel_removal)
    paths = _targets(args)

    def said(path, table, seconds):  # one line per network, as it is cached
        print(f"measured {path.stem}: {len(table)} blocks, {seconds['cpu_s']:.1f} CPU-s, {seconds['wall_s']:.1f} s "
              f"wall" + ("" if args.no_cache else f" -> {path.parent.name}/measured/{path.name}"), flush=True)

    table = measured_table(paths, dataset=args.dataset, write=not args.no_cache, force=args.force or args.no_cache,
                           device=args.device, on_measured=said, **params)
    cols = (["run_id"] if len(paths) > 1 else []) + SUMMARY_COLUMNS
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 10_000):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"spectrum: {table.attrs.get('fit_split')}; accuracies: {table.attrs.get('test_split')}; "
          f"channel removal: {'Torch-Pruning ' + table.attrs['torch_pruning'] if table.attrs.get('torch_pruning') else 'off'}; "
          f"{table.attrs['measured_now']} network(s) measured, {table.attrs['cached']} read from the cache")
    if args.csv:
        write_text_atomic(csv_table(table).to_csv(index=False), args.csv)
        print(f"wrote {args.csv}")
    return 0
