"""``kr sweep FILE [--preset NAME]``: a sweep file's grid of ablation runs, one after another with overall
progress (or ``--backend ray [--address ADDR]``: one Ray task per run). Runs whose record exists are
skipped, so a sweep stopped at any moment (SIGKILL included) continues where it stopped when started again."""
from __future__ import annotations

import argparse

from kr_lib.project import add_project_argument, find_project
from kr_lib.runs.identity import record_path
from kr_lib.runs.presets import seed_time_estimates
from kr_lib.runs.sweepfile import load_sweep


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
    from kr_lib.runs.runner import run_sweep  # the runner (papermill, locks) only when something runs

    root = find_project(args.project)
    summary = run_sweep(args.file, args.preset, output_dir=args.output_dir or root / "results", device=args.device,
                        threads=args.threads, data_dir=args.data_dir, download=args.download, backend=args.backend,
                        address=args.address, retry_failed=args.retry_failed, limit=args.limit,
                        notebook=root / "notebooks" / "ablation.ipynb")
    print(summary)
    return 1 if summary.count("failed") else 0
