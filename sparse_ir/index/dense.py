"""DenseIndex: a float32 matrix of document vectors on disk, searched by exact inner product.

Layout of one generation (file format, manifest and atomic publishing as in :mod:`.storage`)::

    manifest.json            format, version, dim, counts, encoder settings, files + CRC32
    vectors.bin              float32 [n × dim], row-major: document d is row d
    doc_ids.{offsets,bytes}.bin                 external document ids
    hnsw.bin (optional)      a faiss HNSW graph over the same vectors, serialized by faiss

Exact search reads the matrix in blocks of ``chunk_rows`` rows (memory-mapped, so a matrix
larger than RAM is searched through the page cache), scores each block with one matrix product
and keeps only each block's candidates for the top ``k``. Ties break as everywhere in sparse_ir:
score descending, then document number ascending. :func:`reference_top_k` is the plain
score-everything-then-sort version; the tests check that both agree.

The optional HNSW graph (``faiss-cpu``) answers approximately and much faster on large
collections; ``scripts/bench_hybrid.py`` reports its recall@10 against exact search.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np

from sparse_ir.errors import IndexCorruptError, InputError, MissingDependencyError
from sparse_ir.index.base import IndexBase
from sparse_ir.index.filters import FilterLike, allowed_documents
from sparse_ir.index.manifest import DENSE_FORMAT, DENSE_FORMAT_VERSION, DenseManifest
from sparse_ir.index.metadata import MetadataAccess, MetadataWriter, take_metadata
from sparse_ir.index.modes import DenseModeName
from sparse_ir.index.storage import (
    ArrayWriter,
    FileRecord,
    IndexDirectory,
    _CheckedWriter,
    check_files,
    open_array,
    write_array,
    write_manifest,
)
from sparse_ir.index.strings import StringColumnWriter
from sparse_ir.results import Hit, Run
from sparse_ir.validation import id_problem

__all__ = [
    "DENSE_FORMAT",
    "DENSE_FORMAT_VERSION",
    "DenseIndex",
    "DenseIndexWriter",
    "HnswOptions",
    "SearchMethod",
    "exact_top_k",
    "reference_top_k",
]

logger = logging.getLogger(__name__)

# DENSE_FORMAT and DENSE_FORMAT_VERSION live in .manifest; importable from here as before.
SearchMethod = DenseModeName  # its name before the modes module
#: Default bytes of the matrix block scored at once (the scores take ``rows × queries × 4``).
_CHUNK_BYTES = 64 << 20
# Rows whose L2 norm is within this of 1 (or exactly 0: empty texts) count as normalized.
_NORM_TOLERANCE = 1e-3
#: Filtered HNSW search scores the allowed documents exactly when they are at most this share
#: of the collection (or at most 4 × ef of them): see :meth:`DenseIndex.search_batch`.
HNSW_EXACT_BELOW = 0.01


@dataclass(frozen=True)
class HnswOptions:
    """Parameters of the optional faiss HNSW graph (inner-product metric).

    Attributes:
        m: neighbours per node (faiss ``M``); more is slower to build, more accurate.
        ef_construction: candidate list size while building.
        ef_search: default candidate list size while searching (at least ``k`` is used).
    """

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self):
        for label in ("m", "ef_construction", "ef_search"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"HnswOptions.{label} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}


# -- top-k selection (pure numpy) -------------------------------------------------------------


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _order(scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Positions sorting by score descending, then document number ascending."""
    return np.lexsort((docs, -scores))


