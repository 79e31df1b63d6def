#!/usr/bin/env python3
"""An index's size by layout, on disk and resident: which bytes does each search mode read?

    python scripts/index_footprint.py --index INDEX --data synth1m --work bench-data

On disk: the generation's files grouped by layout (doc-ordered postings, impact-ordered copy,
forward index, offsets and the rest). Resident: for each mode, a fresh child process opens the
index (memory-mapped), runs the first 1 and then all ``--queries`` queries, and reads the
resident bytes of each mapped file from ``/proc/self/smaps`` (pages this process mapped: what
its searches touched, rounded to pages and the kernel's fault-around). No page cache is dropped;
a fresh process starts with no page of the index mapped, whatever the page cache holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import _common  # noqa: F401 - puts the repository first on sys.path

K = 10

#: Layout of each file of an impact index generation.
GROUPS = {
    "postings_docs.bin": "doc-ordered postings",
    "postings_impacts.bin": "doc-ordered postings",
    "impact_order_docs.bin": "impact-ordered copy",
    "impact_order_impacts.bin": "impact-ordered copy",
    "forward_offsets.bin": "forward index",
    "forward_terms.bin": "forward index",
    "forward_impacts.bin": "forward index",
}


def group(name: str) -> str:
    return GROUPS.get(name, "offsets, ids and the rest")


def smaps_rss(directory: Path) -> dict[str, int]:
    """Resident bytes of each mapped file of ``directory`` in this process."""
    out: dict[str, int] = {}
    current = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 6 and "-" in fields[0] and fields[5].startswith("/"):
                path = Path(" ".join(fields[5:]))
                current = path.name if path.parent == directory else None
            elif current and line.startswith("Rss:"):
                out[current] = out.get(current, 0) + int(fields[1]) * 1024
    return out


def child(args) -> None:
    import numba

    numba.set_num_threads(1)
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.synthetic import NpzCorpus

    index = ImpactIndex.open(args.index)
    queries = NpzCorpus(Path(args.work) / args.data).queries()
    n = min(args.queries, len(queries))
    prepared = [index.prepare_query(queries.select([q])) for q in range(n)]
    report = {"opened": smaps_rss(index.directory)}
    for q in range(n):
        index.search_arrays(prepared[q], K, mode=args.mode)
        if q == 0:
            report["1 query"] = smaps_rss(index.directory)
    report[f"{n} queries"] = smaps_rss(index.directory)
    print(json.dumps(report))


def packed_sizes(index) -> dict:
    """Bytes of the doc-ordered postings (when stored) and of the forward index once
    bit-packed, and the time to decode all of them (ns per posting, one thread)."""
    import time

    import numpy as np

    from sparse_ir.index.compressed import pack_postings, unpack_all

    layout = index._layout
    out = {}
    forward = (layout.forward_offsets, layout.forward_terms, layout.forward_impacts)
    stored = [("forward index", *forward)]
    if index.has_doc_ordered_postings:
        doc_ordered = (index.term_offsets, index.postings_docs, index.postings_impacts)
        stored.insert(0, ("doc-ordered postings", *doc_ordered))
    for name, offsets, keys, values in stored:
        raw = keys.nbytes + values.nbytes + offsets.nbytes
        packed = pack_postings(offsets, np.asarray(keys), np.asarray(values))
        unpack_all(pack_postings(offsets[:2], keys[: offsets[1]], values[: offsets[1]]))
        started = time.perf_counter()
        got_keys, got_values = unpack_all(packed)
        seconds = time.perf_counter() - started
        assert np.array_equal(got_keys, keys) and np.array_equal(got_values, values)
        del got_keys, got_values
        n = len(keys)
        out[name] = {"raw": raw, "packed": packed.nbytes, "decode_ns": seconds / n * 1e9}
        print(
            f"  {name} bit-packed: {raw / 1e9:.2f} GB -> {packed.nbytes / 1e9:.2f} GB "
            f"({packed.nbytes / raw:.0%}); decoding all {n:,}: {seconds / n * 1e9:.2f} ns each"
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="the index directory")
    parser.add_argument(
        "--data", default="synth1m", help="data set under --work (default: synth1m)"
    )
    parser.add_argument("--work", default="bench-data", help="data directory (default: bench-data)")
    parser.add_argument("--queries", type=int, default=300, help="queries to run (default: 300)")
    parser.add_argument(
        "--modes", default="exhaustive,pruned,approximate", help="modes (default: all three)"
    )
    parser.add_argument(
        "--packed",
        action="store_true",
        help="also bit-pack the doc-ordered postings and the forward index "
        "(sparse_ir.index.compressed) and time decoding them (default: off)",
    )
    parser.add_argument("--json", default=None, help="also write the figures here (default: none)")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        child(args)
        return 0
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(args.index)
    sizes = {name: record.size for name, record in index.manifest.files.items()}
    groups: dict[str, int] = {}
    for name, size in sizes.items():
        groups[group(name)] = groups.get(group(name), 0) + size
    print(f"{index}: {sum(sizes.values()) / 1e9:.2f} GB on disk")
    for name, size in sorted(groups.items(), key=lambda x: -x[1]):
        print(f"  {name:28s} {size / 1e9:6.2f} GB")
    result = {"on_disk": groups, "files": sizes, "resident": {}}
    if args.packed:
        result["packed"] = packed_sizes(index)
    for mode in [m for m in args.modes.split(",") if m]:
        command = [sys.executable, os.path.abspath(__file__), "--mode", mode]
        command += ["--index", args.index, "--data", args.data, "--work", args.work]
        command += ["--queries", str(args.queries)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        result["resident"][mode] = report
        print(f"\nresident in a fresh process, mode {mode} (GB):")
        print(f"  {'':28s}" + "".join(f"{stage:>14s}" for stage in report))
        for name in sorted(groups, key=lambda g: -groups[g]):
            cells = [
                sum(v for f, v in rss.items() if group(f) == name) / 1e9 for rss in report.values()
            ]
            print(f"  {name:28s}" + "".join(f"{c:14.3f}" for c in cells))
        totals = [sum(rss.values()) / 1e9 for rss in report.values()]
        print(f"  {'total':28s}" + "".join(f"{c:14.3f}" for c in totals))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
