"""The ``sparse-ir`` command: one dispatch table, one small module per group of subcommands.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)``, which adds its
subcommands and sets ``handler`` (a function ``args -> exit status``) on each. Modules import
their heavy dependencies inside the handlers, so ``sparse-ir --help`` is fast.

Whatever a handler raises ends as one line on stderr, ``sparse-ir: error: ...``, and an exit
status that says what kind of failure it was (:data:`EXIT_CODES`); only an unexpected
exception (a bug) prints its traceback, and only with ``-v``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

__all__ = ["main", "build_parser", "COMMAND_MODULES", "EXIT_CODES"]

#: Exit status of ``sparse-ir`` by kind of outcome (shown in ``sparse-ir --help``).
EXIT_CODES = {
    0: "success",
    1: "bad input: a malformed file, an invalid value, a missing or unreadable file, a full "
    "disk (verify: damage found)",
    2: "usage: unknown command or option",
    3: "an index this version cannot read, or whose bytes are damaged (run sparse-ir verify)",
    4: "an optional dependency is missing (the message says what to pip install)",
    5: "the index is busy: another build is writing it",
    70: "internal error: a bug; rerun with -v for the traceback and report it",
    130: "interrupted (Ctrl-C); nothing half-written was published",
}

#: Modules contributing subcommands, in the order they appear in ``--help``.
COMMAND_MODULES = [
    "sparse_ir.cli.encode",
    "sparse_ir.cli.index",
    "sparse_ir.cli.live",
    "sparse_ir.cli.evaluate",
    "sparse_ir.cli.demo",
    "sparse_ir.cli.lucene",
    "sparse_ir.cli.hybrid",
    "sparse_ir.cli.train",
    "sparse_ir.cli.serve",
]


class _Parser(argparse.ArgumentParser):
    """The top-level parser: global flags given after the subcommand (``sparse-ir info X -q``)
    join those given before it (``-v`` counts add up, ``-q`` is on if given anywhere)."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        for name, merge in _GLOBAL_MERGE.items():
            late = parsed.__dict__.pop(_late(name), None)
            if late is not None:
                setattr(parsed, name, merge(getattr(parsed, name), late))
        return parsed, extras


#: Global flag -> how a value given after the subcommand joins the one given before it.
_GLOBAL_MERGE = {"verbose": lambda before, after: before + after, "quiet": lambda b, a: b or a}


def _late(name: str) -> str:
    """The namespace key of a global flag given after the subcommand."""
    return f"_{name}_after_command"


def _add_global_options(parser: argparse.ArgumentParser, *, late: bool = False) -> None:
    """-v/--verbose and -q/--quiet: on the top-level parser, and (``late``) on every
    subcommand's, where they fill their own keys, merged by :class:`_Parser`."""
    hide = {"default": argparse.SUPPRESS} if late else {}
    group = parser.add_argument_group("global options") if late else parser
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest=_late("verbose") if late else "verbose",
        help="more log output (-vv for debug)",
        **(hide or {"default": 0}),
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest=_late("quiet") if late else "quiet",
        help="only errors; no progress bars",
        **hide,
    )


def _subparsers_of(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (subcommands, and their own subcommands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers_of(child)


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata is slow
    to import, and every other command would pay for it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from sparse_ir import __version__

        print(f"sparse-ir {__version__}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every registered subcommand, or (``command`` given) only the
    command modules up to the one that registers ``command``, so a command does not import
    the options of all the others (all of them when no module registers it)."""
    parser = _Parser(
        prog="sparse-ir",
        description="Learned sparse retrieval: encode with SPLADE, index integer impacts, "
        "search, evaluate, export to Lucene. The global options (-v, -q) may also "
        "follow the command. Corpus, queries and qrels options also take an "
        "ir_datasets id, irds:ID (e.g. irds:beir/scifact/test), when its files are local.",
        epilog="exit status:\n"
        + "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    _add_global_options(parser)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
        if command is not None and command in subparsers.choices:
            break
    for child in _subparsers_of(parser):
        _add_global_options(child, late=True)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word not starting with ``-``), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :data:`EXIT_CODES`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    level = (
        logging.ERROR
        if args.quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        args.show_progress = False
    else:
        args.show_progress = None
    try:
        _resolve_datasets(args)
        return int(args.handler(args) or 0)
    except BaseException as error:  # noqa: BLE001 - every failure becomes one line and a code
        if isinstance(error, SystemExit):
            raise
        code, message = describe_error(error)
        print(f"sparse-ir: error: {message}", file=sys.stderr)
        if code == 70 and args.verbose:
            traceback.print_exc(file=sys.stderr)
        return code


def _resolve_datasets(args: argparse.Namespace) -> None:
    """``irds:<id>`` values of --input/--queries/--qrels become local files (sparse_ir.datasets)."""
    from sparse_ir.datasets import is_dataset_ref

    if any(is_dataset_ref(getattr(args, name, None)) for name in ("input", "queries", "qrels")):
        from sparse_ir.datasets import resolve_cli_paths

        resolve_cli_paths(args)


def describe_error(error: BaseException) -> tuple[int, str]:
    """``(exit status, one-line message)`` for an exception raised by a command."""
    from sparse_ir.errors import IndexBusyError, IndexFormatError, MissingDependencyError

    if isinstance(error, KeyboardInterrupt):
        return 130, "interrupted; nothing half-written was published"
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, MissingDependencyError):
        return 4, text
    if isinstance(error, IndexBusyError):
        return 5, text
    if isinstance(error, IndexFormatError):
        return 3, text
    if isinstance(error, (ValueError, OSError)):  # InputError is a ValueError
        if (
            isinstance(error, OSError)
            and error.filename is not None
            and str(error.filename) not in text
        ):
            text = f"{error.filename}: {text}"
        return 1, text
    if isinstance(error, MemoryError):
        return 1, "out of memory (MemoryError): the input is too large for this machine"
    return 70, (
        f"internal error: {type(error).__name__}: {text} (a bug in sparse-ir: rerun "
        "with -v for the traceback and report it)"
    )
