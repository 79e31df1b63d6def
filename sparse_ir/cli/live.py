"""``sparse-ir add``, ``delete``, ``merge``: change a live index without rebuilding it.

The documents of ``add`` are encoded with the model the index records (the one that made its
vectors), so the new documents are scored like the old ones. ``--dense-index`` updates the
dense index of a hybrid pair with the same documents: both writers are opened (locked) and
both kinds encoded first, then the sparse index commits, then the dense one. They are two
commits, so a reader opening both between them sees the sparse change only, and a crash
between them leaves the pair apart; both commits carry the same random stamp
(``CommitManifest.pair``), so ``HybridSearcher`` (``sparse-ir hybrid-search``, the service)
refuses such a pair with an error saying to run the interrupted command again (``add`` with
``--upsert``), which brings both to the same documents and stamp.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sparse_ir.cli.common import positive_int
from sparse_ir.index.manifest import DENSE_FORMAT


def register(subparsers) -> None:
    """Add the live index subcommands."""
    _register_add(subparsers)
    _register_delete(subparsers)
    _register_merge(subparsers)


def _register_add(subparsers) -> None:
    parser = subparsers.add_parser(
        "add",
        help="encode documents and add them to an index (no rebuild)",
        description="Encode a corpus.jsonl (_id, title, text) with the model the index records "
        "and add the documents to the index (impact or dense) as one commit. An id "
        "already in the index is an error unless --upsert, which replaces it. A record's "
        '\'metadata\' object ({"year": 2021, "tenant": "a"}) is stored with its '
        "document, as `sparse-ir index` does, and `sparse-ir search --filter` filters on it.",
    )
    parser.add_argument("--index", required=True, help="index directory (impact or dense)")
    parser.add_argument("--input", required=True, help="corpus.jsonl of the documents to add")
    parser.add_argument(
        "--upsert",
        action="store_true",
        help="replace documents whose id is already in the index (default: error)",
    )
    parser.add_argument(
        "--dense-index",
        default=None,
        help="the dense index of a hybrid pair: add the same documents to it (default: none)",
    )
    parser.add_argument("--device", default="cpu", help="device of the model (default: cpu)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="texts per forward pass (default: 32)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip invalid corpus lines (counted and reported) (default: stop at the first)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="add documents with no title and no text as empty vectors (default: invalid)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object (default: text)"
    )
    parser.set_defaults(handler=run_add)


def _register_delete(subparsers) -> None:
    parser = subparsers.add_parser(
        "delete",
        help="delete documents from an index by id (no rebuild)",
        description="Delete documents by id and commit. Ids not in the index are counted "
        "and reported, not an error.",
    )
    parser.add_argument("--index", required=True, help="index directory (impact or dense)")
    parser.add_argument(
        "--ids",
        required=True,
        nargs="+",
        help="document ids, or one file with an id per line",
    )
    parser.add_argument(
        "--dense-index",
        default=None,
        help="the dense index of a hybrid pair: delete the same ids from it (default: none)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object (default: text)"
    )
    parser.set_defaults(handler=run_delete)


def _register_merge(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge an index's segments (drops deleted documents)",
        description="Merge the segments of a live index into at most --max-segments, "
        "rewriting them without their deleted documents.",
    )
    parser.add_argument("--index", required=True, help="index directory (impact or dense)")
    parser.add_argument(
        "--max-segments",
        type=positive_int,
        default=1,
        help="segments left after the merge (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON object (default: text)"
    )
    parser.set_defaults(handler=run_merge)


# -- handlers ------------------------------------------------------------------------------------


def open_writer(path: str):
    """The writer of the index at ``path``, by its kind (an existing index only)."""
    from sparse_ir.hybrid import index_format
    from sparse_ir.index.writer import DenseIndexWriter, IndexWriter

    if not (Path(path) / "CURRENT").exists() and not (Path(path) / "manifest.json").exists():
        raise FileNotFoundError(
            f"no index at {path}: build one first (sparse-ir index / dense-index)"
        )
    kind = DenseIndexWriter if index_format(path) == DENSE_FORMAT else IndexWriter
    return kind.open(path)


def _document_encoder(writer, args: argparse.Namespace):
    return document_encoder(writer, device=args.device, batch_size=args.batch_size)


def document_encoder(writer, *, device: str = "cpu", batch_size: int = 32):
    """The document encoder an index records (model, pooling, lengths, precision), for the
    documents a writer adds: they are scored like the ones already in the index. Raises
    ValueError for an index that records no document model (BM25, or vectors without one)
    or whose recorded model fingerprint differs from the model found."""
    settings = writer.commit_manifest.build
    model = settings.get("model")
    if settings.get("query_encoder") == "bm25" or not model:
        raise ValueError(
            f"{writer.root} records no document model (a BM25 index's weights depend on the "
            "whole corpus): rebuild it with sparse-ir index to change its documents"
        )
    keys = ("pooling", "document_max_length", "precision")
    if writer.kind == DENSE_FORMAT:
        from sparse_ir.encoders.dense import DenseEncoder

        keys += ("normalize", "query_max_length", "lowercase", "query_prompt", "document_prompt")
        options = {k: settings[k] for k in keys if k in settings}
        return DenseEncoder.from_pretrained(model, device=device, batch_size=batch_size, **options)
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.encoders.st_format import check_model

    options = {k: settings[k] for k in keys if k in settings}
    encoder = SpladeEncoder.from_pretrained(model, device=device, batch_size=batch_size, **options)
    check_model(settings, encoder, index=writer.root)
    return encoder


def _stage(writer, encoder, documents, upsert: bool) -> int:
    """Encode the documents and add them to the writer (not committed); returns the count."""
    from sparse_ir.pipeline import encode_corpus

    add = writer.upsert if upsert else writer.add
    count = 0
    if writer.kind == DENSE_FORMAT:
        batch = []
        for document in documents:
            batch.append(document)
        for start in range(0, len(batch), 2048):
            shard = batch[start : start + 2048]
            vectors = encoder.encode_documents([d.full_text for d in shard], show_progress=False)
            count += add(([d.id for d in shard], vectors), metadata=[d.metadata for d in shard])
        return count
    for vectors, shard in encode_corpus(encoder, documents):
        contents = [(d.title, d.text) for d in shard] if writer.has_contents else None
        count += add(vectors, contents, metadata=[d.metadata for d in shard])
    return count


def run_add(args: argparse.Namespace) -> int:
    from sparse_ir.corpus import read_corpus
    from sparse_ir.jsonl import SkipReport

    report = SkipReport()
    documents = list(
        read_corpus(
            args.input, skip_invalid=args.skip_invalid, report=report, allow_empty=args.allow_empty
        )
    )
    writers = [open_writer(args.index)]
    try:
        if args.dense_index:
            writers.append(open_writer(args.dense_index))
        from sparse_ir.index.writer import new_pair_stamp

        pair = new_pair_stamp(writers)
        counts = [
            _stage(writer, _document_encoder(writer, args), documents, args.upsert)
            for writer in writers
        ]
        for writer, count in zip(writers, counts):
            result = writer.commit(pair=pair)
            verb = "upserted" if args.upsert else "added"
            _report(
                args,
                {"index": str(writer.root), verb: count, **result._asdict()},
                f"{writer.root}: {verb} {count} documents; {result.documents} documents in "
                f"{result.segments} segment(s), {result.deleted} deleted ({result.generation})",
            )
    finally:
        for writer in writers:
            writer.close()
    if report.total:
        import sys

        print(report.summary(), file=sys.stderr)
    return 0


def read_ids(values: list[str]) -> list[str]:
    """Ids given on the command line, or read from one file (one id per line)."""
    if len(values) == 1 and os.path.isfile(values[0]):
        with open(values[0], encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    return list(values)


def run_delete(args: argparse.Namespace) -> int:
    ids = read_ids(args.ids)
    writers = [open_writer(args.index)]
    try:
        if args.dense_index:
            writers.append(open_writer(args.dense_index))
        from sparse_ir.index.writer import new_pair_stamp

        pair = new_pair_stamp(writers)
        for writer in writers:
            result = writer.delete(ids)
            commit = writer.commit(pair=pair)
            _report(
                args,
                {"index": str(writer.root), **result._asdict(), "commit": commit._asdict()},
                f"{writer.root}: deleted {result.deleted} documents ({result.missing} ids not "
                f"in the index); {commit.documents} documents left ({commit.generation})",
            )
    finally:
        for writer in writers:
            writer.close()
    return 0


def run_merge(args: argparse.Namespace) -> int:
    with open_writer(args.index) as writer:
        result = writer.force_merge(args.max_segments)
    _report(
        args,
        {"index": str(args.index), **result._asdict()},
        f"{args.index}: {result.segments} segment(s), {result.documents} documents, "
        f"{result.merged} merge(s) ({result.generation})",
    )
    return 0


def _report(args: argparse.Namespace, data: dict, text: str) -> None:
    """One line of text, or (``--json``) one JSON object, on stdout."""
    if args.json:
        import json

        print(json.dumps(data, sort_keys=True))
    else:
        print(text)
