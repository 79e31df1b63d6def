"""sparse_ir: learned sparse retrieval, end to end.

Encode text with a SPLADE model, quantize the weights to integer impacts, index them on disk,
search exactly and fast, export to Lucene, fuse with dense retrieval, evaluate, and train.

Importing this package is cheap and silent: the heavy parts (torch, transformers, numba) load
only when the names that need them are first used.
"""

from __future__ import annotations

import importlib

# ``__version__`` is read from the installed distribution's metadata (one source: pyproject.toml)
# on first access, in ``__getattr__`` below: importlib.metadata is slow to import.

_EXPORTS = {
    "SparseBatch": "sparse_ir.sparse_batch",
    "Quantizer": "sparse_ir.quantize",
    "QuantizeStats": "sparse_ir.quantize",
    "Document": "sparse_ir.corpus",
    "Query": "sparse_ir.corpus",
    "Hit": "sparse_ir.results",
    "Run": "sparse_ir.results",
    "TrecRunWriter": "sparse_ir.results",
    "InputError": "sparse_ir.errors",
    "IndexFormatError": "sparse_ir.errors",
    "IndexCorruptError": "sparse_ir.errors",
    "IndexBusyError": "sparse_ir.errors",
    "MissingDependencyError": "sparse_ir.errors",
    "SpladeEncoder": "sparse_ir.encoders.splade",
    "BM25Encoder": "sparse_ir.encoders.bm25",
    "ImpactIndex": "sparse_ir.index.impact_index",
    "TopK": "sparse_ir.index.impact_index",
    "Exhaustive": "sparse_ir.index.modes",
    "Pruned": "sparse_ir.index.modes",
    "Approximate": "sparse_ir.index.modes",
    "SearchStats": "sparse_ir.index.modes",
    "ResidencyReport": "sparse_ir.index.residency",
    "Filter": "sparse_ir.index.filters",
    "IdFilter": "sparse_ir.index.filters",
    "MaskFilter": "sparse_ir.index.filters",
    "FieldCondition": "sparse_ir.index.filters",
    "AllOf": "sparse_ir.index.filters",
    "FilterSyntaxError": "sparse_ir.index.filters",
    "parse_filter": "sparse_ir.index.filters",
    "QueryEncoder": "sparse_ir.encoders.base",
    "DocumentEncoder": "sparse_ir.encoders.base",
    "DenseQueryEncoder": "sparse_ir.encoders.base",
    "Searcher": "sparse_ir.search",
    "DenseSearcher": "sparse_ir.search",
    "export_json_vectors": "sparse_ir.export.lucene",
    "import_json_vectors": "sparse_ir.export.jsonvector",
    "DenseEncoder": "sparse_ir.encoders.dense",
    "DenseIndex": "sparse_ir.index.dense",
    "IndexWriter": "sparse_ir.index.writer",
    "DenseIndexWriter": "sparse_ir.index.writer",
    "TieredMergePolicy": "sparse_ir.index.merge_policy",
    "ShardedIndex": "sparse_ir.index.sharded",
    "ShardedDenseIndex": "sparse_ir.index.sharded",
    "HybridSearcher": "sparse_ir.hybrid",
    "open_searcher": "sparse_ir.hybrid",
    "HybridRuns": "sparse_ir.hybrid",
    "Fusion": "sparse_ir.fusion",
    "FusedHit": "sparse_ir.fusion",
    "verify_index": "sparse_ir.index.check",
    "VerifyReport": "sparse_ir.index.check",
    "check_index": "sparse_ir.index.check",
    "Trainer": "sparse_ir.training.trainer",
    "TrainingConfig": "sparse_ir.training.trainer",
    "IdfQueryEncoder": "sparse_ir.training.inference_free",
}

__all__ = ["__version__", *_EXPORTS]


def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("sparse-ir")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = value = _installed_version()
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
