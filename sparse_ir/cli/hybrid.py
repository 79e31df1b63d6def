"""``sparse-ir dense-index``, ``dense-search``, ``hybrid-search``."""

from __future__ import annotations

import argparse
import sys
import typing

from sparse_ir.cli import batch
from sparse_ir.cli.common import positive_int
from sparse_ir.encoders.options import DensePooling, DensePrecision
from sparse_ir.fusion import FusionMethod, MissingPolicy, Normalization
from sparse_ir.index.modes import DenseModeName, SearchModeName


def register(subparsers) -> None:
    """Add the dense and hybrid subcommands."""
    _register_dense_index(subparsers)
    _register_dense_search(subparsers)
    _register_hybrid_search(subparsers)


def _register_dense_index(subparsers) -> None:
    """Add the ``dense-index`` subcommand."""
    parser = subparsers.add_parser(
        "dense-index",
        help="encode a corpus with a dense model and build a dense index",
        description="Encode a BEIR-style corpus.jsonl with a dense model (all-MiniLM-L6-v2 by "
        "default) and store the vectors as a dense index. The new index replaces an "
        "old one at --output only once it is complete.",
    )
    parser.add_argument("--input", required=True, help="corpus.jsonl (_id, title, text)")
    parser.add_argument("--output", required=True, help="index directory, e.g. indexes/NAME")
    parser.add_argument(
        "--model",
        default="minilm",
        help="bundled name (minilm), local directory or Hugging Face id; "
        "default minilm (all-MiniLM-L6-v2)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="texts per forward pass (default: %(default)s)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="tokens read per document (default: the model's)",
    )
    parser.add_argument(
        "--precision",
        choices=typing.get_args(DensePrecision),
        default="float32",
        help="model arithmetic (bfloat16: faster on CPUs with native bf16) (default: %(default)s)",
    )
    parser.add_argument(
        "--pooling",
        choices=typing.get_args(DensePooling),
        default=None,
        help="override the model's pooling (default: the model's own)",
    )
    parser.add_argument(
        "--hnsw",
        action="store_true",
        help="also build a faiss HNSW graph (approximate search; needs faiss)",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid corpus lines (counted and reported)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="store documents with no title and no text as zero vectors "
        "(default: they are invalid)",
    )
    parser.set_defaults(handler=run_dense_index)


def _register_dense_search(subparsers) -> None:
    """Add the ``dense-search`` subcommand."""
    parser = subparsers.add_parser(
        "dense-search",
        help="search a dense index with a text query",
        description="Encode the query with the index's dense model and print the top documents.",
    )
    parser.add_argument("query", nargs="*", help="the query text (or --queries FILE)")
    batch.add_batch_options(parser)
    parser.add_argument("--index", required=True, help="dense index directory")
    parser.add_argument(
        "-k", "--top-k", type=positive_int, default=10, help="hits to show (default: %(default)s)"
    )
    parser.add_argument(
        "--mode",
        choices=typing.get_args(DenseModeName),
        default="exact",
        help="exact: score every document; hnsw: the faiss graph built with "
        "--hnsw (approximate) (default: %(default)s)",
    )
    parser.add_argument(
        "--method", dest="mode", choices=typing.get_args(DenseModeName), help=argparse.SUPPRESS
    )  # the old name of --mode
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)"
    )
    parser.set_defaults(handler=run_dense_search)


