"""``sparse-ir index``, ``search``, ``info``, ``verify``."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from sparse_ir.cli import batch
from sparse_ir.cli.common import (
    add_json_option,
    add_model_options,
    opened_encoder,
    positive_int,
    print_json,
)
from sparse_ir.index.modes import DEFAULT_BOUND_WEIGHT, DEFAULT_CUT_RATIO, SearchModeName
from sparse_ir.quantize import ImpactBits


def register(subparsers) -> None:
    """Add the index subcommands."""
    _register_index(subparsers)
    _register_search(subparsers)
    _register_info(subparsers)
    _register_verify(subparsers)


def _register_index(subparsers) -> None:
    """Add the ``index`` subcommand."""
    parser = subparsers.add_parser(
        "index",
        help="encode a corpus and build an impact index",
        description="Encode a BEIR-style corpus.jsonl with a SPLADE model (or read SparseBatch "
        "shards written by 'sparse-ir encode') and build an impact index. The new "
        "index replaces an old one at --output only once it is complete.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", help="corpus.jsonl (_id, title, text) or irds:ID (an ir_datasets id)"
    )
    source.add_argument("--vectors", help="directory of SparseBatch shards (sparse-ir encode)")
    parser.add_argument("--output", required=True, help="index directory, e.g. indexes/NAME")
    parser.add_argument(
        "--bm25",
        action="store_true",
        help="index BM25 weights of --input instead of a model's (bm25s's "
        "English analyzer; impacts at scale 1000, or --bits)",
    )
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9, Anserini)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4, Anserini)")
    parser.add_argument(
        "--scale",
        type=float,
        default=100.0,
        help="impact = round(weight x scale) (default 100, as Pyserini)",
    )
    parser.add_argument(
        "--bits",
        type=int,
        choices=typing.get_args(ImpactBits),
        default=None,
        help="pick the scale so the largest weight fits in 8 or 16 bits "
        "(overrides --scale) (default: none, --scale decides)",
    )
    parser.add_argument(
        "--memory-budget",
        default="1GB",
        help="memory for buffered postings before sorted runs spill to disk (default: %(default)s)",
    )
    parser.add_argument(
        "--no-contents", action="store_true", help="do not store titles and texts in the index"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid corpus lines (counted and reported)",
    )
    parser.add_argument(
        "--max-length",
        dest="document_max_length",
        type=positive_int,
        default=None,
        help="tokens read per document (default: the model's; 256 for a "
        "plain Hugging Face SPLADE model)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="index documents with no title and no text as empty vectors "
        "(default: they are invalid)",
    )
    parser.add_argument(
        "--doc-ordered-postings",
        action="store_true",
        help="also store each term's postings in document order (index format version 1, "
        "readable by sparse_ir before the v2 layout; ~1.7x the bytes; no search reads them) "
        "(default: off)",
    )
    _add_ray_options(parser)
    add_model_options(parser)
    parser.set_defaults(handler=run_index)


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS] and the options of a distributed build (sparse_ir.distributed)."""
    group = parser.add_argument_group("distributed (Ray)")
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="encode and index on a Ray cluster: ADDRESS is 'auto', 'HOST:6379' or "
        "'ray://HOST:10001'; without ADDRESS a local cluster is started. Writes a sharded "
        "index at --output (parts under OUTPUT/encoded; a re-run resumes) (default: off)",
    )
    group.add_argument(
        "--shards", type=positive_int, default=4, help="index shards with --ray (default: 4)"
    )
    group.add_argument(
        "--actors", type=positive_int, default=1, help="encoder actors with --ray (default: 1)"
    )
    group.add_argument(
        "--threads-per-actor",
        type=positive_int,
        default=1,
        help="CPU threads (and Ray CPUs) per encoder actor (default: 1)",
    )
    group.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0.0,
        help="GPUs per encoder actor; > 0 encodes on cuda (default: 0, CPU)",
    )
    group.add_argument(
        "--part-size",
        type=_part_size,
        default="auto",
        help="documents per encoded part, the unit of retry and resume, or 'auto': four "
        "parts per actor, 100..1000 documents, kept by a re-run (default: auto)",
    )


