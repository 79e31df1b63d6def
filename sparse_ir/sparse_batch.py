"""SparseBatch: a batch of sparse term vectors in CSR form, the currency between stages.

Encoders produce it with float32 weights, the :class:`~sparse_ir.quantize.Quantizer` turns it into
integer impacts, the index consumes it. It is plain numpy from here on (no torch).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.jsonl import open_text_binary, parse_json
from sparse_ir.validation import first_duplicate, id_problem

__all__ = ["SparseBatch", "SPARSE_BATCH_FORMAT", "SPARSE_BATCH_VERSION"]

SPARSE_BATCH_FORMAT = "sparse-ir-sparse-batch"
SPARSE_BATCH_VERSION = 1
# The default of deprecated keywords (None is a meaningful value for them).
_NOT_GIVEN = object()


@dataclass(frozen=True, eq=False)
class SparseBatch:
    """Sparse vectors over one vocabulary, as CSR arrays.

    Row ``i`` holds the terms ``indices[indptr[i]:indptr[i+1]]`` (ascending) with the weights
    ``values[indptr[i]:indptr[i+1]]``.

    Attributes:
        indptr: int64, length ``len(self) + 1``, starts at 0.
        indices: int32 term ids, ascending within a row, each in ``[0, len(vocab))``.
        values: float32 weights (from an encoder) or int32 impacts (from a quantizer); all > 0.
        vocab: the vocabulary: ``vocab[term_id]`` is the token string.
        ids: the external ids of the rows (documents or queries), when known.

    Example:
        >>> from sparse_ir import SparseBatch
        >>> batch = SparseBatch.from_dicts(
        ...     [{"cell": 1.5, "gene": 0.25}, {"brain": 2.0}],
        ...     vocab=["brain", "cell", "gene"], ids=["d1", "d2"])
        >>> len(batch), batch.ids
        (2, ('d1', 'd2'))
        >>> batch.indptr.tolist(), batch.indices.tolist()
        ([0, 2, 3], [1, 2, 0])
        >>> batch.decode(0)  # heaviest first
        [('cell', 1.5), ('gene', 0.25)]
        >>> batch.decode(0, 1)
        [('cell', 1.5)]
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    vocab: tuple[str, ...]
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "indptr", _as_integers(self.indptr, np.int64, "indptr"))
        object.__setattr__(self, "indices", _as_integers(self.indices, np.int32, "term ids"))
        values = np.ascontiguousarray(self.values)
        if values.dtype.kind == "f":
            values = values.astype(np.float32, copy=False)
        elif values.dtype.kind in "iu":
            values = _as_integers(values, np.int32, "impacts")
        else:
            raise InputError(f"SparseBatch values must be float or integer, got {values.dtype}")
        object.__setattr__(self, "values", values)
        if not isinstance(self.vocab, tuple):
            object.__setattr__(self, "vocab", tuple(self.vocab))
        if self.ids is not None and not isinstance(self.ids, tuple):
            object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        self.validate()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(
        cls, vocab: Sequence[str], ids: Sequence[str] | None = None, dtype: type = np.float32
    ) -> SparseBatch:
        """A batch of ``len(ids)`` (or zero) empty vectors."""
        n = 0 if ids is None else len(ids)
        return cls(
            np.zeros(n + 1, np.int64),
            np.zeros(0, np.int32),
            np.zeros(0, dtype),
            tuple(vocab),
            None if ids is None else tuple(ids),
        )

    @classmethod
    def from_dicts(
        cls,
        vectors: Iterable[Mapping[str, float]],
        vocab: Sequence[str],
        ids: Sequence[str] | None = None,
        *,
        unknown: str = "error",
    ) -> SparseBatch:
        """Build a batch from ``{token: weight}`` dicts.

        Args:
            vectors: one mapping per row.
            vocab: the vocabulary the tokens belong to.
            ids: optional external ids, one per row.
            unknown: what to do with a token not in ``vocab``: ``"error"`` (default) raises
                :class:`InputError`; ``"ignore"`` drops it.
        """
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
        term_id = {token: i for i, token in enumerate(vocab)}
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        integer = True
        for row, vector in enumerate(vectors):
            items = []
            for token, weight in vector.items():
                tid = term_id.get(token)
                if tid is None:
                    if unknown == "error":
                        raise InputError(f"row {row}: token {token!r} is not in the vocabulary")
                    continue
                if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
                    raise InputError(f"row {row}: weight of {token!r} is {weight!r}, not a number")
                if weight == 0:
                    continue
                integer = integer and isinstance(weight, (int, np.integer))
                items.append((tid, weight))
            items.sort()
            indices.extend(t for t, _ in items)
            values.extend(w for _, w in items)
            indptr.append(len(indices))
        dtype = np.int32 if (integer and values) else np.float32
        if dtype is np.int32 and not -(2**31) <= min(values) <= max(values) < 2**31:
            position = next(i for i, v in enumerate(values) if not -(2**31) <= v < 2**31)
            row = int(np.searchsorted(indptr, position, side="right")) - 1
            raise InputError(
                f"row {row}: impact {values[position]} of {vocab[indices[position]]!r} does "
                "not fit in int32 (integer weights are impacts; pass floats to quantize)"
            )
        return cls(
            np.asarray(indptr, np.int64),
            np.asarray(indices, np.int32),
            np.asarray(values, dtype),
            tuple(vocab),
            None if ids is None else tuple(str(i) for i in ids),
        )

    @classmethod
    def concatenate(cls, batches: Sequence[SparseBatch]) -> SparseBatch:
        """Stack batches over the same vocabulary row-wise."""
        if not batches:
            raise ValueError("concatenate needs at least one batch")
        vocab = batches[0].vocab
        for b in batches[1:]:
            if b.vocab != vocab:
                raise InputError("cannot concatenate batches over different vocabularies")
        offsets = np.cumsum([0] + [b.nnz for b in batches])
        indptr = np.concatenate(
            [np.zeros(1, np.int64)] + [b.indptr[1:] + off for b, off in zip(batches, offsets)]
        )
        have_ids = all(b.ids is not None for b in batches)
        ids = tuple(i for b in batches for i in b.ids) if have_ids else None
        return cls(
            indptr,
            np.concatenate([b.indices for b in batches]),
            np.concatenate([b.values for b in batches]),
            vocab,
            ids,
        )

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        """Total number of stored (non-zero) entries."""
        return int(self.indptr[-1])

    @property
    def is_quantized(self) -> bool:
        """True when the values are integer impacts rather than float weights."""
        return self.values.dtype.kind in "iu"

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(term_ids, values)`` of row ``i``."""
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.values[start:end]

    def row_lengths(self) -> np.ndarray:
        """Number of active terms of every row."""
        return np.diff(self.indptr)

    def decode(self, i: int, top_k: int | None = 20, *, top=_NOT_GIVEN) -> list[tuple[str, float]]:
        """The ``top_k`` heaviest ``(token, weight)`` pairs of row ``i``, heaviest first.

        Ties are listed in vocabulary order. ``top_k=None`` lists every active term.
        ``top`` is the deprecated name of ``top_k``.
        """
        if top is not _NOT_GIVEN:
            import warnings

            warnings.warn(
                "SparseBatch.decode(top=) is deprecated: use top_k=",
                DeprecationWarning,
                stacklevel=2,
            )
            top_k = top
        terms, values = self.row(i)
        order = np.lexsort((terms, -values.astype(np.float64)))
        if top_k is not None:
            order = order[:top_k]
        cast = int if self.is_quantized else float
        return [(self.vocab[terms[j]], cast(values[j])) for j in order]

    def to_dicts(self) -> list[dict[str, float]]:
        """Every row as a ``{token: weight}`` dict (the inverse of :meth:`from_dicts`)."""
        cast = int if self.is_quantized else float
        return [{self.vocab[t]: cast(w) for t, w in zip(*self.row(i))} for i in range(len(self))]

    def select(self, rows: Sequence[int] | np.ndarray) -> SparseBatch:
        """A new batch with the given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.row_lengths()[rows]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        gather = (
            np.concatenate([np.arange(self.indptr[r], self.indptr[r + 1]) for r in rows])
            if len(rows)
            else np.zeros(0, np.int64)
        )
        ids = None if self.ids is None else tuple(self.ids[r] for r in rows)
        return SparseBatch(indptr, self.indices[gather], self.values[gather], self.vocab, ids)

    def to_scipy(self):
        """The batch as a ``scipy.sparse.csr_matrix`` of shape ``(len(self), len(vocab))``."""
        import scipy.sparse

        return scipy.sparse.csr_matrix(
            (self.values, self.indices, self.indptr), shape=(len(self), len(self.vocab))
        )

    # -- checks -----------------------------------------------------------------------------------

    def validate(self, source: object = None) -> None:
        """Check the CSR invariants; raise :class:`InputError` naming the first broken rule."""
        n = len(self.indptr) - 1
        if n < 0 or self.indptr[0] != 0:
            raise InputError("indptr must start at 0", path=source)
        if self.indptr[-1] != len(self.indices) or len(self.indices) != len(self.values):
            raise InputError(
                f"indptr ends at {int(self.indptr[-1])} but there are "
                f"{len(self.indices)} term ids and {len(self.values)} values",
                path=source,
            )
        if n and np.any(np.diff(self.indptr) < 0):
            raise InputError("indptr must be non-decreasing", path=source)
        if self.ids is not None and len(self.ids) != n:
            raise InputError(f"{len(self.ids)} ids for {n} rows", path=source)
        if len(self.indices):
            low, high = int(self.indices.min()), int(self.indices.max())
            if low < 0 or high >= len(self.vocab):
                bad = low if low < 0 else high
                raise InputError(
                    f"term id {bad} outside the vocabulary of {len(self.vocab)} terms", path=source
                )
            row = _first_unsorted_row(self.indptr, self.indices)
            if row is not None:
                raise InputError(
                    f"row {row}: term ids must be strictly ascending (no duplicates)", path=source
                )
        if len(self.values):
            if self.values.dtype.kind == "f" and not np.all(np.isfinite(self.values)):
                row = int(
                    np.searchsorted(
                        self.indptr, np.flatnonzero(~np.isfinite(self.values))[0], side="right"
                    )
                    - 1
                )
                raise InputError(f"row {row}: weight is NaN or infinite", path=source)
            if self.values.min() < 0:
                pos = int(np.flatnonzero(self.values < 0)[0])
                row = int(np.searchsorted(self.indptr, pos, side="right") - 1)
                raise InputError(
                    f"row {row}: negative weight {self.values[pos].item()!r} "
                    "(weights must be >= 0)",
                    path=source,
                )

    # -- persistence (no pickle) ------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the batch to ``path`` (an ``.npz`` zip of plain arrays, never pickled).

        The write is atomic: a temporary file beside ``path`` is renamed into place.
        """
        path = os.fspath(path)
        meta = {
            "format": SPARSE_BATCH_FORMAT,
            "version": SPARSE_BATCH_VERSION,
            "rows": len(self),
            "nnz": self.nnz,
        }
        arrays = {
            "indptr": self.indptr,
            "indices": self.indices,
            "values": self.values,
            "vocab": _json_bytes(list(self.vocab)),
            "ids": _json_bytes(None if self.ids is None else list(self.ids)),
            "meta": _json_bytes(meta),
        }
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> SparseBatch:
        """Read a batch written by :meth:`save`; refuse anything else with a clear error."""
        path = os.fspath(path)
        try:
            with open_text_binary(path) as handle:  # a regular file (no FIFO, no device)
                if handle.read(4) != b"PK\x03\x04":
                    raise InputError(
                        "unreadable SparseBatch file (not an .npz zip archive)", path=path
                    )
            _check_npz_members(path)  # zip bombs and forged sizes, before anything inflates
            with np.load(path, allow_pickle=False) as data:
                names = set(data.files)
                need = {"indptr", "indices", "values", "vocab", "ids", "meta"}
                if not need <= names:
                    raise InputError(
                        f"not a SparseBatch file: missing {sorted(need - names)}", path=path
                    )
                meta = _from_json_bytes(data["meta"], path)
                if not isinstance(meta, dict):
                    raise InputError("not a SparseBatch file (meta is not an object)", path=path)
                if meta.get("format") != SPARSE_BATCH_FORMAT:
                    raise InputError(
                        f"not a SparseBatch file (format {meta.get('format')!r})", path=path
                    )
                if meta.get("version") != SPARSE_BATCH_VERSION:
                    raise InputError(
                        f"SparseBatch format version {meta.get('version')} is not "
                        f"supported (this sparse_ir reads version "
                        f"{SPARSE_BATCH_VERSION})",
                        path=path,
                    )
                indptr, indices, values = data["indptr"], data["indices"], data["values"]
                vocab = _from_json_bytes(data["vocab"], path)
                ids = _from_json_bytes(data["ids"], path)
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
            RuntimeError,
            KeyError,
            zlib.error,
        ) as exc:
            # NotImplementedError: an unsupported compression; RuntimeError: an encrypted
            # member; zlib.error: damaged compressed data.
            if isinstance(exc, InputError):
                raise
            if isinstance(exc, FileNotFoundError):
                raise
            raise InputError(f"unreadable SparseBatch file ({exc})", path=path) from None
        if meta.get("rows") != len(indptr) - 1 or meta.get("nnz") != len(indices):
            raise InputError("SparseBatch file is inconsistent with its own header", path=path)
        for array, label in ((indptr, "indptr"), (indices, "indices"), (values, "values")):
            if array.ndim != 1:
                raise InputError(f"{label} must be 1-d, got shape {array.shape}", path=path)
        if values.dtype.kind not in "fiu":
            raise InputError(f"weights must be numbers, got dtype {values.dtype}", path=path)
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise InputError("vocab must be a JSON list of strings", path=path)
        if duplicate := first_duplicate(vocab):
            raise InputError(
                f"vocab lists the token {duplicate[1]!r} twice (entries "
                f"{vocab.index(duplicate[1])} and {duplicate[0]})",
                path=path,
            )
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise InputError("ids must be a JSON list of strings (or null)", path=path)
            if duplicate := first_duplicate(ids):
                raise InputError(
                    f"duplicate id: {duplicate[1]!r} (rows "
                    f"{ids.index(duplicate[1])} and {duplicate[0]})",
                    path=path,
                )
            for row, value in enumerate(ids):
                if problem := id_problem(value):
                    raise InputError(f"row {row}: invalid id: {problem}", path=path)
        try:
            return cls(indptr, indices, values, tuple(vocab), None if ids is None else tuple(ids))
        except InputError as exc:
            raise InputError(exc.reason, path=path) from None


def _as_integers(values, dtype, label: str) -> np.ndarray:
    """``values`` as a contiguous ``dtype`` array; refuses fractions and values that would wrap."""
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(array.shape, dtype)
    if array.dtype.kind not in "iu":
        raise InputError(f"SparseBatch {label} must be integers, got {array.dtype}")
    info = np.iinfo(dtype)
    size, target = array.dtype.itemsize, np.dtype(dtype).itemsize
    if size > target or (array.dtype.kind == "u" and size == target):
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InputError(f"SparseBatch {label}: {bad} does not fit in {np.dtype(dtype)}")
    return np.ascontiguousarray(array, dtype=dtype)


def _first_unsorted_row(indptr: np.ndarray, indices: np.ndarray) -> int | None:
    """The first row whose term ids are not strictly ascending, or None.

    A term id not above its predecessor is allowed only where a row starts. Works in chunks of
    the int32 ids (no int64 copy, no array as long as the batch): validation stays a small
    part of building a large index.
    """
    step = 1 << 20
    total = len(indices)
    for start in range(0, max(total - 1, 0), step):
        chunk = indices[start : min(total, start + step + 1)]
        drops = np.flatnonzero(chunk[1:] <= chunk[:-1]) + (start + 1)
        if len(drops):
            rows = np.searchsorted(indptr, drops, side="right") - 1
            inside = drops[indptr[rows] != drops]
            if len(inside):
                return int(np.searchsorted(indptr, inside[0], side="right") - 1)
    return None


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _from_json_bytes(array: np.ndarray, path: str) -> object:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise InputError(
            f"corrupt SparseBatch metadata (an array of {array.dtype}, "
            f"shape {array.shape}, where UTF-8 JSON bytes belong)",
            path=path,
        )
    try:
        return parse_json(array.tobytes())
    except InputError as exc:  # strict and depth-limited, as every JSON reader
        raise InputError(f"corrupt SparseBatch metadata ({exc.reason})", path=path) from None


#: Members a SparseBatch file holds (``np.savez`` names).
_NPZ_MEMBERS = frozenset(
    f"{name}.npy" for name in ("indptr", "indices", "values", "vocab", "ids", "meta")
)
#: A compressed member may inflate to at most this many times its stored size (plus
#: :data:`_NPZ_SLACK`): real arrays compress far less; a zip bomb inflates ~1000×.
MAX_NPZ_RATIO = 100
_NPZ_SLACK = 1 << 20
#: No member may declare more bytes than this, compressed or not.
MAX_NPZ_MEMBER_BYTES = 1 << 36


def _check_npz_members(path: str) -> None:
    """Refuse an ``.npz`` whose members could exhaust memory, before numpy inflates any:
    unknown or repeated member names, a declared size above :data:`MAX_NPZ_MEMBER_BYTES` or
    above :data:`MAX_NPZ_RATIO` × its compressed size, a stored member whose sizes differ, and
    an array header whose shape needs more bytes than its member holds (numpy would allocate
    the whole shape first). zipfile itself never inflates past the declared size."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        names = [m.filename for m in members]
        if len(set(names)) != len(names) or not set(names) <= _NPZ_MEMBERS:
            raise InputError(
                f"not a SparseBatch file: members {sorted(names)[:8]} (expected "
                f"{sorted(_NPZ_MEMBERS)}, each once)",
                path=path,
            )
        for member in members:
            declared, stored = member.file_size, member.compress_size
            bomb = declared > MAX_NPZ_MEMBER_BYTES or (
                member.compress_type == zipfile.ZIP_STORED
                and declared != stored
                or declared > MAX_NPZ_RATIO * stored + _NPZ_SLACK
            )
            if bomb:
                raise InputError(
                    f"refused: member {member.filename} declares {declared:,} bytes from "
                    f"{stored:,} stored (more than {MAX_NPZ_RATIO}× or "
                    f"{MAX_NPZ_MEMBER_BYTES:,} bytes: a zip bomb, or a forged archive)",
                    path=path,
                )
            with archive.open(member) as handle:
                needed = _npy_bytes(handle)
            if needed > declared:
                raise InputError(
                    f"refused: member {member.filename}'s array header needs {needed:,} "
                    f"bytes, the member holds {declared:,}",
                    path=path,
                )


def _npy_bytes(handle) -> int:
    """Bytes an ``.npy`` stream needs according to its header (header included)."""
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(handle)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = npy.read_array_header_2_0(handle)
    else:  # pragma: no cover - read_magic refuses other versions
        raise ValueError(f"unknown .npy version {version}")
    count = 1
    for size in shape:
        count *= int(size)
    return handle.tell() + count * dtype.itemsize
