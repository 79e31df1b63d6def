#!/usr/bin/env python3
"""The approximate-search curve: latency against Recall@10, ours and Seismic, in one run.

    python scripts/bench_approx.py --data synth1m --work WORK --ours INDEX \\
        --seismic-index SEISMIC.index.seismic --json curve.json

Settings of our approximate mode (five by default, of the layer ranking; ``--ours-settings``,
``L:P:V`` for the layer ranking, ``Approximate(layer_postings=P, max_verified=V)``, or
ρ:β:σ:V[:E:C] for ``cut_ratio``, ``bound_weight``, ``term_share`` and ``max_verified``, V = 0
for no budget, and optionally ``estimate_postings`` and ``estimate_candidates``) and five of
Seismic (``--seismic``, query_cut:heap_factor, searched with ``sorted=False`` as its authors
recommend), every one over the same integer queries, single thread, top-10, warm.

**Engines take turns** (as in ``bench_search.py``): one untimed pass per setting (its results
give its Recall@10 against the exact top-10 of our exhaustive mode, which scores every
posting), then ``--rounds`` rounds in each of which every setting makes one timed pass, the
order rotated by one setting per round. A ratio of two settings is computed within each round
(Seismic mean / ours mean) and reported as the median of the per-round ratios with their range.

The last line printed is the acceptance figure: our fastest setting with R@10 >= ``--recall``
against Seismic's fastest with R@10 >= ``--recall`` (target: ``--target``×). Seismic's index is
built by ``bench_search.py --build seismic --seismic-build 3000:0.2:0.5:4 --index NAME --data
synth1m --work WORK --build-threads 2`` (n_postings:centroid_fraction:summary_energy:
max_fraction; the last three as its authors recommend) and given with ``--seismic-index
NAME.index.seismic``; its build record (``NAME.build.json`` beside it) is read when present.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path
import bench_search
import numpy as np

K = 10
#: Our curve: the layer ranking, L:P:V (layer_postings, max_verified). The pruned kernel's
#: relaxed settings are ρ:β:σ:V[:E:C] (cut_ratio, bound_weight, term_share, max_verified, V = 0:
#: no budget; estimate_postings and estimate_candidates, default 100000 and 128), e.g. the
#: previous curve's "0.75:1:0.8:500:50000:64".
DEFAULT_OURS = "L:400000:300,L:500000:500,L:700000:300,L:500000:1000,L:700000:500"
#: Seismic's curve: query_cut:heap_factor, for its index built with n_postings 3000 (the 1000
#: of its authors' scaled recommendation levels off at R@10 0.957 on the 1M benchmark).
DEFAULT_SEISMIC = "8:1.0,10:1.0,12:1.0,16:1.0,8:0.9"


def parse_setting(text: str):
    """``"L:P:V"`` or ``"ρ:β:σ:V[:E:C]"`` -> an :class:`~sparse_ir.index.modes.Approximate`
    (checked by it)."""
    from sparse_ir.index.modes import Approximate

    parts = text.split(":")
    if parts[0] == "L":
        if len(parts) != 3:
            raise SystemExit(f"--ours-settings {text!r}: expected L:P:V (the layer ranking)")
        return Approximate(layer_postings=int(parts[1]), max_verified=int(parts[2]))
    if len(parts) not in (4, 6):
        raise SystemExit(f"--ours-settings {text!r}: expected ρ:β:σ:V[:E:C] (V = 0: no budget)")
    rho, beta, share, budget = float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])
    estimates = {}
    if len(parts) == 6:
        estimates = {"estimate_postings": int(parts[4]), "estimate_candidates": int(parts[5])}
    return Approximate(rho, beta, term_share=share, max_verified=budget or None, **estimates)


def label(mode) -> str:
    if mode.layer_postings is not None:
        return f"ours layer P={mode.layer_postings} V={mode.max_verified}"
    budget = mode.max_verified or "-"
    text = f"ours ρ={mode.cut_ratio:g} β={mode.bound_weight:g} σ={mode.term_share:g} V={budget}"
    if (mode.estimate_postings, mode.estimate_candidates) != (100_000, 128):
        text += f" E={mode.estimate_postings} C={mode.estimate_candidates}"
    return text


def our_engines(index, prepared, settings: list) -> list[bench_search.Engine]:
    engines = []
    for mode in settings:

        def search_one(q, mode=mode):
            return index.search_arrays(prepared[q], K, mode=mode).docnos.tolist()

        engines.append(
            bench_search.Engine(label(mode), search_one, None, index.size_bytes(), family="ours")
        )
    return engines


def seismic_engines(path: Path, queries, n_queries, index, settings: list[str]):
    import seismic

    info_path = Path(str(path).removesuffix(".index.seismic") + ".build.json")
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    numbers = {d: i for i, d in enumerate(index.doc_ids)}
    string_type = seismic.get_seismic_string()
    query_arrays = []
    for q in range(n_queries):
        terms, values = queries.row(q)
        tokens = np.array([str(t) for t in terms.tolist()], dtype=string_type)
        query_arrays.append((str(q), tokens, values.astype(np.float32)))
    loaded = seismic.SeismicIndex.load(str(path))
    engines = []
    for setting in settings:
        cut, heap = setting.split(":")

        def search_one(q, cut=int(cut), heap=float(heap)):
            qid, tokens, values = query_arrays[q]
            found = loaded.search(
                qid, tokens, values, k=K, query_cut=cut, heap_factor=heap, sorted=False
            )
            return [numbers[str(doc)] for _, _, doc in found]

        engines.append(
            bench_search.Engine(
                f"Seismic query_cut={cut} heap_factor={heap}",
                search_one,
                info.get("seconds"),
                info.get("bytes") or path.stat().st_size,
                info.get("peak_rss"),
                family="seismic",
            )
        )
    return engines


def per_round(a: bench_search.Engine, b: bench_search.Engine, how: str) -> list[float]:
    """``a`` / ``b`` per round (both timed in that round), by per-round mean or p50."""
    return [
        bench_search.round_stat(x, how) / bench_search.round_stat(y, how)
        for x, y in zip(a.latencies, b.latencies)
    ]


def fastest(engines, family: str, recall: float):
    """The engine of ``family`` with the lowest median mean latency among those reaching
    ``recall``, or None."""
    able = [e for e in engines if e.family == family and e.recall >= recall]
    return min(able, key=lambda e: e.stat("mean")) if able else None


def report(engines, args, n_queries: int) -> dict:
    print(
        f"\n{args.data}: top-{K}, {n_queries} queries, single thread, warm; {args.rounds} rounds, "
        "settings taking turns; ms = median over rounds of each round's mean / p50"
    )
    header = f"{'setting':56s} {'R@10':>7s} {'mean ms':>8s} {'p50 ms':>8s} {'p99 ms':>8s}"
    print(header)
    print("-" * len(header))
    for family in ("ours", "seismic"):
        for e in sorted((e for e in engines if e.family == family), key=lambda e: e.recall):
            print(
                f"{e.name:56s} {e.recall:7.4f} {e.stat('mean'):8.2f} {e.stat('p50'):8.2f} "
                f"{e.stat('p99'):8.2f}"
            )
    ours = [e for e in engines if e.family == "ours"]
    peers = [e for e in engines if e.family == "seismic"]
    ratios = []
    print("\nSeismic / ours per round (mean latency): median [min–max]")
    for peer in peers:
        cells = []
        for mine in ours:
            values = per_round(peer, mine, "mean")
            ratios.append({"seismic": peer.name, "ours": mine.name, "per_round": values})
            cells.append(
                f"{mine.name[5:]}: {statistics.median(values):.2f}× "
                f"[{min(values):.2f}–{max(values):.2f}]"
            )
        print(f"  {peer.name}\n      " + "; ".join(cells))
    best_ours = fastest(engines, "ours", args.recall)
    best_peer = fastest(engines, "seismic", args.recall)
    acceptance = None
    if best_ours is None or best_peer is None:
        missing = "ours" if best_ours is None else "Seismic"
        line = f"ACCEPTANCE: no setting of {missing} reached R@10 >= {args.recall}"
    else:
        by_mean = per_round(best_peer, best_ours, "mean")
        by_p50 = per_round(best_peer, best_ours, "p50")
        ratio = statistics.median(by_mean)
        acceptance = {
            "ours": best_ours.name,
            "ours_recall": best_ours.recall,
            "ours_mean_ms": best_ours.stat("mean"),
            "seismic": best_peer.name,
            "seismic_recall": best_peer.recall,
            "seismic_mean_ms": best_peer.stat("mean"),
            "ratio_per_round_mean": by_mean,
            "ratio_per_round_p50": by_p50,
            "ratio": ratio,
            "target": args.target,
            "met": ratio >= args.target,
        }
        line = (
            f"ACCEPTANCE: at R@10 >= {args.recall}: {best_ours.name} "
            f"{best_ours.stat('mean'):.2f} ms (R@10 {best_ours.recall:.4f}) vs {best_peer.name} "
            f"{best_peer.stat('mean'):.2f} ms (R@10 {best_peer.recall:.4f}): {ratio:.2f}× "
            f"[{min(by_mean):.2f}–{max(by_mean):.2f}] per round by mean, "
            f"{statistics.median(by_p50):.2f}× by p50; target {args.target:g}×: "
            + ("met" if ratio >= args.target else "NOT met")
        )
    return {
        "data": args.data,
        "queries": n_queries,
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "engines": [
            {
                "name": e.name,
                "family": e.family,
                "recall": e.recall,
                "mean_ms": e.stat("mean"),
                "p50_ms": e.stat("p50"),
                "p99_ms": e.stat("p99"),
                "round_means_ms": [float(np.mean(lat)) for lat in e.latencies],
                "round_p50_ms": [float(np.median(lat)) for lat in e.latencies],
                "index_bytes": e.index_bytes,
                "build_seconds": e.build_seconds,
            }
            for e in engines
        ],
        "ratios": ratios,
        "acceptance": acceptance,
        "acceptance_line": line,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data", default="synth1m", help="a corpus directory under --work (default: synth1m)")
    add("--work", default="bench-data", help="directory holding the data (default: bench-data)")
    add("--ours", required=True, help="our index (built with the search layout)")
    add("--seismic-index", required=True, help="Seismic's saved index (NAME.index.seismic)")
    add(
        "--ours-settings",
        default=DEFAULT_OURS,
        help=f"L:P:V or ρ:β:σ:V[:E:C],... (default: {DEFAULT_OURS})",
    )
    add("--seismic", default=DEFAULT_SEISMIC, help=f"cut:heap,... (default: {DEFAULT_SEISMIC})")
    add("--queries", type=int, default=None, help="first N queries only (default: all)")
    add("--rounds", type=int, default=3, help="timed rounds (default: 3)")
    add("--recall", type=float, default=0.97, help="the acceptance recall (default: 0.97)")
    add("--target", type=float, default=2.0, help="the target speed-up (default: 2)")
    add("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    import numba

    numba.set_num_threads(1)
    from sparse_ir.index.impact_index import ImpactIndex

    settings = [parse_setting(s) for s in args.ours_settings.split(",") if s]
    print(
        f"data: {args.data}; nice {os.nice(0)}; load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
        flush=True,
    )
    _, queries, _, _, _ = bench_search.load_data(args.data, Path(args.work), None)
    n_queries = len(queries) if args.queries is None else min(args.queries, len(queries))
    index = ImpactIndex.open(args.ours)
    prepared = [index.prepare_query(queries.select([q])) for q in range(n_queries)]
    exact = [index.search_arrays(p, K, mode="exhaustive").docnos for p in prepared]
    engines = our_engines(index, prepared, settings)
    engines += seismic_engines(
        Path(args.seismic_index),
        queries,
        n_queries,
        index,
        [s for s in args.seismic.split(",") if s],
    )
    bench_search.take_turns(engines, n_queries, args.rounds, exact)
    figures = report(engines, args, n_queries)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    print(figures["acceptance_line"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
