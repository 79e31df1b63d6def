"""Batch search and machine-readable output for ``sparse-ir search``.

``--queries FILE`` (BEIR queries.jsonl or qid<TAB>text) searches every query and writes a run
(``--output run.trec`` or ``run.jsonl``; ``-`` or none: JSON lines on stdout); ``--json`` prints
one query's hits as JSON instead of the table. ``--filter 'year>=2020'`` restricts every search
to the documents whose metadata matches (:func:`sparse_ir.index.filters.parse_filter`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = [
    "add_batch_options",
    "batch_or_json",
    "cli_filter",
    "print_hits_json",
    "run_batch_search",
    "write_run",
]


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """--queries, --output, --id-map, --json."""
    parser.add_argument(
        "--queries",
        help="search every query of this file (BEIR queries.jsonl or "
        "qid<TAB>text) instead of one query text (default: none)",
    )
    parser.add_argument(
        "--output",
        help="with --queries: the run file, TREC (.trec, .txt, .run) or JSON "
        "lines (.jsonl) by its extension (default: JSON lines on stdout)",
    )
    parser.add_argument(
        "--id-map",
        help="with a TREC --output: write ids holding whitespace %%-escaped "
        "and record the map in this JSON file (default: such ids are "
        "refused)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the hits as JSON (default: a table)"
    )
    parser.add_argument(
        "--filter",
        default=None,
        metavar="PREDICATE",
        help="return only documents whose metadata matches, e.g. 'year>=2020', "
        "'tenant=a AND 2019<=year<2022' (=, !=, <, <=, >, >=; AND) (default: "
        "none: every document)",
    )


def cli_filter(args: argparse.Namespace):
    """The parsed ``--filter`` of a command line (None when absent)."""
    text = getattr(args, "filter", None)
    if text is None:
        return None
    from sparse_ir.index.filters import parse_filter

    return parse_filter(text)


def run_batch_search(args: argparse.Namespace, searcher) -> int:
    """Search every query of ``args.queries`` and write the run."""
    from sparse_ir.corpus import read_queries

    queries = list(read_queries(args.queries))
    chosen = cli_filter(args)
    options = {} if chosen is None else {"filter": chosen}
    run = searcher.search_batch(
        [q.text for q in queries],
        args.top_k,
        query_ids=[q.id for q in queries],
        show_progress=args.show_progress,
        **options,
    )
    write_run(run, args.output, id_map=args.id_map)
    if args.output and args.output != "-":
        print(f"{len(run)} queries searched, run written to {args.output}", file=sys.stderr)
    return 0


def write_run(run, output: str | None, *, id_map: str | None = None) -> None:
    """A run as TREC (``.trec``/``.txt``/``.run``) or JSON lines (anything else, or stdout)."""
    if output and output != "-" and output.endswith((".trec", ".txt", ".run")):
        run.write_trec(output, id_map=id_map)
        return
    if id_map:
        raise ValueError("--id-map applies to TREC output only (JSON holds any id)")
    handle = sys.stdout if not output or output == "-" else open(output, "w", encoding="utf-8")
    try:
        for query_id, hits in run.items():
            handle.write(
                json.dumps({"query_id": query_id, "hits": _hits(hits)}, ensure_ascii=False) + "\n"
            )
    finally:
        if handle is not sys.stdout:
            handle.close()
            if not os.path.getsize(output) and len(run):
                raise OSError(f"{output}: nothing written")


def print_hits_json(hits, text: str, out=None) -> None:
    """One query's hits as a JSON object on stdout."""
    out = out or sys.stdout
    out.write(json.dumps({"query": text, "hits": _hits(hits)}, ensure_ascii=False) + "\n")


def _hits(hits) -> list[dict]:
    return [
        {"rank": rank, "doc_id": hit.doc_id, "score": _number(hit.score)}
        for rank, hit in enumerate(hits, start=1)
    ]


def _number(value):
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def batch_or_json(args: argparse.Namespace, searcher) -> int | None:
    """Handle ``--queries`` (a batch run) or ``--json`` (one query as JSON) for any searcher;
    None when neither was asked (the caller prints its table)."""
    if args.queries:
        if args.query:
            raise ValueError("give a query text or --queries FILE, not both")
        return run_batch_search(args, searcher)
    if not args.query:
        raise ValueError("nothing to search: give a query text or --queries FILE")
    if args.json:
        text = " ".join(args.query)
        chosen = cli_filter(args)
        options = {} if chosen is None else {"filter": chosen}
        print_hits_json(searcher.search(text, args.top_k, **options), text)
        return 0
    return None
