"""``kr ablate DATASET -p name=value ...``: one ablation run, the notebook ``notebooks/ablation.ipynb``
of the project executed by papermill; the record ``<output-dir>/<dataset>/<run_id>.json`` and the executed
notebook ``<run_id>.ipynb`` beside it. Values are read as YAML data (``-p kr_ratio=1/4 -p R=null``), never
run as code."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.cli_values import parse_assignments
from kr_lib.runs.identity import record_path
from kr_lib.runs.parameters import DEFAULTS, check_parameters
from kr_lib.runs.records import read_record
from kr_lib.runs.notebook_run import check_runnable, execute_run, resolved_folder


#: Names a record holds that are not run parameters a user sets: ``kr sweep`` sets ``sweep``, ``kr ablate``
#: always writes a (staged) record, and ``mode`` follows from R / param_budget. ``-p`` refuses them.
RECORD_ONLY = ("sweep", "staged_record", "save_record", "mode")
#: What ``-p`` accepts (the positional DATASET and --output-dir give the other two).
ACCEPTED = [n for n in DEFAULTS if n not in ("dataset", "output_dir", *RECORD_ONLY)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a registered dataset: fashion_mnist, moving_fashion_mnist, cifar10, svhn, ucf101")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a notebook parameter (repeatable): " + ", ".join(ACCEPTED))
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
    refused = [name for name in params if name in RECORD_ONLY]
    if refused:
        raise ValueError(f"-p {', '.join(refused)}: not a run parameter (the record sets it); -p accepts: "
                         + ", ".join(ACCEPTED))
    params["dataset"] = args.dataset
    params["data_dir"] = resolved_folder(params.get("data_dir"))  # relative: to the working directory
    checked = check_parameters(params)  # a bad name or value stops here, before any kernel starts
    if args.output_dir is None or args.notebook is None:
        root = find_project(args.project)
    output_dir = Path(args.output_dir).resolve() if args.output_dir is not None else root / "results"
    notebook = args.notebook if args.notebook is not None else root / "notebooks" / "ablation.ipynb"
    rid = checked.run_id
    path = record_path(output_dir, args.dataset, rid)
    if path.is_file() and not args.force:
        record = read_record(path)
        if record["status"] == "failed":
            print(f"kr ablate: {path} records this run as failed ({record.get('message') or 'no message'}); "
                  "nothing run: fix the cause and add --force to run it again", file=sys.stderr)
            return 1
        reason = f": {record['message']}" if record["status"] != "completed" and record.get("message") else ""
        print(f"{path} exists ({record['status']}{reason}); nothing to do (--force runs it again)")
        return 0 if record["status"] == "completed" else 1
    # the device, the data and the output folder, before any kernel starts (a bad one: one line, no record)
    check_runnable(checked.replace(output_dir=str(output_dir)), download_flag="-p download=true")
    print(f"run {rid} -> {path}")
    outcome = execute_run(checked, output_dir, notebook=notebook, progress=args.progress,
                          download_flag="-p download=true")
    record = read_record(outcome.path)
    metrics = record.get("metrics") or {}
    print(json.dumps({"run_id": rid, "status": outcome.status, "test_accuracy": metrics.get("test_accuracy"),
                      "wall_time_s": round(outcome.wall_time_s, 1), "record": str(outcome.path)}, indent=1))
    if outcome.status != "completed":
        print(f"{outcome.status}: {outcome.message or record.get('message') or 'no reason recorded'}")
    return 0 if outcome.status == "completed" else 1
