"""Lucene/Anserini compatibility: export, import, and running the real engine.

Stages, one module each:

* :mod:`.tokens`: which tokens and ids Lucene/Anserini take unchanged.
* :mod:`.invert`: regroup the term-major postings by document (numba, with a numpy reference).
* :mod:`.lucene`: write an index as an Anserini JsonVectorCollection.
* :mod:`.queries`: write and read encoded queries (Anserini pretokenized TSV, JSON weights).
* :mod:`.jsonvector`: import a JsonVectorCollection (ours or Pyserini's) into an ImpactIndex.
* :mod:`.anserini`: find Java and the Anserini jar; run IndexCollection / SearchCollection.
* :mod:`.compare`: check that two runs agree on their top-k (scores exact, ties as sets).
* :mod:`.opensearch`: an index for OpenSearch (rank_features) or Elasticsearch (sparse_vector):
  mapping, bulk NDJSON, token map, query bodies.

Nothing here starts a JVM or imports pyserini at import time.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "export_json_vectors": "sparse_ir.export.lucene",
    "iter_document_vectors": "sparse_ir.export.lucene",
    "document_vectors": "sparse_ir.export.lucene",
    "ExportReport": "sparse_ir.export.lucene",
    "EncodedQuery": "sparse_ir.export.queries",
    "write_query_tsv": "sparse_ir.export.queries",
    "write_query_jsonl": "sparse_ir.export.queries",
    "read_encoded_queries": "sparse_ir.export.queries",
    "iter_encoded_queries": "sparse_ir.export.queries",
    "queries_from_batch": "sparse_ir.export.queries",
    "import_json_vectors": "sparse_ir.export.jsonvector",
    "ImportReport": "sparse_ir.export.jsonvector",
    "find_java": "sparse_ir.export.anserini",
    "find_anserini_jar": "sparse_ir.export.anserini",
    "build_lucene_index": "sparse_ir.export.anserini",
    "search_lucene_index": "sparse_ir.export.anserini",
    "read_anserini_run": "sparse_ir.export.anserini",
    "AnseriniError": "sparse_ir.export.anserini",
    "compare_top_k": "sparse_ir.export.compare",
    "AgreementReport": "sparse_ir.export.compare",
    "export_search_engine": "sparse_ir.export.opensearch",
    "EngineExportReport": "sparse_ir.export.opensearch",
    "index_mapping": "sparse_ir.export.opensearch",
    "query_body": "sparse_ir.export.opensearch",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
