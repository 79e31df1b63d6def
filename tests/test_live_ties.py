"""Ties over live indexes outside a single live index's own search: hybrid fusion of a live
pair, sharded indexes (which refuse live shards), and ``search_with_stats`` when ties make a
live index search twice. Every order is checked against a brute-force reference that breaks
equal scores by ordinal (the order in which each id first entered the index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparse_ir.fusion import Fusion
from sparse_ir.hybrid import HybridSearcher
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import DenseIndexWriter, IndexWriter
from sparse_ir.search import DenseSearcher, Searcher
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("t0", "t1", "t2")
DIM = len(VOCAB)
IDS = [f"d{i}" for i in range(12)]
QUERIES = ["t0", "t1", "t2", "t0 t1", "t1 t2", "t0 t1 t2"]


def impacts(doc_id: str) -> dict[str, int]:
    """A document's impacts: one or two terms of impact 1 or 2 (ties everywhere)."""
    rng = np.random.default_rng(int(doc_id[1:]))
    terms = rng.choice(DIM, size=int(rng.integers(1, 3)), replace=False)
    return {VOCAB[t]: int(rng.integers(1, 3)) for t in sorted(terms.tolist())}


def vector(doc_id: str) -> np.ndarray:
    """A document's dense vector: small integers, so float scores are exact and often tie."""
    return np.random.default_rng(100 + int(doc_id[1:])).integers(0, 3, DIM).astype(np.float32)


def impact_batch(ids: list[str]) -> SparseBatch:
    floats = SparseBatch.from_dicts([impacts(i) for i in ids], VOCAB, ids=ids)
    return SparseBatch(floats.indptr, floats.indices, floats.values.astype(np.int32), VOCAB, ids)


def dense_batch(ids: list[str]) -> tuple[list[str], np.ndarray]:
    return ids, np.stack([vector(i) for i in ids])


class Words:
    """Toy query encoder: each word of the text once, as a sparse query."""

    vocab, dim = VOCAB, DIM

    def encode_queries(self, texts, *, ids=None, show_progress=None):
        texts = [texts] if isinstance(texts, str) else texts
        return SparseBatch.from_dicts([{w: 1.0 for w in t.split()} for t in texts], VOCAB, ids)


class Vectors(Words):
    """The same word counts as a dense query vector."""

    def encode_queries(self, texts, *, show_progress=None):
        return super().encode_queries(texts).to_scipy().toarray().astype(np.float32)


# Adds, deletes, a delete and re-add, an upsert: the same steps on both indexes of a pair.
STEPS = [
    ("add", IDS[:5]),
    ("add", IDS[5:9]),
    ("delete", ["d1", "d3", "d6"]),
    ("add", ["d9", "d10", "d3", "d1"]),
    ("upsert", ["d0"]),
    ("add", ["d11"]),
]
LIVE = [i for i in IDS if i != "d6"]  # the live documents, in ordinal order


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, tuple]:
    """``{"live": (sparse, dense), "one-shot": (sparse, dense)}`` over the same documents."""
    root = tmp_path_factory.mktemp("pairs")
    with (
        IndexWriter.open(root / "sparse", vocab=VOCAB, merge_policy=None) as sparse,
        DenseIndexWriter.open(root / "dense", dim=DIM, merge_policy=None) as dense,
    ):
        for number, (step, ids) in enumerate(STEPS):
            if step == "delete":
                sparse.delete(ids)
                dense.delete(ids)
            else:
                getattr(sparse, step)(impact_batch(ids))
                getattr(dense, step)(dense_batch(ids))
            sparse.commit(pair=f"p{number}")
            dense.commit(pair=f"p{number}")
    ImpactIndex.build(impact_batch(LIVE), root / "sparse1", show_progress=False)
    DenseIndex.build(dense_batch(LIVE)[1], root / "dense1", ids=LIVE)
    live = ImpactIndex.open(root / "sparse"), DenseIndex.open(root / "dense")
    assert not live[0].numbers_follow_ordinals  # the case under test: numbers != ordinals
    assert [live[0].ordinal(i) for i in LIVE] == sorted(live[0].ordinal(i) for i in LIVE)
    return {
        "live": live,
        "one-shot": (ImpactIndex.open(root / "sparse1"), DenseIndex.open(root / "dense1")),
    }


