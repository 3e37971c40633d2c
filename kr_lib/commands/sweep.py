"""``kr sweep FILE [--preset NAME]``: a sweep file's grid of ablation runs, one after another with overall
progress (or ``--backend ray [--address ADDR]``: one Ray task per run). Runs whose record exists are
skipped, so a sweep stopped at any moment (SIGKILL included) continues where it stopped when started again."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.identity import record_path
from kr_lib.runs.notebook_run import check_runnable, resolved_folder
from kr_lib.runs.presets import seed_time_estimates
from kr_lib.runs.records import recorded_status
from kr_lib.runs.sweepfile import load_sweep
from kr_lib.validate import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a sweep file, e.g. sweeps/fashion_mnist.yaml")
    parser.add_argument("--preset", default=None, help="a preset of the file (e.g. quick, book, paper)")
    parser.add_argument("--output-dir", default=None, help="results root (default: the project's results/)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch in each run (default: torch's)")
    parser.add_argument("--data-dir", default=None, help="data root (default: $KR_DATA_DIR, then the dataset's default)")
    parser.add_argument("--download", action="store_true", help="fetch a missing dataset (cifar10, svhn; needs internet)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: one run after another (default); ray: one Ray task per run")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--workers", type=int, default=1,
                        help="local runs side by side in N processes, each pinned to --threads cores "
                             "(default threads: cores // N); resumes after a kill as one worker does")
    parser.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    parser.add_argument("--limit", type=int, default=None, help="run at most N runs in this call")
    parser.add_argument("--dry-run", action="store_true", help="list the runs (and which are recorded) and exit")
    add_project_argument(parser)


def run(args) -> int:
    if args.dry_run:
        sweep = load_sweep(args.file, args.preset)
        output_dir = args.output_dir if args.output_dir is not None else find_project(args.project) / "results"
        estimates = seed_time_estimates(sweep.runs, output_dir, sweep.dataset)
        done, todo_seconds, todo_estimated = 0, 0.0, 0
        for p, estimate in zip(sweep.runs, estimates):
            rid = p.run_id
            exists = record_path(output_dir, sweep.dataset, rid).is_file()
            done += exists
            size = f"R={p['R']}" if p["R"] is not None else f"budget={p['param_budget']}"
            hint = ""
            if not exists and estimate is not None:
                todo_seconds, todo_estimated = todo_seconds + estimate, todo_estimated + 1
                hint = f"  (~{estimate / 60:.0f} min, as another seed's record took)"
            print(f"{'done' if exists else 'todo'}  {rid}  {p['design']} K/R={p['kr_ratio']} {size} "
                  f"epochs={p['epochs']} seed={p['seed']}{hint}")
        print(f"{len(sweep.runs)} runs, {done} recorded. {sweep.description.strip()}")
        if todo_estimated:
            print(f"{todo_estimated} of the {len(sweep.runs) - done} runs to do have a record with another seed: "
                  f"about {todo_seconds / 3600:.1f} hours of run time at those records' speed")
        if sweep.cost:
            print(f"cost: {sweep.cost.strip()}")
        return 0
    if args.address and args.backend != "ray":
        raise ValueError("--address is for --backend ray")
    root = find_project(args.project)
    output_dir = _check_before_running(args, root)
    from kr_lib.runs.runner import run_sweep  # the runner (papermill, locks) only when something runs

    summary = run_sweep(args.file, args.preset, output_dir=output_dir, device=args.device,
                        threads=args.threads, data_dir=args.data_dir, download=args.download, backend=args.backend,
                        address=args.address, retry_failed=args.retry_failed, limit=args.limit,
                        notebook=root / "notebooks" / "ablation.ipynb", workers=args.workers)
    print(summary)
    return 1 if summary.count("failed") + _recorded_failed(summary, args.retry_failed) else 0


def _check_before_running(args, root) -> Path:
    """Everything that can be checked before the first run starts: the counts, the sweep file (every run's
    parameters), the device, the data and the output folder (:func:`kr_lib.runs.notebook_run.check_runnable`).
    Returns the output folder (absolute: a relative one is the working directory's)."""
    positive_int(args.limit, "--limit", optional=True)
    positive_int(args.threads, "--threads", optional=True)
    output_dir = Path(args.output_dir).resolve() if args.output_dir else root / "results"
    sweep = load_sweep(args.file, args.preset)
    for p in sweep.runs[:1]:  # device, data folder and output folder are the same for every run
        check_runnable(p.replace(device=args.device, threads=args.threads, data_dir=resolved_folder(args.data_dir),
                                 download=args.download, output_dir=str(output_dir)), download_flag="--download")
    return output_dir


def _recorded_failed(summary, retry_failed: bool) -> int:
    """How many runs were skipped because their record says failed (and say so, with the fix)."""
    failed = sum(o.status == "skipped" and o.path is not None and recorded_status(o.path) == "failed"
                 for o in summary.outcomes)
    if failed and not retry_failed:
        print(f"{failed} run(s) of the grid are recorded as failed and were not run again; fix the cause "
              "(the record's message says it) and add --retry-failed to run them again", file=sys.stderr)
    return failed
