"""Columns of strings on disk: UTF-8 bytes concatenated in one array, plus int64 offsets.

Used for external document ids and the optional stored titles and texts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sparse_ir.index.storage import ArrayWriter, FileRecord, _CheckedWriter, open_array

__all__ = ["StringColumnWriter", "StringColumn"]


class StringColumnWriter:
    """Append strings one by one; :meth:`finish` writes ``NAME.offsets.bin`` and ``NAME.bytes.bin``.

    The bytes go to a scratch file as they arrive, so memory holds only the offsets.
    """

    def __init__(self, directory: Path, name: str):
        self.directory = directory
        self.name = name
        self._scratch_path = directory / f".{name}.scratch"
        self._scratch = _CheckedWriter(self._scratch_path)
        self._offsets = [np.zeros(1, np.int64)]
        self._total = 0

    def extend(self, values) -> None:
        """Append strings (in document order)."""
        encoded = [v.encode("utf-8") for v in values]
        if not encoded:
            return
        self._scratch.write(b"".join(encoded))
        lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
        ends = self._total + np.cumsum(lengths)
        self._total = int(ends[-1])
        self._offsets.append(ends)

    def __len__(self) -> int:
        return sum(len(o) for o in self._offsets) - 1

    def finish(self) -> list[FileRecord]:
        """Write the two array files and remove the scratch file."""
        self._scratch.close()
        offsets = np.concatenate(self._offsets)
        records = []
        writer = ArrayWriter(
            self.directory / f"{self.name}.offsets.bin",
            f"{self.name}.offsets",
            np.int64,
            len(offsets),
        )
        writer.write(offsets)
        records.append(writer.close())
        writer = ArrayWriter(
            self.directory / f"{self.name}.bytes.bin", f"{self.name}.bytes", np.uint8, self._total
        )
        with open(self._scratch_path, "rb") as handle:
            while block := handle.read(1 << 24):
                writer.write(np.frombuffer(block, np.uint8))
        records.append(writer.close())
        os.unlink(self._scratch_path)
        return records

    def abort(self) -> None:
        self._scratch.abort()


class StringColumn:
    """Read access to a column written by :class:`StringColumnWriter` (memory-mapped)."""

    def __init__(self, directory: Path, name: str, count: int):
        self.offsets = open_array(
            directory / f"{name}.offsets.bin",
            name=f"{name}.offsets",
            dtype=np.int64,
            count=count + 1,
        )
        self.data = open_array(
            directory / f"{name}.bytes.bin", name=f"{name}.bytes", dtype=np.uint8
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return bytes(self.data[start:end]).decode("utf-8", errors="replace")

    def all(self) -> list[str]:
        """Every string of the column, in order (decodes the whole column)."""
        blob = bytes(self.data).decode("utf-8", errors="replace") if len(self.data) else ""
        if blob.isascii():
            offsets = self.offsets.tolist()
            return [blob[offsets[i] : offsets[i + 1]] for i in range(len(self))]
        return [self[i] for i in range(len(self))]

    def check(self) -> str | None:
        """A description of the first structural problem, or None."""
        offsets = np.asarray(self.offsets)
        if len(offsets) and (offsets[0] != 0 or offsets[-1] != len(self.data)):
            return "string offsets do not span the data"
        if len(offsets) > 1 and np.any(np.diff(offsets) < 0):
            return "string offsets decrease"
        return None
