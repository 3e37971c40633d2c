"""``kr book``: execute the notebooks and build the HTML book."""
from __future__ import annotations

import argparse

from kr_lib.project import add_project_argument, find_project


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="default", choices=["default", "tiny"],
                        help="parameters of the executed pages: the book's defaults, or tiny ones for tests")
    parser.add_argument("--output", default=None,
                        help="folder that receives _build/html (default: the project)")
    parser.add_argument("--force", action="store_true", help="execute every page again, ignoring the stamps")
    parser.add_argument("--workers", type=int, default=None,
                        help="pages executed side by side (default: as many as fit the cores and memory; "
                             "1: one after another)")
    parser.add_argument("--generated-only", action="store_true",
                        help="only write the generated Markdown (the introduction's measured verdict, "
                             "book/measured_verdict.md) into the checkout from its records, and stop")
    add_project_argument(parser)


def run(args: argparse.Namespace) -> int:
    import time

    from ..book import build_book, write_generated_sources

    if args.generated_only:
        root = find_project(args.project)
        for rel in write_generated_sources(root, root):
            print(f"kr book: wrote {rel} from {root.name}/results")
        return 0
    started = time.perf_counter()
    index = build_book(args.output, preset=args.preset, force=args.force, root=find_project(args.project),
                       workers=args.workers)
    print(f"kr book: built in {time.perf_counter() - started:.0f} s; open {index}")
    return 0
