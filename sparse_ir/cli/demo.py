"""``sparse-ir demo``: the README's first command — build an index, then search it.

With no data at hand it indexes the Python standard library's docstrings (every installation
has them); where SciFact is found (``../shared/data/scifact``), it indexes SciFact and also
reports nDCG@10 on its test split.
"""

from __future__ import annotations

import argparse
import time
import typing
from pathlib import Path

from sparse_ir.encoders.options import Precision

STDLIB_QUERIES = [
    "how do I parse command line options",
    "compress a file with gzip",
    "send an email message over SMTP",
    "wait for a child process to finish",
]


def register(subparsers) -> None:
    """Add the demo subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="build an index over a default corpus with splade-tiny and search it",
        description="Build (or reuse) an index over the default corpus with the bundled "
        "splade-tiny model, then run example searches showing matched and "
        "expansion terms.",
    )
    parser.add_argument(
        "--corpus",
        default="auto",
        help="auto (SciFact when found, else stdlib docstrings), stdlib, "
        "scifact, or a corpus.jsonl path (default: %(default)s)",
    )
    parser.add_argument(
        "--output", default="indexes/demo", help="index directory (default: %(default)s)"
    )
    parser.add_argument(
        "--model",
        default="splade-tiny",
        help="SPLADE model: bundled name, local directory or Hugging Face id "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-docs",
        type=int,
        default=None,
        help="index at most this many documents (default: all)",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--precision",
        choices=typing.get_args(Precision),
        default="auto",
        help="encoder precision (see sparse-ir encode --help) (default: %(default)s)",
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from sparse_ir.cli.index import print_hits
    from sparse_ir.corpus import load_corpus
    from sparse_ir.default_corpus import stdlib_docstrings
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.eval import find_scifact, load_beir
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.pipeline import index_corpus
    from sparse_ir.search import Searcher

    scifact = None
    if args.corpus in ("auto", "scifact"):
        scifact = find_scifact()
        if scifact is None and args.corpus == "scifact":
            raise FileNotFoundError(
                "SciFact not found (set SPARSE_IR_SCIFACT or place it at ../shared/data/scifact)"
            )
    if scifact is not None:
        label = f"SciFact ({scifact})"
        dataset = load_beir(scifact, "test")
        documents = dataset.corpus
        queries = [q.text for q in dataset.queries[:3]]
    elif args.corpus in ("auto", "stdlib"):
        label = "Python standard library docstrings"
        documents = stdlib_docstrings()
        queries = STDLIB_QUERIES
        dataset = None
    else:
        label = args.corpus
        documents = load_corpus(args.corpus)
        queries = [documents[0].title or documents[0].text[:60]]
        dataset = None
    if args.max_docs:
        documents = documents[: args.max_docs]
    print(f"corpus: {label}, {len(documents)} documents")

    encoder = SpladeEncoder.from_pretrained(args.model, precision=args.precision)
    key = {
        "demo_corpus": label,
        "demo_documents": len(documents),
        "model": args.model,
        "precision": encoder.precision,
    }
    index = None
    if not args.rebuild and Path(args.output).exists():
        try:
            index = ImpactIndex.open(args.output)
            if any(index.settings.get(k) != v for k, v in key.items()):
                index = None
        except Exception:
            index = None
    if index is None:
        started = time.perf_counter()
        index, _ = index_corpus(
            encoder,
            documents,
            args.output,
            total=len(documents),
            show_progress=args.show_progress,
            settings=key,
        )
        seconds = time.perf_counter() - started
        print(
            f"built {args.output}: {index.num_documents} documents, {index.num_postings} "
            f"postings, {index.size_bytes() / 1e6:.1f} MB in {seconds:.0f}s "
            f"({index.num_documents / seconds:.1f} docs/s)"
        )
    else:
        print(f"reusing {args.output} (up to date; --rebuild to build again)")

    searcher = Searcher(index, encoder)
    for text in queries:
        print()
        print_hits(searcher, text, k=5, terms=5)
    if dataset is not None:
        from sparse_ir.eval import evaluate

        started = time.perf_counter()
        run = searcher.search_batch(
            [q.text for q in dataset.queries],
            k=1000,
            query_ids=[q.id for q in dataset.queries],
            show_progress=False,
        )
        seconds = time.perf_counter() - started
        scores = evaluate(run, dataset.qrels)
        print(
            f"\nSciFact test ({len(dataset.queries)} queries, encoded and searched in "
            f"{seconds:.1f}s): " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
        )
    return 0
