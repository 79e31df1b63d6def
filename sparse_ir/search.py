"""Text in, ranked documents out: an encoder and an index used together.

The index side is numpy/numba only; this module is where the query encoder (torch) meets it.
Every searcher has one shape: ``search(text, k, *, mode=None) -> list[Hit]``,
``search_batch(texts, k, *, query_ids=None, mode=None, threads=None, show_progress=None) ->
Run``, ``from_index(path, *, model=None, device="cpu", **options)``, ``encode(text)``, and the
attributes ``index`` and ``encoder``. :class:`~sparse_ir.hybrid.HybridSearcher` fuses several.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from sparse_ir.encoders.base import as_texts
from sparse_ir.index.builder import vocab_hash
from sparse_ir.index.dense import DenseIndex, SearchMethod
from sparse_ir.index.filters import FilterLike, allowed_documents
from sparse_ir.index.impact_index import ImpactIndex, TermContribution
from sparse_ir.index.modes import SearchMode
from sparse_ir.results import Hit, Run
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["DenseSearcher", "Searcher"]


def _query_ids(texts: Sequence[str], query_ids: Sequence[str] | None) -> list[str]:
    ids = [str(i) for i in (query_ids if query_ids is not None else range(len(texts)))]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} query ids for {len(texts)} texts")
    return ids


def _renamed_ids(query_ids, ids, owner: str):
    """``query_ids``, or the deprecated ``ids=`` keyword's value (with a warning)."""
    if ids is None:
        return query_ids
    warnings.warn(
        f"{owner}.search_batch(ids=) is deprecated: use query_ids=",
        DeprecationWarning,
        stacklevel=3,
    )
    if query_ids is not None:
        raise ValueError("give query_ids= only (ids= is its deprecated name)")
    return ids


