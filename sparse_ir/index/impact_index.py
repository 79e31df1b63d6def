"""ImpactIndex: an inverted index of integer impacts on disk, searched exactly.

Layout of one generation (see :mod:`.storage` for the file format and publishing)::

    manifest.json             format, version, quantizer, vocabulary hash, counts, files + CRC32
    vocab.json                the vocabulary (token strings by term id)
    term_offsets.bin          int64 [V+1]: term t's postings are [offsets[t], offsets[t+1])
    postings_docs.bin         int32 [P]: document numbers, ascending within a term
    postings_impacts.bin      uint8/16/32 [P]: the smallest unsigned type holding the impacts
    term_max_impact.bin       [V]: each term's largest impact (for pruning and score bounds)
    doc_ids.{offsets,bytes}.bin              external document ids
    doc_titles.*, doc_texts.* (optional)     stored contents, for display and Lucene export
    the search layout (optional, default)    see :mod:`.layout`

The two ``postings_*`` files (the document-ordered postings) are written only for an index
without a search layout, unless asked for (``doc_ordered_postings=True``; format version 1):
with a layout, every search mode reads its impact-ordered copy, and :meth:`postings`,
:meth:`explain`, :meth:`document_vector`, exports and merges read that copy or the forward
index. Code that reads ``index.postings_docs`` directly gets an
:class:`~sparse_ir.errors.IndexFormatError` saying so when they are absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index import kernels
from sparse_ir.index.base import IndexBase
from sparse_ir.index.builder import BuildReport, build_impact_index, vocab_hash
from sparse_ir.index.filters import FilterLike, allowed_documents, check_floor
from sparse_ir.index.manifest import ImpactManifest
from sparse_ir.index.metadata import MetadataAccess
from sparse_ir.index.modes import (
    Approximate,
    SearchMode,
    SearchStats,
    _pruned_params,
    resolve_mode,
)
from sparse_ir.index.reference import reference_scores, reference_top_k
from sparse_ir.index.residency import ResidencyReport, ResidentHow, make_resident
from sparse_ir.index.storage import open_array, read_listed_json
from sparse_ir.index.strings import StringColumn
from sparse_ir.quantize import Quantizer
from sparse_ir.results import Hit, Run
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import check_batch_query_weights, check_query_weights

__all__ = ["ImpactIndex", "TermContribution", "TopK", "QueryLike"]

logger = logging.getLogger(__name__)

QueryLike = SparseBatch | Mapping[str, float] | tuple[Sequence[int], Sequence[float]]
_INT32_MAX = np.iinfo(np.int32).max
_INT64_MAX = np.iinfo(np.int64).max


class TermContribution(NamedTuple):
    """How one query term contributed to one document's score."""

    token: str
    query_weight: int
    document_impact: int
    score: int


class TopK(NamedTuple):
    """The top-k of one query as arrays (:meth:`ImpactIndex.search_arrays`), best first.

    Attributes:
        docnos: int64 internal document numbers (``index.doc_ids[d]`` is the external id).
        scores: int64 scores, descending; equal scores by document number ascending.
    """

    docnos: np.ndarray
    scores: np.ndarray


