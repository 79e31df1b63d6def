"""On-disk conventions shared by every index: checked array files, manifests, atomic publish.

Array files (``*.bin``)::

    magic "SPIRARR1" | uint32 header length | header JSON | zero padding to 64 bytes
    data: ``count`` little-endian elements of ``dtype``
    footer: "SPIREND1" | uint32 CRC32 of every byte before the footer | 4 zero bytes

The header names the format, its version, the array, its dtype and element count, so a file
that is cut, extended or of another version is refused before it is memory-mapped.

An index directory holds generations, the way Lucene holds commits::

    NAME/CURRENT          "gen-000003 <crc32>"   which generation is live
    NAME/gen-000003/      manifest.json + array files, never modified once published
    NAME/.tmp-<random>/   a build in progress (removed by the next build if it was killed)

A build writes a temporary directory, fsyncs every file and the directory, renames it to the
next ``gen-NNNNNN`` and then atomically replaces ``CURRENT``. A crash at any moment leaves
``CURRENT`` naming a complete generation: the old index or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import struct
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from sparse_ir.errors import IndexBusyError, IndexCorruptError, IndexFormatError
from sparse_ir.index.manifest import FileRecord

__all__ = [
    "ARRAY_FORMAT",
    "ARRAY_VERSION",
    "ArrayWriter",
    "FileRecord",
    "IndexDirectory",
    "MAX_MANIFEST_BYTES",
    "MAX_POINTER_BYTES",
    "WriteLock",
    "check_files",
    "file_crc32",
    "file_problems",
    "fsync_directory",
    "open_array",
    "read_array_header",
    "read_manifest",
    "read_manifest_unchecked",
    "read_small_file",
    "safe_file_problem",
    "replace_directory",
    "write_array",
    "write_bytes_file",
    "write_manifest",
]

ARRAY_FORMAT = "sparse-ir-array"
ARRAY_VERSION = 1
_MAGIC = b"SPIRARR1"
_FOOTER_MAGIC = b"SPIREND1"
_FOOTER_SIZE = 16
_ALIGN = 64
_MAX_HEADER = 1 << 16
_CURRENT = "CURRENT"
_GENERATION = re.compile(r"^gen-(\d{6,})$")
_SEGMENT = re.compile(r"^seg-(\d{6,})$")
_ARRAY_DTYPE = re.compile(r"[<|](?:[iu][1248]|f[248])")
_POINTER = re.compile(rb"(gen-\d{6,}) ([0-9a-f]{8})\n")
#: ``CURRENT`` is one short line; more bytes than this are damage (never read further).
MAX_POINTER_BYTES = 64
#: A manifest lists a few dozen files and the build's settings; a larger one is refused
#: before it is parsed (a manifest symlinked to ``/dev/zero`` must not read forever).
MAX_MANIFEST_BYTES = 16 << 20
_T = TypeVar("_T")

logger = logging.getLogger(__name__)


def _open_for_write(path: str | os.PathLike):
    """Open a new file for binary writing. Every index byte goes through here (tests wrap it)."""
    return open(path, "xb")


class _CheckedWriter:
    """A write-only file that keeps a running CRC32 and names itself in every I/O error."""

    def __init__(self, path: Path):
        self.path = path
        self.size = 0
        self.crc = 0
        try:
            self._file = _open_for_write(path)
        except OSError as exc:
            raise _named(exc, "creating", path) from None

    def write(self, data: bytes | memoryview) -> None:
        data = memoryview(data).cast("B")
        try:
            self._file.write(data)
        except OSError as exc:
            self.abort()
            raise _named(exc, "writing", self.path) from None
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def close(self) -> FileRecord:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            self.abort()
            raise _named(exc, "flushing", self.path) from None
        return FileRecord(self.path.name, self.size, self.crc)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def _named(exc: OSError, action: str, path: Path) -> OSError:
    code = exc.errno if exc.errno is not None else errno.EIO
    message = exc.strerror or str(exc)
    return OSError(code, f"{message} ({action} {path})", str(path))


class ArrayWriter:
    """Stream one array of known length into an array file (header, data, CRC footer).

    Args:
        path: the file to create (must not exist).
        name: the array's name, stored in the header and checked on open.
        dtype: element type; stored little-endian.
        count: number of elements that will be written; checked on :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, name: str, dtype, count: int):
        self.path = Path(path)
        self.name = name
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.count = int(count)
        self.written = 0
        header = json.dumps(
            {
                "format": ARRAY_FORMAT,
                "version": ARRAY_VERSION,
                "name": name,
                "dtype": self.dtype.str,
                "count": self.count,
            }
        ).encode()
        start = len(_MAGIC) + 4 + len(header)
        padding = (-start) % _ALIGN
        self._out = _CheckedWriter(self.path)
        self._out.write(_MAGIC + struct.pack("<I", len(header)) + header + b"\0" * padding)

    def write(self, values: np.ndarray) -> None:
        """Append elements (converted to the file's dtype)."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self.written + len(values) > self.count:
            self._out.abort()
            raise ValueError(f"{self.name}: writing more than the declared {self.count} elements")
        if len(values):
            self._out.write(memoryview(values.reshape(-1).view(np.uint8)))
        self.written += len(values)

    def close(self) -> FileRecord:
        """Write the footer, fsync, and return the file's size and CRC32."""
        if self.written != self.count:
            self._out.abort()
            raise ValueError(f"{self.name}: {self.written} elements written, {self.count} declared")
        self._out.write(_FOOTER_MAGIC + struct.pack("<I", self._out.crc) + b"\0" * 4)
        return self._out.close()


