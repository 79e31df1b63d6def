"""Fusion: hand-computed examples, Pyserini's formulas, validation, weight tuning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparse_ir.fusion import (
    FusedHit,
    Fusion,
    convex_combination,
    fuse_hits,
    normalize_scores,
    reciprocal_rank_fusion,
    tune_weights,
)
from sparse_ir.results import Hit, Run

# -- normalization -------------------------------------------------------------------------------


def test_normalizations_by_hand():
    scores = [3.0, 2.0, 1.0]
    assert normalize_scores(scores, "min-max").tolist() == [1.0, 0.5, 0.0]
    assert normalize_scores(scores, "midpoint").tolist() == [0.5, 0.0, -0.5]
    assert normalize_scores(scores, "none").tolist() == scores
    # mean 2, population std sqrt(2/3)
    z = normalize_scores(scores, "z-score")
    assert z == pytest.approx([1 / math.sqrt(2 / 3), 0.0, -1 / math.sqrt(2 / 3)])


def test_zero_range_is_guarded():
    for scores in ([5.0, 5.0, 5.0], [7.0]):
        assert normalize_scores(scores, "min-max").tolist() == [1.0] * len(scores)
        assert normalize_scores(scores, "midpoint").tolist() == [0.5] * len(scores)
        assert normalize_scores(scores, "z-score").tolist() == [0.0] * len(scores)
        assert normalize_scores(scores, "none").tolist() == scores
    assert normalize_scores([], "min-max").tolist() == []


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="normalization must be one of"):
        normalize_scores([1.0], "minmax")
    with pytest.raises(ValueError, match="finite"):
        normalize_scores([1.0, float("nan")], "min-max")


# -- convex combination: hand-computed ------------------------------------------------------------

SPARSE = [Hit("a", 30, 0), Hit("b", 20, 1), Hit("c", 10, 2)]
DENSE = [Hit("b", 0.9, 1), Hit("d", 0.7, 3), Hit("a", 0.5, 0)]


def test_convex_min_max_with_missing_min():
    # sparse min-max: a 1, b .5, c 0; dense: b 1, d .5, a 0. c is missing from dense (-> dense
    # min, normalized 0), d from sparse (-> 0).
    hits = fuse_hits([SPARSE, DENSE], weights=(0.5, 0.5))
    assert [h.doc_id for h in hits] == ["b", "a", "d", "c"]
    assert [h.score for h in hits] == pytest.approx([0.75, 0.5, 0.25, 0.0])
    assert hits[0] == FusedHit("b", 0.75, 1, (20.0, 0.9), (2, 1))
    assert hits[3].components == (10.0, None) and hits[3].ranks == (3, None)


def test_convex_missing_zero_differs_from_min_under_z_score():
    # z-score of (30, 20, 10) = (1.2247, 0, -1.2247), the same for dense (0.9, 0.7, 0.5).
    z = 1 / math.sqrt(2 / 3)
    by_min = {
        h.doc_id: h.score
        for h in fuse_hits(
            [SPARSE, DENSE], weights=(0.5, 0.5), normalization="z-score", missing="min"
        )
    }
    by_zero = {
        h.doc_id: h.score
        for h in fuse_hits(
            [SPARSE, DENSE], weights=(0.5, 0.5), normalization="z-score", missing="zero"
        )
    }
    assert by_min["c"] == pytest.approx(0.5 * -z + 0.5 * -z)
    assert by_zero["c"] == pytest.approx(0.5 * -z + 0.0)
    assert by_min["d"] == pytest.approx(0.5 * -z + 0.0)
    assert by_zero["d"] == pytest.approx(0.0)
    assert by_min["a"] == by_zero["a"] == pytest.approx(0.5 * z - 0.5 * z)


def test_convex_weights_alpha():
    hits = fuse_hits([SPARSE, DENSE], weights=(0.8, 0.2))
    scores = {h.doc_id: h.score for h in hits}
    assert scores == pytest.approx({"a": 0.8, "b": 0.8 * 0.5 + 0.2, "c": 0.0, "d": 0.1})
    assert [h.doc_id for h in hits] == ["a", "b", "d", "c"]


def test_ties_break_by_document_number_then_id():
    left = [Hit("x", 2.0, 5), Hit("y", 1.0, 2)]
    right = [Hit("y", 2.0, 2), Hit("x", 1.0, 5)]
    hits = fuse_hits([left, right])
    assert [h.score for h in hits] == [0.5, 0.5]
    assert [h.doc_id for h in hits] == ["y", "x"]  # docno 2 before docno 5
    unknown = [[Hit("q", 2.0), Hit("p", 1.0)], [Hit("p", 2.0), Hit("q", 1.0)]]
    assert [h.doc_id for h in fuse_hits(unknown)] == ["p", "q"]  # no numbers: by id
    mixed = [[Hit("m", 1.0, -1), Hit("n", 1.0, 9)]]
    assert [h.doc_id for h in fuse_hits(mixed)] == ["n", "m"]  # known numbers first


def test_constant_score_run():
    constant = [Hit("a", 4.0, 0), Hit("b", 4.0, 1)]
    varying = [Hit("b", 3.0, 1), Hit("c", 1.0, 2)]
    # constant run: a, b -> 1 (c missing -> the run's min, also 1); varying: b 1, c 0, a -> 0.
    hits = {h.doc_id: h.score for h in fuse_hits([constant, varying], missing="min")}
    assert hits == {"a": 0.5, "b": 1.0, "c": 0.5}
    hits = {h.doc_id: h.score for h in fuse_hits([constant, varying], missing="zero")}
    assert hits == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert all(
        math.isfinite(h.score) for h in fuse_hits([constant, varying], normalization="midpoint")
    )


def test_depth_cuts_each_run_before_normalizing():
    long_run = [Hit("a", 10, 0), Hit("b", 5, 1), Hit("c", 0, 2)]
    other = [Hit("c", 1.0, 2)]
    hits = {h.doc_id: h for h in fuse_hits([long_run, other], depth=2)}
    # c is beyond depth 2 in the first run: missing there (min of a, b -> 0), not rank 3.
    assert hits["c"].components == (None, 1.0)
    assert hits["b"].score == pytest.approx(0.0 + 0.5 * 1.0)  # b: min of the cut run, other min


def test_empty_run_contributes_nothing():
    hits = fuse_hits([SPARSE, []], weights=(0.5, 0.5))
    assert [(h.doc_id, h.score) for h in hits] == [("a", 0.5), ("b", 0.25), ("c", 0.0)]


def test_unsorted_hand_made_list_is_ordered():
    shuffled = [Hit("c", 10, 2), Hit("a", 30, 0), Hit("b", 20, 1)]
    assert fuse_hits([shuffled]) == fuse_hits([SPARSE])
    assert fuse_hits([shuffled], method="rrf") == fuse_hits([SPARSE], method="rrf")


def test_k_limits_output():
    assert len(fuse_hits([SPARSE, DENSE], k=2)) == 2
    assert len(fuse_hits([SPARSE, DENSE], k=None)) == 4


# -- RRF: hand-computed ---------------------------------------------------------------------------


def test_rrf_by_hand():
    hits = fuse_hits([SPARSE, DENSE], method="rrf")
    scores = {h.doc_id: h.score for h in hits}
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["c"] == pytest.approx(1 / 63)
    assert scores["d"] == pytest.approx(1 / 62)
    assert [h.doc_id for h in hits] == ["b", "a", "d", "c"]


def test_rrf_ranks_are_one_based_and_ties_keep_run_order():
    tied = [Hit("x", 1.0, 0), Hit("y", 1.0, 1)]
    hits = fuse_hits([tied], method="rrf", rrf_k=1)
    assert [(h.doc_id, h.score) for h in hits] == [("x", 1 / 2), ("y", 1 / 3)]
    assert hits[0].ranks == (1,)


def test_rrf_weights_and_depth():
    hits = {
        h.doc_id: h.score
        for h in fuse_hits([SPARSE, DENSE], method="rrf", weights=(2.0, 1.0), depth=1)
    }
    assert hits == pytest.approx({"a": 2 / 61, "b": 1 / 61})


# -- against Pyserini's published formulas --------------------------------------------------------
# Re-stated from Pyserini's documentation and code (HybridSearcher._hybrid_results,
# fusion.reciprocal_rank_fusion, fusion.interpolation), written independently here.


def pyserini_hybrid(dense: dict, sparse: dict, alpha: float, normalization: bool) -> dict:
    """score = alpha · sparse + dense; a missing document takes the run's minimum; with
    normalization, each run maps s -> (s - (min + max) / 2) / (max - min)."""
    d_lo, d_hi = min(dense.values()), max(dense.values())
    s_lo, s_hi = min(sparse.values()), max(sparse.values())
    out = {}
    for doc in set(dense) | set(sparse):
        s = sparse.get(doc, s_lo)
        d = dense.get(doc, d_lo)
        if normalization:
            s = (s - (s_lo + s_hi) / 2) / (s_hi - s_lo)
            d = (d - (d_lo + d_hi) / 2) / (d_hi - d_lo)
        out[doc] = alpha * s + d
    return out


def pyserini_rrf(runs: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Σ 1/(k + rank), rank 1-based; sorted by score descending, then docid ascending."""
    scores: dict[str, float] = {}
    for ranking in runs:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def pyserini_interpolation(first: dict, second: dict, alpha: float) -> dict:
    """alpha · first + (1 − alpha) · second, a missing document adding nothing."""
    out = {}
    for doc in set(first) | set(second):
        out[doc] = alpha * first.get(doc, 0.0) + (1 - alpha) * second.get(doc, 0.0)
    return out


