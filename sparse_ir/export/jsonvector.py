"""Import: build an ImpactIndex from any Anserini JsonVectorCollection, with no encoder.

Reads what :mod:`.lucene` writes and what Pyserini publishes (e.g. its pre-encoded SPLADE++
corpora): JSONL files (``.json``, ``.jsonl``, optionally ``.gz``) of
``{"id": ..., "vector": {token: weight}, "contents": ..., "title": ...}``.

Every record is checked; a bad one raises :class:`~sparse_ir.errors.InputError` naming the file,
the line and the rule, or is counted in a :class:`~sparse_ir.jsonl.SkipReport` when the caller
asked to skip invalid records. The rules:

* ``id`` is a string or an integer, not empty, without whitespace, not seen before;
* ``vector`` is an object ``{token: weight}``; tokens must be ones Lucene indexes unchanged
  (:mod:`.tokens`); zero weights are dropped, as Anserini drops them;
* weights are integers in ``[0, max_impact]``. **Floats are an error** unless a ``scale`` is
  given: Anserini reads each weight with Jackson's ``asInt()``, which silently truncates 0.97
  to 0, so a float in a JsonVectorCollection is almost always a file meant for another tool.
  With ``scale``, every weight (integer or float) is a float weight quantized as
  ``round(weight × scale)`` by the index's :class:`~sparse_ir.quantize.Quantizer`;
* ``contents`` and ``title``, when present, are strings. Our export writes ``contents`` =
  ``title + " " + text``; when ``title`` is given and ``contents`` starts with it, the text
  stored is the rest.

The vocabulary is either given (the model's, so text queries can later be encoded against the
index; a token outside it is an error) or made of the tokens found, sorted. In the second case
the records are parsed once and spooled to a temporary directory beside the output until the
vocabulary is known, so memory stays bounded.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparse_ir.errors import InputError
from sparse_ir.export.tokens import id_problem, token_problem
from sparse_ir.jsonl import SkipReport, read_jsonl
from sparse_ir.quantize import DEFAULT_SCALE, Quantizer, QuantizeStats
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import weight_problem

__all__ = [
    "JSON_VECTOR_SUFFIXES",
    "ImportReport",
    "VectorRecord",
    "collection_files",
    "import_json_vectors",
    "read_json_vectors",
]

logger = logging.getLogger(__name__)

JSON_VECTOR_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
# The largest weight read (a float beyond it would not quantize to an exact integer anyway).
_LARGEST_WEIGHT = 2**63 - 1


class VectorRecord(NamedTuple):
    """One checked document of a JsonVectorCollection.

    Attributes:
        id: the document id.
        tokens: its tokens, in file order.
        impacts: the integer impact of each token (all > 0).
        title: the stored title ("" when absent).
        text: the stored text, or None when the record has no ``contents`` field.
    """

    id: str
    tokens: list[str]
    impacts: list[int]
    title: str
    text: str | None


@dataclass
class ImportReport:
    """What an import read and built."""

    files: list[Path] = field(default_factory=list)
    ignored_files: list[Path] = field(default_factory=list)
    documents: int = 0
    postings: int = 0
    empty_documents: int = 0
    zero_weights: int = 0
    quantize: QuantizeStats = field(default_factory=QuantizeStats)
    skipped: SkipReport = field(default_factory=SkipReport)
    vocab_size: int = 0
    contents: bool = False
    contents_not_stored: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (
            f"{self.documents} documents, {self.postings} postings from {len(self.files)} "
            f"file(s), vocabulary of {self.vocab_size} tokens, {self.seconds:.1f}s"
        )
        if self.empty_documents:
            text += f"; {self.empty_documents} document(s) with no terms"
        if self.zero_weights:
            text += f"; {self.zero_weights} zero weight(s) dropped"
        if self.quantize.saturated:
            text += f"; {self.quantize.saturated} weight(s) clipped at max_impact"
        if self.contents_not_stored:
            text += (
                f"; contents of {self.contents_not_stored} record(s) not stored (the first "
                "record had none; pass contents=True / --contents to keep them)"
            )
        if self.ignored_files:
            text += (
                f"; ignored {len(self.ignored_files)} file(s) without a JSON suffix "
                f"(e.g. {self.ignored_files[0].name})"
            )
        if self.skipped.total:
            text += "\n" + self.skipped.summary()
        return text


def collection_files(source: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(files to read, files ignored)`` of a collection: one file, or every file under a
    directory (recursively, sorted by path) whose name ends in a JSON suffix."""
    source = Path(source)
    if source.is_file():
        return [source], []
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or directory")
    files, ignored = [], []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            ignored.append(path)
        elif path.name.lower().endswith(JSON_VECTOR_SUFFIXES):
            files.append(path)
        else:
            ignored.append(path)
    if not files:
        raise InputError(
            f"no {', '.join(JSON_VECTOR_SUFFIXES)} files in the directory", path=source
        )
    return files, ignored


