"""Rerun committed records on another CPU's kernels and keep each comparison in ``results/reproduction/``.

One machine stands in for a second CPU: with ``--emulate avx2`` (the default) the rerun's kernel runs with
torch (ATen), oneDNN and MKL capped at AVX2 (``kr_lib.runs.reproduction.AVX2_EMULATION``), so it picks the
kernels an AVX2-only x86 CPU would; ``--emulate none`` reruns on this CPU's own kernels (a same-CPU control).
Check that the cap takes effect with ``ONEDNN_VERBOSE=1`` (the convolutions then run ``jit:avx2``).

    nice -n 5 python scripts/cross_cpu_reproduction.py results/fashion_mnist/<run_id>.json ...

Each comparison is written atomically as ``results/reproduction/<run_id>-<capability>.json``;
``kr_lib.runs.reproduction.cross_cpu_spread`` reads them (the Rerun page prints it).
"""
import argparse
import os
import sys
import time
from pathlib import Path

from kr_lib.runs.reproduction import AVX2_EMULATION, FOLDER, comparison_record, write_comparison

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("records", nargs="+", help="committed records, e.g. results/fashion_mnist/<run_id>.json")
parser.add_argument("--emulate", choices=("avx2", "none"), default="avx2",
                    help="avx2 (default): cap the rerun's kernels at AVX2; none: this CPU's own kernels")
parser.add_argument("--results-dir", default="results", help="results root; comparisons go to <it>/reproduction")
args = parser.parse_args()

environment = dict(AVX2_EMULATION) if args.emulate == "avx2" else {}
os.environ.update(environment)  # inherited by the kernel that reruns the notebook

from kr_lib.runs.reproduce import reproduce  # noqa: E402  (after the environment: nothing here computes)

for record in args.records:
    start = time.monotonic()
    cmp = reproduce(record, device="cpu")
    out = write_comparison(comparison_record(cmp.original_record, cmp.rerun_record, rule=cmp.rule, reason=cmp.reason,
                                             environment=environment,
                                             note="kernels capped at AVX2 on an AVX-512 machine: an emulated "
                                                  "second CPU" if environment else "same-CPU control"),
                           Path(args.results_dir) / FOLDER)
    print(f"{Path(record).stem}: accuracy {cmp.original.get('test_accuracy')} recorded, "
          f"{cmp.rerun.get('test_accuracy')} rerun ({cmp.rerun_record['machine'].get('cpu_capability')}, "
          f"{time.monotonic() - start:.0f} s); rule: {cmp.rule} ({cmp.reason}) -> {out.name}", flush=True)
sys.exit(0)