def random_runs(seed: int, queries: int = 5):
    rng = np.random.default_rng(seed)
    sparse, dense = {}, {}
    for q in range(queries):
        pool = [f"D{i}" for i in rng.choice(60, size=40, replace=False)]
        sparse[f"q{q}"] = {d: float(rng.integers(1, 500)) for d in pool[:25]}
        dense[f"q{q}"] = {d: float(rng.random()) for d in pool[15:]}
    return sparse, dense


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pyserini_alpha", [0.1, 1.0, 2.5])
def test_matches_pyserini_hybrid_searcher(seed, pyserini_alpha):
    sparse, dense = random_runs(seed)
    # alpha·s + d ranks like w·s + (1 − w)·d with w = alpha / (1 + alpha), scaled by 1 − w.
    w = pyserini_alpha / (1 + pyserini_alpha)
    for normalization, ours in (("midpoint", True), ("none", False)):
        fused = convex_combination(
            [sparse, dense],
            (w, 1 - w),
            normalization=normalization,
            missing="min",
            depth=None,
            k=None,
        )
        for qid in sparse:
            expected = pyserini_hybrid(dense[qid], sparse[qid], pyserini_alpha, ours)
            got = {h.doc_id: h.score for h in fused[qid]}
            assert set(got) == set(expected)
            for doc, value in expected.items():
                assert got[doc] == pytest.approx((1 - w) * value, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pyserini_rrf(seed):
    sparse, dense = random_runs(seed)
    fused = reciprocal_rank_fusion([sparse, dense], rrf_k=60, depth=None, k=None)
    for qid in sparse:
        rankings = [Run.from_dict(run).results[qid] for run in (sparse, dense)]
        expected = pyserini_rrf([[h.doc_id for h in hits] for hits in rankings])
        got = [(h.doc_id, h.score) for h in fused[qid]]
        assert [d for d, _ in got] == [d for d, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_matches_pyserini_interpolation(alpha):
    sparse, dense = random_runs(7)
    fused = convex_combination(
        [sparse, dense],
        (alpha, 1 - alpha),
        normalization="none",
        missing="zero",
        depth=None,
        k=None,
    )
    for qid in sparse:
        expected = pyserini_interpolation(sparse[qid], dense[qid], alpha)
        got = {h.doc_id: h.score for h in fused[qid]}
        assert got == pytest.approx(expected, rel=1e-12)


# -- whole runs, validation, the Fusion value -----------------------------------------------------


def test_runs_and_dicts_and_missing_queries():
    run = Run({"q1": SPARSE, "q2": [Hit("z", 1.0, 9)]}, name="s")
    dense = {"q1": {h.doc_id: h.score for h in DENSE}}
    fused = convex_combination([run, dense], k=10)
    assert list(fused.results) == ["q1", "q2"]
    assert [h.doc_id for h in fused["q2"]] == ["z"]
    assert fused["q2"][0].score == 0.5  # alone in the sparse run (1.0), no dense run for q2
    assert [h.doc_id for h in fused["q1"]] == ["b", "a", "d", "c"]
    assert fused.to_dict()["q1"]["b"] == 0.75


def test_more_than_two_runs():
    third = [Hit("c", 1.0, 2), Hit("a", 0.0, 0)]
    hits = {h.doc_id: h.score for h in fuse_hits([SPARSE, DENSE, third], weights=(0.5, 0.25, 0.25))}
    # a: .5·1 + .25·0 + .25·0; b: .5·.5 + .25·1 + .25·0 (missing -> min 0); c: 0 + 0 + .25
    assert hits == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.25, "d": 0.125})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"normalization": "minmax"}, "normalization must be one of"),
        ({"missing": "drop"}, "missing must be one of"),
        ({"method": "borda"}, "method must be one of"),
        ({"weights": (0.5, 0.4)}, "must sum to 1"),
        ({"weights": (1.5, -0.5)}, "finite and >= 0"),
        ({"weights": (1.0,)}, "1 weights for 2 runs"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"k": -1}, "k must be a positive integer"),
        ({"method": "rrf", "rrf_k": 0}, "rrf_k must be a positive integer"),
    ],
)
def test_invalid_options_raise_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        fuse_hits([SPARSE, DENSE], **options)