def read_json_vectors(
    files: Sequence[str | os.PathLike],
    *,
    quantizer: Quantizer | None = None,
    scale_floats: bool = False,
    vocabulary: Mapping[str, int] | None = None,
    skip_invalid: bool = False,
    report: ImportReport | None = None,
) -> Iterator[VectorRecord]:
    """Yield the checked records of JsonVectorCollection files, in order.

    Args:
        files: the files to read (see :func:`collection_files`).
        quantizer: bounds integer weights by its ``max_impact`` and, with ``scale_floats``,
            turns every weight into an impact (default: ``Quantizer()``).
        scale_floats: True to quantize every weight (the user gave a scale); False to require
            integer weights.
        vocabulary: when given, a token outside it makes the record invalid.
        skip_invalid: count and skip invalid records instead of raising.
        report: receives counts (skips, zero weights, quantization statistics).
    """
    quantizer = quantizer or Quantizer()
    report = report if report is not None else ImportReport()
    seen: set[str] = set()
    checked_tokens: set[str] = set()
    for path in files:
        for line, record in read_jsonl(path, skip_invalid=skip_invalid, report=report.skipped):
            try:
                parsed = _check_record(
                    record, path, line, quantizer, scale_floats, vocabulary, checked_tokens, report
                )
                if parsed.id in seen:
                    raise InputError(
                        f"duplicate id: {parsed.id!r} appears more than once", path=path, line=line
                    )
            except InputError as error:
                if not skip_invalid:
                    raise
                report.skipped.add(error)
                continue
            seen.add(parsed.id)
            yield parsed


