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
import os
import re
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparse_ir.errors import IndexCorruptError, IndexFormatError

__all__ = [
    "ARRAY_FORMAT", "ARRAY_VERSION", "FileRecord", "ArrayWriter", "write_array",
    "read_array_header", "open_array", "write_bytes_file", "file_crc32", "write_manifest",
    "read_manifest", "IndexDirectory", "fsync_directory",
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


def _open_for_write(path: str | os.PathLike):
    """Open a new file for binary writing. Every index byte goes through here (tests wrap it)."""
    return open(path, "xb")


@dataclass(frozen=True)
class FileRecord:
    """Size and CRC32 of one published file, as recorded in the manifest."""

    name: str
    size: int
    crc32: int

    def to_dict(self) -> dict:
        return {"size": self.size, "crc32": self.crc32}


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
        header = json.dumps({"format": ARRAY_FORMAT, "version": ARRAY_VERSION, "name": name,
                             "dtype": self.dtype.str, "count": self.count}).encode()
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
            raise ValueError(f"{self.name}: {self.written} elements written, "
                             f"{self.count} declared")
        self._out.write(_FOOTER_MAGIC + struct.pack("<I", self._out.crc) + b"\0" * 4)
        return self._out.close()


def write_array(path: str | os.PathLike, name: str, values: np.ndarray, dtype=None) -> FileRecord:
    """Write a whole array as an array file."""
    values = np.asarray(values)
    writer = ArrayWriter(path, name, dtype or values.dtype, len(values))
    # Chunks keep the temporary copy (dtype conversion) small for huge arrays.
    step = 1 << 24
    for start in range(0, len(values), step):
        writer.write(values[start:start + step])
    return writer.close()


def write_bytes_file(path: str | os.PathLike, data: bytes) -> FileRecord:
    """Write a small opaque file (JSON) through the same checked, fsynced path."""
    out = _CheckedWriter(Path(path))
    out.write(data)
    return out.close()


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
        size = path.stat().st_size
        with open(path, "rb") as handle:
            start = handle.read(len(_MAGIC) + 4)
            if len(start) < len(_MAGIC) + 4 or start[:len(_MAGIC)] != _MAGIC:
                raise IndexCorruptError(f"{path}: not a sparse-ir array file (bad magic bytes)")
            (header_len,) = struct.unpack("<I", start[len(_MAGIC):])
            if header_len > _MAX_HEADER:
                raise IndexCorruptError(f"{path}: header length {header_len} is not plausible")
            raw = handle.read(header_len)
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
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexCorruptError(f"{path}: corrupt header ({exc})") from None
    if header.get("format") != ARRAY_FORMAT:
        raise IndexFormatError(f"{path}: format {header.get('format')!r}, "
                               f"expected {ARRAY_FORMAT!r}")
    if header.get("version") != ARRAY_VERSION:
        raise IndexFormatError(f"{path}: array format version {header.get('version')!r}; this "
                               f"sparse_ir reads version {ARRAY_VERSION}")
    try:
        dtype = np.dtype(header["dtype"])
        count = int(header["count"])
        name = str(header["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexCorruptError(f"{path}: corrupt header ({exc})") from None
    if dtype.byteorder == ">" or count < 0:
        raise IndexCorruptError(f"{path}: invalid dtype {dtype.str} or count {count}")
    data_offset = len(_MAGIC) + 4 + header_len
    data_offset += (-data_offset) % _ALIGN
    expected = data_offset + count * dtype.itemsize + _FOOTER_SIZE
    if size != expected:
        raise IndexCorruptError(f"{path}: {size} bytes, but its header promises {expected} "
                                f"({count} × {dtype.str}); the file is truncated or extended")
    if footer[:len(_FOOTER_MAGIC)] != _FOOTER_MAGIC:
        raise IndexCorruptError(f"{path}: missing footer (the file was not completely written)")
    return ArrayHeader(name, dtype, count, data_offset)


def open_array(path: str | os.PathLike, *, name: str | None = None, dtype=None,
               count: int | None = None) -> np.ndarray:
    """Memory-map the data of an array file after checking its header against expectations."""
    header = read_array_header(path)
    if name is not None and header.name != name:
        raise IndexCorruptError(f"{path}: holds array {header.name!r}, expected {name!r}")
    if dtype is not None and header.dtype != np.dtype(dtype).newbyteorder("<"):
        raise IndexCorruptError(f"{path}: dtype {header.dtype.str}, expected "
                                f"{np.dtype(dtype).str}")
    if count is not None and header.count != count:
        raise IndexCorruptError(f"{path}: {header.count} elements, expected {count}")
    if header.count == 0:
        return np.zeros(0, dtype=header.dtype)
    return np.memmap(path, dtype=header.dtype, mode="r", offset=header.data_offset,
                     shape=(header.count,))


def check_array_footer(path: str | os.PathLike) -> None:
    """Recompute an array file's CRC32 and compare it with its footer (reads every byte)."""
    path = Path(path)
    size = path.stat().st_size
    crc = file_crc32(path, size - _FOOTER_SIZE)
    with open(path, "rb") as handle:
        handle.seek(size - _FOOTER_SIZE)
        footer = handle.read(_FOOTER_SIZE)
    (stored,) = struct.unpack("<I", footer[len(_FOOTER_MAGIC):len(_FOOTER_MAGIC) + 4])
    if stored != crc:
        raise IndexCorruptError(f"{path}: CRC32 mismatch (footer {stored:08x}, "
                                f"data {crc:08x}): the file is corrupt")


def file_crc32(path: str | os.PathLike, length: int | None = None) -> int:
    """CRC32 of the first ``length`` bytes of a file (all of it by default)."""
    crc = 0
    remaining = length
    with open(path, "rb") as handle:
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


def write_manifest(directory: Path, body: dict) -> FileRecord:
    """Write ``manifest.json``: the body plus a CRC32 of its canonical JSON form."""
    body = dict(body)
    body["manifest_crc32"] = _manifest_checksum(body)
    data = json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return write_bytes_file(directory / "manifest.json", data + b"\n")


def read_manifest(directory: Path, *, format_name: str, version: int) -> dict:
    """Read and check ``manifest.json``: its checksum, format name and version."""
    path = directory / "manifest.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IndexCorruptError(f"{path}: missing (not an index, or a damaged one)") from None
    try:
        body = json.loads(raw.decode("utf-8"))
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise IndexCorruptError(f"{path}: corrupt manifest ({exc})") from None
    stored = body.pop("manifest_crc32", None)
    if stored != _manifest_checksum(body):
        raise IndexCorruptError(f"{path}: manifest checksum mismatch; the file was altered")
    if body.get("format") != format_name:
        raise IndexFormatError(f"{directory}: a {body.get('format')!r} index, not {format_name!r}")
    if body.get("format_version") != version:
        raise IndexFormatError(
            f"{directory}: index format version {body.get('format_version')!r}; this sparse_ir "
            f"reads version {version}. Rebuild the index with this version, or use the "
            "sparse_ir that wrote it.")
    return body


def check_files(directory: Path, files: dict, *, full: bool) -> None:
    """Check every file listed in a manifest: present, the recorded size, and (``full``) CRC32."""
    for name, record in files.items():
        path = directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptError(f"{path}: missing file listed in the manifest") from None
        if size != record["size"]:
            raise IndexCorruptError(f"{path}: {size} bytes, the manifest records "
                                    f"{record['size']}")
        if full:
            crc = file_crc32(path)
            if crc != record["crc32"]:
                raise IndexCorruptError(f"{path}: CRC32 {crc:08x}, the manifest records "
                                        f"{record['crc32']:08x}: the file is corrupt")
            if name.endswith(".bin"):
                check_array_footer(path)


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


class IndexDirectory:
    """A directory of index generations with an atomically replaced ``CURRENT`` pointer."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def is_generation_dir(self) -> bool:
        """True when ``path`` is itself one generation (holds ``manifest.json``)."""
        return (self.path / "manifest.json").is_file() and not (self.path / _CURRENT).exists()

    def current(self) -> Path:
        """The live generation's directory; a clear error when there is none."""
        if self.is_generation_dir():
            return self.path
        pointer = self.path / _CURRENT
        try:
            raw = pointer.read_bytes()
        except FileNotFoundError:
            if not self.path.exists():
                raise FileNotFoundError(f"no index at {self.path}") from None
            raise IndexCorruptError(
                f"{self.path}: no {_CURRENT} file, so no complete index here (an interrupted "
                "first build leaves this; build again)") from None
        try:
            name, crc = raw.decode("ascii").split()
            if int(crc, 16) != zlib.crc32(name.encode()) or not _GENERATION.match(name):
                raise ValueError("checksum mismatch")
        except ValueError as exc:
            raise IndexCorruptError(f"{pointer}: corrupt ({exc})") from None
        generation = self.path / name
        if not generation.is_dir():
            raise IndexCorruptError(f"{pointer} names {name}, which does not exist")
        return generation

    def generations(self) -> list[tuple[int, Path]]:
        """Published generations, oldest first."""
        found = []
        if self.path.is_dir():
            for entry in self.path.iterdir():
                match = _GENERATION.match(entry.name)
                if match and entry.is_dir():
                    found.append((int(match.group(1)), entry))
        return sorted(found)

    @contextlib.contextmanager
    def publish(self, *, keep_previous: int = 1) -> Iterator[Path]:
        """Yield a fresh temporary directory; on normal exit publish it as the new generation.

        On an exception (Ctrl-C included) the temporary directory is removed and the previous
        generation stays live. ``keep_previous`` older generations are kept for readers that
        opened them before the switch; older ones are deleted.
        """
        self._prepare()
        with self._lock():
            self._remove_stale_temporaries()
            temporary = self.path / f".tmp-{secrets.token_hex(6)}"
            temporary.mkdir()
            try:
                yield temporary
                # Every file was fsynced when written (_CheckedWriter.close); now its entry.
                fsync_directory(temporary)
                number = max([n for n, _ in self.generations()], default=0) + 1
                name = f"gen-{number:06d}"
                os.rename(temporary, self.path / name)
                fsync_directory(self.path)
                self._write_current(name)
            except BaseException:
                shutil.rmtree(temporary, ignore_errors=True)
                raise
            generations = self.generations()
            for _, old in generations[:max(0, len(generations) - 1 - keep_previous)]:
                shutil.rmtree(old, ignore_errors=True)

    def _prepare(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path} exists and is not a directory")
        if self.path.is_dir():
            if self.is_generation_dir():
                raise FileExistsError(f"{self.path} is one generation of an index; build into "
                                      "its parent (the index directory) instead")
            foreign = [e.name for e in self.path.iterdir()
                       if not (e.name in (_CURRENT, ".lock") or e.name.startswith(".tmp-")
                               or _GENERATION.match(e.name))]
            if foreign:
                raise FileExistsError(
                    f"{self.path} exists and holds files that are not an index "
                    f"({', '.join(sorted(foreign)[:3])}...); choose another output directory")
        self.path.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock; one builder at a time is on the user
            yield
            return
        with open(self.path / ".lock", "a+b") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"another build is writing {self.path} right now") from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _remove_stale_temporaries(self) -> None:
        # Safe: we hold the lock, so no other build is using a temporary directory.
        for entry in self.path.iterdir():
            if entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()

    def _write_current(self, name: str) -> None:
        temporary = self.path / f".tmp-{_CURRENT}-{secrets.token_hex(4)}"
        write_bytes_file(temporary, f"{name} {zlib.crc32(name.encode()):08x}\n".encode())
        os.replace(temporary, self.path / _CURRENT)
        fsync_directory(self.path)

