"""Live index on the 1M synthetic corpus: adding documents vs rebuilding, and searching
segments with deletions vs the force-merged index.

    python scripts/bench_live.py --part prepare                 # untimed: outside the lock
    flock /work/wt/bench.lock python scripts/bench_live.py --part search --keep
    flock /work/wt/bench.lock python scripts/bench_live.py --part add

1. ``add``: build the first N - 10,000 documents; time a full rebuild of all N; then open a
   writer on the first index, add the last 10,000 documents and commit. Reported: the add +
   commit time and the open + add + commit + close time, as shares of the full rebuild (same
   run).
2. ``prepare``: write the N documents through a writer as 10 segments (10 commits, no merge
   policy), delete 10% of them at random (one commit), copy the index (hard links) and
   ``force_merge(1)`` the copy.
3. ``search``: time exact search (``exhaustive`` and ``pruned``, 300 queries, k = 10, one query
   at a time) on both, taking turns on every query (median of the passes' mean latencies), check
   that both give the same hits, and report the work each does (postings scored, documents
   verified per query). Pruned search is also timed the previous way (each segment's own
   kernel, the running k-th score passed on as a floor), for comparison. Prints the
   acceptance ratios (target <= 1.3) and a JSON object of every figure.

Indexes go under ``WORK/live/`` and are deleted at the end unless ``--keep`` (``prepare``
keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path
import numpy as np

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import IndexWriter
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.synthetic import NpzCorpus

ADDED = 10_000


def timed(label: str, figures: dict, action):
    started = time.perf_counter()
    result = action()
    figures[label] = round(time.perf_counter() - started, 3)
    print(f"{label}: {figures[label]:.3f}s", flush=True)
    return result


def add_vs_rebuild(corpus: NpzCorpus, work: Path, n: int, budget: str) -> dict:
    figures: dict = {}
    quantizer = Quantizer(scale=100)
    base, full = work / "base", work / "full"
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(full, ignore_errors=True)
    timed(
        "base build seconds",
        figures,
        lambda: ImpactIndex.build(
            corpus.documents(100_000, limit=n - ADDED), base, quantizer=quantizer,
            memory_budget=budget, show_progress=False,
        ),
    )  # fmt: skip
    timed(
        "full rebuild seconds",
        figures,
        lambda: ImpactIndex.build(
            corpus.documents(100_000, limit=n), full, quantizer=quantizer,
            memory_budget=budget, show_progress=False,
        ),
    )  # fmt: skip
    shutil.rmtree(full)
    last = SparseBatch.concatenate(list(corpus.documents(100_000, limit=n))[-1:])
    added = last.select(np.arange(len(last) - ADDED, len(last)))
    started = time.perf_counter()
    writer = timed("writer open seconds", figures, lambda: IndexWriter.open(base))
    timed("add + commit seconds", figures, lambda: (writer.add(added), writer.commit()))
    writer.close()
    figures["open + add + commit + close seconds"] = round(time.perf_counter() - started, 3)
    full_seconds = figures["full rebuild seconds"]
    figures["add + commit / rebuild"] = round(figures["add + commit seconds"] / full_seconds, 4)
    figures["open + add + commit + close / rebuild"] = round(
        figures["open + add + commit + close seconds"] / full_seconds, 4
    )
    index = ImpactIndex.open(base)
    assert index.num_documents == n and len(index.segments) == 2
    shutil.rmtree(base)
    return figures


def per_segment_search(index, query, k: int, mode: str):
    """The previous search across segments, for comparison: each segment's own pruned (or
    exhaustive) kernel, passing the running k-th score on as the next one's floor, and the
    lists merged. Returns ``(TopK, postings scored, documents verified)``."""
    from sparse_ir.index.composite import merge_topk
    from sparse_ir.index.live_index import segment_top_k
    from sparse_ir.index.modes import resolve_mode
    from sparse_ir.index.pruned import STATS_FIELDS

    resolved = resolve_mode(mode, has_search_layout=True)
    terms, weights = index.prepare_query(query)
    parts, floor, postings, verified = [], 0, 0, 0
    for position, segment in enumerate(index.segments):
        top, stats, _ = segment_top_k(
            segment, terms, weights, k, resolved, index._allowed[position], floor
        )
        parts.append(top)
        if stats is not None:
            figures = dict(zip(STATS_FIELDS, stats.tolist()))
            postings += figures["postings"]
            verified += figures["verified"]
        merged = merge_topk(parts, index.offsets[: position + 1], k)
        if len(merged.docnos) == k:
            floor = max(floor, int(merged.scores[-1]))
    return merged, postings, verified


def interleaved_pass(searches: dict, rows) -> dict:
    """Mean latency (ms) of each search over ``rows``, the searches taking turns on every
    query (in rotating order): on a shared machine the load changes within seconds, and each
    query then meets the same load on every index."""
    names = list(searches)
    totals = dict.fromkeys(names, 0.0)
    for i, q in enumerate(rows):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            searches[name](q)
            totals[name] += time.perf_counter() - started
    return {name: 1000 * total / len(rows) for name, total in totals.items()}


def prepare_search_indexes(corpus: NpzCorpus, work: Path, n: int) -> dict:
    """Write the N documents as 10 segments (10 commits, no merge policy), delete 10% at
    random, and force-merge a hard-linked copy (not timed: outside the lock is fine)."""
    figures: dict = {}
    path, merged_path = work / "segments", work / "merged"
    if (merged_path / "CURRENT").exists() and (path / "CURRENT").exists():
        return figures
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(merged_path, ignore_errors=True)
    quantizer = Quantizer(scale=100)
    started = time.perf_counter()
    with IndexWriter.open(
        path, vocab=corpus.vocab, quantizer=quantizer, merge_policy=None
    ) as writer:
        for shard in corpus.documents(n // 10, limit=n):
            writer.add(shard)
            writer.commit()
        chosen = np.random.default_rng(16).choice(n, n // 10, replace=False)
        writer.delete([str(d) for d in chosen.tolist()])
    figures["10 segments write seconds"] = round(time.perf_counter() - started, 3)
    # The merged index is a copy (hard links: segments are never modified) merged in place,
    # so both stay open and their timed searches take turns: load changes hit both alike.
    shutil.copytree(
        path, merged_path, copy_function=os.link, ignore=shutil.ignore_patterns(".lock")
    )
    with IndexWriter.open(merged_path) as writer:
        timed("force_merge(1) seconds", figures, lambda: writer.force_merge(1))
    return figures


def segments_vs_merged(
    corpus: NpzCorpus, work: Path, n: int, passes: int, modes: list[str], n_queries: int | None
) -> dict:
    """Exact search, k = 10, one query at a time: the live index (10 segments, 10% deleted)
    against its force-merged copy, taking turns on every query (median of the passes' means);
    also the previous per-segment search, and the work each does (postings, verified)."""
    figures = prepare_search_indexes(corpus, work, n)
    live = ImpactIndex.open(work / "segments")
    merged = ImpactIndex.open(work / "merged")
    figures["segments"] = len(live.segments)
    figures["deleted"] = live.num_deleted
    assert len(merged.segments) == 1
    queries = corpus.queries()
    rows = [queries.select([i]) for i in range(len(queries))][:n_queries]
    figures["queries"] = len(rows)
    for mode in modes:
        searches = {
            "live": lambda q, mode=mode: live.search(q, 10, mode=mode),
            "merged": lambda q, mode=mode: merged.search(q, 10, mode=mode),
        }
        if mode == "pruned":
            searches["per-segment"] = lambda q: per_segment_search(live, q, 10, "pruned")
        # Warm-up pass: the same hits, and the work done per query.
        work_done: dict = {name: [0, 0] for name in searches}
        same = True
        for q in rows:
            hits = {}
            for name, index in (("live", live), ("merged", merged)):
                found, stats = index.search_with_stats(q, 10, mode=mode)
                hits[name] = [(h.doc_id, h.score) for h in found]
                work_done[name][0] += stats.postings
                work_done[name][1] += stats.verified
            if "per-segment" in searches:
                top, postings, verified = per_segment_search(live, q, 10, mode)
                work_done["per-segment"][0] += postings
                work_done["per-segment"][1] += verified
                old = [
                    (live.doc_ids[d], s) for d, s in zip(top.docnos.tolist(), top.scores.tolist())
                ]
                same = same and old == hits["live"]
            same = same and hits["live"] == hits["merged"]
        figures[f"{mode} same hits"] = same
        means: dict = {name: [] for name in searches}
        for _ in range(passes):
            for name, mean in interleaved_pass(searches, rows).items():
                means[name].append(mean)
        for name in searches:
            figures[f"{mode} ms, {name}"] = round(statistics.median(means[name]), 3)
            figures[f"{mode} postings/query, {name}"] = round(work_done[name][0] / len(rows))
            figures[f"{mode} verified/query, {name}"] = round(work_done[name][1] / len(rows), 1)
        figures[f"{mode} ratio live / merged"] = round(
            figures[f"{mode} ms, live"] / figures[f"{mode} ms, merged"], 3
        )
        if mode == "pruned":
            figures["pruned ratio per-segment / merged"] = round(
                figures["pruned ms, per-segment"] / figures["pruned ms, merged"], 3
            )
        print(f"{mode}: {json.dumps({k: v for k, v in figures.items() if mode in k})}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", default="/work/bench-data", help="holds synth1m/ (default: %(default)s)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="documents used (default: all of them)"
    )
    parser.add_argument(
        "--passes", type=int, default=3, help="timed search passes (default: %(default)s)"
    )
    parser.add_argument(
        "--modes", default="exhaustive,pruned", help="search modes timed (default: %(default)s)"
    )
    parser.add_argument(
        "--queries", type=int, default=None, help="the first N queries only (default: all 300)"
    )
    parser.add_argument(
        "--memory-budget", default="2GB", help="build memory budget (default: %(default)s)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the indexes under WORK/live (default: delete)"
    )
    parser.add_argument(
        "--part", choices=("add", "prepare", "search", "both"), default="both",
        help="add: add vs rebuild; prepare: write the indexes of the search part (untimed, "
        "keep them: run it outside the bench lock); search: time search on them (prepared "
        "if absent); both: add and search (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args()
    corpus = NpzCorpus(Path(args.work) / "synth1m")
    n = corpus.num_documents if args.limit is None else min(args.limit, corpus.num_documents)
    work = Path(args.work) / "live"
    work.mkdir(parents=True, exist_ok=True)
    figures = {"documents": n, "load before": os.getloadavg()}
    keep = args.keep or args.part == "prepare"
    try:
        if args.part in ("add", "both"):
            figures.update(add_vs_rebuild(corpus, work, n, args.memory_budget))
        if args.part == "prepare":
            figures.update(prepare_search_indexes(corpus, work, n))
        if args.part in ("search", "both"):
            modes = args.modes.split(",")
            figures.update(segments_vs_merged(corpus, work, n, args.passes, modes, args.queries))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["load after"] = os.getloadavg()
    for mode in ("exhaustive", "pruned"):
        if f"{mode} ratio live / merged" in figures:
            print(
                f"ACCEPTANCE {mode}: 10 segments + 10% deleted / force-merged = "
                f"{figures[f'{mode} ratio live / merged']:.3f} (target <= 1.3: "
                f"{'met' if figures[f'{mode} ratio live / merged'] <= 1.3 else 'NOT met'})"
            )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
