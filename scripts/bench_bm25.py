"""BM25 in our impact index vs bm25s: nDCG@10 and query latency, same analyzer and parameters.

For each collection (BEIR layout, test split) the script

1. builds our BM25 impact index (:func:`sparse_ir.encoders.bm25.build_bm25_index`, scale 1000)
   and bm25s's index (``method="lucene"``, the same k1 and b, ``bm25s.tokenize`` with English
   stop-words and PyStemmer's ``english`` stemmer: the analyzer our :class:`Analyzer` copies);
2. scores both runs with :func:`sparse_ir.eval.evaluate` (ir_measures); our queries weigh terms
   by count, as bm25s does (``query_weighting="count"``), and the library's default
   (``"distinct"``: each distinct term once) is reported beside;
3. times single-query retrieval at k=10 and k=1000 on one thread, from analyzed queries (our
   one-row SparseBatch / bm25s's token ids), for ours (pruned = the default exact mode, and
   exhaustive) and bm25s (numpy and numba backends). Engines take turns within every round
   (the first engine rotates); the figure is the median over rounds of the mean ms/query.
   Text-to-hits latency (analysis included) is timed at k=10 as well, and batch retrieval (all
   queries in one call, one thread) at k=10 and k=1000, as ms per query. "arrays" is our same
   search returning arrays of document numbers and scores, as bm25s does, instead of
   ``Hit`` objects (:meth:`ImpactIndex.search_arrays`; in batch, the kernel's arrays): building
   1,000 Python objects per query costs more than the search. "Speed-up" is bm25s's faster
   backend's time over ours: above 1, ours is faster.

Run with ``PYTHONPATH`` at another checkout to measure that version of the library (before
``search_arrays`` existed, "arrays" calls the same kernel through private methods, from queries
prepared beforehand).

Run from the repository root::

    python scripts/bench_bm25.py --rounds 5 --output bench-results/bm25.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)
import numpy as np

HERE = Path(__file__).resolve().parent
# $SPARSE_IR_DATA, else ../shared/data beside the repository or the working directory.
DATA = next(
    (
        p
        for p in (
            Path(os.environ.get("SPARSE_IR_DATA", "/nonexistent")),
            HERE.parent.parent / "shared" / "data",
            Path.cwd().parent / "shared" / "data",
        )
        if p.is_dir()
    ),
    HERE.parent.parent / "shared" / "data",
)
DATASETS = {
    "scifact": DATA / "scifact",
    "dl19-pooled": DATA / "trec-dl19-pooled",
    "nfcorpus": DATA / "nfcorpus",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=list(DATASETS),
        help=f"names ({', '.join(DATASETS)}) or BEIR directories",
    )
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time latency by the wall clock, or by the CPU time of the "
        "searching thread (steadier on a shared, loaded machine: time spent "
        "preempted is not counted; every engine runs on one thread)",
    )
    parser.add_argument(
        "--anserini",
        action="store_true",
        help="instead: compare with Anserini's own BM25 on SciFact (needs Java "
        "and the Anserini jar, 'sparse-ir[lucene]')",
    )
    args = parser.parse_args(argv)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    global _clock
    _clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.anserini:
        print(json.dumps(anserini_agreement(DATASETS["scifact"], args.k1, args.b), indent=1))
        return 0
    results = []
    load = {"before": os.getloadavg()[0]}
    for name in args.datasets:
        path = DATASETS.get(name, Path(name))
        results.append(bench_one(name, Path(path), args.k1, args.b, args.rounds))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    load["after"] = os.getloadavg()[0]
    print(table(results, args))
    print(f"\nload average (1 min): {load['before']:.2f} before, {load['after']:.2f} after")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        import sparse_ir

        Path(args.output).write_text(
            json.dumps(
                {
                    "library": str(Path(sparse_ir.__file__).parent),
                    "clock": args.clock,
                    "k1": args.k1,
                    "b": args.b,
                    "rounds": args.rounds,
                    "load_average": load,
                    "results": results,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


def bench_one(name: str, path: Path, k1: float, b: float, rounds: int) -> dict:
    import bm25s
    import Stemmer

    from sparse_ir.encoders.bm25 import build_bm25_index
    from sparse_ir.eval import evaluate, load_beir
    from sparse_ir.index.modes import resolve_mode
    from sparse_ir.results import Run

    data = load_beir(path, "test")
    texts = [q.text for q in data.queries]
    qids = [q.id for q in data.queries]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index, encoder = build_bm25_index(
            data.corpus, Path(tmp) / "bm25", k1=k1, b=b, store_contents=False, show_progress=False
        )
        ours_build = time.perf_counter() - started
        stemmer = Stemmer.Stemmer("english")
        started = time.perf_counter()
        tokens = bm25s.tokenize(
            [d.full_text for d in data.corpus], stopwords="en", stemmer=stemmer, show_progress=False
        )
        engines = {}
        for backend in ("numpy", "numba"):
            retriever = bm25s.BM25(k1=k1, b=b, method="lucene", backend=backend)
            retriever.index(tokens, show_progress=False)
            engines[backend] = retriever
        theirs_build = (time.perf_counter() - started) / 2
        query_tokens = bm25s.tokenize(
            texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
        retriever = engines["numpy"]
        query_ids = [retriever.get_tokens_ids(t) for t in query_tokens]
        # bm25s refuses a query with no known term; such a query scores 0 for both engines.
        live = [i for i, ids in enumerate(query_ids) if ids]

        figures = {
            "dataset": name,
            "documents": index.num_documents,
            "queries": len(texts),
            "queries_timed": len(live),
            "vocabulary": index.vocab_size,
            "postings": index.num_postings,
            "build_seconds": {"ours": round(ours_build, 2), "bm25s": round(theirs_build, 2)},
        }
        # -- effectiveness ---------------------------------------------------------------------
        ndcg = {}
        for weighting in ("count", "distinct"):
            encoder.query_weighting = weighting
            batch = encoder.encode_queries(texts, ids=qids)
            run = index.search_batch(batch, 10, threads=1)
            ndcg[f"ours_{weighting}"] = evaluate(run, data.qrels, ["nDCG@10"])["nDCG@10"]
        docs, scores = retriever.retrieve(
            [query_ids[i] for i in live], k=10, n_threads=1, show_progress=False
        )
        doc_ids = index.doc_ids
        bm25s_run = Run.from_dict(
            {
                qids[i]: {doc_ids[d]: float(s) for d, s in zip(dd, ss)}
                for i, dd, ss in zip(live, docs.tolist(), scores.tolist())
            }
        )
        ndcg["bm25s"] = evaluate(bm25s_run, data.qrels, ["nDCG@10"])["nDCG@10"]
        figures["ndcg@10"] = {key: round(value, 4) for key, value in ndcg.items()}
        figures["ndcg@10_difference"] = round(ndcg["ours_count"] - ndcg["bm25s"], 4)

        # -- latency -----------------------------------------------------------------------------
        encoder.query_weighting = "count"
        batch = encoder.encode_queries(texts, ids=qids)
        ours_queries = [batch.select([i]) for i in live]
        batch_live = batch.select(live)
        live_texts = [texts[i] for i in live]
        live_ids = [query_ids[i] for i in live]

        def ours(mode):
            return lambda i, k: index.search(ours_queries[i], k, mode=mode)

        def bm25s_engine(backend):
            engine = engines[backend]
            return lambda i, k: engine.retrieve(
                [live_ids[i]], k=k, n_threads=1, show_progress=False
            )

        def ours_text(i, k):
            return index.search(encoder.encode_queries(live_texts[i]), k)

        def bm25s_text(i, k):
            words = bm25s.tokenize(
                [live_texts[i]],
                stopwords="en",
                stemmer=stemmer,
                return_ids=False,
                show_progress=False,
            )
            return engines["numba"].retrieve(words, k=k, n_threads=1, show_progress=False)

        # The same search returning arrays (document numbers, scores), as bm25s does, instead
        # of Hit objects: ImpactIndex.search_arrays. Older versions of the library lack it: the
        # same kernel is then called through private methods, from queries prepared beforehand.
        pruned_params = resolve_mode("pruned", has_search_layout=True).kernel_params()
        kernel = index._pruned()
        wide_rows = np.asarray([index._needs_int64(*index.prepare_query(q)) for q in ours_queries])
        if hasattr(index, "search_arrays"):

            def ours_arrays(i, k):
                return index.search_arrays(ours_queries[i], k)
        else:
            prepared = [
                index.prepare_query(q) + (wide,)
                for q, wide in zip(ours_queries, wide_rows.tolist())
            ]

            def ours_arrays(i, k):
                terms, weights, wide = prepared[i]
                return kernel.search(terms, weights, k, pruned_params, wide)

        timed = {
            "ours_pruned": ours("pruned"),
            "ours_exhaustive": ours("exhaustive"),
            "ours_arrays": ours_arrays,
            "bm25s_numpy": bm25s_engine("numpy"),
            "bm25s_numba": bm25s_engine("numba"),
        }
        latency = {}
        for k in (10, 1000):
            latency[f"k={k}"] = turns({n: (f, k) for n, f in timed.items()}, len(live), rounds)
            # Batch: every query in one call on one thread; ms per query, amortized.
            whole = {
                "ours_pruned": lambda i, k: index.search_batch(batch_live, k, threads=1),
                "ours_arrays": lambda i, k: kernel.search_many(
                    batch_live.indptr,
                    batch_live.indices,
                    batch_live.values.astype(np.int64),
                    wide_rows,
                    k,
                    pruned_params,
                    1,
                ),
                "bm25s_numpy": lambda i, k: engines["numpy"].retrieve(
                    live_ids, k=k, n_threads=1, show_progress=False
                ),
                "bm25s_numba": lambda i, k: engines["numba"].retrieve(
                    live_ids, k=k, n_threads=1, show_progress=False
                ),
            }
            per_batch = turns({n: (f, k) for n, f in whole.items()}, 1, rounds)
            latency[f"batch k={k}"] = {n: round(v / len(live), 4) for n, v in per_batch.items()}
        latency["text k=10"] = turns(
            {"ours_pruned": (ours_text, 10), "bm25s_numba": (bm25s_text, 10)}, len(live), rounds
        )
        figures["ms_per_query"] = latency
        # bm25s's faster backend / ours (pruned, the default exact mode): > 1 means ours wins
        best = {
            key: min(t for n, t in v.items() if n.startswith("bm25s")) for key, v in latency.items()
        }
        figures["speedup"] = {
            key: round(best[key] / v["ours_pruned"], 2) for key, v in latency.items()
        }
        figures["speedup"].update(
            {
                f"{key} arrays": round(best[key] / latency[key]["ours_arrays"], 2)
                for key in latency
                if "ours_arrays" in latency[key]
            }
        )
        index = None
    return figures


def anserini_agreement(path: Path, k1: float, b: float) -> dict:
    """Our BM25 index vs Anserini's BM25 (Lucene's BM25Similarity) over the same terms.

    Anserini indexes our analyzer's output as pretokenized text (whitespace analysis only) and
    searches the analyzed queries (terms repeated, so weighted by count) with ``-bm25``. Lucene
    stores each document's length in one byte (``SmallFloat.intToByte4``: exact below 24,
    4 significant bits above), so its scores differ from the exact-length formula by up to a
    few percent; recomputing our formula with those lengths must match Anserini's scores to
    float32 precision.
    """
    from sparse_ir.encoders.bm25 import bm25_document_weights, build_bm25_index
    from sparse_ir.eval import evaluate, load_beir
    from sparse_ir.export.anserini import run_anserini
    from sparse_ir.results import Run

    data = load_beir(path, "test")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index, encoder = build_bm25_index(
            data.corpus, root / "ours", k1=k1, b=b, store_contents=False, show_progress=False
        )
        analyze = encoder.analyzer.analyze
        (root / "collection").mkdir()
        with open(root / "collection" / "docs.jsonl", "w", encoding="utf-8") as handle:
            for d in data.corpus:
                handle.write(
                    json.dumps({"id": d.id, "contents": " ".join(analyze(d.full_text))}) + "\n"
                )
        with open(root / "topics.tsv", "w", encoding="utf-8") as handle:
            for q in data.queries:
                handle.write(f"{q.id}\t{' '.join(analyze(q.text))}\n")
        run_anserini(
            "io.anserini.index.IndexCollection",
            [
                "-collection",
                "JsonCollection",
                "-input",
                str(root / "collection"),
                "-index",
                str(root / "lucene"),
                "-generator",
                "DefaultLuceneDocumentGenerator",
                "-threads",
                "1",
                "-pretokenized",
            ],
        )
        run_anserini(
            "io.anserini.search.SearchCollection",
            [
                "-index",
                str(root / "lucene"),
                "-topics",
                str(root / "topics.tsv"),
                "-topicReader",
                "TsvString",
                "-output",
                str(root / "run.txt"),
                "-bm25",
                "-bm25.k1",
                str(k1),
                "-bm25.b",
                str(b),
                "-pretokenized",
                "-hits",
                "1000",
                "-threads",
                "1",
            ],
        )
        theirs = Run.read_trec(root / "run.txt")
        encoder.query_weighting = "count"
        texts = [q.text for q in data.queries]
        queries = encoder.encode_queries(texts, ids=[q.id for q in data.queries])
        ours = index.search_batch(queries, 1000, threads=1)
        documents = encoder.encode_documents([d.full_text for d in data.corpus])
        lengths = np.asarray([len(analyze(d.full_text)) for d in data.corpus])
        lucene_lengths = np.asarray([_lucene_length(int(n)) for n in lengths])
        docno = {d.id: i for i, d in enumerate(data.corpus)}
        exact_error, lucene_error, same = [], [], 0
        for row, q in enumerate(data.queries):
            same += [h.doc_id for h in ours[q.id][:10]] == [h.doc_id for h in theirs[q.id][:10]]
            q_terms, q_weights = queries.row(row)
            for hit in theirs[q.id][:10]:
                d = docno[hit.doc_id]
                terms, _ = documents.row(d)
                shared = np.isin(terms, q_terms)
                tf = _term_counts(encoder, data.corpus[d].full_text)[terms[shared]]
                weight = q_weights[np.searchsorted(q_terms, terms[shared])]
                for errors, dl in ((exact_error, lengths[d]), (lucene_error, lucene_lengths[d])):
                    score = float(
                        np.dot(
                            weight,
                            bm25_document_weights(
                                tf,
                                np.full(len(tf), dl),
                                encoder.document_frequencies[terms[shared]],
                                num_documents=encoder.num_documents,
                                average_length=encoder.average_length,
                                k1=k1,
                                b=b,
                            ),
                        )
                    ) / (k1 + 1)
                    errors.append(abs(score - hit.score) / hit.score)
        index = None
    return {
        "k1": k1,
        "b": b,
        "queries": len(data.queries),
        "ndcg@10": {
            "ours": round(evaluate(ours, data.qrels, ["nDCG@10"])["nDCG@10"], 4),
            "anserini": round(evaluate(theirs, data.qrels, ["nDCG@10"])["nDCG@10"], 4),
        },
        "identical_top10_lists": same,
        "relative_score_difference_top10": {
            "exact_lengths": {
                "median": float(np.median(exact_error)),
                "max": float(np.max(exact_error)),
            },
            "lucene_lengths": {
                "median": float(np.median(lucene_error)),
                "max": float(np.max(lucene_error)),
            },
        },
    }


def _term_counts(encoder, text: str) -> np.ndarray:
    counts = np.zeros(len(encoder.vocab), np.int64)
    ids = [encoder._term_ids[t] for t in encoder.analyzer.analyze(text)]
    np.add.at(counts, ids, 1)
    return counts


def _lucene_length(length: int) -> int:
    """A document length as Lucene stores it: SmallFloat.intToByte4 then byte4ToInt."""

    def long_to_int4(i: int) -> int:
        shift = i.bit_length() - 4
        return i if shift < 0 else ((i >> shift) & 7) | ((shift + 1) << 3)

    def int4_to_long(i: int) -> int:
        shift = (i >> 3) - 1
        return i & 7 if shift == -1 else ((i & 7) | 8) << shift

    free = 255 - long_to_int4(2**31 - 1)  # 24 small lengths are stored exactly
    if length < free:
        return length
    return free + int4_to_long(long_to_int4(length - free))


_clock = time.perf_counter


def turns(engines: dict, count: int, rounds: int) -> dict[str, float]:
    """Median over rounds of each engine's mean ms/query; engines take turns, first rotating."""
    names = list(engines)
    for name in names:  # warm-up: JIT compilation, page cache
        function, k = engines[name]
        for i in range(min(count, 20)) if count > 1 else range(2):
            function(min(i, count - 1), k)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            function, k = engines[name]
            started = _clock()
            for i in range(count):
                function(i, k)
            samples[name].append((_clock() - started) * 1000 / max(count, 1))
    return {n: round(statistics.median(s), 3) for n, s in samples.items()}


