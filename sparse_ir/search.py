"""Text in, ranked documents out: an encoder and an index used together.

The index side is numpy/numba only; this module is where the query encoder (torch) meets it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sparse_ir.index.builder import vocab_hash
from sparse_ir.index.impact_index import ImpactIndex, TermContribution
from sparse_ir.results import Hit, Run
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["Searcher"]


class Searcher:
    """Search an :class:`ImpactIndex` with text queries encoded by a SPLADE encoder.

    Query weights are quantized by the index's own quantizer, so query and document impacts are
    on the scale the index was built with.

    Args:
        index: the index to search.
        encoder: a :class:`~sparse_ir.encoders.splade.SpladeEncoder` (or anything with
            ``encode_queries`` and ``vocab``) over the index's vocabulary.
    """

    def __init__(self, index: ImpactIndex, encoder):
        if vocab_hash(encoder.vocab) != index.vocab_hash:
            raise ValueError(
                f"the encoder's vocabulary ({len(encoder.vocab)} tokens) is not the one the "
                f"index {index.directory} was built with ({index.vocab_size} tokens); use the "
                f"model the index was built with ({index.settings.get('model', '?')})")
        self.index = index
        self.encoder = encoder

    @classmethod
    def from_index(cls, path: str | os.PathLike, *, model: str | None = None,
                   device: str = "cpu", **encoder_options) -> Searcher:
        """Open an index and load the model recorded in its manifest (or ``model``)."""
        from sparse_ir.encoders.splade import SpladeEncoder

        index = ImpactIndex.open(path)
        name = model or index.settings.get("model")
        if not name:
            raise ValueError(f"the index {path} does not record its model; pass model=...")
        options = dict(encoder_options)
        settings = index.settings
        for key in ("pooling", "query_max_length"):
            if key in settings and key not in options:
                options[key] = settings[key]
        encoder = SpladeEncoder.from_pretrained(name, device=device, **options)
        return cls(index, encoder)

    def encode(self, text: str) -> SparseBatch:
        """The quantized query vector of one text (a one-row SparseBatch)."""
        batch = self.encoder.encode_queries([text], show_progress=False)
        return self.index.quantizer.quantize(batch)

    def search(self, text: str, k: int = 10) -> list[Hit]:
        """The exact top-``k`` documents for a text query."""
        return self.index.search(self.encode(text), k)

    def search_batch(self, texts: Sequence[str], k: int = 10, *,
                     ids: Sequence[str] | None = None, threads: int | None = None,
                     show_progress: bool | None = None) -> Run:
        """Encode and search many queries; the run is keyed by ``ids`` (default: positions)."""
        ids = [str(i) for i in (ids if ids is not None else range(len(texts)))]
        batch = self.encoder.encode_queries(list(texts), ids=ids, show_progress=show_progress)
        return self.index.search_batch(self.index.quantizer.quantize(batch), k, threads=threads)

    def explain(self, text: str, hit: Hit | int) -> list[TermContribution]:
        """Which query terms made a document score: each term's query × document impact."""
        docno = hit.docno if isinstance(hit, Hit) else int(hit)
        return self.index.explain(self.encode(text), docno)
