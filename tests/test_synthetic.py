"""NpzCorpus: the scale benchmark's corpus.npz read in shards without loading it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_ir.errors import InputError
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.synthetic import NpzCorpus, map_npz


def _write_corpus(directory, rng, rows=57, vocab_size=30, compressed=False):
    """The layout make_synthetic_corpus.py writes, small."""
    indptr, indices, impacts = [0], [], []
    for _ in range(rows):
        terms = np.sort(rng.choice(vocab_size, size=int(rng.integers(0, 9)), replace=False))
        indices.extend(terms.tolist())
        impacts.extend(rng.integers(1, 400, size=len(terms)).tolist())
        indptr.append(len(indices))
    queries = [{"t1": 3, "t5": 120}, {"t7": 1}]
    vocab = [f"t{i}" for i in range(vocab_size)]
    q_indptr, q_indices, q_impacts = [0], [], []
    for query in queries:
        for token, value in sorted(query.items(), key=lambda item: vocab.index(item[0])):
            q_indices.append(vocab.index(token))
            q_impacts.append(value)
        q_indptr.append(len(q_indices))
    save = np.savez_compressed if compressed else np.savez
    save(
        directory / "corpus.npz",
        indptr=np.array(indptr, np.int64),
        indices=np.array(indices, np.int32),
        values=np.array(impacts, np.float32) / 100,
        impacts=np.array(impacts, np.uint16),
        q_indptr=np.array(q_indptr, np.int64),
        q_indices=np.array(q_indices, np.int32),
        q_impacts=np.array(q_impacts, np.int32),
        shape=np.array([rows, vocab_size], np.int64),
    )
    (directory / "vocab.json").write_text(json.dumps(vocab))
    with open(directory / "queries.jsonl", "w") as handle:
        for n, query in enumerate(queries):
            handle.write(json.dumps({"id": f"q{n}", "vector": query}) + "\n")
    return np.array(indptr), np.array(indices), np.array(impacts)


def test_shards_and_queries_match_the_arrays(tmp_path):
    indptr, indices, impacts = _write_corpus(tmp_path, np.random.default_rng(0))
    corpus = NpzCorpus(tmp_path)
    assert corpus.num_documents == 57 and corpus.num_postings == len(indices)
    shards = list(corpus.documents(shard_size=10))
    assert [len(s) for s in shards] == [10] * 5 + [7]
    assert np.array_equal(np.concatenate([s.indices for s in shards]), indices)
    assert np.array_equal(np.concatenate([s.values for s in shards]), impacts)
    assert all(s.is_quantized for s in shards)
    assert shards[1].ids[0] == "10"
    assert len(list(corpus.documents(shard_size=4, limit=9))) == 3
    queries = corpus.queries()
    assert queries.ids == ("q0", "q1")
    assert queries.to_dicts() == [{"t1": 3, "t5": 120}, {"t7": 1}]
    # The index built from the shards scores exactly like the CSR arrays.
    index = ImpactIndex.build(
        corpus.documents(shard_size=16), tmp_path / "index", show_progress=False
    )
    import scipy.sparse

    matrix = scipy.sparse.csr_matrix((impacts, indices, indptr), shape=(57, 30))
    scores = matrix @ np.bincount([1, 5], weights=[3, 120], minlength=30)
    best = np.lexsort((np.arange(57), -scores))[:5]
    best = [d for d in best if scores[d] > 0]
    assert [h.docno for h in index.search(queries.select([0]), 5)] == best
    with pytest.raises(ValueError, match="shard_size"):
        next(corpus.documents(shard_size=0))


def test_compressed_or_missing_corpus_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_synthetic_corpus"):
        NpzCorpus(tmp_path)
    _write_corpus(tmp_path, np.random.default_rng(1), compressed=True)
    with pytest.raises(InputError, match="compressed"):
        map_npz(tmp_path / "corpus.npz")
    (tmp_path / "corpus.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        map_npz(tmp_path / "corpus.npz")