def _check_record(
    record: dict,
    path,
    line: int,
    quantizer: Quantizer,
    scale_floats: bool,
    vocabulary: Mapping[str, int] | None,
    checked_tokens: set[str],
    report: ImportReport,
) -> VectorRecord:
    if "id" not in record:
        raise InputError('missing id: no "id" field', path=path, line=line)
    doc_id = record["id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(
            f'missing id: "id" must be a string or an integer, got {doc_id!r}', path=path, line=line
        )
    doc_id = str(doc_id)
    if (problem := id_problem(doc_id)) is not None:
        raise InputError(f"invalid id: {problem}", path=path, line=line)
    vector = record.get("vector")
    if vector is None:
        raise InputError(
            'missing vector: no "vector" field ({token: weight})', path=path, line=line
        )
    if not isinstance(vector, dict):
        kind = "a list (a dense vector)" if isinstance(vector, list) else type(vector).__name__
        raise InputError(
            f"invalid vector: expected an object {{token: weight}}, got {kind}",
            path=path,
            line=line,
        )
    tokens, weights = [], []
    for token, weight in vector.items():
        if token not in checked_tokens:
            if (problem := token_problem(token)) is not None:
                raise InputError(f"invalid token: {problem}", path=path, line=line)
            if vocabulary is not None and token not in vocabulary:
                raise InputError(
                    f"unknown token: {token!r} is not in the given vocabulary of "
                    f"{len(vocabulary)} tokens (import without a vocabulary to "
                    "build one from the tokens found)",
                    path=path,
                    line=line,
                )
            checked_tokens.add(token)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise InputError(
                f"invalid weight: weight of {token!r} is {weight!r}, not a number",
                path=path,
                line=line,
            )
        if weight < 0:
            raise InputError(
                f"invalid weight: weight of {token!r} is {weight!r}; weights must be >= 0",
                path=path,
                line=line,
            )
        if (problem := weight_problem(weight)) is not None or weight > _LARGEST_WEIGHT:
            raise InputError(
                f"invalid weight: {problem or f'weight {weight} is too large'} (token {token!r})",
                path=path,
                line=line,
            )
        if not scale_floats:
            if isinstance(weight, float):
                raise InputError(
                    f"float weight: weight of {token!r} is {weight!r}, but a JsonVectorCollection "
                    "holds integer impacts (Anserini would truncate it to "
                    f"{int(weight)}); pass a scale (--scale 100) to quantize float weights as "
                    "round(weight x scale)",
                    path=path,
                    line=line,
                )
            if weight > quantizer.max_impact:
                raise InputError(
                    f"invalid weight: impact {weight} of {token!r} exceeds "
                    f"max_impact {quantizer.max_impact} (raise --max-impact)",
                    path=path,
                    line=line,
                )
        tokens.append(token)
        weights.append(weight)
    if scale_floats:
        impacts = quantizer.quantize_values(
            np.asarray(weights, np.float64), report.quantize
        ).tolist()
    else:
        impacts = weights
    kept = [(t, w) for t, w in zip(tokens, impacts) if w > 0]
    report.zero_weights += len(tokens) - len(kept)
    title, text = _contents(record, path, line)
    return VectorRecord(doc_id, [t for t, _ in kept], [w for _, w in kept], title, text)


