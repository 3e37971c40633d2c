"""What the benchmark scripts share: their command line and where their record goes.

Every ``benchmarks/bench_<name>.py`` accepts ``--device`` (cpu, cuda, auto), ``--quick`` (a smaller
run: under about two minutes on a 2-core CPU), ``--repeats``, ``--clock`` / ``--threads`` (on the CPU
the default is one thread timed by its CPU time, which a shared machine's other processes barely
disturb) and ``--out`` (default
``benchmarks/results/<name>_<device type>.json``), and writes one ``kr_lib.perf`` record.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch and kr_lib are imported where they are used, so that run_all.py reads the options below without them
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


def parser(description: str, repeats: int = 5, quick_repeats: int = 3) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under ~2 minutes on a 2-core CPU)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed rounds per measurement (default {repeats}, {quick_repeats} with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: 1 with --clock cpu, else torch's choice)")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None,
                   help="cpu: this process's CPU time, robust on a shared machine (default on the CPU); "
                        "wall: wall-clock time, the device synchronized (default, and the only choice, on CUDA)")
    p.add_argument("--out", default=None, help="record path (default benchmarks/results/<name>_<device>.json)")
    p.set_defaults(_repeats=(repeats, quick_repeats))
    return p


def options() -> set[str]:
    """The long options every benchmark script accepts: those of :func:`parser`."""
    return {o for action in parser("")._actions for o in action.option_strings if o.startswith("--")}


def setup(args: argparse.Namespace, name: str) -> tuple[torch.device, Path, str]:
    """Resolve the device, the number of repeats and threads, the output path and the command line."""
    import torch

    from kr_lib.device import resolve_device

    device = resolve_device(args.device)
    if args.repeats is None:
        args.repeats = args._repeats[1] if args.quick else args._repeats[0]
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be a positive int, got {args.repeats}")
    if args.clock is None:
        args.clock = "cpu" if device.type == "cpu" else "wall"
    if args.clock == "cpu" and device.type != "cpu":
        raise SystemExit(f"--clock cpu measures host CPU time; use --clock wall on {device}")
    if args.threads is None and args.clock == "cpu":
        args.threads = 1  # CPU time of one thread: no spinning worker threads, no oversubscription
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else RESULTS_DIR / f"{name}_{device.type}.json"
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO_ROOT)
    except ValueError:
        pass
    command = shlex.join(["python", str(script), *sys.argv[1:]])
    return device, out, command


def forward_with_hooks(model: torch.nn.Module, x: torch.Tensor, modules, hook) -> None:
    """One ``torch.no_grad`` forward pass of ``model`` on ``x`` with ``hook`` registered as a forward
    hook on each of ``modules`` (removed afterwards, also on error)."""
    import torch

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
