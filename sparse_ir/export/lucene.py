"""Export an :class:`~sparse_ir.index.impact_index.ImpactIndex` as an Anserini JsonVectorCollection.

One JSON object per line, per document::

    {"id": "4983", "vector": {"microbial": 112, "##ing": 31, ...}}
    {"id": "4983", "contents": "Title Text...", "title": "Title", "vector": {...}}  (--contents)

The vector holds exactly the integer impacts of the index (Anserini's JsonVectorCollection
repeats each token that many times, so Lucene's term frequency *is* our impact), tokens spelled
as the vocabulary spells them. Tokens Lucene could not index unchanged are refused (see
:mod:`.tokens`). ``contents`` is ``title + " " + text`` (the BEIR convention) and ``title`` is
repeated on its own so an import can give back both; documents with no terms are written with
an empty vector (Anserini counts them as "empty" and does not index them).

The directory holds nothing but the ``part-NNNNN.jsonl`` files, because Anserini reads every
file of its ``-input`` directory. It is written beside its final place and renamed into place
when complete, so an interruption never leaves a half-written collection.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparse_ir.errors import IndexCorruptError, InputError
from sparse_ir.export.invert import advance_cursor, invert_block, new_cursor
from sparse_ir.export.tokens import check_tokens, id_problem
from sparse_ir.index.storage import fsync_directory, replace_directory
from sparse_ir.sparse_batch import SparseBatch

__all__ = [
    "ExportReport",
    "document_vectors",
    "export_json_vectors",
    "iter_document_vectors",
    "shard_file_name",
]

logger = logging.getLogger(__name__)

# Postings regrouped per block: bounds the export's memory (about 8 bytes per posting).
_BLOCK_POSTINGS = 1 << 22


@dataclass
class ExportReport:
    """What an export wrote."""

    documents: int = 0
    postings: int = 0
    empty_documents: int = 0
    files: list[Path] = field(default_factory=list)
    contents: bool = False
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (
            f"{self.documents} documents, {self.postings} postings in {len(self.files)} "
            f"file(s), {self.seconds:.1f}s"
        )
        if self.empty_documents:
            text += (
                f"; {self.empty_documents} document(s) have no terms (Anserini reports them "
                "as 'empty' and does not index them)"
            )
        return text


def shard_file_name(number: int) -> str:
    """File name of shard ``number`` (sorted order = document order)."""
    return f"part-{number:05d}.jsonl"


def iter_document_vectors(
    index, *, start: int = 0, stop: int | None = None, block_postings: int = _BLOCK_POSTINGS
) -> Iterator[SparseBatch]:
    """Yield the documents ``[start, stop)`` of an index as SparseBatch blocks of impacts.

    Rows are documents in number order (ids set), terms ascending, values the stored int
    impacts. Memory is bounded by ``block_postings`` postings per block.
    """
    stop = index.num_documents if stop is None else stop
    if not 0 <= start <= stop <= index.num_documents:
        raise ValueError(f"document range [{start}, {stop}) outside 0..{index.num_documents}")
    average = max(1.0, index.num_postings / max(index.num_documents, 1))
    per_block = max(1, int(block_postings / average))
    if index.has_search_layout:  # the forward index: each block is a copy of its rows
        for first in range(start, stop, per_block):
            yield index.document_block(first, min(stop, first + per_block))
        return
    # Without a layout: inverted from the document-ordered postings, a cursor per term.
    offsets = np.asarray(index.term_offsets)
    docs = np.asarray(index.postings_docs)
    impacts = np.asarray(index.postings_impacts)
    cursor = new_cursor(offsets)
    ids = index.doc_ids
    vocab = index.vocab
    if start > 0:
        advance_cursor(offsets, docs, cursor, start)
    first = start
    while first < stop:
        last = min(stop, first + per_block)
        indptr, terms, values = invert_block(offsets, docs, impacts, cursor, first, last)
        yield SparseBatch(indptr, terms, values, vocab, tuple(ids[first:last]))
        first = last


def document_vectors(index) -> SparseBatch:
    """Every document of an index as one SparseBatch of int impacts (see
    :func:`iter_document_vectors` for large indexes)."""
    blocks = list(iter_document_vectors(index))
    if not blocks:
        return SparseBatch.empty(index.vocab, ids=[], dtype=np.int32)
    return SparseBatch.concatenate(blocks)


def export_json_vectors(
    index,
    output: str | os.PathLike,
    *,
    shards: int = 1,
    contents: bool = False,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> ExportReport:
    """Write an index as a JsonVectorCollection directory of ``shards`` JSONL files.

    Args:
        index: an open :class:`~sparse_ir.index.impact_index.ImpactIndex`.
        output: the directory to create (it must not exist or be empty, unless ``overwrite``).
        shards: number of files; documents are split into contiguous ranges, in order.
        contents: also write ``contents`` (title + " " + text) and ``title`` from the index's
            stored contents (an error if the index stores none).
        overwrite: replace an existing non-empty ``output`` directory.
        show_progress: progress bar; None shows it on a terminal.

    Raises:
        InputError: a token or document id Lucene/Anserini cannot take unchanged, or
            ``contents`` asked of an index without stored contents.
        FileExistsError: ``output`` exists, is not empty, and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")
    if contents and not index.has_contents:
        raise InputError(
            f"the index {index.directory} stores no titles and texts (it was built "
            "without contents), so --contents cannot be exported"
        )
    output = Path(output)
    _check_output(output, overwrite)
    started = time.perf_counter()
    used = np.flatnonzero(np.diff(np.asarray(index.term_offsets)) > 0)
    check_tokens((index.vocab[t] for t in used.tolist()), context=f"index {index.directory}")
    for doc_id in index.doc_ids:
        if (problem := id_problem(doc_id)) is not None:
            raise InputError(f"document {problem}; it cannot be exported to Anserini")
    token_json = [json.dumps(token, ensure_ascii=False) for token in index.vocab]

    total = index.num_documents
    shards = max(1, min(shards, total)) if total else 1
    bounds = np.linspace(0, total, shards + 1).round().astype(np.int64)
    report = ExportReport(contents=contents)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.parent / f".{output.name}.tmp-{secrets.token_hex(6)}"
    temporary.mkdir()
    progress = tqdm(
        total=total,
        desc="exporting",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    )
    try:
        for number in range(shards):
            path = temporary / shard_file_name(number)
            docno = int(bounds[number])
            with open(path, "w", encoding="utf-8", newline="\n") as out:
                for block in iter_document_vectors(
                    index, start=docno, stop=int(bounds[number + 1])
                ):
                    out.write(_format_block(index, block, docno, token_json, contents, report))
                    docno += len(block)
                    progress.update(len(block))
                out.flush()
                os.fsync(out.fileno())
            report.files.append(output / path.name)
        if report.postings != index.num_postings:
            raise IndexCorruptError(
                f"{index.directory}: exported {report.postings} postings but "
                f"the manifest counts {index.num_postings}; run verify()"
            )
        fsync_directory(temporary)
        replace_directory(temporary, output)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        progress.close()
    report.seconds = time.perf_counter() - started
    logger.info("exported %s to %s", report, output)
    return report


