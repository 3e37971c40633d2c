"""Run every benchmark (``benchmarks/bench_*.py``) and write their records to ``benchmarks/results/``.

    python benchmarks/run_all.py [--device cpu|cuda] [--quick] [--only NAME ...] [--skip NAME ...]
                                 [--budget SECONDS]

Each script runs in its own process (one at a time, so that they do not compete for the cores), with
``--device`` and ``--quick`` (every script builds its command line with ``_common.parser``, which defines
them); it writes ``benchmarks/results/<name>_<device type>.json``. A benchmark that is an option of
another script (``VARIANTS``: ``report`` is ``bench_counting.py --model resnet50``) runs as that script
with its arguments. The book build (``bench_book.py``) runs last. With
``--budget`` the whole run stops at that many seconds: a script still running then is stopped, and since
every script writes its record only when it finishes, the record of an earlier run stays in place.
A summary record ``run_all_<device type>.json`` lists what ran, its exit status and its time.
Exit status: 0 when every script succeeded.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _common
from _common import BENCH_DIR, REPO_ROOT

LAST = ("book",)  # run after the others
#: benchmarks that are an option of another script: name -> (that script's name, its arguments)
VARIANTS = {"report": ("counting", ("--model", "resnet50"))}


def scripts() -> dict[str, Path]:
    """Benchmark name (``bench_<name>.py``, or a ``VARIANTS`` name) -> script, in running order (the book last)."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}
    found.update({name: found[script] for name, (script, _) in VARIANTS.items() if script in found})
    return dict(sorted(found.items(), key=lambda kv: (kv[0] in LAST, kv[0])))


def accepted_options() -> set[str]:
    """The long options every benchmark script accepts (``_common.parser``'s)."""
    return _common.options()


def command_for(name: str, script: Path, device: str, quick: bool) -> list[str]:
    """The command line that runs benchmark ``name`` (its script, a variant's arguments, device, quick)."""
    options = accepted_options()
    cmd = [sys.executable, str(script.relative_to(REPO_ROOT)), *VARIANTS.get(name, ("", ()))[1]]
    if "--device" in options:
        cmd += ["--device", device]
    if quick and "--quick" in options:
        cmd.append("--quick")
    return cmd


def run_script(cmd: list[str], env: dict, timeout: float | None) -> str:
    """Run one script in its own process group; on timeout stop the group (a book build's children too)."""
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return "stopped (budget)"
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return "ok" if rc == 0 else f"failed (exit {rc})"


def main(argv=None) -> int:
    available = scripts()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto, passed to every script (default cpu)")
    p.add_argument("--quick", action="store_true", help="every script's --quick run (a few minutes in all)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help=f"run only these ({', '.join(available)})")
    p.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="do not run these")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="stop the whole run after this many seconds (the running script is stopped)")
    args = p.parse_args(argv)
    unknown = [n for n in (args.only or []) + args.skip if n not in available]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}")
    names = [n for n in available if (args.only is None or n in args.only) and n not in args.skip]

    sys.path.insert(0, str(REPO_ROOT))
    from kr_lib import perf
    from kr_lib.device import resolve_device

    device = resolve_device(args.device)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    started, rows = time.perf_counter(), []
    for name in names:
        left = None if args.budget is None else args.budget - (time.perf_counter() - started)
        if left is not None and left < 5:
            print(f"run_all: budget spent, {name} not run", flush=True)
            rows.append({"benchmark": name, "command": "", "status": "not run (budget)", "seconds": 0.0})
            continue
        cmd = command_for(name, available[name], str(device), args.quick)
        shown = " ".join(["python", *cmd[1:]])
        print(f"\n=== {shown}", flush=True)
        t0 = time.perf_counter()
        status = run_script(cmd, env, left)
        seconds = time.perf_counter() - t0
        print(f"=== {name}: {status} in {seconds:.0f} s", flush=True)
        rows.append({"benchmark": name, "command": shown, "status": status, "seconds": round(seconds, 1)})

    argv_shown = " ".join(["python", "benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])])
    record = perf.make_record("run_all", device, rows, quick=args.quick, command=argv_shown,
                              parameters={"budget": args.budget, "only": args.only, "skip": args.skip})
    out = _common.RESULTS_DIR / f"run_all_{device.type}.json"
    perf.write_record(record, out)
    print("\n" + "\n".join(f"{r['benchmark']:>16}: {r['status']} ({r['seconds']:.0f} s)" for r in rows))
    print(f"wrote {out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
