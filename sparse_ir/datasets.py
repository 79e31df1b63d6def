"""ir_datasets ids where a corpus, queries or qrels file is expected (optional extra ``datasets``).

A value ``irds:<id>`` (PyTerrier's spelling, e.g. ``irds:beir/scifact/test``) names an
ir_datasets dataset. :func:`dataset_file` writes the part asked for once, as the file sparse_ir
reads (corpus.jsonl, queries.jsonl, TREC qrels), under ``$SPARSE_IR_CACHE/irds/`` (default
``~/.cache/sparse-ir/irds/``), and returns its path; later calls reuse it. Nothing is fetched by
sparse_ir: a dataset whose files ir_datasets does not have locally fails with a message saying
so (ir_datasets itself downloads on first use where the network allows it).

Example:
    >>> from sparse_ir.datasets import dataset_file, is_dataset_ref
    >>> is_dataset_ref("irds:beir/scifact/test"), is_dataset_ref("scifact/corpus.jsonl")
    (True, False)
    >>> dataset_file("irds:beir/scifact/test", "qrels")              # doctest: +SKIP
    PosixPath('/root/.cache/sparse-ir/irds/beir__scifact__test/qrels.trec')

On the command line the same values work for ``--input``, ``--queries`` and ``--qrels``:
``sparse-ir evaluate --run run.trec --qrels irds:beir/scifact/test``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

from sparse_ir.errors import InputError, MissingDependencyError

__all__ = ["PREFIX", "DatasetPart", "is_dataset_ref", "dataset_file", "cache_dir"]

#: The prefix marking an ir_datasets id.
PREFIX = "irds:"

#: The parts of a dataset a command reads.
DatasetPart = Literal["corpus", "queries", "qrels"]

_FILES = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels.trec"}
_HAS = {"corpus": "has_docs", "queries": "has_queries", "qrels": "has_qrels"}


def is_dataset_ref(value: object) -> bool:
    """True for a string ``irds:<id>``."""
    return isinstance(value, str) and value.startswith(PREFIX)


def cache_dir() -> Path:
    """Where dataset files are written: ``$SPARSE_IR_CACHE/irds`` or ``~/.cache/sparse-ir/irds``."""
    root = os.environ.get("SPARSE_IR_CACHE") or Path.home() / ".cache" / "sparse-ir"
    return Path(root) / "irds"


def dataset_file(ref: str, part: DatasetPart) -> Path:
    """The local file holding ``part`` of the dataset ``ref`` (``irds:<id>``), written once."""
    if part not in _FILES:
        raise ValueError(f"part must be one of {', '.join(_FILES)}, got {part!r}")
    dataset_id = ref[len(PREFIX) :] if is_dataset_ref(ref) else ref
    dataset = _load(dataset_id)
    if not getattr(dataset, _HAS[part])():
        raise InputError(f"{PREFIX}{dataset_id}: this dataset has no {part}")
    path = cache_dir() / re.sub(r"[^A-Za-z0-9._-]+", "__", dataset_id) / _FILES[part]
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            _WRITERS[part](dataset, out)
        os.replace(partial, path)
    except Exception as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, (InputError, KeyboardInterrupt)):
            raise
        raise InputError(
            f"{PREFIX}{dataset_id}: its {part} could not be read locally ({type(error).__name__}: "
            f"{error}); ir_datasets keeps a dataset's files under $IR_DATASETS_HOME "
            "(default ~/.ir_datasets) and fetches them on first use where the network allows"
        ) from None
    return path


def _load(dataset_id: str):
    try:
        import ir_datasets
    except ImportError:
        raise MissingDependencyError(
            f"the dataset id {PREFIX}{dataset_id}", "ir_datasets", "datasets"
        ) from None
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise InputError(
            f"{PREFIX}{dataset_id}: unknown ir_datasets id (see `ir_datasets list`)"
        ) from None


def _write_corpus(dataset, out) -> None:
    for doc in dataset.docs_iter():
        text = getattr(doc, "text", None)
        if text is None:
            text = doc.default_text()
        record = {"_id": doc.doc_id, "title": getattr(doc, "title", "") or "", "text": text}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_queries(dataset, out) -> None:
    for query in dataset.queries_iter():
        text = getattr(query, "text", None)
        if text is None:
            text = query.default_text()
        out.write(json.dumps({"_id": query.query_id, "text": text}, ensure_ascii=False) + "\n")


def _write_qrels(dataset, out) -> None:
    for qrel in dataset.qrels_iter():
        out.write(f"{qrel.query_id} 0 {qrel.doc_id} {int(qrel.relevance)}\n")


_WRITERS = {"corpus": _write_corpus, "queries": _write_queries, "qrels": _write_qrels}


def resolve_cli_paths(args) -> None:
    """Replace ``irds:`` values of ``--input``, ``--queries`` and ``--qrels`` on a parsed
    command line by the local files they name (``--input`` is a corpus, or queries when the
    command's ``--queries`` is a flag that is set)."""
    for name, part in (("input", None), ("queries", "queries"), ("qrels", "qrels")):
        value = getattr(args, name, None)
        if not is_dataset_ref(value):
            continue
        if part is None:
            part = "queries" if getattr(args, "queries", None) is True else "corpus"
        setattr(args, name, str(dataset_file(value, part)))