def write_array(path: str | os.PathLike, name: str, values: np.ndarray, dtype=None) -> FileRecord:
    """Write a whole array as an array file."""
    values = np.asarray(values)
    writer = ArrayWriter(path, name, dtype or values.dtype, len(values))
    # Chunks keep the temporary copy (dtype conversion) small for huge arrays.
    step = 1 << 24
    for start in range(0, len(values), step):
        writer.write(values[start : start + step])
    return writer.close()


def write_bytes_file(path: str | os.PathLike, data: bytes) -> FileRecord:
    """Write a small opaque file (JSON) through the same checked, fsynced path."""
    out = _CheckedWriter(Path(path))
    out.write(data)
    return out.close()


# -- reading files an attacker may have shaped ---------------------------------------------------


def _name_problem(name: object) -> str | None:
    """Why a name listed in a manifest is not a plain file name of the generation, or None."""
    if not isinstance(name, str) or not name:
        return "an empty or non-text file name"
    if "/" in name or "\\" in name or name.startswith("."):
        return "not a plain file name (a path, or a hidden or '..' name)"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return "a file name with a control character"
    return None


def _index_root(directory: Path) -> Path:
    """The directory a file of ``directory`` must stay inside: the index directory (holding
    ``CURRENT``) when ``directory`` is one of its generations, else ``directory`` itself."""
    if _GENERATION.match(directory.name) and os.path.lexists(directory.parent / _CURRENT):
        return directory.parent
    return directory


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


def safe_file_problem(path: Path, root: Path) -> str | None:
    """Why ``path`` must not be read as a file of the index under ``root``, or None.

    Refused: a symbolic link whose target leaves ``root`` (``/dev/zero``, a file of another
    index or user), and anything that is not a regular file (a FIFO blocks ``open()`` forever,
    a device reads forever, a directory cannot be mapped). Only ``stat`` calls: nothing is
    opened. A missing file is None here (callers name it their own way).
    """
    try:
        # Resolved whole: a link anywhere on the way (the file, its generation) counts.
        target = Path(os.path.realpath(path))
        top = Path(os.path.realpath(root))
        if target != top and top not in target.parents:
            return (
                f"{path}: resolves (through a symbolic link) to {target}, outside the "
                f"index directory {root}; refused"
            )
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{path}: unreadable ({exc})"
    if not stat.S_ISREG(mode):
        return (
            f"{path}: a {_file_kind(mode)}, not a regular file; refused (an index "
            "holds only regular files)"
        )
    return None