def _register_hybrid_search(subparsers) -> None:
    """Add the ``hybrid-search`` subcommand."""
    parser = subparsers.add_parser(
        "hybrid-search",
        help="search several indexes (SPLADE, BM25, dense) and fuse the results",
        description="Encode the query with each index's own query encoder (the one its build "
        "recorded), search every index, and fuse the rankings: a convex combination "
        "of normalized scores or Reciprocal Rank Fusion. Give two or more indexes "
        "of any kinds with --index (repeatable; impact indexes of a SPLADE model or "
        "of BM25, dense indexes); --sparse-index and --dense-index come first, in "
        "that order, then each --index in the order given: --weights follow that "
        "order. Each hit shows every component's score and rank.",
    )
    parser.add_argument("query", nargs="*", help="the query text (or --queries FILE)")
    batch.add_batch_options(parser)
    parser.add_argument(
        "--index",
        dest="indexes",
        action="append",
        default=[],
        metavar="PATH",
        help="an index directory of any kind (repeat: --index A --index B ...) (default: none)",
    )
    parser.add_argument(
        "--sparse-index", help="an impact index directory (first run) (default: none)"
    )
    parser.add_argument(
        "--dense-index", help="a dense index directory (after --sparse-index) (default: none)"
    )
    parser.add_argument(
        "-k", "--top-k", type=positive_int, default=10, help="hits to show (default: %(default)s)"
    )
    parser.add_argument(
        "--fusion",
        choices=typing.get_args(FusionMethod),
        default="convex",
        help="fusion method (see sparse_ir.fusion) (default: %(default)s)",
    )
    parser.add_argument(
        "--weights",
        type=_weights,
        default=None,
        metavar="W1,W2,...",
        help="one weight per index, in order: convex: >= 0, summing to 1 "
        "(default: equal); rrf: multipliers of 1/(k + rank) (default: 1)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="two indexes only, convex: weight of the first (the second gets "
        "1 - alpha); the same as --weights alpha,1-alpha (default: none: "
        "--weights)",
    )
    parser.add_argument(
        "--normalization",
        choices=typing.get_args(Normalization),
        default="min-max",
        help="convex: score normalization per run (default: %(default)s)",
    )
    parser.add_argument(
        "--missing",
        choices=typing.get_args(MissingPolicy),
        default="min",
        help="convex: score of a document one run did not return (default: %(default)s)",
    )
    parser.add_argument(
        "--depth",
        type=positive_int,
        default=1000,
        help="hits taken from each index before fusing (default: %(default)s)",
    )
    parser.add_argument(
        "--rrf-k", type=positive_int, default=60, help="RRF constant k (default: %(default)s)"
    )
    parser.add_argument(
        "--dense-mode",
        choices=typing.get_args(DenseModeName),
        default="exact",
        help="mode of every dense index: exact, or hnsw (approximate; needs the "
        "graph) (default: %(default)s)",
    )
    parser.add_argument(
        "--method",
        dest="dense_mode",
        choices=typing.get_args(DenseModeName),
        help=argparse.SUPPRESS,
    )  # the old name of --dense-mode
    parser.add_argument(
        "--sparse-mode",
        choices=typing.get_args(SearchModeName),
        default=None,
        help="mode of every impact index (default: pruned when the index has "
        "the search layout, else exhaustive)",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)"
    )
    parser.set_defaults(handler=run_hybrid_search)


def run_dense_index(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sparse_ir.corpus import read_corpus
    from sparse_ir.encoders.dense import DenseEncoder
    from sparse_ir.index.dense import HnswOptions
    from sparse_ir.jsonl import SkipReport
    from sparse_ir.pipeline import count_lines, dense_index_corpus

    encoder = DenseEncoder.from_pretrained(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision=args.precision,
        pooling=args.pooling,
    )
    report = SkipReport()
    documents = read_corpus(
        args.input, skip_invalid=args.skip_invalid, report=report, allow_empty=args.allow_empty
    )
    index, stats = dense_index_corpus(
        encoder,
        documents,
        args.output,
        total=count_lines(args.input),
        hnsw=HnswOptions() if args.hnsw else None,
        show_progress=args.show_progress,
        settings={"corpus": str(Path(args.input).resolve())},
    )
    print(
        f"dense index {Path(args.output)}: {index.num_documents} documents × {index.dim} "
        f"dims, {index.size_bytes() / 1e6:.1f} MB, built in "
        f"{index.settings['seconds']:.1f}s" + (", with an HNSW graph" if index.has_hnsw else "")
    )
    if stats.empty_texts:
        print(f"{stats.empty_texts} document(s) with empty text stored as zero vectors")
    if stats.truncated_texts:
        print(
            f"{stats.truncated_texts} document(s) longer than {encoder.document_max_length} "
            "tokens were truncated"
        )
    if report.total:
        print(report.summary(), file=sys.stderr)
    return 0


def run_dense_search(args: argparse.Namespace) -> int:
    from sparse_ir.search import DenseSearcher

    batch.cli_filter(args)  # a filter's syntax error fails before the model loads
    searcher = DenseSearcher.from_index(args.index, device=args.device, mode=args.mode)
    if (status := batch.batch_or_json(args, searcher)) is not None:
        return status
    text = " ".join(args.query)
    hits = searcher.search(text, args.top_k, filter=batch.cli_filter(args))
    print(f"query: {text}")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>3}. {hit.doc_id}  score {hit.score:.4f}")
    return 0


