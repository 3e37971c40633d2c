"""The book: a full ``kr book`` build executing its pages one after another, the same full build with the
pages side by side (``workers``: as many as fit the cores and memory), then a rebuild after a one-line text
change in a book page (a cache hit: no notebook is executed again).

Nothing in the repository changes: the book's sources (every file git knows, tracked or new, plus the
local MathJax copy under ``.cache/``) are copied to a temporary folder, ``kr_lib.book.build_book`` builds
from that copy (importing ``kr_lib`` from the copy too, so the library is frozen for every build) into a
temporary output per full build, a line is added to the copy's ``book/intro.md`` and the book is built
again. For each build the row has the wall time, the CPU time of this process and its children (the
build runs papermill kernels and jupyter-book as subprocesses; CPU time is what other processes on a
shared machine barely disturb), the workers, and the pages papermill executed (0 for a cache hit).
``parallel / sequential`` is the ratio of the two full builds' wall times (the issue's target: <= 0.6 on
2 cores at default parameters); on a machine shared with other jobs it is only as good as their load allows.

    python benchmarks/bench_book.py [--preset tiny|default] [--workers N]   # --quick: --preset tiny
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from kr_lib import perf  # noqa: E402
from kr_lib.book import MATHJAX_DIR, PAGE_MEMORY, executed_pages, staged_seconds  # noqa: E402
from kr_lib.parallel import available_cpus, default_workers  # noqa: E402

CHANGED_PAGE = "book/intro.md"


def copy_sources(root: Path, target: Path) -> int:
    """Copy the files git lists (tracked and untracked-not-ignored) from ``root`` to ``target``; return their number."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.decode().split("\0")
    n = 0
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
            n += 1
    mathjax = root / MATHJAX_DIR
    if mathjax.exists():
        (target / MATHJAX_DIR).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(mathjax, target / MATHJAX_DIR)
    return n


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def staged_pages(out: Path, pages) -> dict[str, float]:
    """Executed page -> modification time of its staged (executed) notebook, for the pages papermill runs."""
    staged = {page: out / "_build/src" / page for page in pages}
    return {page: path.stat().st_mtime for page, path in staged.items() if path.exists()}


_BUILD = ("import sys, kr_lib; from kr_lib.book import build_book; "
          "print('kr_lib from', kr_lib.__file__, 'source', kr_lib.source_hash(), flush=True); "
          "build_book(output=sys.argv[1], preset=sys.argv[2], root=sys.argv[3], "
          "workers=None if sys.argv[4] == 'auto' else int(sys.argv[4]))")


def timed_build(label: str, root: Path, out: Path, preset: str, pages, workers: int | None) -> dict:
    """One ``build_book`` in a subprocess that imports ``kr_lib`` from the copy (PYTHONPATH), so that edits
    to the repository's library while the benchmark runs do not change the source hash the cache keys on."""
    before = staged_pages(out, pages)
    env = {**os.environ, "PYTHONPATH": str(root)}
    wall, cpu, started = time.perf_counter(), cpu_seconds(), time.time()  # started: to compare with file times
    subprocess.run([sys.executable, "-c", _BUILD, str(out), preset, str(root), str(workers or "auto")], cwd=root,
                   env=env, check=True)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    after = staged_pages(out, pages)
    executed = sorted(p for p, m in after.items() if before.get(p) != m)
    # the last executed page's notebook is written just before jupyter-book starts: what follows is the HTML step
    pages_wall = max((after[p] for p in executed), default=started) - started
    seconds = {p: staged_seconds(out / "_build/src" / p) for p in executed}
    return {"build": label, "preset": preset, "workers": workers or "auto", "wall_seconds": wall, "cpu_seconds": cpu,
            "pages_executed": len(executed), "executed": ", ".join(executed),
            "pages_wall_seconds": pages_wall, "html_wall_seconds": wall - pages_wall,
            "page_seconds": dict(sorted(seconds.items(), key=lambda kv: -kv[1]))}


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0], repeats=1, quick_repeats=1)
    p.add_argument("--preset", choices=("default", "tiny"), default=None,
                   help="parameters of the executed pages (default: default; tiny with --quick)")
    p.add_argument("--workers", type=int, default=None,
                   help="workers of the parallel build (default: as many as fit the cores and memory)")
    args = p.parse_args(argv)
    device, out_json, command = _common.setup(args, "book")
    preset = args.preset or ("tiny" if args.quick else "default")
    with tempfile.TemporaryDirectory(prefix="kr-bench-book-") as tmp:
        root = Path(tmp) / "src"
        n_files = copy_sources(_common.REPO_ROOT, root)
        pages = executed_pages(root, preset)
        workers = args.workers or default_workers(len(pages), PAGE_MEMORY)
        sequential = timed_build("full build, pages one after another", root, Path(tmp) / "out1", preset, pages, 1)
        out = Path(tmp) / "out"
        parallel = timed_build(f"full build, {workers} pages side by side", root, out, preset, pages, workers)
        page = root / CHANGED_PAGE
        page.write_text(page.read_text().rstrip("\n") + "\n\nA line added by benchmarks/bench_book.py.\n")
        warm = timed_build(f"rebuild after a one-line change in {CHANGED_PAGE}", root, out, preset, pages, workers)
    warm["cache_hit"] = warm["pages_executed"] == 0
    sequential["cache_hit"] = parallel["cache_hit"] = False
    rows = [sequential, parallel, warm]
    for r in rows:
        print(f"{r['build']}: {r['wall_seconds']:.0f} s wall ({r['pages_wall_seconds']:.0f} s executing pages, "
              f"{r['html_wall_seconds']:.0f} s after them), {r['cpu_seconds']:.0f} s CPU, "
              f"{r['pages_executed']} page(s) executed", flush=True)
        for page, s in r["page_seconds"].items():
            print(f"    {page}: {s:.0f} s", flush=True)
    ratio = parallel["wall_seconds"] / sequential["wall_seconds"]
    print(f"parallel / sequential wall time: {ratio:.2f} ({workers} workers, {len(available_cpus())} CPUs)")
    summary = {"full build wall seconds, sequential": sequential["wall_seconds"],
               "full build wall seconds, parallel": parallel["wall_seconds"],
               "parallel / sequential wall time (target <= 0.6)": ratio,
               "rebuild wall seconds": warm["wall_seconds"], "rebuild is a cache hit": warm["cache_hit"],
               "speedup of the rebuild": parallel["wall_seconds"] / warm["wall_seconds"]}
    record = perf.make_record("book", device, rows, quick=preset == "tiny", command=command, summary=summary,
                              parameters={"preset": preset, "executed_pages": sorted(pages), "files_copied": n_files,
                                          "changed_page": CHANGED_PAGE, "workers": workers,
                                          "cpus": len(available_cpus())})
    print(f"wrote {perf.write_record(record, out_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
