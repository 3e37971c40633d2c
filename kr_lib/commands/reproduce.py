"""``kr reproduce RECORD``: rerun a result record's exact parameters and compare the metrics -- identical
on the record's own CPU (model, instruction set, thread count, torch and run code all recorded and equal),
else within a tolerance (``CPU_ACCURACY_TOLERANCE``/``CPU_LOSS_RTOL`` of :mod:`kr_lib.runs.reproduce` on
another CPU, the ``GPU_`` ones with a GPU). It prints the rule it used and why
(:func:`kr_lib.runs.reproduce.exact_rule`)."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from kr_lib.device import resolve_device
from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.records import read_record
from kr_lib.validate import positive_number, writable_folder
from kr_lib.runs.reproduce import (CPU_ACCURACY_TOLERANCE, CPU_LOSS_RTOL, GPU_ACCURACY_TOLERANCE, GPU_LOSS_RTOL,
                                   reproduce)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("record", help="a result record, e.g. results/fashion_mnist/<run_id>.json")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    parser.add_argument("--output-dir", default=None, help="keep the rerun's record here (default: a temporary folder)")
    parser.add_argument("--accuracy-tol", type=float, default=None,
                        help=f"allowed accuracy difference when the rule is not exact (default {CPU_ACCURACY_TOLERANCE} "
                             f"on another CPU, {GPU_ACCURACY_TOLERANCE} with a GPU)")
    parser.add_argument("--loss-rtol", type=float, default=None,
                        help=f"allowed relative loss difference when the rule is not exact (default {CPU_LOSS_RTOL} "
                             f"on another CPU, {GPU_LOSS_RTOL} with a GPU)")
    parser.add_argument("--save-weights", action="store_true",
                        help="rerun on the CPU and, if the metrics are identical, save the trained weights "
                             "beside the record (for records made before weights were kept)")
    add_project_argument(parser)


def run(args) -> int:
    record = Path(args.record)
    if record.is_dir():
        raise ValueError(f"{record} is a folder; kr reproduce takes one record file, e.g. "
                         f"{record / '<run_id>.json'}")
    if not record.is_file():
        raise FileNotFoundError(f"record {record} not found; give a result record such as "
                                "results/fashion_mnist/<run_id>.json")
    read_record(record)  # a corrupt record (or one edited by hand) stops here, before the rerun
    for value, name in ((args.accuracy_tol, "--accuracy-tol"), (args.loss_rtol, "--loss-rtol")):
        if value is not None:
            positive_number(value, name, allow_zero=True)
    resolve_device(args.device)
    if args.output_dir is not None:
        writable_folder(args.output_dir, "--output-dir")
    if args.save_weights:
        writable_folder(record.parent, "the record's folder (--save-weights)")
    cmp = reproduce(args.record, device=args.device, output_dir=args.output_dir, accuracy_tol=args.accuracy_tol,
                    loss_rtol=args.loss_rtol, save_weights=args.save_weights,
                    notebook=find_project(args.project) / "notebooks" / "ablation.ipynb")
    # every metric of either run; a difference only where both are numbers ("-": not comparable)
    names = [*cmp.original, *(k for k in cmp.rerun if k not in cmp.original)]
    difference = {k: cmp.differences[k] if cmp.differences.get(k) is not None else _difference(cmp, k) for k in names}
    table = pd.DataFrame({"original": cmp.original, "rerun": cmp.rerun, "difference": difference}, index=names,
                         dtype=object).fillna("-")
    print(table.to_string())
    print(f"rule: {cmp.rule}" + (f" ({cmp.reason})" if cmp.reason else "") + f"; {'AGREE' if cmp.agree else 'DIFFER'}")
    if args.save_weights:
        print(f"weights saved: {cmp.weights_path}" if cmp.weights_path else
              "weights NOT saved: the rerun's metrics are not identical to the record's")
    return 0 if cmp.agree else 1


def _difference(cmp, key: str):
    """rerun - original of one metric when both are numbers, else None."""
    a, b = cmp.original.get(key), cmp.rerun.get(key)
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return b - a if ok else None
