"""``kr ablate DATASET -p name=value ...``: one ablation run, the notebook ``notebooks/ablation.ipynb``
of the project executed by papermill; the record ``<output-dir>/<dataset>/<run_id>.json`` and the executed
notebook ``<run_id>.ipynb`` beside it. Values are read as YAML data (``-p kr_ratio=1/4 -p R=null``), never
run as code."""
from __future__ import annotations

import argparse
import json

from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.cli_values import parse_assignments
from kr_lib.runs.identity import record_path
from kr_lib.runs.parameters import DEFAULTS, check_parameters
from kr_lib.runs.records import read_record
from kr_lib.runs.notebook_run import execute_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a registered dataset: fashion_mnist, moving_fashion_mnist, cifar10, svhn, ucf101")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a notebook parameter (repeatable): " + ", ".join(n for n in DEFAULTS
                                                                              if n not in ("dataset", "output_dir", "sweep", "staged_record")))
    parser.add_argument("--output-dir", default=None, help="results root (default: the project's results/)")
    parser.add_argument("--force", action="store_true", help="run again even if the record exists")
    parser.add_argument("--notebook", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--progress", action="store_true", help="show papermill's cell progress")
    add_project_argument(parser)


def run(args) -> int:
    params = parse_assignments(args.param)
    for name in ("dataset", "output_dir"):
        if name in params:
            raise ValueError(f"give {name} as {'the positional DATASET' if name == 'dataset' else '--output-dir'}, not -p")
    params["dataset"] = args.dataset
    checked = check_parameters(params)  # a bad name or value stops here, before any kernel starts
    if args.output_dir is None or args.notebook is None:
        root = find_project(args.project)
    output_dir = args.output_dir if args.output_dir is not None else root / "results"
    notebook = args.notebook if args.notebook is not None else root / "notebooks" / "ablation.ipynb"
    rid = checked.run_id
    path = record_path(output_dir, args.dataset, rid)
    if path.is_file() and not args.force:
        status = read_record(path)["status"]
        print(f"{path} exists ({status}); nothing to do (--force runs it again)")
        return 0
    print(f"run {rid} -> {path}")
    outcome = execute_run(checked, output_dir, notebook=notebook, progress=args.progress)
    record = read_record(outcome.path)
    metrics = record.get("metrics") or {}
    print(json.dumps({"run_id": rid, "status": outcome.status, "test_accuracy": metrics.get("test_accuracy"),
                      "wall_time_s": round(outcome.wall_time_s, 1), "record": str(outcome.path)}, indent=1))
    if outcome.status == "failed":
        print(f"failed: {outcome.message}")
    return 0 if outcome.status == "completed" else 1
