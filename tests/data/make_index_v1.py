"""How ``tests/data/index-v1`` was made: by sparse_ir at commit 11526c1 (format version 1,
with the document-ordered postings), before new builds stopped writing them.

    PYTHONPATH=<that checkout> python tests/data/make_index_v1.py tests/data/index-v1

Windows of 2^5 documents, so the 300 documents span 10 windows. ``rows()`` is imported by
``tests/test_index_layouts.py`` (the same documents, for brute force and new builds).
"""

import sys
from pathlib import Path

import numpy as np

WINDOW_BITS = 5


def rows() -> tuple[list[dict[str, int]], list[str]]:
    """The 300 documents ``{token: impact}`` and the vocabulary."""
    rng = np.random.default_rng(20)
    vocab = [f"t{i}" for i in range(40)]
    documents = []
    for _ in range(300):
        terms = rng.choice(40, size=rng.integers(0, 9), replace=False)
        documents.append({vocab[t]: int(rng.integers(1, 30)) for t in sorted(terms)})
    return documents, vocab


def build(path: Path, **options) -> None:
    from sparse_ir import ImpactIndex, SparseBatch
    from sparse_ir.index import layout

    documents, vocab = rows()
    batch = SparseBatch.from_dicts(documents, vocab, ids=[f"d{i}" for i in range(300)])
    contents = [(f"title {i}", f"text {i}") for i in range(300)]
    saved, layout.WINDOW_BITS = layout.WINDOW_BITS, WINDOW_BITS
    try:
        ImpactIndex.build(batch, path, show_progress=False, contents=contents, **options)
    finally:
        layout.WINDOW_BITS = saved


if __name__ == "__main__":
    build(Path(sys.argv[1]))
