"""``sparse-ir export opensearch|elasticsearch``: an index for a search engine cluster.

Registered beside ``export lucene`` (:mod:`sparse_ir.cli.lucene` calls :func:`register`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparse_ir.cli.common import positive_int

__all__ = ["register", "run_export_engine"]

_DESCRIPTIONS = {
    "opensearch": "an OpenSearch index: 'rank_features' mapping, bulk NDJSON, rank_feature "
    "(linear) query bodies",
    "elasticsearch": "an Elasticsearch 8.11+ index: 'sparse_vector' mapping, bulk NDJSON, "
    "sparse_vector query bodies (8.15+)",
}


def register(commands) -> None:
    """Add ``opensearch`` and ``elasticsearch`` to the ``export`` subcommands."""
    for engine, help_text in _DESCRIPTIONS.items():
        parser = commands.add_parser(
            engine,
            help=f"write {help_text}",
            description=f"Write {help_text}: DIR/mapping.json (PUT /INDEX), "
            "DIR/bulk-NNNNN.ndjson (POST /_bulk) with exactly the integer impacts "
            "the index holds, DIR/token_map.json (tokens renamed to fit the "
            "engine's feature-name rules) and DIR/export.json. With --queries or "
            "--query-vectors, DIR/queries.jsonl holds one _search body per query. "
            "See docs/lucene.md for the curl commands.",
        )
        parser.add_argument("--index", required=True, help="index directory")
        parser.add_argument("--output", required=True, help="directory to write")
        parser.add_argument(
            "--index-name",
            default="sparse-ir",
            help="the engine's index name in the bulk actions (default: %(default)s)",
        )
        parser.add_argument(
            "--field", default="vector", help="the vector field's name (default: %(default)s)"
        )
        parser.add_argument(
            "--contents",
            action="store_true",
            help="add the stored title and text of each document (default: vectors and ids only)",
        )
        parser.add_argument(
            "--max-file-mb",
            type=positive_int,
            default=10,
            help="split the bulk files at this size in MB (default: "
            "%(default)s; the engines refuse requests over "
            "http.max_content_length, 100 MB by default)",
        )
        queries = parser.add_mutually_exclusive_group()
        queries.add_argument(
            "--queries",
            help="queries to encode with the index's model (BEIR "
            "queries.jsonl or qid<TAB>text) into DIR/queries.jsonl "
            "(default: none)",
        )
        queries.add_argument(
            "--query-vectors",
            help="encoded queries (SparseBatch .npz from 'sparse-ir encode "
            "--queries') into DIR/queries.jsonl (default: none)",
        )
        parser.add_argument(
            "--k",
            type=positive_int,
            default=10,
            help="hits asked by each query body (default: %(default)s)",
        )
        if engine == "opensearch":
            parser.add_argument(
                "--neural-sparse",
                action="store_true",
                help="write OpenSearch neural_sparse queries with raw "
                "query_tokens (default: a bool of rank_feature clauses)",
            )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an existing non-empty output directory",
        )
        parser.set_defaults(handler=run_export_engine, engine=engine)


def run_export_engine(args: argparse.Namespace) -> int:
    from sparse_ir.export.opensearch import export_search_engine, query_body, read_token_map
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(args.index)
    report = export_search_engine(
        index,
        args.output,
        engine=args.engine,
        index_name=args.index_name,
        field=args.field,
        contents=args.contents,
        max_file_bytes=args.max_file_mb * 1_000_000,
        overwrite=args.overwrite,
        show_progress=args.show_progress,
    )
    print(f"exported {report} -> {args.output}")
    batch = _query_vectors(args, index)
    if batch is not None:
        token_map = read_token_map(args.output)
        path = Path(args.output) / "queries.jsonl"
        with open(path, "w", encoding="utf-8") as out:
            for row, weights in enumerate(batch.to_dicts()):
                body = query_body(
                    args.engine,
                    weights,
                    field=args.field,
                    k=args.k,
                    token_map=token_map,
                    neural_sparse=getattr(args, "neural_sparse", False),
                )
                query_id = batch.ids[row] if batch.ids is not None else str(row)
                out.write(json.dumps({"id": query_id, "body": body}, ensure_ascii=False) + "\n")
        print(f"{len(batch)} query bodies -> {path}")
    return 0


def _query_vectors(args: argparse.Namespace, index):
    """The quantized query vectors asked for, or None."""
    if args.query_vectors:
        from sparse_ir.sparse_batch import SparseBatch

        batch = SparseBatch.load(args.query_vectors)
        return batch if batch.is_quantized else index.quantizer.quantize(batch)
    if args.queries:
        from sparse_ir.corpus import read_queries
        from sparse_ir.search import Searcher

        queries = list(read_queries(args.queries))
        searcher = Searcher.from_index(args.index, resident=False)  # for its encoder only
        encoded = searcher.encoder.encode_queries(
            [q.text for q in queries], ids=[q.id for q in queries], show_progress=args.show_progress
        )
        return index.quantizer.quantize(encoded)
    return None