def hybrid(pair, fusion: Fusion) -> HybridSearcher:
    return HybridSearcher([Searcher(pair[0], Words()), DenseSearcher(pair[1], Vectors())], fusion)


def brute_force_fusion(text: str, fusion: Fusion, k: int) -> list[tuple[str, float]]:
    """The fused top-``k`` from plain scores: each branch ranked by (score desc, ordinal),
    fused as the fusion's formula says, equal fused scores by ordinal (position in LIVE)."""
    words = text.split()
    sparse = {d: sum(impacts(d).get(w, 0) for w in words) for d in LIVE}
    dense = {d: float(vector(d) @ Vectors().encode_queries(text)[0]) for d in LIVE}
    ordinal = {d: i for i, d in enumerate(LIVE)}
    runs = []
    for scores, positive_only in ((sparse, True), (dense, False)):
        kept = [d for d in LIVE if scores[d] > 0 or not positive_only]  # impact search: > 0
        ranked = sorted(kept, key=lambda d: (-scores[d], ordinal[d]))[: fusion.depth]
        runs.append({d: (rank + 1, scores[d]) for rank, d in enumerate(ranked)})
    weights = fusion.weights or (1.0, 1.0)
    fused = {}
    for d in set(runs[0]) | set(runs[1]):
        if fusion.method == "rrf":
            parts = [1.0 / (fusion.rrf_k + run[d][0]) if d in run else 0.0 for run in runs]
        else:  # min-max, missing="min": a document a run did not return gets its minimum
            parts = []
            for run in runs:
                values = [s for _, s in run.values()]
                low, high = min(values), max(values)
                score = run[d][1] if d in run else low
                parts.append(1.0 if high == low else (score - low) / (high - low))
        fused[d] = weights[0] * parts[0] + weights[1] * parts[1]
    order = sorted(fused, key=lambda d: (-fused[d], ordinal[d]))[:k]
    return [(d, fused[d]) for d in order]


def described(hits) -> list[tuple]:
    """What two pairs of the same documents must agree on (document numbers aside)."""
    return [(h.doc_id, h.score, h.components, h.ranks) for h in hits]


@pytest.mark.parametrize(
    "fusion",
    [Fusion.rrf(), Fusion.convex(0.5), Fusion.rrf(depth=4), Fusion.convex(0.5, depth=3)],
    ids=["rrf", "convex", "rrf-depth4", "convex-depth3"],
)
def test_a_live_hybrid_pair_ties_by_ordinal_like_brute_force(pairs, fusion):
    searcher = hybrid(pairs["live"], fusion)
    for text in QUERIES:
        for k in (1, 3, len(LIVE)):
            got = [(h.doc_id, h.score) for h in searcher.search(text, k)]
            assert got == brute_force_fusion(text, fusion, k), (text, k)


@pytest.mark.parametrize(
    "fusion",
    [
        Fusion.rrf(),
        Fusion.rrf(depth=4),
        Fusion.convex(0.3),
        Fusion.convex(0.5, missing="zero", depth=5),
        Fusion.convex(0.7, normalization="z-score"),
    ],
    ids=["rrf", "rrf-depth4", "convex", "convex-zero", "convex-z"],
)
def test_a_live_hybrid_pair_fuses_like_the_one_shot_pair(pairs, fusion):
    live, single = hybrid(pairs["live"], fusion), hybrid(pairs["one-shot"], fusion)
    for text in QUERIES:
        for k in (2, len(LIVE)):
            assert described(live.search(text, k)) == described(single.search(text, k))
    batch = [live.search_batch(QUERIES, k, query_ids=QUERIES) for k in (2, len(LIVE))]
    expected = [single.search_batch(QUERIES, k, query_ids=QUERIES) for k in (2, len(LIVE))]
    for got, want in zip(batch, expected):
        for text in QUERIES:
            assert described(got[text]) == described(want[text]), text


