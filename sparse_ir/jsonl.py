"""Strict JSON Lines reading shared by every reader of the project.

A line is rejected, with the file and line named, when it is not UTF-8, not JSON, not a JSON
object, has the same key twice, or spells NaN/Infinity (not JSON, although Python's json accepts
them). A last line without a newline that does not parse is reported as truncated: the usual
trace of an interrupted writer. Blank lines carry no record and are passed over.

Readers validate each record on top of this and either raise :class:`~sparse_ir.errors.InputError`
or, when the user asked for ``skip_invalid``, count the record in a :class:`SkipReport`.

Every text reader of the project (corpus, queries, TSV topics, qrels, TREC runs, encoded queries,
JsonVectorCollection) reads through :func:`read_lines`, so all of them refuse the same things the
same way, even with ``skip_invalid`` since they concern the whole file: a file that is not a
regular file (a FIFO would hang, ``/dev/zero`` would never end), a line longer than
:data:`MAX_LINE_BYTES`, and a UTF-8 byte order mark. A BOM is refused rather than stripped,
everywhere alike: it is invisible in an editor, and stripping it in some readers but not in
others (a tool downstream, trec_eval) is how a first query id silently stops matching. JSON is
parsed with a nesting limit (:data:`MAX_JSON_DEPTH`), so a deep document is an error naming the
file and line, not a ``RecursionError``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sparse_ir.errors import InputError

__all__ = [
    "SkipReport",
    "open_text_binary",
    "read_jsonl",
    "read_lines",
    "parse_json_line",
    "parse_json",
    "read_json_file",
    "TRUNCATION_HINT",
    "warn_if_skipped",
    "MAX_LINE_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_FILE_BYTES",
]

#: Appended to an error about the last line of a file when that line has no newline.
TRUNCATION_HINT = " (the last line has no newline: the file may be truncated)"
#: The longest line any reader accepts, in bytes (a 64 MiB document is far beyond what an
#: encoder reads; a longer line is a wrong file, e.g. ``/dev/zero`` or a binary file).
MAX_LINE_BYTES = 64 << 20
#: The deepest nesting of JSON arrays and objects accepted (our formats need 3).
MAX_JSON_DEPTH = 100
#: The largest whole-file JSON document read at once (``.json`` query files, vocabularies).
MAX_JSON_FILE_BYTES = 1 << 30
_BOM = b"\xef\xbb\xbf"

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
    """Open an input file for binary reading, transparently gunzipping names ending in ``.gz``.

    Only regular files are read: a directory, a FIFO, a socket or a device (``/dev/zero``)
    raises :class:`InputError` at once instead of hanging or reading forever. The file is
    opened without blocking, so a FIFO with no writer is refused too.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=path) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(
                f"is a {_file_kind(mode)}, not a regular file (sparse-ir reads its "
                "inputs from regular files: save the stream to a file first)",
                path=path,
            )
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if path.endswith(".gz"):
        unpacked = gzip.GzipFile(filename=path, mode="rb", fileobj=handle)
        unpacked.myfileobj = handle  # closed with it (as when GzipFile opens the file itself)
        return unpacked
    return handle


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return "special file"


