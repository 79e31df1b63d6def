"""Strict JSON Lines reading shared by every reader of the project.

A line is rejected, with the file and line named, when it is not UTF-8, not JSON, not a JSON
object, has the same key twice, or spells NaN/Infinity (not JSON, although Python's json accepts
them). A last line without a newline that does not parse is reported as truncated: the usual
trace of an interrupted writer. Blank lines carry no record and are passed over.

Readers validate each record on top of this and either raise :class:`~sparse_ir.errors.InputError`
or, when the user asked for ``skip_invalid``, count the record in a :class:`SkipReport`.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sparse_ir.errors import InputError

__all__ = ["SkipReport", "open_text_binary", "read_jsonl", "parse_json_line", "TRUNCATION_HINT",
           "warn_if_skipped"]

#: Appended to an error about the last line of a file when that line has no newline.
TRUNCATION_HINT = " (the last line has no newline: the file may be truncated)"

logger = logging.getLogger(__name__)


@dataclass
class SkipReport:
    """Records skipped because they were invalid, counted by reason.

    Filled by readers when called with ``skip_invalid=True``; ``summary()`` is what the CLI prints
    at the end of a run, so nothing is dropped without the user being told.
    """

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, error: InputError, kind: str | None = None) -> None:
        """Count one skipped record; keep the first few messages as examples."""
        self.counts[kind or error.reason.split(":")[0]] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))
        logger.debug("skipped invalid record: %s", error)

    @property
    def total(self) -> int:
        """Number of records skipped."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One human-readable paragraph: how many were skipped, why, and examples."""
        if not self.total:
            return "no invalid records"
        parts = ", ".join(f"{n} × {reason}" for reason, n in self.counts.most_common())
        lines = [f"skipped {self.total} invalid record(s): {parts}"]
        lines += [f"  e.g. {e}" for e in self.examples]
        return "\n".join(lines)


def warn_if_skipped(report: SkipReport | None, path: object, owned: bool) -> None:
    """Log the summary of a report a reader made for itself (the caller cannot print it)."""
    if owned and report is not None and report.total:
        logger.warning("%s: %s", path, report.summary())


def open_text_binary(path: str | os.PathLike) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping names ending in ``.gz``."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in one JSON object")
        result[key] = value
    return result


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (use a finite number)")


def parse_json_line(raw: bytes, *, path: object = None, line: int | None = None,
                    truncated: bool = False) -> dict:
    """Decode one line of JSONL into a dict, or raise an :class:`InputError` saying why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
            "(files must be UTF-8 encoded)", path=path, line=line) from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys,
                           parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        if truncated:
            raise InputError("truncated last line: no newline at end of file and the line is "
                             f"not complete JSON ({exc.msg})", path=path, line=line) from None
        raise InputError(f"not valid JSON: {exc.msg} at column {exc.colno}",
                         path=path, line=line) from None
    except ValueError as exc:  # raised by our hooks
        raise InputError(f"invalid JSON: {exc}", path=path, line=line) from None
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}",
                         path=path, line=line)
    if _SURROGATE_ESCAPE.search(text) and (bad := _lone_surrogate(value)) is not None:
        raise InputError(f"invalid JSON: the string {bad!r} holds a lone surrogate escape "
                         "(\\ud800-\\udfff without its pair), which is not Unicode text",
                         path=path, line=line)
    return value


# JSON may spell a surrogate as an escape; json.loads joins valid pairs and keeps lone ones,
# which would later fail to encode as UTF-8 in the middle of a build. Checked only when the
# line contains such an escape at all.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value[:40]
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key)
            if found is None:
                found = _lone_surrogate(item)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            if (found := _lone_surrogate(item)) is not None:
                return found
    return None


def read_jsonl(path: str | os.PathLike, *, skip_invalid: bool = False,
               report: SkipReport | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each record of a JSONL file (``.gz`` allowed).

    Args:
        path: the file to read.
        skip_invalid: when True, lines that fail to parse are counted in ``report`` and skipped;
            when False (the default) the first one raises :class:`InputError`.
        report: where skipped lines are counted (required to see them when skipping).

    Raises:
        InputError: naming the file, the line and the reason, unless ``skip_invalid``.
        FileNotFoundError: when ``path`` does not exist.
    """
    owned = skip_invalid and report is None
    if owned:
        report = SkipReport()
    with open_text_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            truncated = not raw.endswith(b"\n")
            stripped = raw.strip()
            if not stripped:
                continue
            try:
                yield number, parse_json_line(stripped, path=path, line=number,
                                              truncated=truncated)
            except InputError as error:
                if not skip_invalid:
                    raise
                report.add(error)
    warn_if_skipped(report, path, owned)