def _format_block(
    index,
    block: SparseBatch,
    first_docno: int,
    token_json: list[str],
    contents: bool,
    report: ExportReport,
) -> str:
    lines = []
    indptr = block.indptr.tolist()
    terms = block.indices.tolist()
    values = block.values.tolist()
    for row, doc_id in enumerate(block.ids):
        start, end = indptr[row], indptr[row + 1]
        vector = ", ".join(f"{token_json[terms[i]]}: {values[i]}" for i in range(start, end))
        head = '{"id": ' + json.dumps(doc_id, ensure_ascii=False)
        if contents:
            title, text = index.document(first_docno + row)
            full = f"{title} {text}" if title and text else (title or text)
            head += (
                ', "contents": '
                + json.dumps(full, ensure_ascii=False)
                + ', "title": '
                + json.dumps(title, ensure_ascii=False)
            )
        lines.append(head + ', "vector": {' + vector + "}}\n")
        if start == end:
            report.empty_documents += 1
    report.documents += len(block)
    report.postings += block.nnz
    return "".join(lines)


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists():
        if not output.is_dir():
            raise FileExistsError(f"{output} exists and is not a directory")
        if any(output.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{output} exists and is not empty; Anserini reads every file "
                "of its input directory, so choose an empty or new directory "
                "(or pass overwrite=True / --overwrite)"
            )