def _open_regular(path: str | os.PathLike):
    """Open a file for binary reading only if it is a regular file (never blocks on a FIFO)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise IndexCorruptError(f"{path}: a {_file_kind(mode)}, not a regular file; refused")
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small_file(path: str | os.PathLike, *, root: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a small index file (``CURRENT``, a manifest, JSON metadata).

    Refused with :class:`IndexCorruptError` naming the file: a symbolic link leaving ``root``,
    a file that is not regular, and a file larger than ``limit`` bytes (at most ``limit`` + 1
    bytes are ever read). A missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    if problem := safe_file_problem(path, Path(root)):
        raise IndexCorruptError(problem)
    try:
        with _open_regular(path) as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IndexCorruptError(f"{path}: unreadable ({exc})") from None
    if len(data) > limit:
        raise IndexCorruptError(
            f"{path}: larger than {limit:,} bytes, far more than this file ever holds; refused"
        )
    return data


def read_listed_json(directory: Path, record: FileRecord) -> object:
    """Parse a JSON file the manifest lists (``vocab.json``...): read at most its recorded
    size, nesting depth-limited; damage raises :class:`IndexCorruptError` naming the file."""
    from sparse_ir.errors import InputError
    from sparse_ir.jsonl import parse_json

    path = directory / record.name
    raw = read_small_file(path, root=_index_root(directory), limit=record.size)
    try:
        return parse_json(raw, path=path)
    except InputError as exc:
        raise IndexCorruptError(f"{exc}; the file is corrupt") from None


@dataclass(frozen=True)
class ArrayHeader:
    """What the header of an array file says about it."""

    name: str
    dtype: np.dtype
    count: int
    data_offset: int


def read_array_header(path: str | os.PathLike) -> ArrayHeader:
    """Read and check an array file's header and size (cheap: no data is read)."""
    path = Path(path)
    try:
        with _open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            start = handle.read(len(_MAGIC) + 4)
            if len(start) < len(_MAGIC) + 4 or start[: len(_MAGIC)] != _MAGIC:
                raise IndexCorruptError(f"{path}: not a sparse-ir array file (bad magic bytes)")
            (header_len,) = struct.unpack("<I", start[len(_MAGIC) :])
            if header_len > _MAX_HEADER:
                raise IndexCorruptError(f"{path}: header length {header_len} is not plausible")
            raw = handle.read(header_len)
            padding = handle.read((-(len(_MAGIC) + 4 + header_len)) % _ALIGN)
            if size >= _FOOTER_SIZE:
                handle.seek(size - _FOOTER_SIZE)
                footer = handle.read(_FOOTER_SIZE)
            else:
                footer = b""
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IndexCorruptError(f"{path}: unreadable ({exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("not an object")
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise IndexCorruptError(f"{path}: corrupt header ({exc})") from None
    if header.get("format") != ARRAY_FORMAT:
        raise IndexFormatError(
            f"{path}: format {header.get('format')!r}, expected {ARRAY_FORMAT!r}"
        )
    if header.get("version") != ARRAY_VERSION:
        raise IndexFormatError(
            f"{path}: array format version {header.get('version')!r}; this "
            f"sparse_ir reads version {ARRAY_VERSION}"
        )
    dtype_text, count, name = header.get("dtype"), header.get("count"), header.get("name")
    # Only plain little-endian numbers: numpy would parse far more (bytes, objects, records;
    # some spellings even raise SyntaxError), and a damaged header must not pick one of them.
    if not (isinstance(dtype_text, str) and _ARRAY_DTYPE.fullmatch(dtype_text)):
        raise IndexCorruptError(
            f"{path}: corrupt header (dtype {dtype_text!r} is not a "
            "little-endian integer or float type)"
        )
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or count < 0
        or not isinstance(name, str)
    ):
        raise IndexCorruptError(f"{path}: corrupt header (count {count!r}, name {name!r})")
    dtype = np.dtype(dtype_text)
    if dtype.str != dtype_text:  # e.g. "<u1" for "|u1": the writer never spells it so
        raise IndexCorruptError(
            f"{path}: corrupt header (dtype {dtype_text!r} is not written as {dtype.str!r})"
        )
    data_offset = len(_MAGIC) + 4 + header_len
    data_offset += (-data_offset) % _ALIGN
    expected = data_offset + count * dtype.itemsize + _FOOTER_SIZE
    if size != expected:
        raise IndexCorruptError(
            f"{path}: {size} bytes, but its header promises {expected} "
            f"({count} × {dtype.str}); the file is truncated or extended"
        )
    if footer[: len(_FOOTER_MAGIC)] != _FOOTER_MAGIC or footer[-4:] != b"\0" * 4:
        raise IndexCorruptError(f"{path}: missing footer (the file was not completely written)")
    if padding.strip(b"\0"):
        raise IndexCorruptError(f"{path}: bytes between the header and the data are not zero")
    return ArrayHeader(name, dtype, count, data_offset)


