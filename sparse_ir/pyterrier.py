"""PyTerrier transformers over sparse_ir (optional extra ``pyterrier``).

:class:`SparseIR` retrieves from any sparse_ir index (SPLADE, BM25, imported vectors, dense) or
searcher (hybrid too): a query frame (``qid``, ``query``) in, a results frame (the query
columns plus ``docno``, ``docid``, ``score``, ``rank``) out, so it composes with PyTerrier's
operators and ``pt.Experiment``::

    import pyterrier as pt
    from ir_measures import nDCG
    from sparse_ir.pyterrier import SparseIR, read_topics, read_qrels

    splade, bm25 = SparseIR("indexes/scifact"), SparseIR("indexes/scifact-bm25")
    pt.Experiment([bm25, splade], read_topics("scifact/queries.jsonl"),
                  read_qrels("scifact/qrels/test.tsv"), [nDCG @ 10], baseline=0)
    pipeline = SparseIR("indexes/scifact", k=100, text=True) >> reranker

:class:`SparseIREncoder` encodes: ``.query_encoder()`` adds ``query_toks`` (``{token:
weight}``) to a query frame, ``.doc_encoder()`` adds ``toks`` to a document frame.
``SparseIR`` searches ``query_toks`` as given when its input has them, so
``encoder.query_encoder() >> SparseIR(index)`` ranks as ``SparseIR(index)`` does.

PyTerrier's ``rank`` starts at 0, and its ``docno`` is the external id (sparse_ir's ``doc_id``);
``docid`` is sparse_ir's internal document number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sparse_ir.errors import MissingDependencyError

try:
    import pandas as pd
    import pyterrier as pt
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("sparse_ir.pyterrier", "python-terrier", "pyterrier") from error

__all__ = ["SparseIR", "SparseIREncoder", "read_topics", "read_qrels"]

#: Columns a results frame gains, in order.
RESULT_COLUMNS = ("docno", "docid", "score", "rank")


class SparseIR(pt.Transformer):
    """Retrieval over a sparse_ir index as a PyTerrier transformer.

    Args:
        index: an index directory (any kind: its recorded query encoder is loaded, as
            :func:`sparse_ir.open_searcher` does) or a searcher (``Searcher``,
            ``DenseSearcher``, ``HybridSearcher``: anything with ``search_batch``).
        k: documents per query (default 1000).
        mode: the search mode (impact: exhaustive/pruned/approximate; dense: exact/hnsw;
            default: the searcher's).
        text: add the stored ``title`` and ``text`` of each hit (for re-rankers; the index
            must store contents).
        model, device: for an index directory: the query encoder's model (default: the one
            recorded) and device.

    Example:
        >>> import os, tempfile
        >>> from sparse_ir.corpus import Document
        >>> from sparse_ir.encoders.bm25 import build_bm25_index
        >>> path = os.path.join(tempfile.mkdtemp(), "bm25")
        >>> docs = [Document("d1", "", "coral reefs"), Document("d2", "", "yeast cells")]
        >>> _ = build_bm25_index(docs, path, show_progress=False)
        >>> SparseIR(path, k=1).search("coral")[["qid", "docno", "rank"]].to_dict("records")
        [{'qid': '1', 'docno': 'd1', 'rank': 0}]
    """

    def __init__(
        self,
        index,
        *,
        k: int = 1000,
        mode=None,
        text: bool = False,
        model: str | None = None,
        device: str = "cpu",
    ):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if isinstance(index, (str, os.PathLike)):
            from sparse_ir.hybrid import open_searcher

            index = open_searcher(index, model=model, device=device)
        if not hasattr(index, "search_batch"):
            raise TypeError(
                f"SparseIR takes an index directory or a searcher, got {type(index).__name__}"
            )
        self.searcher = index
        self.k = k
        self.mode = mode
        self.text = text

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Search every query of ``inp`` (columns ``qid`` and ``query``, or ``query_toks``)."""
        _require(inp, ("qid",), "a query frame")
        if "query_toks" in inp.columns:
            run = self._search_toks(inp)
        else:
            _require(inp, ("query",), "a query frame (or one with query_toks)")
            run = self.searcher.search_batch(
                [str(q) for q in inp["query"]],
                self.k,
                query_ids=[str(q) for q in inp["qid"]],
                mode=self.mode,
                show_progress=False,
            )
        return self._frame(inp, run)

    def _search_toks(self, inp: pd.DataFrame):
        """Search ``{token: weight}`` query vectors with an impact index."""
        from sparse_ir.sparse_batch import SparseBatch

        index = getattr(self.searcher, "index", None)
        if index is None or not hasattr(index, "quantizer"):
            raise ValueError("query_toks can only be searched in an impact (sparse) index")
        query_ids = [str(q) for q in inp["qid"]]
        batch = SparseBatch.from_dicts(
            list(inp["query_toks"]), index.vocab, ids=query_ids, unknown="ignore"
        )
        if not batch.is_quantized:
            batch = index.quantizer.quantize(batch)
        mode = self.mode if self.mode is not None else getattr(self.searcher, "mode", None)
        return index.search_batch(batch, self.k, query_ids=query_ids, mode=mode)

    def _frame(self, inp: pd.DataFrame, run) -> pd.DataFrame:
        """One row per hit: the query's columns, then docno, docid, score, rank (from 0)."""
        rows = []
        seen = set()
        for record in inp.to_dict("records"):
            query_id = str(record["qid"])
            if query_id in seen:  # a query given twice is answered once
                continue
            seen.add(query_id)
            for rank, hit in enumerate(run[query_id]):
                row = {**record, "qid": query_id}
                row.update(
                    docno=hit.doc_id,
                    docid=int(getattr(hit, "docno", -1)),
                    score=float(hit.score),
                    rank=rank,
                )
                if self.text:
                    row["title"], row["text"] = self._contents(hit)
                rows.append(row)
        columns = [c for c in inp.columns if c not in RESULT_COLUMNS] + list(RESULT_COLUMNS)
        if self.text:
            columns = [c for c in columns if c not in ("title", "text")] + ["title", "text"]
        return pd.DataFrame(rows, columns=columns)

    def _contents(self, hit) -> tuple[str, str]:
        index = getattr(self.searcher, "index", None)
        stored = index.document(hit.docno) if hasattr(index, "document") else None
        if stored is None:
            raise ValueError(
                "text=True needs an impact index built with its contents stored (not "
                "--no-contents), searched alone"
            )
        return stored

    def search(self, query: str, qid: str = "1") -> pd.DataFrame:
        """The results frame of one query text."""
        return self.transform(pd.DataFrame({"qid": [qid], "query": [query]}))

    def __repr__(self) -> str:
        return f"SparseIR({self.searcher!r}, k={self.k})"