def test_invalid_runs():
    with pytest.raises(ValueError, match="at least one run"):
        fuse_hits([])
    with pytest.raises(ValueError, match="same document twice"):
        fuse_hits([[Hit("a", 2.0), Hit("a", 1.0)]])
    with pytest.raises(TypeError, match="pass a Run"):
        convex_combination([SPARSE])
    with pytest.raises(ValueError, match="alpha must be within"):
        Fusion.convex(1.5)
    with pytest.raises(ValueError, match="normalization must be one of"):
        Fusion(normalization="l2")


def test_fusion_value_matches_functions():
    fusion = Fusion.convex(0.3, normalization="z-score", missing="zero", depth=2)
    assert fusion.fuse_hits([SPARSE, DENSE]) == fuse_hits(
        [SPARSE, DENSE], weights=(0.3, 0.7), normalization="z-score", missing="zero", depth=2
    )
    runs = [Run({"q": SPARSE}), Run({"q": DENSE})]
    assert Fusion.rrf().fuse(runs).results == reciprocal_rank_fusion(runs).results
    assert "RRF k=60" in Fusion.rrf().describe()


# -- tuning ---------------------------------------------------------------------------------------


def test_tune_weights_finds_the_informative_run():
    rng = np.random.default_rng(3)
    qrels, good, noise = {}, {}, {}
    for q in range(20):
        docs = [f"d{i}" for i in range(30)]
        relevant = docs[q % 30]
        qrels[f"q{q}"] = {relevant: 1}
        good[f"q{q}"] = {d: (10.0 if d == relevant else float(rng.random())) for d in docs}
        noise[f"q{q}"] = {d: float(rng.random()) for d in docs}
    best = tune_weights([good, noise], qrels, "nDCG@10", step=0.1)
    assert best.weights[0] >= 0.5 and best.score == pytest.approx(1.0)
    assert len(best.table) == 11
    flipped = tune_weights([noise, good], qrels, "nDCG@10", step=0.1)
    assert flipped.weights[1] >= 0.5
    three = tune_weights([noise, good, noise], qrels, step=0.25)
    assert len(three.table) == 15 and three.score == pytest.approx(1.0)
    assert all(abs(sum(w) - 1) < 1e-9 for w, _ in three.table)


def test_tune_weights_validation():
    with pytest.raises(ValueError, match="step must divide 1"):
        tune_weights([{"q": {"a": 1.0}}], {"q": {"a": 1}}, step=0.3)
    with pytest.raises(ValueError, match="no judged query"):
        tune_weights([{"q": {"a": 1.0}}], {"other": {"a": 1}})