def open_array(
    path: str | os.PathLike, *, name: str | None = None, dtype=None, count: int | None = None
) -> np.ndarray:
    """Memory-map the data of an array file after checking its header against expectations.

    Returns a read-only plain ``np.ndarray`` over the mapping (the ``np.memmap`` is its
    ``base`` and lives as long as it): numba types an ndarray subclass on a slow path, which
    costs more than a small search when the kernels are called.
    """
    header = read_array_header(path)
    if name is not None and header.name != name:
        raise IndexCorruptError(f"{path}: holds array {header.name!r}, expected {name!r}")
    if dtype is not None and header.dtype != np.dtype(dtype).newbyteorder("<"):
        raise IndexCorruptError(f"{path}: dtype {header.dtype.str}, expected {np.dtype(dtype).str}")
    if count is not None and header.count != count:
        raise IndexCorruptError(f"{path}: {header.count} elements, expected {count}")
    if header.count == 0:
        # Nothing to map. Read-only like a mapped array: numba compiles every kernel again for
        # each writable/read-only mix of its arguments (~40 s of compilation for the search
        # entry points, the first time an index without postings is searched).
        empty = np.zeros(0, dtype=header.dtype)
        empty.flags.writeable = False
        return empty
    return np.asarray(
        np.memmap(
            path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=(header.count,)
        )
    )


def check_array_footer(path: str | os.PathLike) -> None:
    """Recompute an array file's CRC32 and compare it with its footer (reads every byte)."""
    path = Path(path)
    size = path.stat().st_size
    crc = file_crc32(path, size - _FOOTER_SIZE)
    with _open_regular(path) as handle:
        handle.seek(size - _FOOTER_SIZE)
        footer = handle.read(_FOOTER_SIZE)
    (stored,) = struct.unpack("<I", footer[len(_FOOTER_MAGIC) : len(_FOOTER_MAGIC) + 4])
    if stored != crc:
        raise IndexCorruptError(
            f"{path}: CRC32 mismatch (footer {stored:08x}, data {crc:08x}): the file is corrupt"
        )


def file_crc32(path: str | os.PathLike, length: int | None = None) -> int:
    """CRC32 of the first ``length`` bytes of a file (all of it by default)."""
    crc = 0
    remaining = length
    with _open_regular(path) as handle:
        while remaining is None or remaining > 0:
            size = 1 << 22 if remaining is None else min(1 << 22, remaining)
            block = handle.read(size)
            if not block:
                break
            crc = zlib.crc32(block, crc)
            if remaining is not None:
                remaining -= len(block)
    return crc


