"""Exceptions raised by sparse_ir.

Every error about user input names the file, the line (when there is one), the offending value
and the rule it broke, so a user can fix the input without reading our code.
"""

from __future__ import annotations

__all__ = [
    "SparseIRError",
    "InputError",
    "IndexFormatError",
    "IndexCorruptError",
    "IndexBusyError",
    "MissingDependencyError",
]


class SparseIRError(Exception):
    """Base class of every error raised on purpose by sparse_ir."""


class InputError(SparseIRError, ValueError):
    """Bad input data: a malformed file, an invalid value, a broken rule.

    Attributes:
        path: the file the bad input came from, or None for in-memory input.
        line: 1-based line number within ``path``, or None.
        reason: what is wrong, and when possible what would fix it.
    """

    def __init__(self, reason: str, *, path: object = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + reason)


class IndexFormatError(SparseIRError):
    """An index (or a file of one) that this version of sparse_ir cannot read."""


class IndexCorruptError(IndexFormatError):
    """An index whose bytes do not match what its manifest and headers promise."""


class IndexBusyError(SparseIRError, RuntimeError):
    """Another process holds the index's build lock (a second concurrent build)."""


class MissingDependencyError(SparseIRError, ImportError):
    """An optional dependency is not installed; the message says which pip install fixes it."""

    def __init__(self, what: str, package: str, extra: str | None = None):
        hint = f"pip install {package}"
        if extra:
            hint += f"  (or: pip install 'sparse-ir[{extra}]')"
        super().__init__(f"{what} needs the package {package!r}, which is not installed: {hint}")
        self.package = package
        self.extra = extra