def test_fusion_tie_keys_are_checked():
    from sparse_ir.fusion import fuse_hits
    from sparse_ir.results import Hit

    hits = [[Hit("a", 1.0, 0), Hit("b", 1.0, 1)]]
    assert [h.doc_id for h in fuse_hits(hits, tie_keys=np.array([5, 2]))] == ["b", "a"]
    with pytest.raises(ValueError, match="no tie key"):
        fuse_hits(hits, tie_keys=np.array([5]))
    with pytest.raises(ValueError, match="integer array"):
        fuse_hits(hits, tie_keys=np.array([0.5, 1.0]))


# -- sharded indexes hold single builds only ------------------------------------------------------


def live_shard(path: Path, ids: list[str]) -> None:
    """A live shard whose numbers are not its ordinals (its first document re-added)."""
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None) as writer:
        writer.add(impact_batch(ids))
        writer.commit()
        writer.delete(ids[:1])
        writer.commit()
        writer.add(impact_batch(ids[:1]))


def test_write_sharded_manifest_refuses_a_live_shard_naming_it(tmp_path):
    from sparse_ir.errors import InputError
    from sparse_ir.index.sharded import write_sharded_manifest

    ImpactIndex.build(impact_batch(IDS[:4]), tmp_path / "shard-00000", show_progress=False)
    live_shard(tmp_path / "shard-00001", IDS[4:8])
    with DenseIndexWriter.open(tmp_path / "shard-00002", dim=DIM) as writer:
        writer.add(dense_batch(IDS[8:]))
    for names in (["shard-00000", "shard-00001"], ["shard-00001"], ["shard-00002"]):
        with pytest.raises(InputError, match=f"shard {names[-1]} is a live index"):
            write_sharded_manifest(tmp_path, names)
    assert not (tmp_path / "manifest.json").exists()


def test_a_manifest_naming_a_live_shard_is_refused_when_opened(tmp_path):
    from sparse_ir.errors import IndexFormatError
    from sparse_ir.index.sharded import ShardedIndex, _shard_facts
    from sparse_ir.index.storage import write_manifest

    sharded = ShardedIndex.build([impact_batch(IDS[:4]), impact_batch(IDS[4:8])], tmp_path / "s")
    single = ImpactIndex.build(impact_batch(IDS[:8]), tmp_path / "one", show_progress=False)
    for text in QUERIES:  # ties by global number: shard order, then the shard's own number
        query = {w: 1 for w in text.split()}
        assert sharded.search(query, 5) == single.reference_search(query, 5)
    # The shard turned live (a single build takes writes), and a manifest forged to name its
    # commit with valid checksums: opening refuses it rather than tie by document number.
    with IndexWriter.open(tmp_path / "s" / "shard-00000", merge_policy=None) as writer:
        writer.delete(["d0"])
        writer.commit()
        writer.add(impact_batch(["d0"]))
    body = json.loads((tmp_path / "s" / "manifest.json").read_text())
    body.pop("manifest_crc32")
    body["shards"][0] = {
        **_shard_facts(tmp_path / "s", "shard-00000")[0].to_dict(),
        "num_documents": 4,
    }
    (tmp_path / "s" / "manifest.json").unlink()
    write_manifest(tmp_path / "s", body)
    for opening in (
        lambda: ShardedIndex.open(tmp_path / "s"),
        lambda: ShardedIndex.open_shards(tmp_path / "s", [0]),
    ):
        with pytest.raises(IndexFormatError, match="shard shard-00000/gen-.* is a live index"):
            opening()


# -- search_with_stats reports every search a tie made ---------------------------------------------


def expected_searches(index, query: dict, k: int) -> int:
    """How many searches a live index whose numbers do not follow ordinals runs, from brute
    force scores: a second (and deeper) one when the (k+1)-th best score ties the k-th."""
    scores = [h.score for h in index.reference_search(query, index.num_docnos)]
    if len(scores) <= k or scores[k] != scores[k - 1]:
        return 1
    tied = sum(s >= scores[k - 1] for s in scores)  # documents above the floor θ - 1
    want, searches = min(max(4 * k, 64), index.num_docnos), 1
    while True:
        searches += 1
        if min(tied, want) < want or want >= index.num_docnos:
            return searches
        want = min(4 * want, index.num_docnos)