class Searcher:
    """Search an :class:`ImpactIndex` with text queries encoded by a sparse query encoder.

    Query weights are quantized by the index's own quantizer, so query and document impacts are
    on the scale the index was built with.

    Args:
        index: the index to search.
        encoder: a :class:`~sparse_ir.encoders.base.QueryEncoder` over the index's vocabulary
            (:class:`~sparse_ir.encoders.splade.SpladeEncoder`, an inference-free
            :class:`~sparse_ir.training.inference_free.IdfQueryEncoder`, ...).
        mode: the default search mode (see :meth:`ImpactIndex.search`); None: the index's.

    Example:
        >>> import tempfile
        >>> from sparse_ir import ImpactIndex, Searcher, SparseBatch
        >>> vocab = ("cat", "dog", "fish")
        >>> docs = SparseBatch.from_dicts([{"cat": 2.0, "dog": 1.0}, {"fish": 3.0},
        ...                                {"dog": 2.5}], vocab, ids=["a", "b", "c"])
        >>> index = ImpactIndex.build(docs, tempfile.mkdtemp() + "/index", show_progress=False)
        >>> class Words:  # a toy query encoder: each known word weighs 1
        ...     vocab = vocab
        ...     def encode_queries(self, texts, *, ids=None, show_progress=None):
        ...         texts = [texts] if isinstance(texts, str) else texts
        ...         return SparseBatch.from_dicts(
        ...             [{w: 1.0 for w in t.split() if w in vocab} for t in texts], vocab, ids)
        >>> searcher = Searcher(index, Words())
        >>> [hit.doc_id for hit in searcher.search("dog cat", k=2)]
        ['a', 'c']
        >>> run = searcher.search_batch(["fish", "dog"], k=1, query_ids=["q1", "q2"])
        >>> {qid: hits[0].doc_id for qid, hits in run.items()}
        {'q1': 'b', 'q2': 'c'}
    """

    #: Name of this kind of searcher (labels its runs and timings in a hybrid).
    kind = "sparse"

    def __init__(self, index: ImpactIndex, encoder, *, mode: str | SearchMode | None = None):
        if vocab_hash(encoder.vocab) != index.vocab_hash:
            raise ValueError(
                f"the encoder's vocabulary ({len(encoder.vocab)} tokens) is not the one the "
                f"index {index.directory} was built with ({index.vocab_size} tokens); use the "
                f"model the index was built with ({index.settings.get('model', '?')})"
            )
        self.index = index
        self.encoder = encoder
        self.mode = mode

    @classmethod
    def from_index(
        cls,
        path: str | os.PathLike,
        *,
        model: str | None = None,
        device: str = "cpu",
        mode: str | SearchMode | None = None,
        force: bool = False,
        resident: bool | str = "auto",
        **options,
    ) -> Searcher:
        """Open an index and load its query encoder: the kind and model its settings record
        (``"query_encoder"``, default "splade"; ``model`` overrides the model).

        A model whose fingerprint differs from the one recorded (another model, or other files
        at the recorded path) is refused with a ``ValueError`` unless ``force``.
        ``resident``: as for :meth:`ImpactIndex.open`; the default ``"auto"`` reads the
        searched arrays into this process's memory when they take at most half the memory
        available, so that another process's demand for RAM cannot evict them from the page
        cache (``False``: mapped only). ``options`` go to the encoder's ``from_pretrained``.
        """
        from sparse_ir.encoders.registry import load_query_encoder

        index = ImpactIndex.open(path, resident=resident)
        try:
            encoder = load_query_encoder(
                index.settings, model=model, device=device, index=index, **options
            )
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        from sparse_ir.encoders.st_format import check_model

        check_model(index.settings, encoder, index=path, force=force)
        return cls(index, encoder, mode=mode)

    def encode(self, text: str) -> SparseBatch:
        """The quantized query vector of one text (a one-row SparseBatch)."""
        return self._quantized(self.encoder.encode_queries([text], show_progress=False))

    def _quantized(self, batch: SparseBatch) -> SparseBatch:
        # Encoders of integer query weights (BM25: each term once, or its count) are already
        # on the index's scale; float weights go through the index's quantizer.
        return batch if batch.is_quantized else self.index.quantizer.quantize(batch)

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: str | SearchMode | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> list[Hit]:
        """The top-``k`` documents for a text query (``mode``: see :meth:`ImpactIndex.search`;
        default: this searcher's). ``filter``: which documents may be returned
        (:mod:`sparse_ir.index.filters`: ``"year>=2020"``, a set of ids, a bool mask...);
        default None: all."""
        return self.index.search(self.encode(text), k, mode=self._mode(mode), filter=filter)

    def search_batch(
        self,
        texts: str | Sequence[str],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: str | SearchMode | None = None,
        threads: int | None = None,
        show_progress: bool | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
        ids: Sequence[str] | None = None,
    ) -> Run:
        """Encode and search many queries; the run is keyed by ``query_ids`` (default:
        positions). ``filter``: as in :meth:`search`, for every query. ``ids`` is the
        deprecated name of ``query_ids``."""
        texts = list(as_texts(texts))
        query_ids = _query_ids(texts, _renamed_ids(query_ids, ids, "Searcher"))
        allowed = allowed_documents(filter, self.index)  # a bad filter fails before encoding
        batch = self.encoder.encode_queries(texts, ids=query_ids, show_progress=show_progress)
        return self.index.search_batch(
            self._quantized(batch),
            k,
            query_ids=query_ids,
            mode=self._mode(mode),
            threads=threads,
            filter=None if allowed is None else allowed.view(bool),
        )

    def explain(self, text: str, hit: Hit | int) -> list[TermContribution]:
        """Which query terms made a document score: each term's query × document impact."""
        docno = hit.docno if isinstance(hit, Hit) else int(hit)
        return self.index.explain(self.encode(text), docno)

    def _mode(self, mode):
        return self.mode if mode is None else mode

    def __repr__(self) -> str:
        return f"Searcher({self.index!r}, {type(self.encoder).__name__})"


