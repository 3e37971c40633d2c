"""A sweep: the same grid of small ablation runs by ``kr sweep`` with one worker using every core, then with
``--workers N`` (N = the cores, one thread each (two on one GPU), each process pinned to its core), each into its own
temporary results folder.

The row of each mode has its wall time, the CPU time of its process tree, and the throughput (runs per
hour of wall time). ``workers / one worker`` is the ratio of the two throughputs (the target: >= 1.3 on
2 cores). Both modes run the same runs (the same run ids), so the ratio compares equal work; on a machine
shared with other jobs it is only as good as their load allows, and the record notes the load average
before and after.

    python benchmarks/bench_sweep.py [--quick] [--workers N] [--runs N]
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
    p = _common.parser(__doc__.splitlines()[0], repeats=1, quick_repeats=1)
    p.add_argument("--workers", type=int, default=None, help="workers of the parallel sweep (default: the cores)")
    p.add_argument("--runs", type=int, default=None, help="runs in the grid (default 8; 4 with --quick)")
    args = p.parse_args(argv)
    device, out_json, command = _common.setup(args, "sweep")
    cpus = len(available_cpus())
    workers = args.workers or (max(2, cpus) if device.type == "cpu" else 2)  # a GPU: two runs share it
    n_runs = args.runs or (4 if args.quick else 8)
    n_runs -= n_runs % 2  # two K/R values per design
    train_limit = 2048 if args.quick else 6000
    with tempfile.TemporaryDirectory(prefix="kr-bench-sweep-") as tmp:
        sweep = sweep_file(Path(tmp), n_runs, train_limit)
        one = timed_sweep(f"one worker, {cpus} threads", sweep, Path(tmp) / "one", 1, cpus, device.type, n_runs)
        many = timed_sweep(f"{workers} workers, {max(1, cpus // workers)} thread(s) each", sweep, Path(tmp) / "many",
                           workers, max(1, cpus // workers), device.type, n_runs)
    if one["run_ids"] != many["run_ids"]:
        raise SystemExit(f"the two modes ran different runs: {one['run_ids']} against {many['run_ids']}")
    ratio = many["runs per hour"] / one["runs per hour"]
    for r in (one, many):
        print(f"{r['mode']}: {r['runs']} runs in {r['wall_seconds']:.0f} s wall ({r['runs per hour']:.0f} runs/h), "
              f"{r['cpu_seconds']:.0f} s CPU, load {r['load average before']:.1f} -> {r['load average after']:.1f}")
    print(f"throughput, {workers} workers / one worker: {ratio:.2f} (target >= 1.3)")
    rows = [{k: v for k, v in r.items() if k != "run_ids"} for r in (one, many)]
    summary = {"runs": n_runs, "throughput ratio, workers / one worker (target >= 1.3)": ratio,
               "one worker wall seconds": one["wall_seconds"], "workers wall seconds": many["wall_seconds"]}
    record = perf.make_record("sweep", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={"runs": n_runs, "train_limit": train_limit, "epochs": 1, "workers": workers,
                                          "cpus": cpus, "run_ids": one["run_ids"]})
    print(f"wrote {perf.write_record(record, out_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
