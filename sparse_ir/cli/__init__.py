"""The ``sparse-ir`` command: one dispatch table, one small module per group of subcommands.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)``, which adds its
subcommands and sets ``handler`` (a function ``args -> exit status``) on each. Modules import
their heavy dependencies inside the handlers, so ``sparse-ir --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules contributing subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "sparse_ir.cli.encode",
    "sparse_ir.cli.index",
    "sparse_ir.cli.evaluate",
    "sparse_ir.cli.demo",
    "sparse_ir.cli.lucene",
    "sparse_ir.cli.hybrid",
    "sparse_ir.cli.train",
    "sparse_ir.cli.serve",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every registered subcommand)."""
    from sparse_ir import __version__

    parser = argparse.ArgumentParser(
        prog="sparse-ir",
        description="Learned sparse retrieval: encode with SPLADE, index integer impacts, "
                    "search, evaluate, export to Lucene.")
    parser.add_argument("--version", action="version", version=f"sparse-ir {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only errors; no progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage, 130 ^C)."""
    from sparse_ir.errors import MissingDependencyError, SparseIRError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    level = logging.ERROR if args.quiet else (
        logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        args.show_progress = False
    else:
        args.show_progress = None
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("sparse-ir: interrupted; nothing half-written was published", file=sys.stderr)
        return 130
    except MissingDependencyError as error:
        print(f"sparse-ir: {error}", file=sys.stderr)
        return 1
    except (SparseIRError, OSError, ValueError) as error:  # OSError: e.g. disk full, named
        print(f"sparse-ir {args.command}: error: {error}", file=sys.stderr)
        return 1
