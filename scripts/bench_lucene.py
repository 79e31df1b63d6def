#!/usr/bin/env python3
"""Our exact search vs Lucene (Anserini SearchCollection) on SciFact with splade-tiny vectors.

    python scripts/bench_lucene.py            # SciFact from ../shared/data, 300 test queries

Builds our index from the pre-encoded splade-tiny vectors (quantized at scale 100), exports it
as a JsonVectorCollection, indexes it with Anserini (-impact -pretokenized) and then:

1. checks agreement: every query's top-10 has the same scores in both engines (ties compared
   as sets; 1,000 hits retrieved so tie groups cut at rank 10 are checked in full) and the
   nDCG@10 of both runs;
2. measures query throughput on one thread, same queries, top-k (default 10): ours with
   ``search_batch(threads=1)`` and a plain ``search()`` loop over ``{token: impact}`` query
   maps after a warm-up; Anserini with ``-threads 1`` and its own search timer (JVM start,
   index open and I/O excluded and reported separately), on one pass over the queries (cold
   JIT) and on several passes in one JVM (queries repeated under new ids; the JIT warms up).
   Medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

from sparse_ir.eval import evaluate, load_beir
from sparse_ir.export.anserini import (
    build_lucene_index,
    find_anserini_jar,
    find_java,
    read_anserini_run,
    search_lucene_index,
)
from sparse_ir.export.compare import compare_top_k
from sparse_ir.export.lucene import export_json_vectors
from sparse_ir.export.queries import EncodedQuery, queries_from_batch, write_query_tsv
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch


def splade_tiny_vocab(tokens: set[str]) -> tuple[str, ...]:
    """splade-tiny's vocabulary from its tokenizer file; the sorted tokens if unavailable."""
    try:
        from tokenizers import Tokenizer

        from sparse_ir.encoders.registry import resolve_model

        path = os.path.join(resolve_model("splade-tiny"), "tokenizer.json")
        by_id = {i: t for t, i in Tokenizer.from_file(path).get_vocab().items()}
        return tuple(by_id[i] for i in range(len(by_id)))
    except Exception:  # noqa: BLE001 - a missing model only changes term numbering
        return tuple(sorted(tokens))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="SciFact directory (BEIR layout)")
    parser.add_argument(
        "--vectors",
        default=None,
        help="directory with doc_vectors.json.gz and query_vectors.json.gz "
        "(default: scifact-splade-tiny beside --data)",
    )
    parser.add_argument("--work", default=None, help="working directory (default: temporary)")
    parser.add_argument("-k", type=int, default=10, help="hits per query for throughput")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine")
    parser.add_argument(
        "--passes",
        type=int,
        default=5,
        help="passes over the queries in one JVM for the warm Lucene figure",
    )
    parser.add_argument("--index-threads", type=int, default=2, help="Anserini indexing threads")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the Lucene index already in --work (skip export + indexing)",
    )
    args = parser.parse_args(argv)

    data = _common.scifact_data(parser, args.data)
    vectors = _common.scifact_vectors_dir(args.vectors, data)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-lucene-"))
    java, jar = find_java(), find_anserini_jar()
    print(f"Java {java.version} ({java.source}: {java.java}); {jar.name}; work dir {work}")

    dataset = load_beir(data)
    doc_vectors, query_vectors = _common.read_vectors(vectors)
    tokens = {t for v in doc_vectors.values() for t in v} | {
        t for v in query_vectors.values() for t in v
    }
    vocab = splade_tiny_vocab(tokens)
    quantizer = Quantizer(scale=100)
    ids = [d.id for d in dataset.corpus]
    by_id = {d.id: d for d in dataset.corpus}
    index = ImpactIndex.build(
        SparseBatch.from_dicts([doc_vectors[i] for i in ids], vocab, ids),
        work / "index",
        quantizer=quantizer,
        show_progress=False,
        contents=[(by_id[i].title, by_id[i].text) for i in ids],
    )
    query_ids = [q.id for q in dataset.queries]
    queries = quantizer.quantize(
        SparseBatch.from_dicts([query_vectors[q] for q in query_ids], vocab, query_ids)
    )
    print(
        f"our index: {index.num_documents} documents, {index.num_postings} postings; "
        f"{len(queries)} queries, {queries.nnz / len(queries):.1f} terms/query"
    )

    records = queries_from_batch(queries)
    write_query_tsv(records, work / "queries.tsv")
    if args.reuse and any((work / "lucene").glob("segments_*")):
        print(f"reusing the Lucene index in {work / 'lucene'}")
    else:
        export = export_json_vectors(
            index, work / "collection", shards=2, overwrite=True, show_progress=False
        )
        print(f"export: {export}")
        started = time.perf_counter()
        built = build_lucene_index(
            work / "collection", work / "lucene", threads=args.index_threads, overwrite=True
        )
        print(
            f"Lucene indexing: {built.indexed} documents in "
            f"{time.perf_counter() - started:.1f}s (wall, {args.index_threads} threads, "
            "JVM start included)"
        )

    # 1. Agreement ------------------------------------------------------------------------------
    lucene_report = search_lucene_index(
        work / "lucene", work / "queries.tsv", work / "lucene-1000.trec", k=1000, threads=1
    )
    lucene_run = read_anserini_run(work / "lucene-1000.trec")
    our_run = index.search_batch(queries, 1000, threads=1)
    agreement = compare_top_k(our_run, lucene_run, depth=10, query_ids=query_ids)
    ndcg_ours = evaluate(our_run, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    ndcg_lucene = evaluate(lucene_run, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    print("\n== agreement (1,000 hits per query, top-10 compared) ==")
    print(agreement)
    print(
        f"nDCG@10: sparse-ir {ndcg_ours:.4f}   Lucene {ndcg_lucene:.4f}   "
        f"{'equal' if round(ndcg_ours, 4) == round(ndcg_lucene, 4) else 'DIFFERENT'} to 4 "
        "decimals"
    )
    print(f"Lucene search at k=1000: {lucene_report}")

    # 2. Throughput -----------------------------------------------------------------------------
    k = args.k
    # Queries as {token: impact} maps: the same information Lucene gets (tokens and counts),
    # turned into term ids by the index on every call, as 'sparse-ir search-encoded' does.
    maps = [record.vector for record in records]
    index.search_batch(maps, k, threads=1, query_ids=query_ids)  # warm-up: JIT, page cache
    batch_qps, loop_qps = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        index.search_batch(maps, k, threads=1, query_ids=query_ids)
        batch_qps.append(len(maps) / (time.perf_counter() - started))
        started = time.perf_counter()
        for vector in maps:
            index.search(vector, k)
        loop_qps.append(len(maps) / (time.perf_counter() - started))

    passes_path = work / "queries-passes.tsv"
    write_query_tsv(
        [EncodedQuery(f"p{p}-{q.id}", q.vector) for p in range(args.passes) for q in records],
        passes_path,
    )
    cold, warm, startup = [], [], []
    for _ in range(args.repeats):
        one = search_lucene_index(
            work / "lucene", work / "queries.tsv", work / "lucene-k.trec", k=k, threads=1
        )
        many = search_lucene_index(
            work / "lucene", passes_path, work / "lucene-passes.trec", k=k, threads=1
        )
        cold.append(one.queries / one.search_seconds)
        warm.append(many.queries / many.search_seconds)
        startup.append(one.startup_seconds)

    median = statistics.median
    print(
        f"\n== query throughput, one thread, {len(queries)} queries, top-{k}, "
        f"median of {args.repeats} =="
    )
    table = [
        ("sparse-ir exact, search_batch(threads=1)", median(batch_qps)),
        ("sparse-ir exact, search() per query", median(loop_qps)),
        ("Lucene/Anserini, 1 pass (cold JIT), JVM excluded", median(cold)),
        (f"Lucene/Anserini, {args.passes} passes in one JVM, JVM excluded", median(warm)),
    ]
    for name, qps in table:
        print(f"  {name:<58} {qps:>9.1f} queries/s  {1000 / qps:>8.2f} ms/query")
    print(
        f"  Lucene JVM start + index open + I/O per SearchCollection run: "
        f"{median(startup):.2f}s (median; not in the figures above)"
    )
    print(
        f"ratio sparse-ir search_batch / Lucene: {median(batch_qps) / median(cold):.1f}x "
        f"(cold JIT), {median(batch_qps) / median(warm):.1f}x (warm JIT)"
    )
    return 0 if agreement.all_agree and round(ndcg_ours, 4) == round(ndcg_lucene, 4) else 1


if __name__ == "__main__":
    sys.exit(main())