def _part_size(text: str) -> int | str:
    """argparse type of --part-size: ``auto`` or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or a positive integer, got {text!r}"
        ) from None


def _register_search(subparsers) -> None:
    """Add the ``search`` subcommand."""
    parser = subparsers.add_parser(
        "search",
        help="search an index with a text query",
        description="Encode the query with the index's model and print the top documents with "
        "the terms that contributed most to each score ('+' marks expansion terms "
        "the query text does not contain).",
    )
    parser.add_argument("query", nargs="*", help="the query text (or --queries FILE)")
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument(
        "-k", "--top-k", type=positive_int, default=10, help="hits to show (default: %(default)s)"
    )
    parser.add_argument(
        "--terms",
        type=int,
        default=5,
        help="contributing terms shown per hit (0: none) (default: %(default)s)",
    )
    parser.add_argument(
        "--model", default=None, help="query encoder (default: the model recorded in the index)"
    )
    batch.add_batch_options(parser)
    parser.add_argument(
        "--force-model",
        action="store_true",
        help="search even when --model (or the files at the recorded model's "
        "path) differ from the model that made the index (default: "
        "refuse)",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)"
    )
    parser.add_argument(
        "--mode",
        choices=typing.get_args(SearchModeName),
        default=None,
        help="exhaustive: score every posting; pruned: the same hits, scoring "
        "a fraction of them; approximate: faster, at a measured recall "
        "(--cut-ratio, --bound-weight, --term-share, --max-verified, --layer-postings). "
        "Default: pruned "
        "when the index has the search layout, else exhaustive",
    )
    parser.add_argument(
        "--cut-ratio",
        type=float,
        default=None,
        help=f"approximate mode: rho, the share of the estimated k-th score "
        f"left below the cuts (default {DEFAULT_CUT_RATIO})",
    )
    parser.add_argument(
        "--bound-weight",
        type=float,
        default=None,
        help=f"approximate mode: beta in [0, 1], the share of the "
        f"below-the-cuts bound credited to a document (default "
        f"{DEFAULT_BOUND_WEIGHT})",
    )
    parser.add_argument(
        "--term-share",
        type=float,
        default=None,
        help="approximate mode: sigma in (0, 1], walk only the heaviest query terms covering "
        "this share of the query's reach; every term still counts in the scores (default 1)",
    )
    parser.add_argument(
        "--max-verified",
        type=int,
        default=None,
        help="approximate mode: verify at most this many candidates, those of the highest "
        "bounds (default: no budget)",
    )
    parser.add_argument(
        "--layer-postings",
        type=int,
        default=None,
        help="approximate mode: the layer ranking; score only the query's best P postings "
        "(highest query weight x impact), rank the documents by that partial score and "
        "verify the best --max-verified of them (e.g. 700000 with --max-verified 300 on 1M "
        "documents; default: off)",
    )
    parser.set_defaults(handler=run_search)


def _register_info(subparsers) -> None:
    """Add the ``info`` subcommand."""
    parser = subparsers.add_parser(
        "info",
        help="print an index's manifest summary",
        description="Print what an index (impact or dense) records: its live generation, "
        "format, counts, build settings and size on disk. --json prints the same "
        "facts as one JSON object (schema in docs/cli.md).",
    )
    _add_index_argument(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_info)


def _register_verify(subparsers) -> None:
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="check every byte of an index (checksums and invariants)",
        description="Check the live generation of an index: manifest, every file's size, "
        "CRC32, header and footer, then the index's invariants. Lists every "
        "problem found and exits with status 1 if there is any.",
    )
    _add_index_argument(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_verify)


def _add_index_argument(parser: argparse.ArgumentParser) -> None:
    """The index directory, as a positional argument or ``--index`` (as search takes it)."""
    parser.add_argument("index", nargs="?", help="index directory (or --index DIR)")
    parser.add_argument(
        "--index",
        dest="index_option",
        metavar="DIR",
        help="index directory (same as the positional argument) (default: none)",
    )


def _index_path(args: argparse.Namespace) -> str:
    """The one index directory given positionally or by ``--index``."""
    if args.index and args.index_option and args.index != args.index_option:
        raise ValueError(f"two index directories given: {args.index} and {args.index_option}")
    path = args.index or args.index_option
    if not path:
        raise ValueError("no index given: sparse-ir COMMAND DIR (or --index DIR)")
    return path


def run_index(args: argparse.Namespace) -> int:
    from sparse_ir.corpus import read_corpus
    from sparse_ir.jsonl import SkipReport
    from sparse_ir.pipeline import count_lines, index_corpus
    from sparse_ir.quantize import Quantizer

    report = SkipReport()
    if args.ray is not None:
        if args.doc_ordered_postings:
            raise ValueError("--doc-ordered-postings is not available with --ray (sharded builds)")
        return _index_on_ray(args)
    if args.bm25:
        return _index_bm25(args, report)
    if args.vectors:
        return _index_vectors(args)
    if args.bits:
        raise ValueError(
            "--bits needs the maximum weight in advance: encode first "
            "('sparse-ir encode'), then 'sparse-ir index --vectors DIR --bits 8'"
        )
    quantizer = Quantizer(scale=args.scale)
    documents = read_corpus(
        args.input, skip_invalid=args.skip_invalid, report=report, allow_empty=args.allow_empty
    )
    with opened_encoder(args) as encoder:
        index, stats = index_corpus(
            encoder,
            documents,
            args.output,
            quantizer=quantizer,
            memory_budget=args.memory_budget,
            store_contents=not args.no_contents,
            total=count_lines(args.input),
            show_progress=args.show_progress,
            settings={"corpus": str(Path(args.input).resolve())},
            doc_ordered_postings=_doc_ordered(args),
        )
    _print_summary(index)
    if stats.empty_texts:
        print(f"{stats.empty_texts} document(s) with empty text indexed as empty vectors")
    if report.total:
        print(report.summary(), file=sys.stderr)
    return 0


def _doc_ordered(args: argparse.Namespace) -> bool | None:
    """``--doc-ordered-postings`` as the builder's keyword (None: the builder's default)."""
    return True if args.doc_ordered_postings else None


def _index_vectors(args: argparse.Namespace) -> int:
    from sparse_ir.errors import InputError
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.quantize import Quantizer
    from sparse_ir.sparse_batch import SparseBatch

    shards = sorted(Path(args.vectors).glob("shard-*.npz"))
    if not shards:
        raise FileNotFoundError(f"no shard-*.npz files in {args.vectors}")
    current: list[Path] = []

    def load_all():
        for path in shards:
            current[:] = [path]
            yield SparseBatch.load(path)

    try:
        if args.bits:
            quantizer = Quantizer.fit(load_all(), bits=args.bits)
        else:
            quantizer = Quantizer(scale=args.scale)
        index = ImpactIndex.build(
            load_all(),
            args.output,
            quantizer=quantizer,
            memory_budget=args.memory_budget,
            show_progress=args.show_progress,
            settings=_vector_settings(args),
            doc_ordered_postings=_doc_ordered(args),
        )
    except InputError as error:
        if error.path is None and current:  # a builder error about a row: name the shard
            raise InputError(error.reason, path=current[0]) from None
        raise
    _print_summary(index)
    return 0


def _index_on_ray(args: argparse.Namespace) -> int:
    """Encode and index on Ray (sparse_ir.distributed): a sharded index at --output."""
    import json

    from sparse_ir.distributed.cluster import init_ray
    from sparse_ir.distributed.encode import EncodeJob, encode_corpus_on_ray, index_shards_on_ray

    if not args.input or args.bm25:
        raise ValueError("--ray encodes a corpus with a model: give --input corpus.jsonl")
    if args.runtime != "torch":
        raise ValueError(f"--ray encodes with PyTorch; --runtime {args.runtime} is not supported")
    init_ray(None if args.ray == "local" else args.ray)
    output = Path(args.output)
    job = EncodeJob(
        args.input,
        output / "encoded",
        model=args.model,
        part_size=args.part_size,
        actors=args.actors,
        threads=args.threads_per_actor,
        num_gpus=args.gpus_per_actor,
        batch_size=args.batch_size,
        max_length=args.document_max_length,
        precision=args.precision,
        allow_empty=args.allow_empty,
    )
    encoded = encode_corpus_on_ray(job)
    index = index_shards_on_ray(
        encoded,
        output,
        shards=min(args.shards, len(encoded.parts)),
        bits=args.bits,
        scale=None if args.bits else args.scale,
        memory_budget=args.memory_budget,
        settings={"corpus": str(Path(args.input).resolve())},
    )
    summary = {
        "index": str(output),
        "shards": index.num_shards,
        "documents": index.num_documents,
        "postings": index.num_postings,
        "parts": len(encoded.parts),
        "parts_kept": encoded.kept,
        "encode_seconds": encoded.seconds,
    }
    print(json.dumps(summary))
    return 0


def _vector_settings(args: argparse.Namespace) -> dict:
    from sparse_ir.encoders.st_format import vectors_provenance

    # The vectors' encode.json names their model (over --model's default), made absolute.
    settings = vectors_provenance(args.vectors, args.model, "splade-tiny")
    if settings.get("model") and "query_encoder" not in settings:
        from sparse_ir.pipeline import query_encoder_kind

        settings["query_encoder"] = query_encoder_kind(settings["model"])
    return settings


def _index_bm25(args: argparse.Namespace, report) -> int:
    from sparse_ir.corpus import read_corpus
    from sparse_ir.encoders.bm25 import build_bm25_index

    if not args.input:
        raise ValueError("--bm25 reads the texts: give --input corpus.jsonl, not --vectors")
    documents = read_corpus(
        args.input, skip_invalid=args.skip_invalid, report=report, allow_empty=args.allow_empty
    )
    index, _ = build_bm25_index(
        documents,
        args.output,
        k1=args.k1,
        b=args.b,
        bits=args.bits,
        memory_budget=args.memory_budget,
        store_contents=not args.no_contents,
        show_progress=args.show_progress,
        settings={"corpus": str(Path(args.input).resolve())},
        doc_ordered_postings=_doc_ordered(args),
    )
    _print_summary(index)
    if report.total:
        print(report.summary(), file=sys.stderr)
    return 0


def _print_summary(index) -> None:
    build = index.settings
    print(
        f"index {index.directory.parent}: {index.num_documents} documents, "
        f"{index.num_postings} postings ({index.num_postings / max(index.num_documents, 1):.1f}"
        f" terms/doc), {index.size_bytes() / 1e6:.1f} MB, built in {build['seconds']:.1f}s "
        f"({build['runs_spilled']} runs spilled)"
    )
    if build.get("saturated"):
        print(f"warning: {build['saturated']} weights saturated at max_impact")


def search_mode(args: argparse.Namespace):
    """The search mode of ``--mode`` and the approximate knobs (``--cut-ratio``,
    ``--bound-weight``, ``--term-share``, ``--max-verified``, ``--layer-postings``)."""
    from sparse_ir.index.modes import Approximate

    given = (
        ("cut_ratio", args.cut_ratio),
        ("bound_weight", args.bound_weight),
        ("term_share", getattr(args, "term_share", None)),
        ("max_verified", getattr(args, "max_verified", None)),
        ("layer_postings", getattr(args, "layer_postings", None)),
    )
    knobs = {key: value for key, value in given if value is not None}
    if args.mode == "approximate":
        return Approximate(**knobs)
    if knobs:
        raise ValueError(
            "--cut-ratio, --bound-weight, --term-share, --max-verified and --layer-postings "
            "apply to --mode approximate"
        )
    return args.mode


def run_search(args: argparse.Namespace) -> int:
    from sparse_ir.search import Searcher

    mode = search_mode(args)
    batch.cli_filter(args)  # a filter's syntax error fails before the model loads
    searcher = Searcher.from_index(
        args.index,
        model=args.model,
        device=args.device,
        mode=mode,
        force=args.force_model,
        # One query reads a fraction of the index: copying all of it would cost more.
        resident="auto" if args.queries else False,
    )
    if (status := batch.batch_or_json(args, searcher)) is not None:
        return status
    text = " ".join(args.query)
    print_hits(searcher, text, args.top_k, args.terms, filter=batch.cli_filter(args))
    return 0


def print_hits(searcher, text: str, k: int, terms: int = 5, out=None, filter=None) -> None:  # noqa: A002
    """Print ranked hits with titles and the query terms that contributed most (searched in
    the searcher's mode, among the documents ``filter`` allows)."""
    out = out or sys.stdout
    own = _text_terms(searcher.encoder, text)
    query = searcher.encode(text)
    expansion = [t for t, _ in query.decode(0, top_k=None) if t not in own]
    print(f"query: {text}", file=out)
    print(
        f"  {query.nnz} query terms; expansion terms (+): {', '.join(expansion[:8]) or 'none'}",
        file=out,
    )
    hits = searcher.index.search(query, k, mode=searcher.mode, filter=filter)
    if not hits:
        print("  no document matches", file=out)
    for rank, hit in enumerate(hits, start=1):
        stored = searcher.index.document(hit.docno)
        title = (stored[0] or stored[1][:80]) if stored else ""
        print(f"{rank:>3}. {hit.doc_id}  score {hit.score}  {title[:90]}", file=out)
        if terms:
            parts = searcher.index.explain(query, hit.docno)[:terms]
            shown = ", ".join(f"{'' if c.token in own else '+'}{c.token} {c.score}" for c in parts)
            print(f"       {shown}", file=out)


def _text_terms(encoder, text: str) -> set[str]:
    """The terms a text holds itself (the rest of its query vector is expansion)."""
    analyzer = getattr(encoder, "analyzer", None)
    if analyzer is not None:  # BM25: the analyzed (stemmed) words
        return set(analyzer.analyze(text))
    tokenizer = encoder.tokenizer
    return set(
        tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    )


def run_info(args: argparse.Namespace) -> int:
    path = _index_path(args)
    data = info_data(path)
    if args.json:
        print_json(data)
    else:
        print_info_text(data)
    return 0


def info_data(path: str) -> dict:
    """What ``sparse-ir info`` shows of the index at ``path``, as one JSON-ready dict.

    Keys (schema ``sparse-ir.info/1``, documented in docs/cli.md): ``schema``, ``path``,
    ``generation``, ``kind`` (``"impact"`` or ``"dense"``), ``format``, ``format_version``,
    ``num_documents``, ``size_bytes``, ``settings`` (the build facts) and ``manifest`` (the
    manifest without its file list). The text and JSON printers both read this dict.
    """
    from sparse_ir.index.manifest import DENSE_FORMAT
    from sparse_ir.index.storage import IndexDirectory, read_manifest_unchecked

    body, _ = read_manifest_unchecked(IndexDirectory(path).current())
    kind = "dense" if body.get("format") == DENSE_FORMAT else "impact"
    index = _open_index(path, kind)
    manifest = index.manifest.to_dict()
    manifest.pop("files", None)
    segments = getattr(index, "segment_infos", None)
    if segments is not None:  # a live index: its segments and deletions
        manifest["live"] = {
            "documents": index.num_documents,
            "deleted": index.num_deleted,
            "segments": [info._asdict() for info in segments],
        }
    return {
        "schema": "sparse-ir.info/1",
        "path": str(Path(path).resolve()),
        "generation": str(index.directory),
        "kind": kind,
        "format": manifest.get("format"),
        "format_version": manifest.get("format_version"),
        "num_documents": index.num_documents,
        "size_bytes": index.size_bytes(),
        "settings": index.settings,
        "manifest": manifest,
    }


def _open_index(path: str, kind: str):
    if kind == "dense":
        from sparse_ir.index.dense import DenseIndex

        return DenseIndex.open(path)
    from sparse_ir.index.impact_index import ImpactIndex

    return ImpactIndex.open(path)


def print_info_text(data: dict, out=None) -> None:
    """The text form of :func:`info_data`: the generation, the manifest as JSON, the size."""
    import json

    out = out or sys.stdout
    print(f"generation: {data['generation']}", file=out)
    print(json.dumps(data["manifest"], indent=1, sort_keys=True), file=out)
    print(f"size on disk: {data['size_bytes'] / 1e6:.1f} MB", file=out)


def run_verify(args: argparse.Namespace) -> int:
    from sparse_ir.index.check import verify_index

    report = verify_index(_index_path(args))
    if args.json:
        print_json(verify_data(report))
    else:
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def verify_data(report) -> dict:
    """A :class:`~sparse_ir.index.check.VerifyReport` as a JSON-ready dict (schema
    ``sparse-ir.verify/1``: ``schema``, ``path``, ``generation`` (or null), ``format`` (or
    null), ``ok``, ``files_checked``, ``bytes_checked``, ``problems``, ``notes``)."""
    return {
        "schema": "sparse-ir.verify/1",
        "path": str(report.path),
        "generation": str(report.generation) if report.generation else None,
        "format": report.format,
        "ok": report.ok,
        "files_checked": report.files_checked,
        "bytes_checked": report.bytes_checked,
        "problems": list(report.problems),
        "notes": list(report.notes),
    }