def _manifest_checksum(body: dict) -> int:
    return zlib.crc32(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def _manifest_bytes(body: dict) -> bytes:
    """The one byte form of a manifest (with its checksum): written, and required on read."""
    return json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"


def write_manifest(directory: Path, body: dict) -> FileRecord:
    """Write ``manifest.json``: the body plus a CRC32 of its canonical JSON form."""
    body = dict(body)
    body["manifest_crc32"] = _manifest_checksum(body)
    return write_bytes_file(directory / "manifest.json", _manifest_bytes(body))


def read_manifest_unchecked(directory: Path) -> tuple[dict, str | None]:
    """Parse ``manifest.json`` without judging its format.

    Returns ``(body, problem)``: ``problem`` says why the bytes cannot be trusted (checksum
    mismatch, or not the exact form :func:`write_manifest` writes), or is None. Raises
    :class:`IndexCorruptError` when the file is missing or is not a JSON object.
    """
    from sparse_ir.errors import InputError
    from sparse_ir.jsonl import parse_json

    path = directory / "manifest.json"
    try:
        raw = read_small_file(path, root=_index_root(directory), limit=MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise IndexCorruptError(f"{path}: missing (not an index, or a damaged one)") from None
    try:
        body = parse_json(raw)  # depth-limited: a manifest nested 10^5 deep is refused
        if not isinstance(body, dict):
            raise TypeError("not a JSON object")
    except (InputError, TypeError) as exc:
        raise IndexCorruptError(f"{path}: corrupt manifest ({exc})") from None
    problem = None
    stored = body.get("manifest_crc32")
    if stored != _manifest_checksum({k: v for k, v in body.items() if k != "manifest_crc32"}):
        problem = "manifest checksum mismatch; the file was altered"
    elif raw != _manifest_bytes(body):
        # The checksum covers the content; this covers every byte (a cut newline, a respaced
        # line): a published file is never modified, so any difference is damage.
        problem = "manifest bytes differ from the form sparse_ir writes; the file was altered"
    body.pop("manifest_crc32", None)
    return body, problem


def read_manifest(directory: Path, *, format_name: str, version: int | tuple[int, ...]) -> dict:
    """Read and check ``manifest.json``: its format name and version, then its checksum.

    ``version``: the version read, or every version read (a tuple). The version is judged
    first, so an index written by another version of sparse_ir is refused with both versions
    named, even if that version checksums differently.
    """
    from sparse_ir.index.manifest import versions_read

    versions = (version,) if isinstance(version, int) else tuple(version)
    path = directory / "manifest.json"
    body, problem = read_manifest_unchecked(directory)
    damaged = f" (and {problem})" if problem else ""
    if body.get("format") != format_name:
        raise IndexFormatError(
            f"{directory}: a {body.get('format')!r} index, not {format_name!r}{damaged}"
        )
    found = body.get("format_version")
    if isinstance(found, bool) or found not in versions:
        raise IndexFormatError(
            f"{directory}: index format version {found!r}; this sparse_ir "
            f"reads {versions_read(versions)}. Rebuild the index with this version, or use the "
            f"sparse_ir that wrote it{damaged}."
        )
    if problem:
        raise IndexCorruptError(f"{path}: {problem}")
    return body


def file_problems(directory: Path, files: object, *, full: bool) -> list[str]:
    """Every problem with the files a manifest lists: missing, wrong size, and (``full``)
    wrong CRC32 or array footer. An empty list means all is well."""
    if not isinstance(files, dict):
        return [f"{directory / 'manifest.json'}: 'files' is not a mapping"]
    problems = []
    root = _index_root(directory)
    for name, record in files.items():
        if problem := _name_problem(name):
            problems.append(f"{directory}: manifest lists {name!r}: {problem}; refused")
            continue
        path = directory / name
        if problem := safe_file_problem(path, root):
            problems.append(problem)
            continue
        try:
            if isinstance(record, FileRecord):
                size, crc = record.size, record.crc32
            else:
                size, crc = record["size"], record["crc32"]
                if not all(type(v) is int and v >= 0 for v in (size, crc)):
                    raise TypeError("size and crc32 must be integers >= 0")
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}: the manifest's record of it is corrupt ({record!r})")
            continue
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path}: missing file listed in the manifest")
            continue
        if actual != size:
            problems.append(f"{path}: {actual} bytes, the manifest records {size}")
            continue
        if full:
            try:
                found = file_crc32(path)
                if found != crc:
                    problems.append(
                        f"{path}: CRC32 {found:08x}, the manifest records "
                        f"{crc:08x}: the file is corrupt"
                    )
                elif name.endswith(".bin"):
                    read_array_header(path)
                    check_array_footer(path)
            except (IndexFormatError, OSError) as exc:
                problems.append(str(exc))
    return problems