def reference_top_k(
    vectors: np.ndarray, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: score every row, sort everything, keep ``k``. ``(docnos, scores)``.

    The plain definition that :func:`exact_top_k` must reproduce (slow; for tests and checks).
    ``allowed``: bool or 0/1 mask over the rows; the others are never returned.
    """
    _check_k(k)
    matrix = np.asarray(vectors, np.float32)
    scores = (matrix @ np.asarray(query, np.float32).reshape(-1, 1))[:, 0]
    docs = np.arange(len(scores), dtype=np.int64)
    if allowed is not None:
        keep = np.asarray(allowed).astype(bool)
        docs, scores = docs[keep], scores[keep]
    order = _order(scores, docs)[:k]
    return docs[order], scores[order]


def exact_top_k(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    chunk_rows: int | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact top-``k`` rows by inner product for each query, reading ``vectors`` block by block.

    Within a block, a row scoring below the block's ``k``-th best score cannot be in the
    answer (``k`` rows of that block beat it), so only rows at or above it are kept; rows tied
    with it are all kept, which lets the final sort apply the tie-break exactly.

    Args:
        vectors: ``[n, dim]`` float32 (a memory map is read one block at a time).
        queries: ``[q, dim]`` float32.
        k: hits per query.
        chunk_rows: rows per block (default: ~64 MB of matrix, and of scores).
        allowed: bool or 0/1 mask over the rows (None: all); only allowed rows are scored and
            returned, so a selective filter reads and multiplies fewer rows.

    Returns:
        ``(docnos, scores)``: one int64 and one float32 array per query, best first.
    """
    _check_k(k)
    n, dim = vectors.shape
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    count = len(queries)
    if chunk_rows is None:
        # Bound both the block of the matrix and the block of scores ([q, rows] float32).
        chunk_rows = max(1024, _CHUNK_BYTES // (4 * max(1, dim, count)))
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    best_docs = [np.zeros(0, np.int64) for _ in range(count)]
    best_scores = [np.zeros(0, np.float32) for _ in range(count)]
    for start in range(0, n, chunk_rows):
        rows_at = None
        if allowed is None:
            block = np.asarray(vectors[start : start + chunk_rows], dtype=np.float32)
        else:
            rows_at = np.flatnonzero(allowed[start : start + chunk_rows])
            if len(rows_at) == 0:
                continue
            # Fancy indexing reads only the allowed rows of a memory-mapped block.
            block = np.asarray(vectors[start : start + chunk_rows][rows_at], dtype=np.float32)
        rows = len(block)
        # [q, rows]: one matrix product per block (BLAS, all cores).
        scores = queries @ block.T
        if rows > k:
            thresholds = np.partition(scores, rows - k, axis=1)[:, rows - k]
        for q in range(count):
            row_scores = scores[q]
            if rows > k:
                keep = np.flatnonzero(row_scores >= thresholds[q])
            else:
                keep = np.arange(rows)
            numbers = keep if rows_at is None else rows_at[keep]
            docs = np.concatenate([best_docs[q], numbers.astype(np.int64) + start])
            values = np.concatenate([best_scores[q], row_scores[keep]])
            order = _order(values, docs)[:k]
            best_docs[q], best_scores[q] = docs[order], values[order]
    return best_docs, best_scores


# -- building -----------------------------------------------------------------------------------


class DenseIndexWriter:
    """Append batches of ``(ids, vectors)`` into a temporary generation directory.

    Used by :meth:`DenseIndex.build` inside :meth:`IndexDirectory.publish`; the vectors stream
    to a scratch file, so memory holds one batch at a time.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.dim: int | None = None
        self.count = 0
        self.zero_rows = 0
        self.max_norm_error = 0.0
        self._ids = StringColumnWriter(directory, "doc_ids")
        self._seen: set[str] = set()
        self._scratch_path = directory / ".vectors.scratch"
        self._scratch = _CheckedWriter(self._scratch_path)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Append documents: their external ids and a ``[len(ids), dim]`` array of vectors."""
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of strings, not one string")
        array = np.asarray(vectors)
        if array.ndim != 2:
            raise InputError(
                f"vectors must be a 2-d [documents, dim] array, got shape {array.shape}"
            )
        if array.dtype.kind not in "fiu":
            raise InputError(f"vectors must be numbers, got dtype {array.dtype}")
        if len(ids) != len(array):
            raise InputError(f"{len(ids)} ids for {len(array)} vectors")
        if self.dim is None:
            if array.shape[1] == 0:
                raise InputError("vectors have dimension 0")
            self.dim = int(array.shape[1])
        elif array.shape[1] != self.dim:
            raise InputError(
                f"vectors of dimension {array.shape[1]} after vectors of dimension "
                f"{self.dim} (document {self.count})"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise InputError(
                f"vector of document {ids[row]!r} (document {self.count + row}) "
                "holds NaN or infinity"
            )
        for i, doc_id in enumerate(ids):
            if problem := id_problem(doc_id):
                raise InputError(f"invalid id: document {self.count + i}: {problem}")
            if doc_id in self._seen:
                raise InputError(f"duplicate document id {doc_id!r} (document {self.count + i})")
            self._seen.add(doc_id)
        norms = np.linalg.norm(array, axis=1)
        zero = norms == 0
        self.zero_rows += int(zero.sum())
        if (~zero).any():
            self.max_norm_error = max(self.max_norm_error, float(np.abs(norms[~zero] - 1.0).max()))
        self._ids.extend(ids)
        if len(array):
            self._scratch.write(memoryview(array.reshape(-1).view(np.uint8)))
        self.count += len(array)

    def finish(self) -> dict[str, FileRecord]:
        """Write the final array files; returns their records for the manifest."""
        if self.dim is None or self.count == 0:
            self.abort()
            raise InputError("no documents to index")
        self._scratch.close()
        files: dict[str, FileRecord] = {}
        writer = ArrayWriter(
            self.directory / "vectors.bin", "vectors", np.float32, self.count * self.dim
        )
        with open(self._scratch_path, "rb") as handle:
            # Whole rows per block, so the copy never splits a float.
            block_bytes = max(1, (16 << 20) // (self.dim * 4)) * self.dim * 4
            while block := handle.read(block_bytes):
                writer.write(np.frombuffer(block, np.float32))
        files["vectors.bin"] = writer.close()
        os.unlink(self._scratch_path)
        for record in self._ids.finish():
            files[record.name] = record
        return files

    def abort(self) -> None:
        """Close scratch files (the temporary directory is removed by ``publish``)."""
        self._scratch.abort()
        self._ids.abort()

    @property
    def normalized(self) -> bool:
        """True when every non-zero row has unit L2 norm (inner product = cosine)."""
        return self.max_norm_error <= _NORM_TOLERANCE


def _as_batches(vectors, ids) -> Iterable[tuple[Sequence[str], np.ndarray]]:
    if isinstance(vectors, np.ndarray):
        if ids is None:
            ids = [str(i) for i in range(len(vectors))]
        yield list(ids), vectors
        return
    if ids is not None:
        raise ValueError("ids= goes with one array of vectors; batches carry their own ids")
    for item in vectors:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"expected (ids, vectors) pairs, got {type(item).__name__}")
        yield item


def _build_hnsw(
    vectors: np.ndarray, options: HnswOptions, show_progress: bool | None
) -> np.ndarray:
    """A faiss HNSW graph over ``vectors`` (inner product), serialized to bytes."""
    faiss = _import_faiss()
    from tqdm.auto import tqdm

    n, dim = vectors.shape
    graph = faiss.IndexHNSWFlat(dim, options.m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = options.ef_construction
    step = 16384
    with tqdm(
        total=n,
        desc="HNSW graph",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    ) as progress:
        for start in range(0, n, step):
            graph.add(np.ascontiguousarray(vectors[start : start + step], dtype=np.float32))
            progress.update(min(step, n - start))
    return faiss.serialize_index(graph)


def _import_faiss():
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("the HNSW backend", "faiss-cpu", "bench") from None
    return faiss


# -- the index ----------------------------------------------------------------------------------


class DenseIndex(MetadataAccess, IndexBase[DenseManifest]):
    """Document vectors on disk, searched by inner product. Create with :meth:`build`, load
    with :meth:`open`.

    ``index.manifest`` is the generation's :class:`~sparse_ir.index.manifest.DenseManifest`.
    """

    manifest_type = DenseManifest

    def __init__(self, directory: Path, manifest: DenseManifest):
        super().__init__(directory, manifest)
        n, dim = manifest.num_documents, manifest.dim
        flat = open_array(
            directory / "vectors.bin", name="vectors", dtype=np.float32, count=n * dim
        )
        self.vectors: np.ndarray = flat.reshape(n, dim)
        self._hnsw = None
        self._hnsw_lock = threading.Lock()

    # -- building and opening -----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: np.ndarray | Iterable[tuple[Sequence[str], np.ndarray]],
        path: str | os.PathLike,
        *,
        ids: Sequence[str] | None = None,
        settings: dict | None = None,
        hnsw: HnswOptions | None = None,
        show_progress: bool | None = None,
        metadata: Iterable[Mapping | None] | None = None,
    ) -> DenseIndex:
        """Build a dense index and publish it atomically at ``path``.

        Args:
            vectors: one ``[n, dim]`` array (with ``ids``), or an iterator of ``(ids, vectors)``
                batches appended in order (rows get consecutive document numbers).
            path: the index directory. An existing index there stays readable until the new
                one is complete, then is replaced; an interruption leaves the old one.
            ids: external ids of the rows of a single array (default ``"0", "1", ...``).
            settings: facts recorded in the manifest (the encoder's settings, the corpus...).
            hnsw: also build a faiss HNSW graph (needs ``faiss-cpu``).
            show_progress: progress bar for the HNSW graph; None shows it on a terminal.
            metadata: optional metadata dict per document, in document order (None or ``{}``:
                none), stored checksummed and filterable: :mod:`sparse_ir.index.metadata`.
        """
        if hnsw is not None:
            _import_faiss()
        started = time.perf_counter()
        directory = IndexDirectory(path)
        with directory.publish() as temporary:
            writer = DenseIndexWriter(temporary)
            metadata_iter = iter(metadata) if metadata is not None else None
            metadata_writer = MetadataWriter(temporary) if metadata is not None else None
            try:
                for batch_ids, batch in _as_batches(vectors, ids):
                    writer.add(batch_ids, batch)
                    if metadata_writer is not None:
                        batch_ids = list(batch_ids)
                        records = take_metadata(metadata_iter, len(batch_ids), batch_ids)
                        metadata_writer.add(records, batch_ids)
                files = writer.finish()
                if metadata_writer is not None:
                    files.update({record.name: record for record in metadata_writer.finish()})
            except BaseException:
                writer.abort()
                raise
            if hnsw is not None:
                matrix = open_array(temporary / "vectors.bin").reshape(writer.count, writer.dim)
                serialized = _build_hnsw(matrix, hnsw, show_progress)
                del matrix
                files["hnsw.bin"] = write_array(
                    temporary / "hnsw.bin", "hnsw", serialized, np.uint8
                )
            manifest = DenseManifest(
                created_by="sparse_ir " + _version(),
                num_documents=writer.count,
                dim=writer.dim,
                normalized=writer.normalized,
                zero_vectors=writer.zero_rows,
                hnsw=hnsw.to_dict() if hnsw is not None else None,
                build={"seconds": round(time.perf_counter() - started, 3), **(settings or {})},
                files=files,
            )
            write_manifest(temporary, manifest.to_dict())
        logger.info(
            "dense index: %d documents × %d dims -> %s",
            writer.count,
            writer.dim,
            directory.current(),
        )
        return cls.open(path)

    def _verify_contents(self) -> None:
        """The vectors' and the graph's invariants (see :meth:`IndexBase.verify`)."""
        step = max(1, _CHUNK_BYTES // (self.dim * 4))
        for start in range(0, self.num_documents, step):
            if not np.isfinite(self.vectors[start : start + step]).all():
                raise IndexCorruptError(f"{self.directory}: a vector holds NaN or infinity")
        self._check_doc_ids()
        self._verify_metadata()
        if self.has_hnsw:
            graph = self._load_hnsw()
            if graph.ntotal != self.num_documents or graph.d != self.dim:
                raise IndexCorruptError(
                    f"{self.directory / 'hnsw.bin'}: a graph of "
                    f"{graph.ntotal} × {graph.d}, the index holds "
                    f"{self.num_documents} × {self.dim}"
                )

    # -- facts ----------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.manifest.dim

    @property
    def has_hnsw(self) -> bool:
        """True when an HNSW graph was built with the index."""
        return "hnsw.bin" in self.manifest.files

    # -- search ---------------------------------------------------------------------------------

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        array = np.asarray(queries)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise InputError(
                f"query vectors must have dimension {self.dim} (this index's); "
                f"got shape {np.asarray(queries).shape}"
            )
        if array.dtype.kind not in "fiu":
            raise InputError(f"query vectors must be numbers, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InputError("query vectors must be finite (found NaN or infinity)")
        return array

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        mode: SearchMethod | None = "exact",
        ef_search: int | None = None,
        chunk_rows: int | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        method: SearchMethod | None = None,
    ) -> list[Hit]:
        """The top-``k`` documents for one query vector, best first (score = inner product).

        Args:
            query: a ``[dim]`` (or ``[1, dim]``) vector, encoded by the index's model.
            k: hits to return (at most the number of documents).
            mode: ``"exact"`` (every document scored; also None) or ``"hnsw"`` (the faiss
                graph built with the index; approximate).
            ef_search: HNSW candidate list size (default: the index's, at least ``k``).
            chunk_rows: rows scored at once by exact search (default ~64 MB of matrix).
            filter: which documents may be returned (a
                :class:`~sparse_ir.index.filters.Filter`, a filter text such as
                ``"year>=2020"``, a bool mask over document numbers or a set of ids); default
                None: all. Exact search returns exactly the top-``k`` allowed documents; HNSW
                search stays approximate (see :meth:`search_batch`).
            method: deprecated name of ``mode``.

        Example:
            >>> import tempfile
            >>> import numpy as np
            >>> from sparse_ir import DenseIndex
            >>> vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
            >>> path = tempfile.mkdtemp() + "/dense"
            >>> index = DenseIndex.build(vectors, path, ids=["a", "b", "c"])
            >>> [hit.doc_id for hit in index.search(np.array([1.0, 0.0]), k=2)]
            ['a', 'b']
            >>> [hit.doc_id for hit in index.search(np.array([1.0, 0.0]), k=2, filter={"b", "c"})]
            ['b', 'c']
        """
        mode = _mode_alias(mode, method)
        array = self._prepare(query)
        if len(array) != 1:
            raise InputError(f"search takes one query vector; got {len(array)} (use search_batch)")
        run = self.search_batch(
            array, k, mode=mode, ef_search=ef_search, chunk_rows=chunk_rows, filter=filter
        )
        return run.results["0"]

    def search_batch(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: SearchMethod | None = "exact",
        ef_search: int | None = None,
        chunk_rows: int | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        method: SearchMethod | None = None,
    ) -> Run:
        """Top-``k`` documents for each row of a ``[q, dim]`` array of query vectors.

        The run is keyed by ``query_ids`` (default: row positions ``"0", "1", ...``).
        ``mode`` and ``filter`` (the same for every query) are those of :meth:`search`
        (``method``: the deprecated name of ``mode``).

        Filtered HNSW search is approximate, like HNSW search: it never returns a filtered-out
        document, and its recall against exact filtered search is measured in the tests. When
        the filter allows at most ``max(HNSW_EXACT_BELOW · num_documents, 4 · ef)`` documents,
        they are scored exactly instead (a graph walk would visit mostly filtered-out nodes);
        otherwise the graph is searched with the filter (faiss' ID selector) and ``ef`` scaled
        by 1/selectivity (up to 8×); a walk that finds fewer than ``k`` documents while the
        filter allows more falls back to exact search over the allowed documents.
        """
        _check_k(k)
        mode = _mode_alias(mode, method)
        if mode not in get_args(SearchMethod):
            raise ValueError(f"mode must be one of {get_args(SearchMethod)}, got {mode!r}")
        array = self._prepare(queries)
        ids = (
            [str(i) for i in range(len(array))]
            if query_ids is None
            else [str(q) for q in query_ids]
        )
        if len(ids) != len(array):
            raise ValueError(f"{len(ids)} query ids for {len(array)} queries")
        k = min(k, self.num_documents)
        allowed = allowed_documents(filter, self)
        if mode == "exact":
            docs, scores = exact_top_k(
                self.vectors, array, k, chunk_rows=chunk_rows, allowed=allowed
            )
        elif allowed is None:
            docs, scores = self._hnsw_top_k(array, k, ef_search)
        else:
            docs, scores = self._filtered_hnsw_top_k(array, k, ef_search, allowed, chunk_rows)
        run = Run(name="dense")
        doc_ids = self.doc_ids
        for qid, d, s in zip(ids, docs, scores):
            run.results[qid] = [
                Hit(doc_ids[i], score, i) for i, score in zip(d.tolist(), s.tolist())
            ]
        return run

    def reference_search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> list[Hit]:
        """The same result as exact :meth:`search` by brute force (slow; for tests)."""
        array = self._prepare(query)
        docs, scores = reference_top_k(
            np.asarray(self.vectors),
            array[0],
            min(k, self.num_documents),
            allowed=allowed_documents(filter, self),
        )
        return [Hit(self.doc_ids[d], s, d) for d, s in zip(docs.tolist(), scores.tolist())]

    def _load_hnsw(self):
        with self._hnsw_lock:
            if self._hnsw is None:
                if not self.has_hnsw:
                    raise ValueError(
                        f"the index {self.directory} has no HNSW graph; rebuild "
                        "it with hnsw=HnswOptions() (CLI: --hnsw)"
                    )
                faiss = _import_faiss()
                # faiss parses these bytes in native code: check every one of them first
                # (open() checksums only files up to 16 MB).
                check_files(
                    self.directory, {"hnsw.bin": self.manifest.files["hnsw.bin"]}, full=True
                )
                data = open_array(self.directory / "hnsw.bin", name="hnsw", dtype=np.uint8)
                self._hnsw = faiss.deserialize_index(np.array(data))
            return self._hnsw

    def _ef_search(self, k: int, ef_search: int | None) -> int:
        return max(k, ef_search or (self.manifest.hnsw or {}).get("ef_search", 128))

    def _filtered_hnsw_top_k(
        self,
        queries: np.ndarray,
        k: int,
        ef_search: int | None,
        allowed: np.ndarray,
        chunk_rows: int | None,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """HNSW search under a filter (the rule is in :meth:`search_batch`)."""
        self._load_hnsw()  # a clear error when the index has no graph
        count = int(np.count_nonzero(allowed))
        ef = self._ef_search(k, ef_search)
        if count <= max(HNSW_EXACT_BELOW * self.num_documents, 4 * ef):
            return exact_top_k(self.vectors, queries, k, chunk_rows=chunk_rows, allowed=allowed)
        faiss = _import_faiss()
        bits = np.packbits(allowed.astype(bool), bitorder="little")
        selector = faiss.IDSelectorBitmap(self.num_documents, faiss.swig_ptr(bits))
        scale = min(8.0, self.num_documents / count)
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=int(np.ceil(ef * scale)))
        docs, scores = self._hnsw_top_k(queries, k, ef_search, params=params)
        short = [q for q, found in enumerate(docs) if len(found) < min(k, count)]
        if short:
            exact_docs, exact_scores = exact_top_k(
                self.vectors, queries[short], k, chunk_rows=chunk_rows, allowed=allowed
            )
            for q, d, s in zip(short, exact_docs, exact_scores):
                docs[q], scores[q] = d, s
        return docs, scores

    def _hnsw_top_k(
        self, queries: np.ndarray, k: int, ef_search: int | None, *, params=None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        graph = self._load_hnsw()
        graph.hnsw.efSearch = self._ef_search(k, ef_search)
        if params is None:
            distances, labels = graph.search(queries, k)
        else:
            distances, labels = graph.search(queries, k, params=params)
        docs, scores = [], []
        for row_labels, row_scores in zip(labels, distances):
            found = row_labels >= 0
            d = row_labels[found].astype(np.int64)
            s = row_scores[found].astype(np.float32)
            order = _order(s, d)
            docs.append(d[order])
            scores.append(s[order])
        return docs, scores

    def _repr_fields(self) -> dict[str, object]:
        return {"documents": self.num_documents, "dim": self.dim, "hnsw": self.has_hnsw}


def _mode_alias(mode: str, method: str | None) -> str:
    """``mode``, or the deprecated ``method=`` keyword's value (with a warning)."""
    if method is None:
        return "exact" if mode is None else mode
    import warnings

    warnings.warn(
        "DenseIndex search's method= is deprecated: use mode= (same values)",
        DeprecationWarning,
        stacklevel=3,
    )
    return method


def _version() -> str:
    from sparse_ir import __version__

    return __version__
