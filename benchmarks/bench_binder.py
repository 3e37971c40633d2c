"""Binder: the peak memory and wall time of each executed book page, run at the book's parameters.

mybinder.org gives a session at most 2 GB of memory (the container's limit, counted over every process
in it: the Jupyter server and the kernel) and about one CPU. Each page of ``book/executed_pages.yml`` is
run at the parameters the book uses (its ``parameters:``, else the notebook's own defaults) with papermill,
one page after another, each in its own subprocess (``python -c`` running ``papermill.execute_notebook`` with
the kernel ``kr book`` names, in a copy of the sources, the kernel importing ``kr_lib`` from the copy), on one
torch thread (``OMP_NUM_THREADS=1``, Binder's one CPU). Memory figures per page:

- ``kernel_peak_mib``: the largest resident set size any child of the papermill process reached (its
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, read by the kernel's parent once papermill has reaped the kernel):
  the exact peak of the Jupyter kernel, the process that grows when a reader runs the notebook;
- ``tree_peak_mib``: the largest sum of resident set sizes of the whole process tree (papermill, standing in
  for the Jupyter server, plus the kernel and anything it starts), sampled every ``--interval`` seconds by
  psutil: what the container's limit is compared with (an upper estimate: shared library pages are counted
  once per process; a peak shorter than the interval can be missed);
- ``papermill_peak_mib``: the papermill process's own peak (``VmHWM``), which stands in for the Jupyter
  server. ``under_binder_limit``: kernel peak + papermill peak (each exact, their sum an upper bound) and the
  sampled tree peak both below 2 GB.

A page that runs longer than ``--page-timeout`` seconds is stopped and recorded as not measured, with that
reason (and the peak reached until then); a page that fails is recorded with its error. None is skipped.

    nice -n 5 python benchmarks/bench_binder.py [--only PAGE ...] [--page-timeout 900]   # --quick: tiny parameters
    nice -n 5 python benchmarks/bench_binder.py --only notebooks/ablation --merge          # re-measure one page
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_book import copy_sources  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.book import executed_pages  # noqa: E402

#: mybinder.org's memory limit per session (2 GB; the smaller reading, 10^9 bytes a GB).
BINDER_LIMIT_BYTES = 2 * 10**9
MIB = 2**20
NOTE = ("measured on a shared 2-core machine while other processes were running, one page at a time on one torch "
        "thread: wall times are longer than on an idle machine; memory is not affected by the load")

# Runs in the page's subprocess: papermill in this process (without kr_lib, whose torch would make the driver
# weigh as much as a kernel; it stands in for the Jupyter server), the kernel its child. After papermill returns, the
# kernel has been reaped, so RUSAGE_CHILDREN's ru_maxrss (KiB on Linux) is the largest child's peak: the kernel's.
# Its own peak is VmHWM, not RUSAGE_SELF: Linux carries the forking process's high-water mark across exec into
# ru_maxrss (here the benchmark's, with torch), while VmHWM belongs to the address space exec made.
_RUN_PAGE = """
import json, resource, sys, time
import papermill
source, target, parameters, cwd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
papermill.execute_notebook(source, target, parameters=parameters, kernel_name="python3", cwd=cwd,
                           progress_bar=False, extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
seconds = time.perf_counter() - started
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("KR_BINDER " + json.dumps({"seconds": seconds,
      "kernel_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
      "driver_maxrss_kib": hwm}), flush=True)
"""


def tree_rss(proc) -> int:
    """Sum of the resident set sizes of ``proc`` (a psutil.Process) and all its descendants, in bytes."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def measure_page(page: str, how: dict, root: Path, out_dir: Path, timeout: float, interval: float) -> dict:
    """Run one page in a subprocess; return its row (status, seconds, kernel and tree peaks in MiB)."""
    import psutil

    source = root / how["source"]
    target = out_dir / page
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "KR_RESULTS_DIR": str(out_dir / "runs"), "TQDM_DISABLE": "1"}  # an ablation's record goes to the scratch folder
    cmd = [sys.executable, "-c", _RUN_PAGE, str(source), str(target), json.dumps(how["parameters"]),
           str(source.parent)]
    started = time.perf_counter()
    # output to files, not pipes: a chatty kernel would fill a pipe nobody reads while the loop below samples
    out_log, err_log = target.with_suffix(".stdout"), target.with_suffix(".stderr")
    with open(out_log, "w") as out, open(err_log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=err, start_new_session=True)
    watched, peak, status = psutil.Process(proc.pid), 0, None
    while proc.poll() is None:
        peak = max(peak, tree_rss(watched))
        if time.perf_counter() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: papermill and its kernel
            status = f"not measured: stopped after {timeout:.0f} s (--page-timeout) on this shared 2-core machine"
            break
        time.sleep(interval)
    proc.wait()
    stdout, stderr = out_log.read_text(errors="replace"), err_log.read_text(errors="replace")
    seconds = time.perf_counter() - started
    row = {"page": page, "source": how["source"], "parameters": json.dumps(how["parameters"], sort_keys=True),
           "wall_seconds": round(seconds, 1), "tree_peak_mib": round(peak / MIB, 1), "kernel_peak_mib": None,
           "papermill_peak_mib": None}
    report = [line for line in stdout.splitlines() if line.startswith("KR_BINDER ")]
    if status is None and proc.returncode == 0 and report:
        data = json.loads(report[-1].removeprefix("KR_BINDER "))
        row.update(status="ok", wall_seconds=round(data["seconds"], 1),
                   kernel_peak_mib=round(data["kernel_maxrss_kib"] * 1024 / MIB, 1),
                   papermill_peak_mib=round(data["driver_maxrss_kib"] * 1024 / MIB, 1))
    elif status is None:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        # the copy's temporary folder is no part of the result (records name no machine path)
        status = f"failed (exit {proc.returncode}): {last.replace(str(root.parent), '<copy>')[:300]}"
    row.setdefault("status", status)
    measured = row["status"] == "ok"
    if measured:
        bound = (row["kernel_peak_mib"] + row["papermill_peak_mib"]) * MIB
        row["under_binder_limit"] = max(peak, bound) < BINDER_LIMIT_BYTES
    else:  # stopped or failed: over the limit if what it reached already was, else unknown
        row["under_binder_limit"] = False if peak >= BINDER_LIMIT_BYTES else None
    return row