def check_files(directory: Path, files: Mapping[str, FileRecord], *, full: bool) -> None:
    """Check every file listed in a manifest: present, the recorded size, and (``full``) CRC32.

    Raises :class:`IndexCorruptError` naming the first problem (see :func:`file_problems`).
    """
    problems = file_problems(directory, files, full=full)
    if problems:
        raise IndexCorruptError(problems[0])


def check_files_at_open(
    directory: Path, files: Mapping[str, FileRecord], *, checksum_up_to: int
) -> None:
    """The cheap checks of ``open()``: every file present at its recorded size, and the CRC32
    of the files of at most ``checksum_up_to`` bytes (metadata, like Lucene's segment infos;
    larger files are checksummed by ``verify()``).

    Raises :class:`IndexCorruptError` naming the first problem.
    """
    check_files(directory, files, full=False)
    for name, record in files.items():
        if (
            record.size <= checksum_up_to
            and file_crc32(directory / name, record.size) != record.crc32
        ):
            raise IndexCorruptError(
                f"{directory / name}: CRC32 does not match the manifest: the file is corrupt"
            )


def fsync_directory(path: str | os.PathLike) -> None:
    """fsync a directory so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_directory(finished: Path, output: Path) -> None:
    """Rename a finished directory (a sibling of ``output``) into place as ``output``.

    For outputs that are whole directories without generations (Lucene exports, JSON vector
    collections): an existing ``output`` is first renamed aside and removed only after the
    new one is in place, so ``output`` is never half written.
    """
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{secrets.token_hex(6)}"
        os.rename(output, old)
    os.rename(finished, output)
    fsync_directory(output.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class IndexDirectory:
    """A directory of index generations with an atomically replaced ``CURRENT`` pointer."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def is_generation_dir(self) -> bool:
        """True when ``path`` is itself one generation (holds ``manifest.json``)."""
        return (self.path / "manifest.json").is_file() and not (self.path / _CURRENT).exists()

    def _read_pointer(self) -> bytes | None:
        """The raw bytes of ``CURRENT``, or None when there is none."""
        try:
            return read_small_file(self.path / _CURRENT, root=self.path, limit=MAX_POINTER_BYTES)
        except FileNotFoundError:
            return None

    def _parse_pointer(self, raw: bytes) -> str:
        # Exactly the bytes _write_current writes: any other byte (even a changed newline)
        # is damage, and a damaged pointer is refused rather than guessed at.
        pointer = self.path / _CURRENT
        match = _POINTER.fullmatch(raw)
        if not match:
            raise IndexCorruptError(
                f"{pointer}: corrupt (expected 'gen-NNNNNN <crc32>', got {raw[:40]!r})"
            )
        name = match.group(1).decode("ascii")
        if int(match.group(2), 16) != zlib.crc32(name.encode()):
            raise IndexCorruptError(f"{pointer}: corrupt (checksum mismatch)")
        return name

    def current(self) -> Path:
        """The live generation's directory; a clear error when there is none."""
        if self.is_generation_dir():
            return self.path
        raw = self._read_pointer()
        if raw is None:
            if not self.path.exists():
                raise FileNotFoundError(f"no index at {self.path}")
            raise IndexCorruptError(
                f"{self.path}: no {_CURRENT} file, so no complete index here (an interrupted "
                "first build leaves this; build again)"
            )
        name = self._parse_pointer(raw)
        generation = self.path / name
        if not generation.is_dir():
            raise IndexCorruptError(f"{self.path / _CURRENT} names {name}, which does not exist")
        return generation

    def open_current(self, opener: Callable[[Path], _T], *, attempts: int = 20) -> _T:
        """``opener(generation)`` on the live generation, retried if a publish intervenes.

        A reader resolves ``CURRENT`` and then opens files; meanwhile a build may publish new
        generations and delete the one it was reading (``keep_previous``). When opening fails
        and ``CURRENT`` has changed since it was read, the new generation is opened instead;
        when ``CURRENT`` is unchanged the error is real and is raised.
        """
        for attempt in range(attempts):
            before = None if self.is_generation_dir() else self._read_pointer()
            try:
                return opener(self.current())
            except (FileNotFoundError, IndexCorruptError):
                if before is None or attempt == attempts - 1 or self._read_pointer() == before:
                    raise
                logger.debug(
                    "%s: a new generation was published while opening; retrying", self.path
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def generations(self) -> list[tuple[int, Path]]:
        """Published generations, oldest first."""
        found = []
        if self.path.is_dir():
            for entry in self.path.iterdir():
                match = _GENERATION.match(entry.name)
                if match and entry.is_dir():
                    found.append((int(match.group(1)), entry))
        return sorted(found)

    def leftovers(self) -> list[Path]:
        """What interrupted builds left behind: temporaries, and generations that were
        renamed into place but never named by ``CURRENT`` (newer than the live one)."""
        if not self.path.is_dir():
            return []
        found = [e for e in self.path.iterdir() if e.name.startswith(".tmp-")]
        live = self._live_number()
        if live is not None:
            found += [p for n, p in self.generations() if n > live]
        elif self._pointer_absent():
            found += [p for _, p in self.generations()]  # nothing was ever published
        return sorted(found)

    def _pointer_absent(self) -> bool:
        """True when there is no ``CURRENT`` at all (a damaged one is not absent)."""
        return not os.path.lexists(self.path / _CURRENT)

    def _live_number(self) -> int | None:
        try:
            raw = self._read_pointer()
            return None if raw is None else int(self._parse_pointer(raw)[len("gen-") :])
        except IndexCorruptError:
            return None

    @contextlib.contextmanager
    def publish(
        self, *, keep_previous: int = 1, holding_lock: bool = False, keep: Collection[str] = ()
    ) -> Iterator[Path]:
        """Yield a fresh temporary directory; on normal exit publish it as the new generation.

        On an exception (Ctrl-C included) the temporary directory is removed and the previous
        generation stays live. ``keep_previous`` older generations are kept for readers that
        opened them before the switch; older ones are deleted. What earlier interrupted
        builds left behind (see :meth:`leftovers`) is removed first.

        ``holding_lock``: the caller already holds the index's write lock (a live index
        writer, :mod:`.segments`). ``keep``: generation names never deleted here (in use by
        readers of this process).
        """
        self._prepare()
        with contextlib.nullcontext() if holding_lock else self._lock():
            for entry in self.leftovers():
                _remove(entry)
            temporary = self.path / f".tmp-{secrets.token_hex(6)}"
            temporary.mkdir()
            renamed: Path | None = None
            try:
                yield temporary
                # Every file was fsynced when written (_CheckedWriter.close); now its entry.
                fsync_directory(temporary)
                number = max([n for n, _ in self.generations()], default=0) + 1
                name = f"gen-{number:06d}"
                os.rename(temporary, self.path / name)
                renamed = self.path / name
                fsync_directory(self.path)
                self._write_current(name)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                if renamed is not None and self._live_number() != number:
                    shutil.rmtree(renamed, ignore_errors=True)  # renamed, never published
                raise
            live = [(n, p) for n, p in self.generations() if n <= number]
            for _, old in live[: max(0, len(live) - 1 - keep_previous)]:
                if old.name not in keep:
                    shutil.rmtree(old, ignore_errors=True)

    def _prepare(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path} exists and is not a directory")
        if self.path.is_dir():
            if self.is_generation_dir():
                raise FileExistsError(
                    f"{self.path} is one generation of an index; build into "
                    "its parent (the index directory) instead"
                )
            foreign = [
                e.name
                for e in self.path.iterdir()
                if not (
                    e.name in (_CURRENT, ".lock")
                    or e.name.startswith(".tmp-")
                    or _GENERATION.match(e.name)
                    or _SEGMENT.match(e.name)
                )
            ]
            if foreign:
                raise FileExistsError(
                    f"{self.path} exists and holds files that are not an index "
                    f"({', '.join(sorted(foreign)[:3])}...); choose another output directory"
                )
        self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock = WriteLock.acquire(self.path, purpose="a build")
        try:
            yield
        finally:
            lock.release()

    def _write_current(self, name: str) -> None:
        temporary = self.path / f".tmp-{_CURRENT}-{secrets.token_hex(4)}"
        try:
            write_bytes_file(temporary, f"{name} {zlib.crc32(name.encode()):08x}\n".encode())
            os.replace(temporary, self.path / _CURRENT)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        fsync_directory(self.path)


class WriteLock:
    """The one writer of an index directory: an advisory lock on ``.lock`` holding its pid.

    Builds and live index writers (:class:`~sparse_ir.index.writer.IndexWriter`) take it, so
    at most one of them writes an index at a time, whether the other is a thread of this
    process or another process. The kernel drops the lock when its holder dies (even by
    ``kill -9``), so a lock left by a killed process is free: the next writer takes it over
    (and logs the dead pid). Without ``fcntl`` (Windows) there is no lock.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp()
        >>> lock = WriteLock.acquire(path)
        >>> try:
        ...     WriteLock.acquire(path)
        ... except IndexBusyError as exc:
        ...     "held by pid" in str(exc)
        True
        >>> lock.release()
    """

    def __init__(self, path: Path, handle):
        self.path = path
        self._handle = handle

    @classmethod
    def acquire(cls, directory: str | os.PathLike, *, purpose: str = "a writer") -> WriteLock:
        """Take the lock of ``directory`` (created if needed) or raise :class:`IndexBusyError`
        naming the holder's pid."""
        path = Path(directory) / ".lock"
        handle = open(path, "a+b")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one writer at a time is on the user
            return cls(path, handle)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(handle)
            handle.close()
            mine = " (this process)" if holder == os.getpid() else ""
            raise IndexBusyError(
                f"another build is writing {Path(directory)} right now (a build or an "
                f"index writer: the lock is held by pid "
                f"{holder if holder is not None else '?'}{mine}); {purpose} must wait "
                "for it to finish"
            ) from None
        previous = _lock_holder(handle)
        if previous is not None and previous != os.getpid():
            logger.info("%s: took over the lock left by pid %d (not running)", path, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        return cls(path, handle)

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self._handle.seek(0)
            self._handle.truncate()
        with contextlib.suppress(ImportError, OSError):
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def _lock_holder(handle) -> int | None:
    """The pid written in a lock file, or None."""
    try:
        handle.seek(0)
        text = handle.read(32).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _remove(path: Path) -> None:
    """Delete a leftover file or directory (safe: called under the build lock)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
