"""The ``kr`` command. Each subcommand lives in ``kr_lib/commands/<name>.py`` with
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> one-line help; the module kr_lib.commands.<name> does the work.
COMMANDS = {
    "book": "execute the notebooks (papermill) and build the HTML book into _build/html",
    "report": "K/R table of a network: kr report resnet50 [--csv F | --json F] [--device D]",
    "ablate": "run one ablation (notebooks/ablation.ipynb through papermill)",
    "sweep": "run a sweep file's grid of ablations, resuming where it stopped",
    "results": "aggregate the result records of a dataset",
    "reproduce": "rerun a result record's exact parameters and compare the metrics",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kr", description="kr-book: the K/R ratio of compressed CNNs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f"kr_lib.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"kr_lib.commands.{name}":
                raise
            continue  # not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line, no traceback.
        print(f"kr {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