def table_cells(row: dict) -> tuple[str, str]:
    """A row as the Rerun page's table states it: (peak memory in MiB, kernel + papermill; wall time). A page
    stopped before its end shows the sampled peak it had reached, as a lower bound."""
    if row["status"] == "ok":
        minutes, seconds = divmod(round(row["wall_seconds"]), 60)
        return (f"{row['kernel_peak_mib'] + row['papermill_peak_mib']:,.0f}",
                f"{minutes} min {seconds} s" if minutes else f"{seconds} s")
    if row["status"].startswith("not measured: stopped"):
        return f"more than {row['tree_peak_mib']:,.0f} (stopped)", f"stopped after {row['wall_seconds']:.0f} s"
    return "not measured", row["status"]


def markdown_table(record: dict) -> str:
    """The Rerun page's table of a record (``--print-table``)."""
    lines = ["| page | peak memory (MiB) | wall time |", "|---|---|---|"]
    for row in record["rows"]:
        peak, wall = table_cells(row)
        lines.append(f"| `{row['page'].removesuffix('.ipynb')}` | {peak} | {wall} |")
    return "\n".join(lines)


def summarize(rows: list[dict]) -> dict:
    measured = [r for r in rows if r["status"] == "ok"]
    worst = max(measured, key=lambda r: r["tree_peak_mib"], default=None)
    return {"pages": len(rows), "pages measured": len(measured),
            "pages not measured": ", ".join(r["page"] for r in rows if r["status"] != "ok"),
            "binder limit MiB": round(BINDER_LIMIT_BYTES / MIB, 1),
            "largest tree peak MiB": worst and worst["tree_peak_mib"],
            "largest tree peak page": worst and worst["page"],
            "largest kernel peak MiB": max((r["kernel_peak_mib"] for r in measured), default=None),
            "largest kernel + papermill peak MiB": max((r["kernel_peak_mib"] + r["papermill_peak_mib"]
                                                        for r in measured), default=None),
            "every measured page under the limit": all(r["under_binder_limit"] for r in measured),
            "pages over the limit": ", ".join(r["page"] for r in rows if r["under_binder_limit"] is False),
            "total wall seconds": round(sum(r["wall_seconds"] for r in rows), 1)}


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=1, quick_repeats=1)
    p.add_argument("--preset", choices=("default", "tiny"), default=None,
                   help="the pages' parameters: the book's (default) or the test build's (tiny; --quick)")
    p.add_argument("--only", nargs="+", default=None, metavar="PAGE",
                   help="pages to run (as in book/executed_pages.yml, e.g. notebooks/ablation)")
    p.add_argument("--page-timeout", type=float, default=900.0,
                   help="seconds after which a page is stopped and recorded as not measured (default 900)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between samples of the tree's memory")
    p.add_argument("--merge", action="store_true",
                   help="with --only: replace those pages' rows in the existing record, keep the others")
    p.add_argument("--print-table", action="store_true",
                   help="print the Rerun page's table of the existing record (--out) and stop")
    args = p.parse_args(argv)
    if args.print_table:
        path = Path(args.out) if args.out else _common.RESULTS_DIR / "binder_cpu.json"
        print(markdown_table(json.loads(path.read_text())))
        return 0
    if args.merge and not args.only:
        p.error("--merge re-measures the pages named by --only in an existing record; name them")
    device, out_json, command = _common.setup(args, "binder")
    if device.type != "cpu":  # run_all.py --device cuda (run_gpu.sh) passes: nothing of Binder's to measure there
        print(f"bench_binder: Binder sessions have no GPU; nothing to measure on {device} (use --device cpu)")
        return 0
    preset = args.preset or ("tiny" if args.quick else "default")
    with tempfile.TemporaryDirectory(prefix="kr-bench-binder-") as tmp:
        root = Path(tmp) / "src"
        copy_sources(_common.REPO_ROOT, root)
        pages = executed_pages(root, preset)
        if args.only:
            wanted = {name.removesuffix(".ipynb") + ".ipynb" for name in args.only}
            unknown = sorted(wanted - set(pages))
            if unknown:
                raise SystemExit(f"unknown page(s) {unknown}; book/executed_pages.yml lists: "
                                 f"{', '.join(sorted(pages))}")
            pages = {k: v for k, v in pages.items() if k in wanted}
        rows = []
        for page, how in pages.items():
            print(f"bench_binder: {page} with {how['parameters'] or 'its defaults'}", flush=True)
            row = measure_page(page, how, root, Path(tmp) / "out", args.page_timeout, args.interval)
            row.update(page_timeout=args.page_timeout, command=command)  # per row: --merge mixes runs
            print(f"  {row['status']}: {row['wall_seconds']:.0f} s, kernel peak {row['kernel_peak_mib']} MiB, "
                  f"tree peak {row['tree_peak_mib']} MiB", flush=True)
            rows.append(row)
    commands = [command]
    if args.merge:
        old = json.loads(out_json.read_text()) if out_json.exists() else None
        if old is None or old["parameters"].get("preset") != preset:
            raise SystemExit(f"--merge: no record of preset {preset} at {out_json} to merge into")
        mine = {r["page"]: r for r in rows}
        order = list(executed_pages(_common.REPO_ROOT, preset))
        for r in old["rows"]:  # rows of a record written before rows carried their own command
            r.setdefault("page_timeout", old["parameters"].get("page_timeout"))
            r.setdefault("command", old["command"])
        kept = [mine.pop(r["page"], r) for r in old["rows"]]
        rows = sorted(kept + list(mine.values()), key=lambda r: order.index(r["page"]) if r["page"] in order else 1e9)
        commands = [old["command"], command]
        command = " && ".join(dict.fromkeys(commands))
    record = perf.make_record("binder", device, rows, quick=preset == "tiny", command=command,
                              summary=summarize(rows), note=NOTE,
                              parameters={"preset": preset, "threads": 1, "page_timeout": args.page_timeout,
                                          "interval": args.interval, "binder_limit_bytes": BINDER_LIMIT_BYTES})
    print(f"wrote {perf.write_record(record, out_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