def read_lines(
    path: str | os.PathLike, *, max_line_bytes: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` of a text input file, bounded and BOM-aware.

    Every line reader of the project goes through here, so they share three rules:

    * only regular files are read (see :func:`open_text_binary`);
    * a line longer than ``max_line_bytes`` (default :data:`MAX_LINE_BYTES`) raises
      :class:`InputError` after reading at most that many bytes, so ``/dev/zero`` renamed
      ``run.trec``, or a binary file, ends with an error instead of exhausting memory;
    * a file starting with a UTF-8 byte order mark raises :class:`InputError`: a BOM would
      otherwise become part of the first id (``\\ufeffq1``) and silently match nothing.
      These errors concern the whole file and are raised even with ``skip_invalid``.
    """
    limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    with open_text_binary(path) as handle:
        number = 0
        while True:
            try:
                raw = handle.readline(limit + 1)
            except (OSError, EOFError, zlib.error) as exc:  # a damaged .gz, a read error
                raise InputError(f"unreadable after line {number} ({exc})", path=path) from None
            if not raw:
                return
            number += 1
            if len(raw) > limit:
                raise InputError(
                    f"line longer than {limit:,} bytes: not a text file of this "
                    "format (or a line far too long to be a record)",
                    path=path,
                    line=number,
                )
            if number == 1 and raw.startswith(_BOM):
                raise InputError(
                    "the file starts with a UTF-8 byte order mark (BOM), which "
                    "would become part of the first id; save it as UTF-8 without "
                    "BOM",
                    path=path,
                    line=1,
                )
            yield number, raw


def read_json_file(path: str | os.PathLike, *, max_bytes: int | None = None) -> object:
    """Parse a whole (small) JSON file strictly: size-capped, depth-limited, no BOM, no NaN,
    no duplicate keys. Raises :class:`InputError` naming the file."""
    limit = MAX_JSON_FILE_BYTES if max_bytes is None else max_bytes
    with open_text_binary(path) as handle:
        try:
            data = handle.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"unreadable ({exc})", path=path) from None
    if len(data) > limit:
        raise InputError(f"larger than {limit:,} bytes: too large for a JSON document", path=path)
    if data.startswith(_BOM):
        raise InputError(
            "the file starts with a UTF-8 byte order mark (BOM); save it as UTF-8 without BOM",
            path=path,
            line=1,
        )
    return parse_json(data, path=path)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in one JSON object")
        result[key] = value
    return result


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (use a finite number)")


def parse_json_line(
    raw: bytes, *, path: object = None, line: int | None = None, truncated: bool = False
) -> dict:
    """Decode one line of JSONL into a dict, or raise an :class:`InputError` saying why not."""
    value = parse_json(raw, path=path, line=line, truncated=truncated)
    if not isinstance(value, dict):
        raise InputError(
            f"expected a JSON object, got {type(value).__name__}", path=path, line=line
        )
    return value


def parse_json(
    raw: bytes, *, path: object = None, line: int | None = None, truncated: bool = False
) -> Any:
    """Decode one JSON value strictly (UTF-8, no duplicate keys, no NaN, no lone surrogate,
    nesting at most :data:`MAX_JSON_DEPTH`), or raise an :class:`InputError` saying why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
            "(files must be UTF-8 encoded)",
            path=path,
            line=line,
        ) from None
    if (depth := _json_depth(text)) > MAX_JSON_DEPTH:
        raise InputError(
            f"invalid JSON: arrays/objects nested {depth} deep (at most {MAX_JSON_DEPTH} accepted)",
            path=path,
            line=line,
        )
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        if truncated:
            raise InputError(
                "truncated last line: no newline at end of file and the line is "
                f"not complete JSON ({exc.msg})",
                path=path,
                line=line,
            ) from None
        raise InputError(
            f"not valid JSON: {exc.msg} at column {exc.colno}", path=path, line=line
        ) from None
    except ValueError as exc:  # raised by our hooks
        raise InputError(f"invalid JSON: {exc}", path=path, line=line) from None
    except RecursionError:  # only when the stack is already deep: the depth check came first
        raise InputError("invalid JSON: nested too deeply to parse", path=path, line=line) from None
    if _SURROGATE_ESCAPE.search(text) and (bad := _lone_surrogate(value)) is not None:
        raise InputError(
            f"invalid JSON: the string {bad!r} holds a lone surrogate escape "
            "(\\ud800-\\udfff without its pair), which is not Unicode text",
            path=path,
            line=line,
        )
    return value


_JSON_NESTING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in ``text`` (brackets inside strings ignored);
    exact up to :data:`MAX_JSON_DEPTH` + 1, which is where counting stops."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than the number of opening brackets
    depth = deepest = 0
    for match in _JSON_NESTING_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif token in "]}":
            depth -= 1
    return deepest


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


def read_jsonl(
    path: str | os.PathLike, *, skip_invalid: bool = False, report: SkipReport | None = None
) -> Iterator[tuple[int, dict]]:
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
    for number, raw in read_lines(path):
        truncated = not raw.endswith(b"\n")
        stripped = raw.strip()
        if not stripped:
            continue
        try:
            yield number, parse_json_line(stripped, path=path, line=number, truncated=truncated)
        except InputError as error:
            if not skip_invalid:
                raise
            report.add(error)
    warn_if_skipped(report, path, owned)
