"""Scale-out on Ray: distributed encoding, sharded indexing, scatter-gather search.

The only package of sparse_ir that imports ``ray`` (the ``ray`` extra:
``pip install 'sparse-ir[ray]'``), and only when one of its functions or classes is used:
importing ``sparse_ir.distributed`` itself stays cheap. The local half of the design —
shards under one manifest, merged exactly — is :mod:`sparse_ir.index.sharded`; this package
adds placement (Ray actors and tasks) and transport (Ray's object store). See docs/scale.md.
"""

from __future__ import annotations

import importlib

__all__ = [
    "DistributedIndex",
    "ShardUnavailableError",
    "ShardedRun",
    "ShardedHits",
    "encode_corpus_on_ray",
    "index_shards_on_ray",
    "EncodeJob",
    "EncodeResult",
    "init_ray",
]

_EXPORTS = {
    "DistributedIndex": "sparse_ir.distributed.search",
    "ShardUnavailableError": "sparse_ir.distributed.search",
    "ShardedRun": "sparse_ir.distributed.search",
    "ShardedHits": "sparse_ir.distributed.search",
    "encode_corpus_on_ray": "sparse_ir.distributed.encode",
    "index_shards_on_ray": "sparse_ir.distributed.encode",
    "EncodeJob": "sparse_ir.distributed.encode",
    "EncodeResult": "sparse_ir.distributed.encode",
    "init_ray": "sparse_ir.distributed.cluster",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparse_ir.distributed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