def _contents(record: dict, path, line: int) -> tuple[str, str | None]:
    for key in ("contents", "title"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise InputError(
                f"invalid field: {key!r} must be a string, got {type(record[key]).__name__}",
                path=path,
                line=line,
            )
    title = record.get("title") or ""
    contents = record.get("contents")
    if contents is None:
        return title, None
    if title and contents == title:
        return title, ""
    if title and contents.startswith(title + " "):
        return title, contents[len(title) + 1 :]
    return title, contents


# -- building -----------------------------------------------------------------------------------


class _Chunk(NamedTuple):
    indptr: np.ndarray
    terms: np.ndarray  # term ids (final, or provisional in first-seen order)
    impacts: np.ndarray
    ids: list[str]
    contents: list[tuple[str, str]] | None


def _chunks(
    records: Iterator[VectorRecord],
    term_id,
    shard_size: int,
    store_contents: bool,
    report: ImportReport,
    progress,
) -> Iterator[_Chunk]:
    """Group records into chunks of ``shard_size``; ``term_id(token)`` numbers the tokens."""
    batch: list[VectorRecord] = []

    def flush() -> _Chunk:
        lengths = [len(r.tokens) for r in batch]
        indptr = np.zeros(len(batch) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        terms = np.fromiter(
            (term_id(t) for r in batch for t in r.tokens), np.int64, count=int(indptr[-1])
        )
        impacts = np.fromiter(
            (w for r in batch for w in r.impacts), np.int64, count=int(indptr[-1])
        )
        report.documents += len(batch)
        report.postings += int(indptr[-1])
        report.empty_documents += sum(1 for n in lengths if n == 0)
        progress.update(len(batch))
        contents = [(r.title, r.text or "") for r in batch] if store_contents else None
        if not store_contents:
            report.contents_not_stored += sum(1 for r in batch if r.text is not None)
        return _Chunk(indptr, terms, impacts, [r.id for r in batch], contents)

    for record in records:
        batch.append(record)
        if len(batch) >= shard_size:
            yield flush()
            batch = []
    if batch:
        yield flush()


def _to_batch(chunk: _Chunk, vocab: tuple[str, ...], remap: np.ndarray | None) -> SparseBatch:
    """A SparseBatch of a chunk, term ids mapped to the final vocabulary and sorted per row."""
    terms = chunk.terms if remap is None else remap[chunk.terms]
    rows = np.repeat(np.arange(len(chunk.ids)), np.diff(chunk.indptr))
    order = np.lexsort((terms, rows))
    return SparseBatch(
        chunk.indptr,
        terms[order].astype(np.int32),
        chunk.impacts[order].astype(np.int32),
        vocab,
        tuple(chunk.ids),
    )


class _Spool:
    """Chunks written to a temporary directory while the vocabulary is still growing."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.count = 0

    def add(self, chunk: _Chunk) -> None:
        base = self.directory / f"chunk-{self.count:06d}"
        np.save(f"{base}.indptr.npy", chunk.indptr)
        np.save(f"{base}.terms.npy", chunk.terms.astype(np.int32))
        np.save(f"{base}.impacts.npy", chunk.impacts.astype(np.int32))
        with open(f"{base}.meta.jsonl", "w", encoding="utf-8") as out:
            for i, doc_id in enumerate(chunk.ids):
                row = [doc_id] + (list(chunk.contents[i]) if chunk.contents is not None else [])
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.count += 1

    def __iter__(self) -> Iterator[_Chunk]:
        for number in range(self.count):
            base = self.directory / f"chunk-{number:06d}"
            ids, contents = [], []
            with open(f"{base}.meta.jsonl", encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    ids.append(row[0])
                    if len(row) == 3:
                        contents.append((row[1], row[2]))
            yield _Chunk(
                np.load(f"{base}.indptr.npy", allow_pickle=False),
                np.load(f"{base}.terms.npy", allow_pickle=False),
                np.load(f"{base}.impacts.npy", allow_pickle=False),
                ids,
                contents or None,
            )


def import_json_vectors(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    vocab: Sequence[str] | None = None,
    scale: float | None = None,
    max_impact: int = 65_535,
    contents: bool | None = None,
    skip_invalid: bool = False,
    shard_size: int = 4096,
    memory_budget: int | str = "1GB",
    settings: dict | None = None,
    show_progress: bool | None = None,
):
    """Build an :class:`~sparse_ir.index.impact_index.ImpactIndex` from a JsonVectorCollection.

    Args:
        source: a JSONL file or a directory of them (read in sorted path order).
        output: the index directory (replaced atomically when the build succeeds).
        vocab: the vocabulary to use (e.g. the model's, so text queries can be encoded later);
            a token outside it is an error. None: the sorted set of tokens found.
        scale: None requires integer weights (impacts as they are); a number quantizes every
            weight as ``round(weight × scale)``. The index's quantizer records this scale
            (or 100, Pyserini's, when None): it is what float query weights are multiplied by.
        max_impact: the largest impact accepted (integers) or kept (quantized floats).
        contents: store titles and texts; None stores them when the first record has a
            ``contents`` field.
        skip_invalid: count and skip invalid records instead of failing on the first.
        shard_size: documents handed to the index builder at a time.
        memory_budget: the index builder's budget for buffered postings.
        settings: extra facts for the manifest (e.g. ``{"model": name}``).
        show_progress: progress bar; None shows it on a terminal.

    Returns:
        ``(index, report)``.
    """
    from tqdm.auto import tqdm

    from sparse_ir.index.impact_index import ImpactIndex

    started = time.perf_counter()
    report = ImportReport()
    report.files, report.ignored_files = collection_files(source)
    for ignored in report.ignored_files:
        logger.warning("ignored %s: not a %s file", ignored, "/".join(JSON_VECTOR_SUFFIXES))
    quantizer, final_vocab, lookup, store, records = _open_records(
        source, report, vocab, scale, max_impact, contents, skip_invalid
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    progress = tqdm(
        desc="importing", unit="doc", disable=None if show_progress is None else not show_progress
    )
    pending: collections.deque[tuple[str, str]] = collections.deque()
    spool_dir = None
    try:
        if lookup is not None:
            chunks = _chunks(records, lookup.__getitem__, shard_size, store, report, progress)
            remap = None
        else:
            spool_dir = Path(tempfile.mkdtemp(prefix=f".{output.name}.import-", dir=output.parent))
            chunks, final_vocab, remap = _spool_learning_vocabulary(
                records, spool_dir, shard_size, store, report, progress
            )

        def batches() -> Iterator[SparseBatch]:
            for chunk in chunks:
                if chunk.contents is not None:
                    pending.extend(chunk.contents)
                yield _to_batch(chunk, final_vocab, remap)

        def drain() -> Iterator[tuple[str, str] | None]:
            while True:
                yield pending.popleft() if pending else None

        manifest_settings = {
            "imported_from": str(Path(source).resolve()),
            "source_format": "JsonVectorCollection",
            "import_scale": scale,
            **(settings or {}),
        }
        index = ImpactIndex.build(
            batches(),
            output,
            quantizer=quantizer,
            memory_budget=memory_budget,
            contents=drain() if store else None,
            settings=manifest_settings,
            show_progress=False,
        )
    finally:
        progress.close()
        if spool_dir is not None:
            shutil.rmtree(spool_dir, ignore_errors=True)
    report.vocab_size = len(final_vocab)
    report.seconds = time.perf_counter() - started
    logger.info("imported %s -> %s", report, output)
    return index, report


def _open_records(source, report, vocab, scale, max_impact, contents, skip_invalid):
    """The quantizer, the given vocabulary (and its lookup), whether to store contents, and
    the records (the first one read already, to fail early on an empty collection)."""
    quantizer = Quantizer(scale=DEFAULT_SCALE if scale is None else scale, max_impact=max_impact)
    final_vocab = tuple(vocab) if vocab is not None else None
    lookup = None
    if final_vocab is not None:
        lookup = {token: i for i, token in enumerate(final_vocab)}
        if len(lookup) != len(final_vocab):
            raise InputError("the given vocabulary lists a token twice")
    records = read_json_vectors(
        report.files,
        quantizer=quantizer,
        scale_floats=scale is not None,
        vocabulary=lookup,
        skip_invalid=skip_invalid,
        report=report,
    )
    first = next(records, None)
    if first is None:
        raise InputError("no valid documents to import", path=source)
    store = (first.text is not None) if contents is None else bool(contents)
    report.contents = store
    records = _prepend(first, records)
    return quantizer, final_vocab, lookup, store, records


def _spool_learning_vocabulary(records, spool_dir, shard_size, store, report, progress):
    """Spool the chunks to ``spool_dir`` while learning the vocabulary: the spooled chunks,
    the sorted vocabulary and the map from provisional to final term ids."""
    spool = _Spool(spool_dir)
    found: dict[str, int] = {}

    def growing_id(token: str) -> int:
        return found.setdefault(token, len(found))

    for chunk in _chunks(records, growing_id, shard_size, store, report, progress):
        spool.add(chunk)
    provisional = list(found)
    order = sorted(range(len(provisional)), key=provisional.__getitem__)
    final_vocab = tuple(provisional[i] for i in order)
    remap = np.empty(len(provisional), np.int64)
    remap[np.asarray(order, np.int64)] = np.arange(len(provisional))
    chunks = iter(spool)
    if not final_vocab:
        final_vocab = ("[empty]",)  # no terms at all: one placeholder, no postings
    return chunks, final_vocab, remap


def _prepend(first: VectorRecord, rest: Iterator[VectorRecord]) -> Iterator[VectorRecord]:
    yield first
    yield from rest
