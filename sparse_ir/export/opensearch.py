"""OpenSearch / Elasticsearch hand-off: an index mapping, bulk NDJSON and query bodies.

Both engines store a learned sparse vector as an object field ``{feature: weight}``:

* OpenSearch: a ``rank_features`` field, searched with a ``bool`` of ``rank_feature`` queries
  (one ``should`` clause per query term, ``"linear": {}``, ``"boost"`` = the query weight), or
  its ``neural_sparse`` query with raw ``query_tokens``;
* Elasticsearch 8.11+: a ``sparse_vector`` field, searched (8.15+) with the ``sparse_vector``
  query and a ``query_vector``.

With the ``linear`` function a clause scores ``boost × stored value``, and the bool query adds
the clauses: the score is our dot product Σ_t q_t · d_t. Both field types store a value with 9
significant bits (relative error up to ~0.4%), so the integer impacts of an index quantized
with ``max_impact`` <= 511 (8-bit indexes: 255) are stored exactly and the engine's scores equal
ours (float32 sums, exact below 2^24). Wider impacts are rounded by the engine; the export
records whether it is exact.

Feature names: the document parser reads a ``.`` in a key as an object path and both field
types refuse it ("fields do not support dots in feature names"); a name must be non-empty and
at most :data:`MAX_FEATURE_BYTES` UTF-8 bytes (Lucene's term limit). Tokens breaking a rule are
written under another name (``__t<term id>``); ``token_map.json`` records every such pair and
:func:`query_body` applies it. Document ids (Elasticsearch's ``_id``) are limited to
:data:`MAX_ID_BYTES` bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

from sparse_ir.errors import InputError

__all__ = [
    "MAX_FEATURE_BYTES",
    "MAX_ID_BYTES",
    "EngineExportReport",
    "Engine",
    "export_search_engine",
    "feature_names",
    "index_mapping",
    "query_body",
    "read_token_map",
]

logger = logging.getLogger(__name__)

Engine = Literal["opensearch", "elasticsearch"]
#: Lucene's ``IndexWriter.MAX_TERM_LENGTH``: a feature name is indexed as one term.
MAX_FEATURE_BYTES = 32_766
#: Elasticsearch and OpenSearch refuse an ``_id`` longer than 512 bytes.
MAX_ID_BYTES = 512
#: The largest integer both field types store exactly (9 significant bits).
EXACT_MAX_IMPACT = 511
TOKEN_MAP_FILE = "token_map.json"
MAPPING_FILE = "mapping.json"
SETTINGS_FILE = "export.json"


def _check_engine(engine: str) -> None:
    if engine not in get_args(Engine):
        raise ValueError(f"engine must be one of {get_args(Engine)}, got {engine!r}")


def feature_names(vocab) -> tuple[list[str], dict[str, str]]:
    """``(names, token_map)``: the field-safe feature name of every term id, and the tokens
    that had to be renamed (``{token: name}``)."""
    vocab = list(vocab)
    taken = set(vocab)
    names, renamed = [], {}
    for term_id, token in enumerate(vocab):
        if token and "." not in token and len(token.encode("utf-8")) <= MAX_FEATURE_BYTES:
            names.append(token)
            continue
        name = f"__t{term_id}"
        while name in taken:
            name = "_" + name
        taken.add(name)
        names.append(name)
        renamed[token] = name
    return names, renamed


def index_mapping(engine: Engine, *, field: str = "vector", contents: bool = False) -> dict:
    """The body of ``PUT /<index>``: the vector field (``rank_features`` for OpenSearch,
    ``sparse_vector`` for Elasticsearch), the id as a keyword, optional stored texts."""
    _check_engine(engine)
    properties = {
        "id": {"type": "keyword"},
        field: {"type": "rank_features" if engine == "opensearch" else "sparse_vector"},
    }
    if contents:
        properties["title"] = {"type": "text"}
        properties["text"] = {"type": "text"}
    return {"mappings": {"properties": properties}}


def query_body(
    engine: Engine,
    weights: Mapping[str, float],
    *,
    field: str = "vector",
    k: int = 10,
    token_map: Mapping[str, str] | None = None,
    neural_sparse: bool = False,
) -> dict:
    """The ``_search`` body scoring documents by the dot product with ``weights``.

    Args:
        engine: ``"opensearch"`` (bool of ``rank_feature`` clauses with the ``linear``
            function, or ``neural_sparse`` with ``query_tokens`` if asked) or
            ``"elasticsearch"`` (the ``sparse_vector`` query with ``query_vector``, 8.15+).
        weights: ``{token: weight}`` (integer query impacts give integer scores).
        field: the vector field of the mapping.
        k: hits returned (``size``).
        token_map: ``{token: feature name}`` of the export (``token_map.json``).
        neural_sparse: OpenSearch only: use its ``neural_sparse`` query.
    """
    _check_engine(engine)
    token_map = token_map or {}
    features = {}
    for token, weight in weights.items():
        if weight > 0:
            features[token_map.get(token, token)] = _number(weight)
    if engine == "elasticsearch":
        query = {"sparse_vector": {"field": field, "query_vector": features}}
    elif neural_sparse:
        query = {"neural_sparse": {field: {"query_tokens": features}}}
    else:
        query = {
            "bool": {
                "should": [
                    {"rank_feature": {"field": f"{field}.{name}", "linear": {}, "boost": weight}}
                    for name, weight in features.items()
                ]
            }
        }
    return {"size": k, "query": query}


def _number(value):
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


@dataclass
class EngineExportReport:
    """What an export wrote.

    Attributes:
        engine: ``"opensearch"`` or ``"elasticsearch"``.
        documents: documents written (one action line + one source line each).
        files: bulk files written.
        renamed_tokens: tokens written under another feature name (``token_map.json``).
        impact_sum: the sum of every impact written (equal to the index's).
        max_impact: the largest impact written.
        exact: True when every impact is stored exactly by the engine (<= 511).
    """

    engine: str
    documents: int = 0
    files: int = 0
    renamed_tokens: int = 0
    impact_sum: int = 0
    max_impact: int = 0
    exact: bool = True

    def __str__(self) -> str:
        return (
            f"{self.documents} documents in {self.files} bulk file(s) for {self.engine}, "
            f"{self.renamed_tokens} token(s) renamed (token_map.json), impacts "
            f"{'stored exactly' if self.exact else 'ROUNDED by the engine (> 511)'}"
        )


def export_search_engine(
    index,
    output: str | os.PathLike,
    *,
    engine: Engine,
    index_name: str = "sparse-ir",
    field: str = "vector",
    contents: bool = False,
    max_file_bytes: int = 10_000_000,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> EngineExportReport:
    """Write ``mapping.json``, ``bulk-NNNNN.ndjson``, ``token_map.json`` and ``export.json``.

    Each bulk file holds whole documents (an ``index`` action line naming ``_index`` and
    ``_id``, then the source line ``{"id", field: {feature: impact}}``), ends with a newline
    and stays under ``max_file_bytes`` (the engines refuse requests over
    ``http.max_content_length``, 100 MB by default) unless one document alone is larger.
    The directory is written beside its final place and renamed into place when complete.

    Raises:
        InputError: a document id longer than :data:`MAX_ID_BYTES` bytes.
    """
    from tqdm.auto import tqdm

    from sparse_ir.export.lucene import iter_document_vectors

    _check_engine(engine)
    if not field or "." in field:
        raise ValueError(f"field must be a non-empty name without '.', got {field!r}")
    final = Path(output)
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{final} exists and is not empty (pass overwrite=True / --overwrite to replace it)"
        )
    if contents and not index.has_contents:
        raise ValueError(f"{index.directory}: the index stores no contents to export")
    temporary = final.with_name(final.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    names, renamed = feature_names(index.vocab)
    report = EngineExportReport(engine, renamed_tokens=len(renamed))
    handle = None
    written = 0
    progress = tqdm(
        total=index.num_documents,
        desc=f"export {engine}",
        unit="doc",
        disable=None if show_progress is None else not show_progress,
    )

    def open_next():
        nonlocal handle, written
        if handle is not None:
            handle.close()
        handle = open(temporary / f"bulk-{report.files:05d}.ndjson", "w", encoding="utf-8")
        report.files += 1
        written = 0

    try:
        docno = 0
        for block in iter_document_vectors(index):
            for row in range(len(block)):
                lines, impacts = _document_lines(
                    index, block, row, docno, engine, index_name, field, names, contents
                )
                size = len(lines.encode("utf-8"))
                if handle is None or (written and written + size > max_file_bytes):
                    open_next()
                handle.write(lines)
                written += size
                report.documents += 1
                report.impact_sum += int(impacts.sum())
                if len(impacts):
                    report.max_impact = max(report.max_impact, int(impacts.max()))
                docno += 1
            progress.update(len(block))
        if handle is None:
            open_next()
        handle.close()
        handle = None
        _finish_export(temporary, index, report, engine, index_name, field, contents, renamed)
    except BaseException:
        if handle is not None:
            handle.close()
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        progress.close()
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    return report


def _document_lines(index, block, row, docno, engine, index_name, field, names, contents):
    """The bulk action and source lines of one document, and its impacts."""
    doc_id = block.ids[row]
    if len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        raise InputError(
            f"document id {doc_id[:40]!r}... is "
            f"{len(doc_id.encode('utf-8'))} UTF-8 bytes; "
            f"{engine} limits _id to {MAX_ID_BYTES}"
        )
    start, end = block.indptr[row], block.indptr[row + 1]
    terms, impacts = block.indices[start:end], block.values[start:end]
    source = {
        "id": doc_id,
        field: {names[t]: int(v) for t, v in zip(terms.tolist(), impacts.tolist())},
    }
    if contents:
        title, text = index.document(docno)
        source["title"], source["text"] = title or "", text or ""
    action = {"index": {"_index": index_name, "_id": doc_id}}
    lines = (
        json.dumps(action, ensure_ascii=False)
        + "\n"
        + json.dumps(source, ensure_ascii=False)
        + "\n"
    )
    return lines, impacts


def _finish_export(temporary, index, report, engine, index_name, field, contents, renamed):
    """Warn when the engine cannot hold the impacts exactly; write the mapping, token map and
    export settings files."""
    report.exact = report.max_impact <= EXACT_MAX_IMPACT
    if not report.exact:
        logger.warning(
            "impacts up to %d: %s keeps 9 significant bits, so values above "
            "%d are rounded and scores will differ from ours (quantize with "
            "--bits 8 for an exact hand-off)",
            report.max_impact,
            engine,
            EXACT_MAX_IMPACT,
        )
    _write_json(temporary / MAPPING_FILE, index_mapping(engine, field=field, contents=contents))
    _write_json(temporary / TOKEN_MAP_FILE, renamed)
    settings = index.settings
    _write_json(
        temporary / SETTINGS_FILE,
        {
            "format": "sparse-ir-search-engine-export",
            "format_version": 1,
            "index": os.path.abspath(os.fspath(index.directory)),
            "index_name": index_name,
            "field": field,
            "model": settings.get("model"),
            "model_fingerprint": settings.get("model_fingerprint"),
            **asdict(report),
        },
    )


def read_token_map(directory: str | os.PathLike) -> dict[str, str]:
    """The ``{token: feature name}`` map of an export directory."""
    return json.loads((Path(directory) / TOKEN_MAP_FILE).read_text(encoding="utf-8"))


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
