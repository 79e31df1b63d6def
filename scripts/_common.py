"""What the scripts share: SciFact and its pre-encoded vectors, brute-force top-k, a timer.

A script imports this module first (``import _common``: Python puts the script's own directory
on ``sys.path``, so this works from the repository root and from anywhere else). Importing it
puts the repository first on ``sys.path``, so the scripts run the ``sparse_ir`` beside them,
installed or not.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))

from sparse_ir.eval import find_scifact  # noqa: E402
from sparse_ir.sparse_batch import SparseBatch  # noqa: E402

__all__ = [
    "REPO",
    "median_seconds",
    "read_vectors",
    "scifact_data",
    "scifact_vectors",
    "scifact_vectors_dir",
    "top_k_exact",
]

#: The pre-encoded splade-tiny vectors of SciFact, beside SciFact itself.
VECTORS_DIR_NAME = "scifact-splade-tiny"
T = TypeVar("T")


# -- SciFact ----------------------------------------------------------------------------------


def scifact_data(parser: argparse.ArgumentParser, data: str | None) -> Path:
    """``--data`` as given, else SciFact where :func:`sparse_ir.eval.find_scifact` looks; a
    usage error (exit status 2) when there is neither."""
    found = Path(data) if data else find_scifact()
    if found is None:
        parser.error(
            "no --data given and SciFact not found: set SPARSE_IR_SCIFACT or place it "
            "at ../shared/data/scifact"
        )
    return found


def scifact_vectors_dir(vectors: str | None = None, data: Path | None = None) -> Path:
    """``vectors`` as given, else ``scifact-splade-tiny`` beside SciFact (``data`` or found)."""
    if vectors:
        return Path(vectors)
    data = data or find_scifact()
    return (data.parent if data else Path("../shared/data")) / VECTORS_DIR_NAME


def read_vectors(directory: Path) -> tuple[dict, dict]:
    """``({doc_id: {token: weight}}, {query_id: {token: weight}})`` of the pre-encoded files
    ``doc_vectors.json.gz`` and ``query_vectors.json.gz`` in ``directory``."""
    loaded = []
    for name in ("doc_vectors.json.gz", "query_vectors.json.gz"):
        path = Path(directory) / name
        if not path.is_file():
            raise SystemExit(
                f"{path} not found: pass the directory of the pre-encoded "
                f"vectors ({VECTORS_DIR_NAME})"
            )
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            loaded.append(json.load(handle))
    return loaded[0], loaded[1]


def scifact_vectors(
    directory: Path | None = None, vocab: Sequence[str] | None = None
) -> tuple[SparseBatch, SparseBatch]:
    """Documents and queries of the pre-encoded SciFact vectors as float batches over one
    vocabulary (default: the sorted tokens of both)."""
    docs, queries = read_vectors(directory or scifact_vectors_dir())
    if vocab is None:
        vocab = sorted(
            {t for v in docs.values() for t in v} | {t for v in queries.values() for t in v}
        )
    return (
        SparseBatch.from_dicts(docs.values(), vocab, ids=list(docs)),
        SparseBatch.from_dicts(queries.values(), vocab, ids=list(queries)),
    )


# -- brute force ------------------------------------------------------------------------------


def top_k_exact(scores: np.ndarray, k: int) -> np.ndarray:
    """Document numbers of the ``k`` best positive scores: score descending, then document
    number ascending (the library's tie-break)."""
    if len(scores) > 4 * k:
        part = np.argpartition(-scores, k)[:k]
        threshold = scores[part].min()
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[scores[candidates] > 0]
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return candidates[order]


# -- timing -----------------------------------------------------------------------------------


def median_seconds(function: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall-clock seconds of ``repeats`` calls of ``function``, and its last result."""
    seconds, result = [], None
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result
