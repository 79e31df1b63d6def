"""SciFact through a live index: half built, the rest added in 5 commits, 500 deleted and
re-added, against the one-shot build of the same splade-tiny vectors (encoded once).

Re-added documents keep their ids' ordinals (the order the ids first entered the index), and
equal scores are ordered by ordinal, so the live index must rank exactly like the one-shot
build: nDCG@10 equal, and every query's top-100 identical — ids, scores and order, equal
scores included — in every exact mode (default, exhaustive, pruned). After force_merge(1) the
single segment is byte for byte the one-shot build.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparse_ir.eval import evaluate, read_qrels
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import IndexWriter

MODES = (None, "exhaustive", "pruned")  # None: the default mode


@pytest.mark.slow
def test_live_scifact_equals_one_shot(scifact_vectors, scifact_dir, tmp_path, capsys):
    from test_live_index import _assert_same_content

    docs, queries = scifact_vectors
    ImpactIndex.build(docs, tmp_path / "one-shot", show_progress=False)
    one_shot = ImpactIndex.open(tmp_path / "one-shot")
    half = len(docs) // 2
    path = tmp_path / "live"
    with IndexWriter.open(path, vocab=docs.vocab) as writer:
        writer.add(docs.select(np.arange(half)))
        writer.commit()
        for part in np.array_split(np.arange(half, len(docs)), 5):
            writer.add(docs.select(part))
            writer.commit()
        chosen = np.random.default_rng(16).choice(len(docs), 500, replace=False)
        chosen.sort()
        assert writer.delete([docs.ids[i] for i in chosen.tolist()]).deleted == 500
        writer.commit()
        writer.add(docs.select(chosen))
    live = ImpactIndex.open(path)
    assert live.num_documents == len(docs)
    assert not live.numbers_follow_ordinals  # the re-added documents sit in the last segment
    assert [live.ordinal(i) for i in docs.ids] == list(range(len(docs)))
    qrels = read_qrels(scifact_dir / "qrels" / "test.tsv")
    reference = one_shot.search_batch(queries, 100)
    expected = {qid: [(h.doc_id, h.score) for h in reference[qid]] for qid in queries.ids}
    lines = []
    for mode in MODES:
        run = live.search_batch(queries, 100, mode=mode)
        identical = sum(
            [(h.doc_id, h.score) for h in run[qid]] == expected[qid] for qid in queries.ids
        )
        ndcg = evaluate(run, qrels)["nDCG@10"]
        lines.append(f"{mode or 'default'}: nDCG@10 {ndcg:.4f}, top-100 identical {identical}/300")
        assert round(ndcg, 4) == round(evaluate(reference, qrels)["nDCG@10"], 4) == 0.6439
        assert identical == len(queries), mode
    with IndexWriter.open(path) as writer:
        writer.force_merge(1)
    merged = ImpactIndex.open(path)
    assert len(merged.segments) == 1 and merged.numbers_follow_ordinals
    _assert_same_content(merged.segments[0].directory, one_shot.directory)
    with capsys.disabled():
        print(
            f"\nSciFact live ({len(live.segments)} segments, 500 re-added) vs one-shot: "
            + "; ".join(lines)
            + "; force_merge(1) byte-identical to the one-shot build"
        )