class DenseSearcher:
    """Search a :class:`~sparse_ir.index.dense.DenseIndex` with text queries.

    Args:
        index: the dense index.
        encoder: a :class:`~sparse_ir.encoders.base.DenseQueryEncoder` (e.g.
            :class:`~sparse_ir.encoders.dense.DenseEncoder`) making ``index.dim``-d vectors.
        mode: the default search mode, ``"exact"`` or ``"hnsw"`` (when the index has a graph).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from sparse_ir import DenseIndex, DenseSearcher
        >>> index = DenseIndex.build(np.eye(3, dtype=np.float32), tempfile.mkdtemp() + "/d",
        ...                          ids=["a", "b", "c"])
        >>> class Letters:  # a toy encoder: one axis per letter a, b, c
        ...     dim = 3
        ...     def encode_queries(self, texts, *, show_progress=None):
        ...         texts = [texts] if isinstance(texts, str) else texts
        ...         return np.array([[t.count(c) for c in "abc"] for t in texts], np.float32)
        >>> searcher = DenseSearcher(index, Letters())
        >>> [(hit.doc_id, hit.score) for hit in searcher.search("cab c", k=2)]
        [('c', 2.0), ('a', 1.0)]
        >>> searcher.search_batch(["b", "a"], k=1, query_ids=["x", "y"])["x"][0].doc_id
        'b'
    """

    kind = "dense"

    def __init__(self, index: DenseIndex, encoder, *, mode: SearchMethod | None = None):
        if encoder.dim != index.dim:
            raise ValueError(
                f"the dense encoder makes {encoder.dim}-d vectors, the index "
                f"{index.directory} holds {index.dim}-d vectors; use the model "
                f"it was built with ({index.settings.get('model', '?')})"
            )
        self.index = index
        self.encoder = encoder
        self.mode = mode

    @classmethod
    def from_index(
        cls,
        path: str | os.PathLike,
        *,
        model: str | None = None,
        device: str = "cpu",
        mode: SearchMethod | None = None,
        **options,
    ) -> DenseSearcher:
        """Open a dense index and load the model its settings record (or ``model``).

        The recorded pooling, normalization, lengths, casing and prompts are reused unless
        ``model`` names another model; ``options`` go to
        :meth:`~sparse_ir.encoders.dense.DenseEncoder.from_pretrained` (e.g.
        ``precision="bfloat16"`` for faster query encoding on CPUs with AVX512-BF16).
        """
        from sparse_ir.encoders.dense import DenseEncoder

        index = DenseIndex.open(path)
        settings = index.settings
        name = model or settings.get("model")
        if not name:
            raise ValueError(f"the dense index {path} does not record its model; pass model=...")
        recorded = {
            key: settings[key]
            for key in (
                "pooling",
                "normalize",
                "query_max_length",
                "document_max_length",
                "lowercase",
                "query_prompt",
                "document_prompt",
            )
            if key in settings and model is None
        }
        encoder = DenseEncoder.from_pretrained(name, device=device, **{**recorded, **options})
        return cls(index, encoder, mode=mode)

    def encode(self, text: str) -> np.ndarray:
        """The ``[dim]`` float32 query vector of one text."""
        return self.encoder.encode_queries([text], show_progress=False)[0]

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: SearchMethod | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> list[Hit]:
        """The top-``k`` documents for a text query (``mode``: ``"exact"`` or ``"hnsw"``;
        default: this searcher's; ``filter``: as in :meth:`Searcher.search`)."""
        return self.index.search(self.encode(text), k, mode=self._mode(mode), filter=filter)

    def search_batch(
        self,
        texts: str | Sequence[str],
        k: int = 10,
        *,
        query_ids: Sequence[str] | None = None,
        mode: SearchMethod | None = None,
        threads: int | None = None,
        show_progress: bool | None = None,
        filter: FilterLike = None,  # noqa: A002 (the public name)
    ) -> Run:
        """Encode and search many queries; the run is keyed by ``query_ids`` (default:
        positions). ``threads`` is accepted for the common shape; dense search uses the
        threads of the BLAS library (or faiss). ``filter``: as in :meth:`search`."""
        texts = list(as_texts(texts))
        query_ids = _query_ids(texts, query_ids)
        allowed = allowed_documents(filter, self.index)  # a bad filter fails before encoding
        vectors = self.encoder.encode_queries(texts, show_progress=show_progress)
        return self.index.search_batch(
            vectors,
            k,
            query_ids=query_ids,
            mode=self._mode(mode),
            filter=None if allowed is None else allowed.view(bool),
        )

    def _mode(self, mode):
        return self.mode if mode is None else mode

    def __repr__(self) -> str:
        return f"DenseSearcher({self.index!r}, {type(self.encoder).__name__})"
