"""Inference-free (document-only) SPLADE: no model runs at query time.

Documents are encoded by the MLM head as usual; a query's vector is its tokens, each weighted
by the token's IDF over the training corpus (OpenSearch's "doc-only" sparse models, SPLADE-doc):

    q_j = idf_j  if token j occurs in the query, else 0
    idf_j = log(1 + (N - df_j + 0.5) / (df_j + 0.5))      (BM25's IDF; > 0 for every term)

so s(q, d) = Σ_{j ∈ q} idf_j · w_dj. :class:`IdfQueryEncoder` has the encoder interface
(``vocab``, ``encode_queries``) and plugs into :class:`~sparse_ir.search.Searcher` and
:func:`~sparse_ir.pipeline.index_corpus`'s query side. The trainer uses the same vectors
(:meth:`IdfQueryEncoder.query_tensor`) so training and search score alike.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sparse_ir.sparse_batch import SparseBatch

__all__ = ["IDF_FILE", "IdfQueryEncoder", "bm25_idf", "document_frequencies"]

logger = logging.getLogger(__name__)

#: File holding the query side of an inference-free checkpoint (next to the model files).
IDF_FILE = "query_idf.safetensors"
_META_FILE = "query_encoder.json"
_FORMAT = 1


def document_frequencies(
    tokenizer,
    texts: Iterable[str],
    vocab_size: int,
    *,
    max_length: int = 512,
    batch_size: int = 1024,
) -> tuple[np.ndarray, int]:
    """``(df, N)``: in how many of the N texts each token id occurs (special tokens excluded)."""
    df = np.zeros(vocab_size, np.int64)
    special = set(tokenizer.all_special_ids)
    count = 0
    batch: list[str] = []

    def flush() -> None:
        encoded = tokenizer(
            batch,
            add_special_tokens=False,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        for ids in encoded:
            unique = np.unique(np.asarray(ids, np.int64))
            unique = unique[(unique < vocab_size) & ~np.isin(unique, list(special))]
            df[unique] += 1

    for text in texts:
        batch.append(text)
        count += 1
        if len(batch) >= batch_size:
            flush()
            batch.clear()
    if batch:
        flush()
    return df, count


def bm25_idf(df: np.ndarray, count: int) -> np.ndarray:
    """idf_j = log(1 + (N - df_j + 0.5) / (df_j + 0.5)), float32."""
    if count <= 0:
        raise ValueError("IDF needs at least one document")
    df = np.asarray(df, np.float64)
    return np.log1p((count - df + 0.5) / (df + 0.5)).astype(np.float32)


class IdfQueryEncoder:
    """The query side of an inference-free model: tokenize, weight each distinct token by IDF.

    Args:
        tokenizer: the document model's (fast) tokenizer.
        idf: [vocab] float32 IDF of every output row.
        query_max_length: tokens read per query.
        name: a label (the checkpoint path) for manifests and logs.
        drop_special_tokens: leave out special tokens ([UNK], ...) met in a query (default);
            False keeps them at their table weight, as sentence-transformers'
            ``SparseStaticEmbedding`` does.
        query_prompt: text put before every query.
    """

    pooling = "idf"
    precision = "float32"
    #: The index's recorded settings are the document model's: the checkpoint's own query
    #: settings (query_encoder.json) apply instead.
    recorded_query_settings: tuple[str, ...] = ()

    def __init__(
        self,
        tokenizer,
        idf: np.ndarray,
        *,
        query_max_length: int = 64,
        name: str | None = None,
        drop_special_tokens: bool = True,
        query_prompt: str = "",
    ):
        from sparse_ir.encoders.splade import _vocabulary

        idf = np.asarray(idf, np.float32)
        if idf.ndim != 1 or not len(idf):
            raise ValueError("idf must be a non-empty 1-d array (one value per vocabulary row)")
        if not np.all(np.isfinite(idf)) or idf.min() < 0:
            raise ValueError("idf values must be finite and >= 0")
        self.tokenizer = tokenizer
        self.idf = idf
        self.query_max_length = query_max_length
        self.document_max_length = None
        self.name = name
        self._vocab = _vocabulary(tokenizer, len(idf))
        self.query_prompt = query_prompt
        self._special = np.asarray(
            sorted(tokenizer.all_special_ids) if drop_special_tokens else [], np.int64
        )

    @classmethod
    def from_corpus(
        cls, tokenizer, texts: Iterable[str], vocab_size: int, **options
    ) -> IdfQueryEncoder:
        """IDF computed over ``texts`` (the corpus the model will search)."""
        df, count = document_frequencies(tokenizer, texts, vocab_size)
        return cls(tokenizer, bm25_idf(df, count), **options)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device: str | None = None, **options
    ) -> IdfQueryEncoder:
        """Load the query side saved by :meth:`save`, or the ``SparseStaticEmbedding`` query
        side of a sentence-transformers Router (an inference-free training checkpoint).

        ``device`` is accepted like every encoder's and unused: no model runs for queries.
        """
        from safetensors.numpy import load_file
        from transformers import AutoTokenizer

        from sparse_ir.encoders import st_format
        from sparse_ir.encoders.registry import quiet_transformers

        directory = Path(path)
        layout = st_format.read_layout(directory)
        if layout is not None and isinstance(layout.query, st_format.StaticModule):
            from transformers import AutoConfig

            vocab_size = AutoConfig.from_pretrained(layout.document.directory).vocab_size
            encoder = st_format.load_static_query_encoder(
                layout, vocab_size=vocab_size, name=str(directory)
            )
            for key, value in options.items():
                setattr(encoder, key, value)
            return encoder
        if not (directory / IDF_FILE).is_file():
            raise FileNotFoundError(
                f"{directory / IDF_FILE} not found: {directory} is not an inference-free checkpoint"
            )
        meta = json.loads((directory / _META_FILE).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(
                f"{directory / _META_FILE}: query-encoder format "
                f"{meta.get('format')!r}, this version reads {_FORMAT}"
            )
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(directory, use_fast=True)
        options.setdefault("query_max_length", meta.get("query_max_length", 64))
        return cls(
            tokenizer, load_file(directory / IDF_FILE)["idf"], name=str(directory), **options
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the IDF table (safetensors) and settings; the tokenizer is saved by the
        checkpoint alongside."""
        from safetensors.numpy import save_file

        directory = Path(path)
        save_file({"idf": self.idf}, directory / IDF_FILE)
        (directory / _META_FILE).write_text(
            json.dumps(
                {"format": _FORMAT, "kind": "idf", "query_max_length": self.query_max_length},
                indent=2,
            )
            + "\n"
        )

    @property
    def vocab(self) -> tuple[str, ...]:
        """The output vocabulary (the document model's)."""
        return self._vocab

    def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[np.ndarray]:
        """The distinct non-special token ids of each text, ascending."""
        if self.query_prompt:
            texts = [self.query_prompt + text for text in texts]
        encoded = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            truncation=True,
            max_length=max_length or self.query_max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        out = []
        for ids in encoded:
            unique = np.unique(np.asarray(ids, np.int64))
            out.append(unique[(unique < len(self.idf)) & ~np.isin(unique, self._special)])
        return out

    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        max_length: int | None = None,
        show_progress: bool | None = None,
        **_ignored,
    ) -> SparseBatch:
        """Query vectors as a :class:`SparseBatch` (rows in input order; one ``str``: one
        row)."""
        if isinstance(texts, str):
            texts = [texts]
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        rows = self.token_ids(texts, max_length) if len(texts) else []
        rows = [r[self.idf[r] > 0] for r in rows]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        terms = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
        return SparseBatch(
            indptr,
            terms,
            self.idf[terms].astype(np.float32),
            self.vocab,
            None if ids is None else tuple(str(i) for i in ids),
        )

    def query_tensor(self, texts: Sequence[str]):
        """Dense [len(texts), vocab] float32 torch tensor of the query vectors (for training)."""
        import torch

        out = torch.zeros(len(texts), len(self.idf))
        idf = torch.from_numpy(self.idf)
        for row, terms in enumerate(self.token_ids(texts)):
            index = torch.from_numpy(terms)
            out[row, index] = idf[index]
        return out
