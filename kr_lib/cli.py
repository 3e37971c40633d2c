"""The ``kr`` command. Each subcommand lives in ``kr_lib/commands/<name>.py`` with
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> one-line help; the module kr_lib.commands.<name> does the work.
COMMANDS = {
    "book": "execute the notebooks (papermill) and build the HTML book into _build/html",
    "report": "K/R table of a network: kr report resnet50 [--csv F | --json F] [--device D]",
    "ablate": "run one ablation (notebooks/ablation.ipynb through papermill)",
    "sweep": "run a sweep file's grid of ablations, resuming where it stopped",
    "results": "aggregate the result records of a dataset",
    "reproduce": "rerun a result record's exact parameters and compare the metrics",
    "measure": "measured redundancy of trained networks: kr measure RECORD | DATASET [--csv F]",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kr", description="kr-book: the K/R ratio of compressed CNNs")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line (kr --debug COMMAND ...)")
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
    except KeyboardInterrupt:  # Ctrl-C: finished runs are kept, the cut-off one resumes from its checkpoint
        if args.debug:
            raise
        # the notebook client's task for the killed kernel is collected at exit, and asyncio would log its
        # "Kernel died" traceback after this line: it is the interruption itself, not an error to show
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(f"\nkr {args.command}: interrupted; run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError) as err:
        # Bad input (or a file that cannot be read or written): one clear line, no traceback.
        if args.debug:
            raise
        print(f"kr {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    """An error as one line: an OSError as "cannot ... <file>: <reason>", others their message."""
    if isinstance(err, OSError) and err.strerror and not isinstance(err, FileNotFoundError):
        return f"cannot use {err.filename}: {err.strerror}" if err.filename else err.strerror
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if err.__cause__ is not None:  # an error raised by other code (a user's model factory): its traceback exists
        text += " (kr --debug shows the traceback)"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