class ImpactIndex(MetadataAccess, IndexBase[ImpactManifest]):
    """An impact-scored inverted index. Create with :meth:`build`, load with :meth:`open`.

    ``index.manifest`` is the generation's :class:`~sparse_ir.index.manifest.ImpactManifest`.
    """

    manifest_type = ImpactManifest

    def __init__(self, directory: Path, manifest: ImpactManifest):
        super().__init__(directory, manifest)
        self.quantizer = Quantizer.from_dict(manifest.quantizer)
        n_terms = manifest.vocab_size
        n_docs = manifest.num_documents
        n_postings = manifest.num_postings
        impact_dtype = np.dtype(manifest.impact_dtype)
        self.term_offsets = open_array(
            directory / "term_offsets.bin", name="term_offsets", dtype=np.int64, count=n_terms + 1
        )
        self._postings_docs = self._postings_impacts = None
        if manifest.doc_ordered_postings:
            self._postings_docs = open_array(
                directory / "postings_docs.bin",
                name="postings_docs",
                dtype=np.int32,
                count=n_postings,
            )
            self._postings_impacts = open_array(
                directory / "postings_impacts.bin",
                name="postings_impacts",
                dtype=impact_dtype,
                count=n_postings,
            )
        self.term_max_impact = open_array(
            directory / "term_max_impact.bin",
            name="term_max_impact",
            dtype=impact_dtype,
            count=n_terms,
        )
        self._titles = self._texts = None
        if manifest.has_contents:
            self._titles = StringColumn(directory, "doc_titles", n_docs)
            self._texts = StringColumn(directory, "doc_texts", n_docs)
        vocab = read_listed_json(directory, manifest.files["vocab.json"])
        if not isinstance(vocab, list) or len(vocab) != n_terms:
            raise IndexCorruptError(f"{directory / 'vocab.json'}: not a list of {n_terms} tokens")
        self.vocab: tuple[str, ...] = tuple(vocab)
        if vocab_hash(self.vocab) != manifest.vocab_hash:
            raise IndexCorruptError(
                f"{directory / 'vocab.json'}: does not match the manifest's vocabulary hash"
            )
        offsets = np.asarray(self.term_offsets)
        # O(V) and cheap: keeps every postings read of the search kernels inside the arrays,
        # even when a large file's data is damaged and only verify() would see it.
        if (
            int(offsets[0]) != 0
            or int(offsets[-1]) != n_postings
            or np.any(offsets[1:] < offsets[:-1])
        ):
            raise IndexCorruptError(
                f"{directory / 'term_offsets.bin'}: offsets do not rise "
                f"from 0 to the {n_postings} postings"
            )
        self._layout = None
        if manifest.search_layout is not None:
            from sparse_ir.index.layout import SearchLayout

            # Mapped now, not at the first search: a reader then holds every file it will
            # read, even after later builds delete this generation (and open() checks them).
            self._layout = SearchLayout.open(directory, manifest)
        self._term_max_float = np.asarray(self.term_max_impact, np.float64)
        self._largest_impact = float(self._term_max_float.max()) if n_terms else 0.0
        self._equal_vocabularies: list[tuple[str, ...]] = [self.vocab]
        self._term_ids: dict[str, int] | None = None
        self._local = threading.local()

    # -- building and opening -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: SparseBatch | Iterable[SparseBatch],
        path: str | os.PathLike,
        *,
        quantizer: Quantizer | None = None,
        memory_budget: int | str = "1GB",
        contents: Iterable[tuple[str, str]] | None = None,
        settings: dict | None = None,
        show_progress: bool | None = None,
        total_documents: int | None = None,
        search_layout: bool = True,
        metadata: Iterable[Mapping | None] | None = None,
        doc_ordered_postings: bool | None = None,
    ) -> ImpactIndex:
        """Build an index from SparseBatch shards and publish it atomically at ``path``.

        Args:
            vectors: one SparseBatch or an iterator of them (float weights, which are quantized,
                or integer impacts, used as they are). Rows get consecutive document numbers.
            path: the index directory. An existing index there stays readable until the new
                one is complete, then is replaced.
            quantizer: how weights become impacts (default: ``Quantizer()``, scale 100). Queries
                searched later are quantized by the same object.
            memory_budget: bytes (or ``"512MB"``, ``"4GB"``) for buffered postings; beyond it,
                sorted runs spill to disk and are merged. The result does not depend on it.
            contents: optional ``(title, text)`` per document, stored for display and export.
            settings: extra facts recorded in the manifest (model name, max length...).
            show_progress: progress bar; None shows it on a terminal.
            total_documents: expected number of documents, for the progress bar.
            search_layout: write the arrays of pruned and approximate search (:mod:`.layout`:
                the impact-ordered postings and a forward index); without them only
                ``mode="exhaustive"`` is available, over document-ordered postings.
            metadata: optional metadata dict per document, in document order (None or ``{}``:
                none), stored checksummed and filterable (``filter="year>=2020"``); scalar
                values only, bounded size: :mod:`sparse_ir.index.metadata`.
            doc_ordered_postings: also store each term's postings in document order
                (``postings_docs.bin``/``postings_impacts.bin``, format version 1, as earlier
                versions of sparse_ir did). Default None: only without a search layout; with
                one, no search reads them (:func:`~.builder.keeps_doc_ordered_postings`).
        """
        generation, report = build_impact_index(
            vectors,
            path,
            quantizer=quantizer or Quantizer(),
            memory_budget=memory_budget,
            contents=contents,
            settings=settings,
            show_progress=show_progress,
            total_documents=total_documents,
            search_layout=search_layout,
            metadata=metadata,
            doc_ordered_postings=doc_ordered_postings,
        )
        index = cls.open(path)
        index.build_report = report
        return index

    build_report: BuildReport | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        verify: bool = False,
        resident: bool | ResidentHow = False,
    ) -> ImpactIndex:
        """Open an index (memory-mapped) after checking its manifest, headers and sizes.

        ``path`` is an index directory (with ``CURRENT``) or one generation directory. Small
        files are checksummed too; ``verify=True`` checks every byte (see :meth:`verify`).
        ``resident`` keeps the arrays the searches read in memory (see :meth:`make_resident`):
        ``True`` locks them where permitted, else reads them into this process's memory with a
        logged warning; ``"lock"`` or ``"copy"`` choose; ``"auto"`` copies them when they
        take at most half the memory available (the default of
        :meth:`Searcher.from_index <sparse_ir.search.Searcher.from_index>`). Default
        ``False``: mapped only, the operating system pages them in and out (and evicts them
        first when another process needs memory).

        Raises:
            FileNotFoundError: nothing at ``path``.
            IndexFormatError: another format or format version (both versions named).
            IndexCorruptError: a missing, cut, or altered file.
            OSError: ``resident="lock"`` refused by the system.

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> path = tempfile.mkdtemp() + "/index"
            >>> _ = ImpactIndex.build(SparseBatch.from_dicts([{"cat": 3}], ["cat"], ids=["a"]),
            ...                       path, show_progress=False)
            >>> index = ImpactIndex.open(path, resident="copy")
            >>> index.residency.how, index.search({"cat": 1}, 1)[0].doc_id
            ('copy', 'a')
        """
        index = super().open(path, verify=verify)
        if resident is not False:
            index.make_resident(resident)
        return index

    #: What :meth:`make_resident` did (None: the arrays are only mapped).
    residency: ResidencyReport | None = None

    def make_resident(self, how: bool | ResidentHow = True) -> ResidencyReport:
        """Keep the arrays that searches read in memory, so the kernel cannot evict them.

        The arrays are the postings (each order stored), the forward index and the offsets of
        every search mode: the index's size on disk less its document ids and stored texts. ``how``:
        ``"lock"`` (fault in and ``mlock`` the mapping; shared with other processes mapping the
        same files; :class:`OSError` when refused), ``"copy"`` (read into this process's own
        memory) or ``True`` (lock where permitted, else copy, with a logged warning). See
        :mod:`sparse_ir.index.residency`. Call it before searching from several threads.
        """
        arrays = {
            name: getattr(self, name)
            for name in ("term_offsets", "_postings_docs", "_postings_impacts", "term_max_impact")
            if getattr(self, name) is not None
        }
        if self._layout is not None:
            arrays.update(
                (f"layout.{name}", value)
                for name, value in self._layout._asdict().items()
                if isinstance(value, np.ndarray)
            )
        kept, report = make_resident(arrays, how)
        layout_fields = {n[7:]: a for n, a in kept.items() if n.startswith("layout.")}
        for name, array in kept.items():
            if not name.startswith("layout."):
                setattr(self, name, array)
        if layout_fields:
            self._layout = self._layout._replace(**layout_fields)
        # A searcher made earlier holds the old arrays.
        self.__dict__.pop("_pruned_searcher", None)
        self.residency = report
        return report

    def _verify_contents(self) -> None:
        """The postings' invariants (see :meth:`IndexBase.verify`)."""
        offsets = np.asarray(self.term_offsets)
        where = self.directory
        if np.any(np.diff(offsets) < 0):
            raise IndexCorruptError(f"{where}: term offsets decrease")
        if self._postings_docs is not None:
            docs = np.asarray(self._postings_docs)
            impacts = np.asarray(self._postings_impacts)
            if len(docs):
                if docs.min() < 0 or docs.max() >= self.num_documents:
                    raise IndexCorruptError(
                        f"{where}: a posting points outside the {self.num_documents} documents"
                    )
                step = np.diff(docs.astype(np.int64))
                starts = np.zeros(len(docs), bool)
                starts[offsets[:-1][offsets[:-1] < len(docs)]] = True
                if np.any((step <= 0) & ~starts[1:]):
                    raise IndexCorruptError(f"{where}: document numbers not ascending in a term")
        else:
            # The impact order holds each term's postings over the same ranges; its documents
            # are checked term by term (check_all_terms) and against the forward index.
            impacts = np.asarray(self._layout.impact_order_impacts)
        if len(impacts) and (impacts.min() == 0 or impacts.max() > self.quantizer.max_impact):
            raise IndexCorruptError(f"{where}: an impact is 0 or above max_impact")
        maxima = np.zeros(self.vocab_size, np.int64)
        nonempty = np.flatnonzero(np.diff(offsets) > 0)
        if len(nonempty):
            maxima[nonempty] = np.maximum.reduceat(impacts.astype(np.int64), offsets[nonempty])
        if not np.array_equal(maxima, np.asarray(self.term_max_impact, np.int64)):
            raise IndexCorruptError(f"{where}: term_max_impact disagrees with the postings")
        self._check_doc_ids()
        for column in (self._titles, self._texts):
            if column is not None and (problem := column.check()):
                raise IndexCorruptError(f"{where}: {problem}")
        self._verify_metadata()
        from sparse_ir.index.validate import check_all_terms, verify_layout

        check_all_terms(self)
        verify_layout(self)

    # -- facts ----------------------------------------------------------------------------------

    @property
    def has_doc_ordered_postings(self) -> bool:
        """True when ``postings_docs``/``postings_impacts`` are stored (see the module
        docstring: new indexes with a search layout do without them)."""
        return self._postings_docs is not None

    @property
    def postings_docs(self) -> np.ndarray:
        """int32 [P]: each term's document numbers, ascending (the document-ordered postings).

        Raises :class:`~sparse_ir.errors.IndexFormatError` when the index does not store them;
        :meth:`postings` gives one term's in either case.
        """
        if self._postings_docs is None:
            raise self._no_doc_order("postings_docs")
        return self._postings_docs

    @property
    def postings_impacts(self) -> np.ndarray:
        """[P]: the impacts beside :attr:`postings_docs` (same condition)."""
        if self._postings_impacts is None:
            raise self._no_doc_order("postings_impacts")
        return self._postings_impacts

    def _no_doc_order(self, name: str) -> IndexFormatError:
        return IndexFormatError(
            f"{self.directory}: this index stores no document-ordered postings ({name}.bin): "
            "its search layout holds them (impact order and forward index). Use "
            "postings(term), document_vector(docno) or the layout, or rebuild with "
            "doc_ordered_postings=True"
        )

    @property
    def num_postings(self) -> int:
        """Number of (term, document) postings."""
        return self.manifest.num_postings

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary (term ids are ``0 .. vocab_size-1``)."""
        return self.manifest.vocab_size

    @property
    def vocab_hash(self) -> str:
        """Hash of the vocabulary; an encoder must match it to search this index."""
        return self.manifest.vocab_hash

    @property
    def max_impact(self) -> int:
        """The largest impact stored (at most the quantizer's ``max_impact``)."""
        return self.manifest.max_impact

    @property
    def has_contents(self) -> bool:
        """True when titles and texts are stored."""
        return self._titles is not None

    def document(self, docno: int) -> tuple[str, str] | None:
        """Stored ``(title, text)`` of a document, or None when contents were not stored."""
        if self._titles is None:
            return None
        return self._titles[docno], self._texts[docno]

    def term_id(self, token: str) -> int | None:
        """Term id of a token, or None when it is not in the vocabulary."""
        if self._term_ids is None:
            self._term_ids = {t: i for i, t in enumerate(self.vocab)}
        return self._term_ids.get(token)

    def postings(self, term: int | str) -> tuple[np.ndarray, np.ndarray]:
        """``(document numbers, impacts)`` of one term (by id or token), documents ascending.

        Views of the document-ordered postings when the index stores them, else new arrays
        put back in document order from the search layout's impact order.
        """
        if isinstance(term, str):
            found = self.term_id(term)
            if found is None:
                return np.zeros(0, np.int32), np.zeros(0, self.manifest.impact_dtype)
            term = found
        if not 0 <= term < self.vocab_size:
            raise IndexError(f"term id {term} outside the vocabulary (0..{self.vocab_size - 1})")
        start, end = int(self.term_offsets[term]), int(self.term_offsets[term + 1])
        if self._postings_docs is not None:
            return self._postings_docs[start:end], self._postings_impacts[start:end]
        from sparse_ir.index.layout import term_postings

        return term_postings(self._layout, term)

    def document_frequency(self) -> np.ndarray:
        """Number of documents of each term."""
        return np.diff(np.asarray(self.term_offsets))

    # -- queries ----------------------------------------------------------------------------------

    def prepare_query(self, query: QueryLike) -> tuple[np.ndarray, np.ndarray]:
        """Term ids (int32, ascending) and integer weights (int64) of a query.

        Accepted forms:

        * a one-row :class:`SparseBatch`: float weights are quantized with the index's
          quantizer, integer values are used as impacts. Over another vocabulary, tokens are
          matched by string.
        * a ``{token: weight}`` mapping: ``int`` weights are impacts, ``float`` weights are
          quantized.
        * ``(term_ids, weights)`` arrays over this index's vocabulary.

        Tokens missing from the vocabulary have no postings: they are dropped, which leaves
        every score unchanged (documented behaviour, not an error). Term ids outside the
        vocabulary, negative, NaN or non-numeric weights raise :class:`InputError`.
        """
        if isinstance(query, SparseBatch):
            # Every search of a text comes here: a few µs matter (the whole BM25 search of a
            # SciFact query takes ~15 µs), so numpy calls on tiny arrays are kept to a minimum.
            indptr = query.indptr
            if len(indptr) != 2:
                raise InputError(
                    f"search takes one query; got a batch of {len(query)} (use search_batch)"
                )
            start, end = indptr.tolist()
            terms, values = query.indices[start:end], query.values[start:end]
            quantized = values.dtype.kind in "iu"
            if not self._same_vocabulary(query.vocab):
                return self.prepare_query(
                    {
                        query.vocab[t]: (int(v) if quantized else float(v))
                        for t, v in zip(terms.tolist(), values.tolist())
                    }
                )
            # A SparseBatch row is already validated: ascending unique terms, weights >= 0.
            if quantized:  # integer weights: refuse what would overflow a score
                # check_query_weights' rule (every weight <= INT64_MAX // (max_impact × n)),
                # decided in Python ints; the call raises the error when it is broken.
                listed = values.tolist()
                if (
                    listed
                    and max(listed) * max(self.quantizer.max_impact, 1) * len(listed) > _INT64_MAX
                ):
                    check_query_weights(terms, values, self.quantizer.max_impact, self.vocab)
                weights = values.astype(np.int64)
            else:
                weights = self.quantizer.quantize_values(values).astype(np.int64)
            if np.count_nonzero(weights) == len(weights):  # no zero to drop (BM25, most rows)
                return terms.astype(np.int32), weights
            keep = weights > 0
            return np.asarray(terms[keep], np.int32), weights[keep]
        if isinstance(query, Mapping):
            terms, values, integer = [], [], True
            for token, weight in query.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
                    raise InputError(f"query weight of {token!r} is {weight!r}, not a number")
                integer = integer and isinstance(weight, (int, np.integer))
                term = self.term_id(token)
                if term is not None:
                    terms.append(term)
                    values.append(weight)
            check_query_weights(terms, values, self.quantizer.max_impact, self.vocab)
            array = np.asarray(values, np.int64 if integer else np.float64)
            return self._finish_query(np.asarray(terms, np.int64), array)
        if isinstance(query, tuple) and len(query) == 2:
            terms = np.asarray(query[0])
            values = np.asarray(query[1])
            if terms.ndim != 1 or values.shape != terms.shape:
                raise InputError("query arrays must be 1-d and of equal length")
            if terms.dtype.kind not in "iu":
                raise InputError(f"query term ids must be integers, got {terms.dtype}")
            if len(terms) and (terms.min() < 0 or terms.max() >= self.vocab_size):
                bad = terms.min() if terms.min() < 0 else terms.max()
                raise InputError(
                    f"query term id {int(bad)} is outside the vocabulary (0..{self.vocab_size - 1})"
                )
            return self._finish_query(terms.astype(np.int64), values)
        raise TypeError(
            f"cannot search with a {type(query).__name__}; pass a SparseBatch, "
            "a {token: weight} dict or (term_ids, weights)"
        )

    def _finish_query(self, terms: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_query_weights(terms, values, self.quantizer.max_impact, self.vocab)
        if values.dtype.kind == "f":
            if len(values) and not np.all(np.isfinite(values)):
                raise InputError("query weights must be finite (found NaN or infinity)")
        elif values.dtype.kind not in "iu":
            raise InputError(f"query weights must be numbers, got {values.dtype}")
        if len(values) and values.min() < 0:
            raise InputError(f"query weights must be >= 0, got {values.min()!r}")
        if values.dtype.kind == "f":
            values = self.quantizer.quantize_values(values)
        if len(np.unique(terms)) != len(terms):
            raise InputError("a query lists the same term twice")
        order = np.argsort(terms, kind="stable")
        terms, weights = terms[order], np.asarray(values, np.int64)[order]
        keep = weights > 0
        return terms[keep].astype(np.int32), weights[keep]

    def _same_vocabulary(self, vocab: tuple[str, ...]) -> bool:
        # Comparing 30k strings costs more than a search: remember tuples already found equal.
        for known in self._equal_vocabularies:
            if vocab is known:
                return True
        if vocab == self.vocab:
            self._equal_vocabularies = (self._equal_vocabularies + [vocab])[-8:]
            return True
        return False

    def _needs_int64(self, terms: np.ndarray, weights: np.ndarray) -> bool:
        """True when the query's largest possible score may not fit an int32 accumulator."""
        # Σ weights × the index's largest impact is at least the bound computed below: when
        # it fits, so does that bound (a sum instead of a gather and a dot product).
        # A short query's sum in Python ints: exact, and cheaper than numpy's reduction.
        short = len(weights) <= 64
        total = sum(weights.tolist()) if short else float(weights.sum(dtype=np.float64))
        if total * self._largest_impact <= _INT32_MAX // 2:
            return False
        bound = float(np.dot(weights.astype(np.float64), self._term_max_float[terms]))
        return bound > _INT32_MAX // 2

    def search(
        self,
        query: QueryLike,
        k: int = 10,
        *,
        mode: str | SearchMode | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        cut_ratio: float | None = None,
        bound_weight: float | None = None,
    ) -> list[Hit]:
        """The top-``k`` documents for one query, best first.

        Score = Σ query impact × document impact (exact integers); ties are broken by internal
        document number ascending. Documents matching no query term are not returned, so there
        may be fewer than ``k`` hits.

        ``mode`` (a name or a value of :mod:`sparse_ir.index.modes`): ``"exhaustive"`` scores
        every posting; ``"pruned"`` returns the same hits while scoring a fraction of them
        (needs the search layout, see :meth:`build`); ``"approximate"`` (or
        ``Approximate(cut_ratio=..., bound_weight=...)``) trades recall for speed. Default:
        ``"pruned"`` when the index has the search layout, else ``"exhaustive"``.
        ``cut_ratio``/``bound_weight`` are deprecated: pass ``mode=Approximate(...)``.

        ``filter`` restricts the documents that may be returned (a
        :class:`~sparse_ir.index.filters.Filter`, a filter text such as ``"year>=2020"``, a bool
        mask over document numbers or a set of ids: :mod:`sparse_ir.index.filters`); the hits
        are exactly the top-``k`` of the allowed documents, under every exact mode. Default
        None: every document.

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> docs = SparseBatch.from_dicts([{"cat": 3, "dog": 1}, {"dog": 2}, {"cat": 1}],
            ...                               ["cat", "dog"], ids=["a", "b", "c"])
            >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/index",
            ...                           show_progress=False)
            >>> [(hit.doc_id, hit.score) for hit in index.search({"cat": 2, "dog": 1}, k=2)]
            [('a', 7), ('b', 2)]
            >>> index.search({"dog": 1}, k=2, mode="exhaustive") == index.search({"dog": 1}, 2)
            True
            >>> [hit.doc_id for hit in index.search({"cat": 1}, k=2, filter={"c"})]
            ['c']
        """
        _check_k(k)
        resolved = self._mode(mode, cut_ratio, bound_weight)
        allowed = allowed_documents(filter, self)
        found = self._search_row(query, k, resolved, allowed, 0)
        if found is not None:
            return self._hits(*found)
        terms, weights = self.prepare_query(query)
        docs, scores, _, _ = self._search_prepared(terms, weights, k, resolved, allowed)
        return self._hits(docs, scores)

    def search_arrays(
        self,
        query: QueryLike,
        k: int = 10,
        *,
        mode: str | SearchMode | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        floor: int | None = None,
    ) -> TopK:
        """:meth:`search` returning arrays: ``TopK(docnos, scores)``, best first.

        The same documents, scores and order as :meth:`search` (``index.doc_ids[d]`` names
        document ``d``), without building a :class:`~sparse_ir.results.Hit` per result, which
        costs more than the search itself at large ``k`` on a small collection.

        ``filter``: as in :meth:`search`. ``floor``: only documents scoring strictly above it
        are returned (default None: every matching document); parts of a composite index pass
        the running k-th score of the parts searched before, which the pruned kernel takes as
        its starting threshold.

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> docs = SparseBatch.from_dicts([{"cat": 3, "dog": 1}, {"dog": 2}, {"cat": 1}],
            ...                               ["cat", "dog"], ids=["a", "b", "c"])
            >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/index",
            ...                           show_progress=False)
            >>> top = index.search_arrays({"cat": 2, "dog": 1}, k=2)
            >>> top.docnos.tolist(), top.scores.tolist()
            ([0, 1], [7, 2])
            >>> index.search_arrays({"cat": 2, "dog": 1}, k=2, floor=2).scores.tolist()
            [7]
        """
        _check_k(k)
        resolved = self._mode(mode, None, None)
        allowed = allowed_documents(filter, self)
        floor = check_floor(floor)
        found = self._search_row(query, k, resolved, allowed, floor)
        if found is None:
            terms, weights = self.prepare_query(query)
            found = self._search_prepared(terms, weights, k, resolved, allowed, floor)[:2]
        return tuple.__new__(TopK, found)  # TopK(docs, scores), made in C

    def search_with_stats(
        self,
        query: QueryLike,
        k: int = 10,
        *,
        mode: str | SearchMode | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        floor: int | None = None,
    ) -> tuple[list[Hit], SearchStats]:
        """:meth:`search`, and what the search did (postings scored, documents verified...).

        ``filter``/``floor``: as in :meth:`search_arrays`.

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> docs = SparseBatch.from_dicts([{"cat": 3, "dog": 1}, {"dog": 2}], ["cat", "dog"])
            >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/index",
            ...                           show_progress=False)
            >>> hits, stats = index.search_with_stats({"dog": 1}, k=1, mode="exhaustive")
            >>> hits[0].doc_id, stats.postings, stats.mode
            ('1', 2, 'exhaustive')
        """
        from sparse_ir.index.pruned import STATS_FIELDS

        _check_k(k)
        resolved = self._mode(mode, None, None)
        allowed = allowed_documents(filter, self)
        floor = check_floor(floor)
        terms, weights = self.prepare_query(query)
        docs, scores, kernel_stats, use_int64 = self._search_prepared(
            terms, weights, k, resolved, allowed, floor
        )
        offsets = np.asarray(self.term_offsets)
        total = int((offsets[terms.astype(np.int64) + 1] - offsets[terms]).sum())
        figures = {"postings": total}
        if kernel_stats is not None:
            figures = {
                name: int(value)
                for name, value in zip(STATS_FIELDS, kernel_stats)
                if name in SearchStats._fields
            }
            # A query too small to prune was answered by the exhaustive kernel.
            figures["postings"] = figures.get("postings") or total
        stats = SearchStats(**figures, mode=resolved.name, int64_accumulator=bool(use_int64))
        return self._hits(docs, scores), stats

    def _search_prepared(
        self,
        terms: np.ndarray,
        weights: np.ndarray,
        k: int,
        mode: SearchMode,
        allowed: np.ndarray | None = None,
        floor: int = 0,
    ):
        """``(docs, scores, kernel stats or None, int64 accumulator?)`` of a prepared query
        (``allowed``: :func:`~sparse_ir.index.filters.allowed_documents`, None for all)."""
        self._check_terms(terms)
        k = min(k, max(self.num_documents, 1))
        use_int64 = self._needs_int64(terms, weights)
        params = _filtered_params(mode.kernel_params(), allowed, self.num_documents)
        if allowed is None:
            allowed = kernels.ALL_DOCUMENTS
        if self.has_search_layout:
            # Windowed kernels over the search layout (params None: exhaustive).
            docs, scores, stats = self._pruned().search(
                terms, weights, k, params, use_int64, allowed, floor
            )
            return docs, scores, (None if params is None else stats), use_int64
        accumulator = self._accumulator(use_int64)
        docs = np.empty(k, np.int64)
        scores = np.empty(k, np.int64)
        count = kernels.search_one(
            terms,
            weights,
            self.term_offsets,
            self.postings_docs,
            self.postings_impacts,
            accumulator,
            k,
            allowed,
            floor,
            docs,
            scores,
        )
        if count == kernels.CORRUPT:
            raise IndexCorruptError(
                f"{self.directory}: a posting points outside the index; run verify()"
            )
        return docs[:count], scores[:count], None, use_int64

    def _search_row(self, query, k: int, mode: SearchMode, allowed, floor: int):
        """``(docs, scores)`` of a one-row integer :class:`SparseBatch` over this vocabulary
        (what BM25 and pre-quantized queries are) through one compiled call, or None: any
        other query, or one the compiled path declines, takes :meth:`prepare_query` and
        :meth:`_search_prepared`, which give the same hits (``tests/test_pruned.py``).

        The fast path exists because a BM25 search of a few thousand documents takes
        ~10 µs in the kernel and the Python steps around it as much again. A query already in
        :meth:`prepare_query`'s form (a tuple of int32 term ids and int64 weights, as
        benchmarks and batch callers hold them) takes it too: the compiled call checks what
        :meth:`prepare_query` would (ascending unique terms of this vocabulary, weights >= 0)
        and declines anything else.
        """
        if type(query) is tuple:
            if (
                len(query) != 2
                or type(query[0]) is not np.ndarray
                or type(query[1]) is not np.ndarray
                or query[0].dtype != np.int32
                or query[1].dtype != np.int64
                or query[0].shape != query[1].shape
                or query[0].ndim != 1
                or self._term_check is None
                or not self.has_search_layout
            ):
                return None
            terms, values = query
        elif (
            type(query) is not SparseBatch
            or self._term_check is None
            or not self.has_search_layout
            or len(query.indptr) != 2
            or query.values.dtype.kind not in "iu"
            or not self._same_vocabulary(query.vocab)
        ):
            return None
        else:
            start, end = query.indptr.tolist()
            terms, values = query.indices[start:end], query.values[start:end]
        params = _filtered_params(mode.kernel_params(), allowed, self.num_documents)
        return self._pruned().search_row(
            terms,
            values,
            min(k, max(self.num_documents, 1)),
            params,
            kernels.ALL_DOCUMENTS if allowed is None else allowed,
            floor,
            self._term_check.checked,
        )

    def _batch_query_arrays(self, queries: SparseBatch | Sequence[QueryLike]):
        """Query ids and the CSR arrays (indptr, terms, int64 weights) of a batch of queries."""
        if isinstance(queries, SparseBatch) and self._same_vocabulary(queries.vocab):
            # Fast path: the CSR arrays are already validated; quantize them in one go.
            ids = (
                list(queries.ids)
                if queries.ids is not None
                else [str(i) for i in range(len(queries))]
            )
            batch = queries if queries.is_quantized else self.quantizer.quantize(queries)
            if queries.is_quantized:
                check_batch_query_weights(batch, self.quantizer.max_impact)
            indptr, terms = batch.indptr, batch.indices
            weights = batch.values.astype(np.int64)
            if len(weights) and weights.min() <= 0:  # integer input may carry explicit zeros
                keep = weights > 0
                rows = np.repeat(np.arange(len(batch)), batch.row_lengths())[keep]
                indptr = np.zeros(len(batch) + 1, np.int64)
                np.cumsum(np.bincount(rows, minlength=len(batch)), out=indptr[1:])
                terms, weights = terms[keep], weights[keep]
        else:
            if isinstance(queries, SparseBatch):
                ids = (
                    list(queries.ids)
                    if queries.ids is not None
                    else [str(i) for i in range(len(queries))]
                )
                prepared = [self.prepare_query(queries.select([i])) for i in range(len(queries))]
            else:
                prepared = [self.prepare_query(q) for q in queries]
                ids = [str(i) for i in range(len(prepared))]
            indptr = np.zeros(len(prepared) + 1, np.int64)
            np.cumsum([len(t) for t, _ in prepared], out=indptr[1:])
            terms = np.concatenate([t for t, _ in prepared]) if prepared else np.zeros(0, np.int32)
            weights = (
                np.concatenate([w for _, w in prepared]) if prepared else np.zeros(0, np.int64)
            )
        return ids, indptr, terms, weights

    def search_batch(
        self,
        queries: SparseBatch | Sequence[QueryLike],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: str | SearchMode | None = None,
        threads: int | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        cut_ratio: float | None = None,
        bound_weight: float | None = None,
    ) -> Run:
        """Top-``k`` for many queries, spread over ``threads`` (default: all cores).

        ``queries`` is a SparseBatch (its ids name the queries) or a sequence of query forms
        accepted by :meth:`prepare_query`; ``query_ids`` renames them. ``mode`` and ``filter``
        (the same for every query) are those of :meth:`search` (``cut_ratio``/``bound_weight``:
        deprecated, as there).
        """
        import numba

        _check_k(k)
        resolved = self._mode(mode, cut_ratio, bound_weight)
        allowed = allowed_documents(filter, self)
        if allowed is None:
            allowed = kernels.ALL_DOCUMENTS
        ids, indptr, terms, weights = self._batch_query_arrays(queries)
        if query_ids is not None:
            if len(query_ids) != len(ids):
                raise ValueError(f"{len(query_ids)} query ids for {len(ids)} queries")
            ids = [str(q) for q in query_ids]
        self._check_terms(terms)
        k = min(k, max(self.num_documents, 1))
        count = len(ids)
        # Largest possible score per query decides the accumulator width (exact either way).
        bounds = weights.astype(np.float64) * self._term_max_float[terms]
        sums = np.zeros(count)
        nonempty = np.flatnonzero(np.diff(indptr) > 0)
        if len(nonempty):
            sums[nonempty] = np.add.reduceat(bounds, indptr[nonempty])
        use_int64 = sums > _INT32_MAX // 2
        out_docs = np.empty((count, k), np.int64)
        out_scores = np.empty((count, k), np.int64)
        out_counts = np.empty(count, np.int64)
        threads = threads or os.cpu_count() or 1
        params = _filtered_params(
            resolved.kernel_params(),
            None if allowed is kernels.ALL_DOCUMENTS else allowed,
            self.num_documents,
        )
        if self.has_search_layout:
            out_docs, out_scores, out_counts, _ = self._pruned().search_many(
                indptr, np.asarray(terms, np.int32), weights, use_int64, k, params, threads, allowed
            )
        else:
            previous = numba.get_num_threads()
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            try:
                kernels.search_many(
                    indptr,
                    np.asarray(terms, np.int32),
                    weights,
                    self.term_offsets,
                    self.postings_docs,
                    self.postings_impacts,
                    self.num_documents,
                    k,
                    allowed,
                    0,
                    use_int64,
                    out_docs,
                    out_scores,
                    out_counts,
                )
            finally:
                numba.set_num_threads(previous)
        if np.any(out_counts == kernels.CORRUPT):
            raise IndexCorruptError(
                f"{self.directory}: a posting points outside the index; run verify()"
            )
        run = Run(name="sparse-ir")
        # One conversion of the whole result arrays: cheaper than one per query on small
        # collections, where building the hits is a visible share of a batch.
        all_docs, all_scores = out_docs.tolist(), out_scores.tolist()
        with _gc_paused():
            for q, (qid, n) in enumerate(zip(ids, out_counts.tolist())):
                run.results[qid] = self._hits(all_docs[q][:n], all_scores[q][:n])
        return run

    def reference_search(self, query: QueryLike, k: int = 10) -> list[Hit]:
        """The same result as :meth:`search` by plain numpy (slow; for tests and checks)."""
        _check_k(k)
        terms, weights = self.prepare_query(query)
        docs, top = reference_top_k(self.reference_scores(terms, weights), k)
        return self._hits(docs, top)

    def reference_scores(self, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Exact int64 score of every document for prepared query arrays, by plain numpy over
        :meth:`postings` (for tests and checks)."""
        if self._postings_docs is not None:
            return reference_scores(
                np.asarray(self.term_offsets),
                np.asarray(self._postings_docs),
                np.asarray(self._postings_impacts),
                self.num_documents,
                terms,
                weights,
            )
        scores = np.zeros(self.num_documents, np.int64)
        for term, weight in zip(np.asarray(terms).tolist(), np.asarray(weights).tolist()):
            docs, impacts = self.postings(term)
            scores[docs] += int(weight) * np.asarray(impacts, np.int64)
        return scores

    def explain(self, query: QueryLike, docno: int) -> list[TermContribution]:
        """Each query term's contribution to one document's score, largest first."""
        terms, weights = self.prepare_query(query)
        vector = self._document_arrays(docno)
        parts = []
        for term, weight in zip(terms.tolist(), weights.tolist()):
            position = int(np.searchsorted(vector[0], term))
            if position < len(vector[0]) and int(vector[0][position]) == term:
                impact = int(vector[1][position])
                parts.append(TermContribution(self.vocab[term], weight, impact, weight * impact))
        parts.sort(key=lambda c: (-c.score, c.token))
        return parts

    def document_vector(self, docno: int) -> dict[str, int]:
        """The stored impacts of one document, ``{token: impact}`` (terms in id order)."""
        terms, impacts = self._document_arrays(docno)
        return {self.vocab[t]: int(v) for t, v in zip(terms.tolist(), impacts.tolist())}

    def document_block(self, start: int, stop: int) -> SparseBatch:
        """Documents ``[start, stop)`` as a SparseBatch of their stored integer impacts (ids
        set, terms ascending): what exports and merges read, a block at a time.

        Copied from the forward index when the index has a search layout, else inverted
        from the document-ordered postings.

        Example:
            >>> import tempfile
            >>> from sparse_ir import ImpactIndex, SparseBatch
            >>> docs = SparseBatch.from_dicts([{"cat": 3}, {}, {"cat": 1, "dog": 2}],
            ...                               ["cat", "dog"], ids=["a", "b", "c"])
            >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/i", show_progress=False)
            >>> index.document_block(1, 3).to_dicts()
            [{}, {'cat': 1, 'dog': 2}]
        """
        if not 0 <= start <= stop <= self.num_documents:
            raise ValueError(f"document range [{start}, {stop}) outside 0..{self.num_documents}")
        layout = self._layout
        if layout is not None:
            offsets = np.asarray(layout.forward_offsets[start : stop + 1], np.int64)
            low, high = int(offsets[0]), int(offsets[-1])
            if np.any(offsets[1:] < offsets[:-1]) or not 0 <= low <= high <= self.num_postings:
                raise IndexCorruptError(
                    f"{self.directory}: forward_offsets.bin: documents {start}..{stop} lie "
                    "outside the forward index; run verify()"
                )
            indptr = offsets - low
            terms = np.asarray(layout.forward_terms[low:high], np.int32)
            impacts = np.asarray(layout.forward_impacts[low:high], np.int32)
        else:
            from sparse_ir.export.invert import advance_cursor, invert_block, new_cursor

            offsets = np.asarray(self.term_offsets)
            docs = np.asarray(self._postings_docs)
            cursor = new_cursor(offsets)
            advance_cursor(offsets, docs, cursor, start)
            indptr, terms, impacts = invert_block(
                offsets, docs, np.asarray(self._postings_impacts), cursor, start, stop
            )
        return SparseBatch(indptr, terms, impacts, self.vocab, tuple(self.doc_ids[start:stop]))

    def _document_arrays(self, docno: int) -> tuple[np.ndarray, np.ndarray]:
        """``(term ids ascending, impacts)`` of one document: its forward index entry, or a
        scan of the document-ordered postings without a search layout."""
        docno = int(docno)
        if not 0 <= docno < self.num_documents:
            raise IndexError(f"document {docno} outside 0..{self.num_documents - 1}")
        layout = self._layout
        if layout is not None:
            start, end = int(layout.forward_offsets[docno]), int(layout.forward_offsets[docno + 1])
            if not 0 <= start <= end <= len(layout.forward_terms):
                raise IndexCorruptError(
                    f"{self.directory}: forward_offsets.bin: document {docno}'s entry lies "
                    "outside the forward index; run verify()"
                )
            return (
                np.asarray(layout.forward_terms[start:end], np.int64),
                np.asarray(layout.forward_impacts[start:end]),
            )
        positions = np.flatnonzero(np.asarray(self._postings_docs) == docno)
        terms = np.searchsorted(np.asarray(self.term_offsets), positions, side="right") - 1
        return terms.astype(np.int64), np.asarray(self._postings_impacts)[positions]

    # -- internals --------------------------------------------------------------------------------

    @property
    def has_search_layout(self) -> bool:
        """True when the index holds the arrays of pruned and approximate search."""
        return self.manifest.search_layout is not None

    def _mode(
        self, mode: str | SearchMode | None, cut_ratio: float | None, bound_weight: float | None
    ) -> SearchMode:
        """The mode value of a search (see :func:`~sparse_ir.index.modes.resolve_mode`)."""
        resolved = resolve_mode(mode, has_search_layout=self.has_search_layout)
        if cut_ratio is None and bound_weight is None:
            return resolved
        warnings.warn(
            "cut_ratio= and bound_weight= are deprecated: pass "
            "mode=Approximate(cut_ratio=..., bound_weight=...) "
            "(from sparse_ir.index.modes)",
            DeprecationWarning,
            stacklevel=3,
        )
        if not isinstance(resolved, Approximate):
            raise ValueError(
                f"cut_ratio and bound_weight apply to mode='approximate', not "
                f"{resolved.name!r} (which is exact)"
            )
        given = {"cut_ratio": cut_ratio, "bound_weight": bound_weight}
        return dataclasses.replace(
            resolved, **{key: float(value) for key, value in given.items() if value is not None}
        )

    _term_check = None  # set at open (validate.open_validated)

    def _check_terms(self, terms: np.ndarray) -> None:
        """The per-term O(postings) checks of terms searched for the first time
        (:class:`~sparse_ir.index.validate.TermCheck`); raises IndexCorruptError on damage."""
        if self._term_check is not None and len(terms):
            self._term_check.ensure(terms)

    def _pruned(self):
        searcher = self.__dict__.get("_pruned_searcher")
        if searcher is None:
            from sparse_ir.index.pruned import PrunedSearcher

            searcher = self._pruned_searcher = PrunedSearcher(self)
        return searcher

    def _accumulator(self, use_int64: bool) -> np.ndarray:
        name = "acc64" if use_int64 else "acc32"
        accumulator = getattr(self._local, name, None)
        if accumulator is None:
            accumulator = np.zeros(self.num_documents, np.int64 if use_int64 else np.int32)
            setattr(self._local, name, accumulator)
        return accumulator

    def _hits(self, docs, scores) -> list[Hit]:
        """Hits of document numbers and scores (int lists, or numpy arrays)."""
        if isinstance(docs, np.ndarray):
            docs, scores = docs.tolist(), scores.tolist()
        # Made in C (map, zip, tuple.__new__: what Hit() does after a Python-level call):
        # 2.5x faster than calling Hit() per hit, which matters at k = 1000, where building
        # the hits costs more than the search.
        hits = map(
            tuple.__new__,
            repeat(Hit, len(docs)),
            zip(map(self.doc_ids.__getitem__, docs), scores, docs),
        )
        if len(docs) < _GC_PAUSE_HITS:
            return list(hits)
        # Hits are tracked by the cyclic collector: a thousand of them set off a collection
        # that finds them alive and promotes them, and promoted objects set off full
        # collections of the whole process later (SciFact, k = 1000: 2.5x the time of making
        # them). They hold no cycles: pause the collector while they are made. Nothing is
        # allocated between enabling it again and returning (a context manager's exit would
        # raise StopIteration, an allocation that sets off the very collection avoided).
        if not gc.isenabled():
            return list(hits)
        gc.disable()
        try:
            made = list(hits)
        finally:
            gc.enable()
        return made

    def _repr_fields(self) -> dict[str, object]:
        return {
            "documents": self.num_documents,
            "postings": self.num_postings,
            "vocab": self.vocab_size,
        }


#: Hits per search from which the cyclic collector is paused while they are made.
_GC_PAUSE_HITS = 256


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector (when it runs) for the block.

    A batch's Run holds up to queries × k hits that all stay alive: created with the collector
    on, they trigger collection after collection, each walking every object of the process
    (3.5x the time of building them for SciFact's 300 queries at k = 1000; the larger the
    process, the worse). Hits hold no reference
    cycles, so the collector has nothing to find in them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: How much a filter raises the exact pruned kernel's cut ratio per decade of selectivity below
#: FILTERED_CUT_FROM (see _filtered_params; 0 turns it off). Measured on the 1M synthetic
#: corpus, ρ = 0.5, 300 queries, ρ' in steps of 0.05 (``docs/filters.md``): the fastest ρ' was
#: 0.5 for filters allowing 50% and 10% of the documents (0.55 within noise at 10%), and 0.6 at
#: 1% (5-10% faster than 0.5 there).
FILTERED_CUT_STEP = 0.1
#: The share of the documents a filter allows below which the cut ratio rises.
FILTERED_CUT_FROM = 0.1
#: The largest ρ' the rule gives (a caller's own ρ above it is left as it is).
_FILTERED_CUT_MAX = 0.8
#: Mask entries sampled to estimate the share a filter allows (~3 µs at 1M documents).
MASK_SAMPLE = 1024


def _filtered_params(params, allowed: np.ndarray | None, num_documents: int):
    """The pruned kernel's settings for a search under a filter.

    Only allowed candidates are verified, so a filter allowing a share s of the documents makes
    verification about s times cheaper while lower cuts cost as many postings as without it: for
    a selective enough filter the balance moves toward higher cuts. Exact settings (ρ < 1,
    β = 1) get ρ' = ρ + FILTERED_CUT_STEP·log10(FILTERED_CUT_FROM/s) when s is below
    FILTERED_CUT_FROM, at most 0.8, with s estimated from :data:`MASK_SAMPLE` evenly strided
    entries of the mask. ρ' stays below 1, so the hits are the same; only the work changes.
    Approximate settings are the caller's trade-off and are left as they are.

    Example:
        >>> from sparse_ir.index.pruned import PrunedParams
        >>> one_in = lambda n: (np.arange(100_000) % n == 0).astype(np.uint8)
        >>> [round(_filtered_params(PrunedParams(), one_in(n), 100_000).cut_ratio, 2)
        ...  for n in (1, 10, 100)]
        [0.5, 0.5, 0.6]
    """
    if (
        FILTERED_CUT_STEP == 0.0
        or params is None
        or allowed is None
        or not params.exact
        or num_documents == 0
        or len(allowed) == 0
    ):
        return params
    sample = allowed[:: max(1, len(allowed) // MASK_SAMPLE)]
    share = float(np.count_nonzero(sample)) / len(sample)
    ceiling = max(params.cut_ratio, _FILTERED_CUT_MAX)
    if share >= FILTERED_CUT_FROM:
        return params
    if share <= 0.0:
        ratio = ceiling
    else:
        rise = FILTERED_CUT_STEP * float(np.log10(FILTERED_CUT_FROM / share))
        ratio = min(params.cut_ratio + rise, ceiling)
    # In steps of 0.01 (never up to 1): the settings object comes from the modes' cache of
    # them, as every search's does, instead of being made per search.
    ratio = min(round(ratio, 2), ceiling)
    if ratio == params.cut_ratio:
        return params
    return _pruned_params(
        params.estimate_postings, params.estimate_candidates, ratio, params.bound_weight
    )


def _check_k(k: int) -> None:
    if type(k) is int and k > 0:  # the common case, before the slower checks
        return
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
