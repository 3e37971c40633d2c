"""The book: a full ``kr book`` build with default parameters, then a rebuild after a one-line text change
in a book page (a cache hit: no notebook is executed again).

Nothing in the repository changes: the book's sources (every file git knows, tracked or new, plus the
local MathJax copy under ``.cache/``) are copied to a temporary folder, ``kr_lib.book.build_book`` builds
from that copy (importing ``kr_lib`` from the copy too, so the library is frozen for both builds) into a
temporary output, a line is added to the copy's ``book/intro.md`` and the book is
built again. For each build the row has the wall time, the CPU time of this process and its children
(the build runs papermill kernels and jupyter-book as subprocesses; CPU time is what other processes on
a shared machine barely disturb), and the pages papermill executed (0 for a cache hit).

    python benchmarks/bench_book.py [--quick]     # --quick: the 'tiny' preset (the test build)
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
from kr_lib.book import MATHJAX_DIR, build_book, executed_pages  # noqa: E402

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
          "build_book(output=sys.argv[1], preset=sys.argv[2], root=sys.argv[3])")


def timed_build(label: str, root: Path, out: Path, preset: str, pages) -> dict:
    """One ``build_book`` in a subprocess that imports ``kr_lib`` from the copy (PYTHONPATH), so that edits
    to the repository's library while the benchmark runs do not change the source hash the cache keys on."""
    before = staged_pages(out, pages)
    env = {**os.environ, "PYTHONPATH": str(root)}
    wall, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run([sys.executable, "-c", _BUILD, str(out), preset, str(root)], cwd=root, env=env, check=True)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    after = staged_pages(out, pages)
    executed = sorted(p for p, m in after.items() if before.get(p) != m)
    return {"build": label, "preset": preset, "wall_seconds": wall, "cpu_seconds": cpu,
            "pages_executed": len(executed), "executed": ", ".join(executed)}


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0], repeats=1, quick_repeats=1).parse_args(argv)
    device, out_json, command = _common.setup(args, "book")
    preset = "tiny" if args.quick else "default"
    with tempfile.TemporaryDirectory(prefix="kr-bench-book-") as tmp:
        root, out = Path(tmp) / "src", Path(tmp) / "out"
        n_files = copy_sources(_common.REPO_ROOT, root)
        pages = executed_pages(root, preset)
        cold = timed_build("full build", root, out, preset, pages)
        page = root / CHANGED_PAGE
        page.write_text(page.read_text().rstrip("\n") + "\n\nA line added by benchmarks/bench_book.py.\n")
        warm = timed_build(f"rebuild after a one-line change in {CHANGED_PAGE}", root, out, preset, pages)
    warm["cache_hit"] = warm["pages_executed"] == 0
    cold["cache_hit"] = False
    rows = [cold, warm]
    for r in rows:
        print(f"{r['build']}: {r['wall_seconds']:.0f} s wall, {r['cpu_seconds']:.0f} s CPU, "
              f"{r['pages_executed']} page(s) executed", flush=True)
    summary = {"full build wall seconds": cold["wall_seconds"], "rebuild wall seconds": warm["wall_seconds"],
               "rebuild is a cache hit": warm["cache_hit"], "speedup of the rebuild": cold["wall_seconds"] / warm["wall_seconds"]}
    record = perf.make_record("book", device, rows, quick=args.quick, command=command, summary=summary,
                              parameters={"preset": preset, "executed_pages": sorted(pages), "files_copied": n_files,
                                          "changed_page": CHANGED_PAGE})
    print(f"wrote {perf.write_record(record, out_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
