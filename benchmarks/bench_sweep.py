"""A sweep: the same grid of small ablation runs by ``kr sweep`` with one worker using every core, then with
``--workers N`` (N = the cores, one thread each (two on one GPU), each process pinned to its core), each into its own
temporary results folder.

The two modes alternate for ``--repeats`` rounds (default 3, 1 with --quick), each round into fresh folders,
so that a slow spell of a shared machine falls on both. A row per mode and round has its wall time, the CPU
time of its process tree, and the throughput (runs per hour of wall time). ``workers / one worker`` is the
ratio of the two modes' median throughputs (the target: >= 1.3 on 2 cores). Both modes run the same runs
(the same run ids), so the ratio compares equal work; the record notes the load average before and after
each sweep.

    python benchmarks/bench_sweep.py [--quick] [--repeats N] [--workers N] [--runs N] [--train-limit N]
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.parallel import available_cpus  # noqa: E402

DESIGNS = ("bottleneck", "separable", "resnext", "inverted_residual")


def sweep_file(folder: Path, n_runs: int, train_limit: int) -> Path:
    """A sweep file of ``n_runs`` small Fashion-MNIST runs (designs x K/R in {1, 2}, R = 8, one epoch)."""
    designs = DESIGNS[: max(1, (n_runs + 1) // 2)]
    path = folder / "bench.yaml"
    path.write_text(
        "dataset: fashion_mnist\n"
        f"parameters: {{epochs: 1, train_limit: {train_limit}, test_limit: 1024, stages: 2, stem_stride: 2, "
        "batch_size: 128}\n"
        f"grids:\n  runs: {{design: [{', '.join(designs)}], kr_ratio: [1, 2], R: [8], seed: [0]}}\n")
    return path


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_sweep(label: str, sweep: Path, out: Path, workers: int, threads: int, device: str, limit: int) -> dict:
    """One ``kr sweep`` in a subprocess; its wall and CPU time and the records it wrote."""
    command = [sys.executable, "-m", "kr_lib.cli", "sweep", str(sweep), "--output-dir", str(out), "--device", device,
               "--workers", str(workers), "--threads", str(threads), "--limit", str(limit)]
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), children_cpu_seconds()
    subprocess.run(command, check=True, cwd=_common.REPO_ROOT)
    wall, cpu = time.perf_counter() - wall, children_cpu_seconds() - cpu
    records = sorted(p.stem for p in out.rglob("*.json"))
    return {"mode": label, "workers": workers, "threads per worker": threads, "runs": len(records),
            "wall_seconds": wall, "cpu_seconds": cpu, "runs per hour": 3600 * len(records) / wall,
            "load average before": load, "load average after": os.getloadavg()[0], "run_ids": records}


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=3, quick_repeats=1)
    p.add_argument("--workers", type=int, default=None, help="workers of the parallel sweep (default: the cores)")
    p.add_argument("--runs", type=int, default=None, help="runs in the grid (default 8; 4 with --quick)")
    p.add_argument("--train-limit", type=int, default=None,
                   help="training images of each run (default 6000; 2048 with --quick): larger runs weigh each "
                        "run's fixed start (a fresh kernel, its imports) less, as a real sweep's runs do")
    args = p.parse_args(argv)
    device, out_json, command = _common.setup(args, "sweep")
    cpus = len(available_cpus())
    workers = args.workers or (max(2, cpus) if device.type == "cpu" else 2)  # a GPU: two runs share it
    n_runs = args.runs or (4 if args.quick else 8)
    n_runs -= n_runs % 2  # two K/R values per design
    train_limit = args.train_limit or (2048 if args.quick else 6000)
    modes = {f"one worker, {cpus} threads": (1, cpus),
             f"{workers} workers, {max(1, cpus // workers)} thread(s) each": (workers, max(1, cpus // workers))}
    timed = []
    with tempfile.TemporaryDirectory(prefix="kr-bench-sweep-") as tmp:
        sweep = sweep_file(Path(tmp), n_runs, train_limit)
        for round_ in range(args.repeats):
            for i, (label, (n_workers, threads)) in enumerate(modes.items()):
                row = timed_sweep(label, sweep, Path(tmp) / f"round{round_}-mode{i}", n_workers, threads,
                                  device.type, n_runs)
                timed.append({"round": round_ + 1, **row})
                print(f"round {round_ + 1}, {label}: {row['runs']} runs in {row['wall_seconds']:.0f} s wall "
                      f"({row['runs per hour']:.0f} runs/h), {row['cpu_seconds']:.0f} s CPU, load "
                      f"{row['load average before']:.1f} -> {row['load average after']:.1f}", flush=True)
    if len({tuple(r["run_ids"]) for r in timed}) != 1:
        raise SystemExit(f"the two modes ran different runs: {sorted({tuple(r['run_ids']) for r in timed})}")
    one_label, many_label = modes
    throughput = {label: perf.median([r["runs per hour"] for r in timed if r["mode"] == label]) for label in modes}
    ratio = throughput[many_label] / throughput[one_label]
    print(f"throughput (median of {args.repeats} round(s)), {workers} workers / one worker: {ratio:.2f} "
          "(target >= 1.3)")
    rows = [{k: v for k, v in r.items() if k != "run_ids"} for r in timed]
    summary = {"runs": n_runs, "rounds": args.repeats,
               "throughput ratio, workers / one worker (target >= 1.3)": ratio,
               "one worker runs per hour (median)": throughput[one_label],
               "workers runs per hour (median)": throughput[many_label]}
    record = perf.make_record("sweep", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={"runs": n_runs, "train_limit": train_limit, "epochs": 1, "workers": workers,
                                          "cpus": cpus, "rounds": args.repeats, "run_ids": timed[0]["run_ids"]})
    print(f"wrote {perf.write_record(record, out_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
