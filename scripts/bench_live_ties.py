"""What ranking equal scores by ordinal costs a live index whose numbers do not follow its
ordinals (documents re-added out of order), on SciFact's splade-tiny vectors.

    flock /work/wt/bench.lock python scripts/bench_live_ties.py

The index of ``tests/test_live_scifact.py`` (half built, the rest added in 5 commits, 500
deleted and re-added) is searched query by query, k = 10 and 100, ``pruned`` and
``exhaustive``, by the ordinal path (``LiveImpactIndex._top_k``: one document more than k,
a second search when the (k+1)-th ties the k-th, ties ordered by ordinal) and by the
tie-break by global number it replaces (``_top_k_by_number``), taking turns on every query
after an untimed warm-up pass. Prints the median latencies, their ratio and how many queries
needed the second search. Indexes whose numbers follow their ordinals (built by adding only)
take the number path directly and pay nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import IndexWriter


def build_live(docs, path: Path) -> ImpactIndex:
    """Half built, the rest in 5 commits, 500 deleted and re-added (the SciFact test's)."""
    n = len(docs)
    with IndexWriter.open(path, vocab=docs.vocab) as writer:
        writer.add(docs.select(np.arange(n // 2)))
        writer.commit()
        for part in np.array_split(np.arange(n // 2, n), 5):
            writer.add(docs.select(part))
            writer.commit()
        chosen = np.sort(np.random.default_rng(16).choice(n, 500, replace=False))
        writer.delete([docs.ids[i] for i in chosen.tolist()])
        writer.commit()
        writer.add(docs.select(chosen))
    return ImpactIndex.open(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=4, help="timed passes (default: 4)")
    args = parser.parse_args()
    docs, queries = _common.scifact_vectors()
    with tempfile.TemporaryDirectory() as scratch:
        live = build_live(docs, Path(scratch) / "live")
        assert not live.numbers_follow_ordinals
        prepared = [live.prepare_query(q) for q in queries.to_dicts()]
        allowed = live._allowed_parts(None)
        paths = {"ordinal": live._top_k, "number": live._top_k_by_number}
        print(f"load {os.getloadavg()}", flush=True)
        for mode_name in ("pruned", "exhaustive"):
            mode = live._mode(mode_name, None, None)
            for k in (10, 100):
                for terms, weights in prepared:  # warm-up, untimed
                    for search in paths.values():
                        search(terms, weights, k, mode, allowed)
                times: dict[str, list[float]] = {name: [] for name in paths}
                for turn in range(args.passes):
                    for terms, weights in prepared:
                        for name in sorted(paths, reverse=turn % 2 == 1):
                            started = time.perf_counter()
                            paths[name](terms, weights, k, mode, allowed)
                            times[name].append(time.perf_counter() - started)
                second = 0
                for terms, weights in prepared:
                    top = live._top_k_by_number(terms, weights, k + 1, mode, allowed)[0]
                    second += len(top.scores) > k and top.scores[k] == top.scores[k - 1]
                a, b = (statistics.median(times[name]) * 1e3 for name in ("ordinal", "number"))
                print(
                    f"{mode_name} k={k}: ties by ordinal {a:.3f} ms, by number {b:.3f} ms "
                    f"({a / b:.3f}x); a second search for {second}/{len(prepared)} queries",
                    flush=True,
                )
        print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