@pytest.fixture(scope="module", params=[True, False], ids=["layout", "no-layout"])
def live_sparse(request, pairs, tmp_path_factory):
    """The live sparse index of the pair, and the same steps without the search layout (the
    segments searched one by one: no kernel stats, every posting counted per search)."""
    if request.param:
        return pairs["live"][0]
    path = tmp_path_factory.mktemp("no-layout") / "sparse"
    with IndexWriter.open(path, vocab=VOCAB, merge_policy=None, search_layout=False) as writer:
        for step, ids in STEPS:
            getattr(writer, step)(ids if step == "delete" else impact_batch(ids))
            writer.commit()
    index = ImpactIndex.open(path)
    assert not index.has_search_layout and not index.numbers_follow_ordinals
    return index


def test_search_with_stats_adds_the_tie_re_search_exhaustive(live_sparse):
    index = live_sparse
    seen = set()
    for text in QUERIES:
        query = {w: 1 for w in text.split()}
        terms, _ = index.prepare_query(query)
        postings = sum(  # every posting of the query's terms, deleted documents' included
            int((np.asarray(s.term_offsets)[terms + 1] - np.asarray(s.term_offsets)[terms]).sum())
            for s in index.segments
        )
        for k in (1, 2, 3, 5):
            hits, stats = index.search_with_stats(query, k, mode="exhaustive")
            assert hits == index.reference_search(query, k)
            searches = expected_searches(index, query, k)
            seen.add(searches)
            assert stats.postings == searches * postings, (text, k)
            assert stats.kth_score == (hits[-1].score if len(hits) == k else 0)
    assert seen == {1, 2}  # both cases occurred


def test_search_with_stats_adds_the_tie_re_search_pruned(pairs):
    from sparse_ir.index.pruned import STATS_FIELDS

    index = pairs["live"][0]
    mode = index._mode("pruned", None, None)
    for text in QUERIES:
        query = {w: 1 for w in text.split()}
        terms, weights = index.prepare_query(query)
        for k in (1, 3):
            hits, stats = index.search_with_stats(query, k, mode="pruned")
            assert hits == index.reference_search(query, k)
            # The searches _top_k runs, one by one: k + 1 first, then all of the k-th score.
            first, work, _ = index._top_k_by_number(terms, weights, k + 1, mode, index._allowed)
            if expected_searches(index, query, k) == 2:
                floor = int(first.scores[k - 1]) - 1
                want = min(max(4 * k, 64), index.num_docnos)
                more = index._top_k_by_number(terms, weights, want, mode, index._allowed, floor)
                work = work + more[1]
            figures = dict(zip(STATS_FIELDS, work.tolist()))
            for name in ("postings", "verified", "candidates", "early_verifications"):
                assert getattr(stats, name) == figures[name], (text, k, name)


def test_add_stats_adds_work_and_keeps_the_first_theta0_and_largest_bound():
    from sparse_ir.index.live_index import _add_stats

    # Slots: postings, verified, theta0, cut_bound, candidates, kth_score, early_verifications.
    first = np.array([10, 2, 0, 5, 3, 7, 1])
    more = np.array([4, 1, 6, 9, 2, 8, 0])
    assert _add_stats(first, more).tolist() == [14, 3, 6, 9, 5, 15, 1]
    first[2] = 3
    assert _add_stats(first, more).tolist() == [14, 3, 3, 9, 5, 15, 1]
    assert _add_stats(more, first).tolist() == [14, 3, 6, 9, 5, 15, 1]
    assert _add_stats(None, more) is more and _add_stats(first, None) is first
    assert _add_stats(None, None) is None


def test_fusion_tie_keys_leave_documents_without_a_number_last():
    from sparse_ir.fusion import fuse_hits
    from sparse_ir.results import Hit

    hits = [[Hit("a", 1.0, -1), Hit("b", 1.0, 1), Hit("c", 1.0, 0)]]
    assert [h.doc_id for h in fuse_hits(hits, tie_keys=np.array([5, 2]))] == ["b", "c", "a"]
    # No document has a number: no key is looked up, even in an empty array.
    unknown = [[Hit("a", 1.0, -1), Hit("b", 2.0, -1)]]
    assert [h.doc_id for h in fuse_hits(unknown, tie_keys=np.zeros(0, np.int64))] == ["b", "a"]
