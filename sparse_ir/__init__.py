"""sparse_ir: learned sparse retrieval, end to end.

Encode text with a SPLADE model, quantize the weights to integer impacts, index them on disk,
search exactly and fast, export to Lucene, fuse with dense retrieval, evaluate, and train.

Importing this package is cheap and silent: the heavy parts (torch, transformers, numba) load
only when the names that need them are first used.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "SparseBatch": "sparse_ir.sparse_batch",
    "Quantizer": "sparse_ir.quantize",
    "QuantizeStats": "sparse_ir.quantize",
    "Document": "sparse_ir.corpus",
    "Query": "sparse_ir.corpus",
    "Hit": "sparse_ir.results",
    "Run": "sparse_ir.results",
    "InputError": "sparse_ir.errors",
    "IndexFormatError": "sparse_ir.errors",
    "IndexCorruptError": "sparse_ir.errors",
    "MissingDependencyError": "sparse_ir.errors",
    "SpladeEncoder": "sparse_ir.encoders.splade",
    "BM25Encoder": "sparse_ir.encoders.bm25",
    "ImpactIndex": "sparse_ir.index.impact_index",
    "Searcher": "sparse_ir.search",
    "export_json_vectors": "sparse_ir.export.lucene",
    "import_json_vectors": "sparse_ir.export.jsonvector",
    "DenseEncoder": "sparse_ir.encoders.dense",
    "DenseIndex": "sparse_ir.index.dense",
    "HybridSearcher": "sparse_ir.hybrid",
    "Fusion": "sparse_ir.fusion",
    "FusedHit": "sparse_ir.fusion",
    "check_index": "sparse_ir.index.check",
    "Trainer": "sparse_ir.training.trainer",
    "TrainingConfig": "sparse_ir.training.trainer",
    "IdfQueryEncoder": "sparse_ir.training.inference_free",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