def table(results: list[dict], args) -> str:
    lines = [
        f"k1 = {args.k1}, b = {args.b}; median of {args.rounds} rounds, ms per query "
        f"({args.clock} clock)",
        "Like for like: both engines search on ONE thread (ours threads=1, bm25s "
        "n_threads=1: its serial kernel), the same k, and the same queries; the k=10, k=1000 "
        "and batch columns EXCLUDE query analysis on both sides (ours from a one-row "
        "SparseBatch, bm25s from token ids), the text->hits column INCLUDES it on both "
        "sides (ours: BM25Encoder.encode_queries + search; bm25s: bm25s.tokenize + retrieve). "
        "'hits' returns Hit objects with external ids, 'arrays' returns document numbers "
        "and scores as bm25s does; speed-up = bm25s's faster backend / ours (> 1: ours is "
        "faster).",
        "",
        "| collection | docs | queries | nDCG@10 bm25s | ours (count) | Δ | ours (distinct) "
        "| k=10 bm25s numpy / numba | k=10 ours pruned / exhaustive / arrays "
        "| k=10 speed-up hits / arrays | k=1000 bm25s numpy / numba "
        "| k=1000 ours pruned / exhaustive / arrays | k=1000 speed-up hits / arrays "
        "| batch k=10 bm25s numpy / numba / ours / arrays "
        "| batch k=1000 bm25s numpy / numba / ours / arrays "
        "| text→hits k=10 bm25s / ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n, ms, up = r["ndcg@10"], r["ms_per_query"], r["speedup"]
        cells = [
            r["dataset"],
            f"{r['documents']:,}",
            str(r["queries"]),
            f"{n['bm25s']:.4f}",
            f"{n['ours_count']:.4f}",
            f"{r['ndcg@10_difference']:+.4f}",
            f"{n['ours_distinct']:.4f}",
        ]
        for k in ("k=10", "k=1000"):
            v = ms[k]
            cells += [
                f"{v['bm25s_numpy']:.3f} / {v['bm25s_numba']:.3f}",
                f"{v['ours_pruned']:.3f} / {v['ours_exhaustive']:.3f} / {v['ours_arrays']:.3f}",
                f"{up[k]:.2f}× / {up[k + ' arrays']:.2f}×",
            ]
        for k in ("batch k=10", "batch k=1000"):
            v = ms[k]
            cells.append(
                f"{v['bm25s_numpy']:.3f} / {v['bm25s_numba']:.3f} / "
                f"{v['ours_pruned']:.3f} / {v['ours_arrays']:.3f}"
            )
        v = ms["text k=10"]
        cells.append(f"{v['bm25s_numba']:.3f} / {v['ours_pruned']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
