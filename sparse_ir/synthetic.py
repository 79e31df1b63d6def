"""Read the scale benchmark corpus written by ``make_synthetic_corpus.py`` without loading it.

That tool writes ``corpus.npz`` (an uncompressed zip of ``.npy`` members: CSR ``indptr``,
``indices``, ``impacts`` (uint16, already quantized), ``values`` (float weights) and the same for
the queries), ``vocab.json`` and ``queries.jsonl``. One million documents hold ~248M postings,
about 2.5 GB of arrays: :class:`NpzCorpus` memory-maps the members in place (``np.load`` would
read whole arrays into memory) and yields :class:`~sparse_ir.sparse_batch.SparseBatch` shards of
integer impacts, so building an index from it stays within a small memory budget.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["NpzCorpus", "map_npz"]

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_MAGIC = 0x04034B50


def map_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed ``.npz`` (as written by ``np.savez``).

    Raises :class:`InputError` for a compressed member (``np.savez_compressed``), an object
    array, or a file that is not a zip of ``.npy`` members.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise InputError(
                        f"member {info.filename!r} is compressed; memory-mapping "
                        "needs np.savez (not savez_compressed)",
                        path=path,
                    )
                handle.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
                if fields[0] != _LOCAL_MAGIC:
                    raise InputError(f"member {info.filename!r}: bad zip local header", path=path)
                handle.seek(info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10])
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                if dtype.hasobject or fortran:
                    raise InputError(
                        f"member {info.filename!r}: object or Fortran-ordered "
                        "arrays cannot be memory-mapped",
                        path=path,
                    )
                offset = handle.tell()
                count = int(np.prod(shape)) if shape else 1
                if count == 0:
                    arrays[name] = np.zeros(shape, dtype)
                else:
                    arrays[name] = np.memmap(
                        path, dtype=dtype, mode="r", offset=offset, shape=shape
                    )
    except (zipfile.BadZipFile, ValueError, struct.error) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"not a readable .npz file ({exc})", path=path) from None
    return arrays


def _read(handle, mapped: np.ndarray, start: int, end: int) -> np.ndarray:
    """Elements [start, end) of a memory-mapped member, read from the open file instead."""
    if not isinstance(mapped, np.memmap):
        return np.asarray(mapped[start:end])
    handle.seek(mapped.offset + start * mapped.dtype.itemsize)
    values = np.fromfile(handle, dtype=mapped.dtype, count=end - start)
    if len(values) != end - start:
        raise InputError(f"{handle.name}: file ends inside an array (truncated?)")
    return values


class NpzCorpus:
    """The output directory of ``make_synthetic_corpus.py``: documents and queries as impacts.

    Documents get the ids ``"0" .. "N-1"`` (their row numbers, as in the tool's Anserini JSONL);
    queries keep the ids of ``queries.jsonl``.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        npz = self.directory / "corpus.npz"
        if not npz.is_file():
            raise FileNotFoundError(f"{npz}: missing (run make_synthetic_corpus.py first)")
        self.arrays = map_npz(npz)
        need = {"indptr", "indices", "impacts", "q_indptr", "q_indices", "q_impacts"}
        if missing := need - set(self.arrays):
            raise InputError(f"missing arrays {sorted(missing)}", path=npz)
        self.vocab: tuple[str, ...] = tuple(
            json.loads((self.directory / "vocab.json").read_text("utf-8"))
        )
        self.indptr = self.arrays["indptr"]
        if len(self.indptr) < 1 or int(self.indptr[-1]) != len(self.arrays["indices"]):
            raise InputError("indptr does not span the postings", path=npz)

    @property
    def num_documents(self) -> int:
        """Number of documents."""
        return len(self.indptr) - 1

    @property
    def num_postings(self) -> int:
        """Number of (document, term) pairs."""
        return int(self.indptr[-1])

    def documents(
        self, shard_size: int = 100_000, limit: int | None = None
    ) -> Iterator[SparseBatch]:
        """Shards of ``shard_size`` documents (integer impacts), in row order.

        Only one shard is in memory at a time (~2.5 KB per document here). Shards are read
        with plain file reads, not through the memory map, so the pages read do not count in
        this process's resident memory (they stay in the page cache).
        """
        if shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        total = self.num_documents if limit is None else min(limit, self.num_documents)
        indices, impacts = self.arrays["indices"], self.arrays["impacts"]
        with open(self.directory / "corpus.npz", "rb") as handle:
            for first in range(0, total, shard_size):
                last = min(total, first + shard_size)
                start, end = int(self.indptr[first]), int(self.indptr[last])
                yield SparseBatch(
                    np.asarray(self.indptr[first : last + 1]) - start,
                    _read(handle, indices, start, end),
                    _read(handle, impacts, start, end).astype(np.int32),
                    self.vocab,
                    tuple(str(d) for d in range(first, last)),
                )

    def queries(self) -> SparseBatch:
        """The queries as integer impacts, with their ids from ``queries.jsonl``."""
        ids = []
        with open(self.directory / "queries.jsonl", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    ids.append(str(json.loads(line)["id"]))
        q_indptr = np.asarray(self.arrays["q_indptr"])
        if len(ids) != len(q_indptr) - 1:
            raise InputError(
                f"{len(ids)} query ids for {len(q_indptr) - 1} query vectors",
                path=self.directory / "queries.jsonl",
            )
        return SparseBatch(
            q_indptr,
            np.asarray(self.arrays["q_indices"]),
            np.asarray(self.arrays["q_impacts"], np.int32),
            self.vocab,
            tuple(ids),
        )