def _weights(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers (e.g. 0.3,0.3,0.4), got {text!r}"
        ) from None
    if any(w < 0 for w in weights):
        raise argparse.ArgumentTypeError(f"weights must be >= 0, got {text!r}")
    return weights


def hybrid_paths(args: argparse.Namespace) -> list[str]:
    """The index paths of a hybrid-search command line, in fusion order (checked)."""
    from sparse_ir.hybrid import index_format
    from sparse_ir.index.manifest import DENSE_FORMAT, IMPACT_FORMAT

    for option, path, expected in (
        ("--sparse-index", args.sparse_index, IMPACT_FORMAT),
        ("--dense-index", args.dense_index, DENSE_FORMAT),
    ):
        if path is not None and index_format(path) != expected:
            kind = "an impact" if expected == IMPACT_FORMAT else "a dense"
            raise ValueError(
                f"{option} {path} is not {kind} index (use --index for an index of any kind)"
            )
    paths = [p for p in (args.sparse_index, args.dense_index) if p is not None]
    paths += args.indexes
    if len(paths) < 2:
        raise ValueError(
            f"hybrid-search needs at least 2 indexes, got {len(paths)}: give "
            "--index PATH for each (or --sparse-index and --dense-index)"
        )
    return paths


def hybrid_fusion(args: argparse.Namespace, count: int):
    """The Fusion of a hybrid-search command line for ``count`` indexes."""
    from sparse_ir.fusion import Fusion

    weights = args.weights
    if args.alpha is not None:
        if weights is not None:
            raise ValueError("give --weights or --alpha, not both")
        if count != 2:
            raise ValueError(f"--alpha is for two indexes; with {count}, give --weights")
        if not 0.0 <= args.alpha <= 1.0:
            raise ValueError(f"--alpha must be within [0, 1], got {args.alpha}")
        weights = (args.alpha, 1.0 - args.alpha)
    if weights is not None and len(weights) != count:
        raise ValueError(
            f"--weights has {len(weights)} values for {count} indexes; give one per index, in order"
        )
    if args.fusion == "rrf":
        return Fusion(method="rrf", weights=weights, rrf_k=args.rrf_k, depth=args.depth)
    return Fusion(
        method=args.fusion,
        weights=weights,
        normalization=args.normalization,
        missing=args.missing,
        depth=args.depth,
    )


def component_label(searcher) -> str:
    """A short name of a hybrid's component: its query encoder kind (bm25, splade...) or
    "dense"."""
    if getattr(searcher, "kind", None) == "dense":
        return "dense"
    return str(searcher.index.settings.get("query_encoder", "splade"))


def run_hybrid_search(args: argparse.Namespace) -> int:
    from sparse_ir.hybrid import HybridSearcher

    paths = hybrid_paths(args)
    fusion = hybrid_fusion(args, len(paths))
    batch.cli_filter(args)  # a filter's syntax error fails before the models load
    searcher = HybridSearcher.from_paths(
        paths, fusion, device=args.device, sparse_mode=args.sparse_mode, dense_mode=args.dense_mode
    )
    labels = [component_label(s) for s in searcher.searchers]
    labels = [
        label if labels.count(label) == 1 else f"{label}{i + 1}" for i, label in enumerate(labels)
    ]
    if (status := batch.batch_or_json(args, searcher)) is not None:
        return status
    text = " ".join(args.query)
    hits = searcher.search(text, args.top_k, filter=batch.cli_filter(args))
    stored = next(
        (s.index for s in searcher.searchers if getattr(s.index, "has_contents", False)), None
    )
    print(f"query: {text}")
    print(
        f"fusion: {fusion.describe()} over {', '.join(labels)}; "
        f"{searcher.timings.elapsed * 1000:.0f} ms (a first query includes one-time warm-up)"
    )
    print(
        f"{'rank':>4}  {'doc id':<12} {'fused':>8}"
        + "".join(f" {label + ' (rank)':>18}" for label in labels)
        + "  title"
    )
    for rank, hit in enumerate(hits, start=1):
        cells = []
        for score, place in zip(hit.components, hit.ranks):
            cells.append("-" if score is None else f"{score:.4g} ({place})")
        title = ""
        if stored is not None:
            document = stored.document(stored.docno(hit.doc_id))
            title = (document[0] or document[1][:80]) if document else ""
        print(
            f"{rank:>4}  {hit.doc_id:<12} {hit.score:>8.4f}"
            + "".join(f" {cell:>18}" for cell in cells)
            + f"  {title[:60]}"
        )
    return 0