class SparseIREncoder:
    """A sparse_ir (SPLADE) encoder as PyTerrier encoding transformers.

    Args:
        model: an encoder object (``encode_queries``/``encode_documents``) or a model name or
            path for :meth:`SpladeEncoder.from_pretrained` (default: splade-tiny).
        device: the model's device when ``model`` is a name.

    Example:
        >>> encoder = SparseIREncoder("splade-tiny")                      # doctest: +SKIP
        >>> (encoder.query_encoder() >> SparseIR("indexes/scifact"))(topics)  # doctest: +SKIP
    """

    def __init__(self, model="splade-tiny", *, device: str = "cpu"):
        if isinstance(model, (str, os.PathLike)):
            from sparse_ir.encoders.splade import SpladeEncoder

            model = SpladeEncoder.from_pretrained(str(model), device=device)
        self.encoder = model

    def query_encoder(self) -> pt.Transformer:
        """Adds ``query_toks`` (``{token: weight}``) from the ``query`` column."""
        return _Encode(self.encoder, "query", "query_toks", queries=True)

    def doc_encoder(self, text_field: str = "text") -> pt.Transformer:
        """Adds ``toks`` (``{token: weight}``) from ``text_field`` (default ``text``)."""
        return _Encode(self.encoder, text_field, "toks", queries=False)


class _Encode(pt.Transformer):
    """Adds a ``{token: weight}`` column encoded from a text column."""

    def __init__(self, encoder, source: str, target: str, *, queries: bool):
        self.encoder = encoder
        self.source = source
        self.target = target
        self.queries = queries

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        _require(inp, (self.source,), "the frame to encode")
        texts = [str(t) for t in inp[self.source]]
        encode = self.encoder.encode_queries if self.queries else self.encoder.encode_documents
        batch = encode(texts, show_progress=False)
        out = inp.copy()
        out[self.target] = batch.to_dicts()
        return out

    def __repr__(self) -> str:
        return f"SparseIREncoder({type(self.encoder).__name__}).{self.target}"


def read_topics(path: str | os.PathLike) -> pd.DataFrame:
    """A PyTerrier topics frame (``qid``, ``query``) from BEIR queries.jsonl or qid<TAB>text."""
    from sparse_ir.corpus import read_queries

    queries = list(read_queries(path))
    return pd.DataFrame({"qid": [q.id for q in queries], "query": [q.text for q in queries]})


def read_qrels(path: str | os.PathLike) -> pd.DataFrame:
    """A PyTerrier qrels frame (``qid``, ``docno``, ``label``) from BEIR TSV or TREC qrels."""
    from sparse_ir.eval import read_qrels as read

    rows = [
        (query_id, doc_id, label)
        for query_id, judged in read(path).items()
        for doc_id, label in judged.items()
    ]
    return pd.DataFrame(rows, columns=["qid", "docno", "label"])


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs the column(s) {', '.join(missing)}; it has: "
            f"{', '.join(map(str, frame.columns)) or 'none'}"
        )
