"""A corpus of bad input for every reader: each case is refused naming file, line and reason,
or (``skip_invalid`` / ``--skip-invalid``) counted and skipped while the good records survive.

Readers: corpus JSONL, queries (JSONL and TSV), qrels, TREC runs, SparseBatch files; and the
same through the CLI (``sparse_ir.cli.main``), which must exit non-zero and print
``FILE:LINE: reason``. ``scripts/integrity_report.py`` prints the table of cases and errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from integrity_figures import record

from sparse_ir.cli import main
from sparse_ir.corpus import read_corpus, read_queries
from sparse_ir.errors import InputError
from sparse_ir.eval import read_qrels
from sparse_ir.jsonl import SkipReport
from sparse_ir.results import Run
from sparse_ir.sparse_batch import SparseBatch


@dataclass(frozen=True)
class Case:
    reader: str  # corpus, queries.jsonl, queries.tsv, qrels, run, vectors
    name: str
    content: bytes
    reason: str  # a fragment of the expected reason
    line: int | None  # the line the error names (None: the whole file)
    good: int = 0  # records that survive --skip-invalid


GOOD_DOC = b'{"_id": "d0", "title": "t", "text": "good document"}\n'
GOOD_QUERY = b'{"_id": "q0", "text": "good query"}\n'


def corpus(name, line2: bytes, reason, *, newline=True, line=2):
    return Case("corpus", name, GOOD_DOC + line2 + (b"\n" if newline else b""), reason, line, 1)


CASES = [
    corpus("invalid UTF-8", b'{"_id": "d1", "text": "caf\xe9"}', "invalid UTF-8"),
    corpus("line is not JSON", b'{"_id": "d1", text: "x"}', "not valid JSON"),
    corpus("JSON but not an object", b'["d1", "text"]', "expected a JSON object"),
    corpus("duplicate JSON key", b'{"_id": "d1", "text": "a", "text": "b"}', "duplicate key"),
    corpus("NaN", b'{"_id": "d1", "text": "a", "score": NaN}', "NaN is not a JSON number"),
    corpus(
        "Infinity",
        b'{"_id": "d1", "text": "a", "score": -Infinity}',
        "-Infinity is not a JSON number",
    ),
    corpus("missing id", b'{"text": "no id"}', "missing id"),
    corpus("empty id", b'{"_id": " ", "text": "x"}', "missing id"),
    corpus("id of the wrong type", b'{"_id": 1.5, "text": "x"}', "must be a string or integer"),
    corpus("id with a line break", b'{"_id": "d\\u20281", "text": "x"}', "line break"),
    corpus("id with a control character", b'{"_id": "d\\u0001", "text": "x"}', "control character"),
    corpus("duplicate id", b'{"_id": "d0", "text": "again"}', "duplicate id"),
    corpus("missing text", b'{"_id": "d1", "title": "only"}', "missing text"),
    corpus("text not a string", b'{"_id": "d1", "text": 5}', "must be a string"),
    corpus("empty document", b'{"_id": "d1", "title": "", "text": "  "}', "empty document"),
    corpus("lone surrogate escape", b'{"_id": "d1", "text": "a\\ud800b"}', "lone surrogate"),
    corpus("truncated last line", b'{"_id": "d1", "te', "truncated last line", newline=False),
    Case("corpus", "UTF-8 byte order mark", b"\xef\xbb\xbf" + GOOD_DOC, "BOM", 1, 0),
    Case(
        "queries.jsonl",
        "empty query",
        GOOD_QUERY + b'{"_id": "q1", "text": ""}\n',
        "empty query",
        2,
        1,
    ),
    Case("queries.jsonl", "duplicate id", GOOD_QUERY + GOOD_QUERY, "duplicate id", 2, 1),
    Case("queries.jsonl", "missing id", GOOD_QUERY + b'{"text": "x"}\n', "missing id", 2, 1),
    Case(
        "queries.jsonl",
        "truncated last line",
        GOOD_QUERY + b'{"_id": "q1", "text": "x',
        "truncated last line",
        2,
        1,
    ),
    Case("queries.tsv", "one column", b"q0\tgood\nq1 no tab\n", "2 tab-separated columns", 2, 1),
    Case("queries.tsv", "empty id", b"q0\tgood\n\tno id\n", "missing id", 2, 1),
    Case(
        "queries.tsv",
        "id with a control character",
        b"q0\tgood\nq\x011\ttext\n",
        "control character",
        2,
        1,
    ),
    Case("queries.tsv", "invalid UTF-8", b"q0\tgood\nq1\tcaf\xe9\n", "invalid UTF-8", 2, 1),
    Case("queries.tsv", "duplicate id", b"q0\tgood\nq0\tagain\n", "duplicate id", 2, 1),
    Case("queries.tsv", "empty query", b"q0\tgood\nq1\t \n", "empty query", 2, 1),
    Case("queries.tsv", "truncated last line", b"q0\tgood\nq1", "may be truncated", 2, 1),
    Case("qrels", "two columns", b"q1\td1\t1\nq1\td2\n", "expected 3 (BEIR) or 4 (TREC)", 2, 1),
    Case("qrels", "relevance not an integer", b"q1\td1\t1\nq1\td2\thigh\n", "not an integer", 2, 1),
    Case("qrels", "fractional relevance", b"q1 0 d1 1\nq1 0 d2 0.5\n", "not an integer", 2, 1),
    Case("qrels", "judged twice", b"q1\td1\t1\nq1\td1\t0\n", "judged twice", 2, 1),
    Case("qrels", "invalid UTF-8", b"q1\td1\t1\nq1\td\xff\t1\n", "invalid UTF-8", 2, 1),
    Case("qrels", "no judgment at all", b"query-id\tcorpus-id\tscore\n", "no judgments", None),
    Case("qrels", "truncated last line", b"q1 0 d1 1\nq1 0 d2", "may be truncated", 2, 1),
    Case(
        "run", "five columns", b"q1 Q0 d1 1 3.5 tag\nq1 Q0 d2 2 3.0\n", "expected 6 columns", 2, 1
    ),
    Case(
        "run", "score not a number", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 high t\n", "not a number", 2, 1
    ),
    Case("run", "NaN score", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 nan t\n", "not finite", 2, 1),
    Case("run", "infinite score", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2 -inf t\n", "not finite", 2, 1),
    Case("run", "rank not an integer", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 x 3 t\n", "invalid rank", 2, 1),
    Case(
        "run",
        "document twice for a query",
        b"q1 Q0 d1 1 3.5 t\nq1 Q0 d1 2 3 t\n",
        "listed twice",
        2,
        1,
    ),
    Case("run", "invalid UTF-8", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d\xc3 2 3 t\n", "invalid UTF-8", 2, 1),
    Case("run", "truncated last line", b"q1 Q0 d1 1 3.5 t\nq1 Q0 d2 2", "may be truncated", 2, 1),
]


# -- SparseBatch files ---------------------------------------------------------------------------


def _npz(
    indptr=(0, 2),
    indices=(0, 1),
    values=(1.0, 2.0),
    vocab=("a", "b"),
    ids=("d0",),
    meta=None,
    drop=(),
) -> bytes:
    import io

    def js(value):
        return np.frombuffer(json.dumps(value).encode(), np.uint8)

    indptr = np.asarray(indptr, np.int64)
    arrays = {
        "indptr": indptr,
        "indices": np.asarray(indices),
        "values": np.asarray(values),
        "vocab": js(list(vocab)),
        "ids": js(None if ids is None else list(ids)),
        "meta": js(
            meta
            or {
                "format": "sparse-ir-sparse-batch",
                "version": 1,
                "rows": len(indptr) - 1,
                "nnz": len(indices),
            }
        ),
    }
    for name in drop:
        arrays.pop(name)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _pickled_values() -> bytes:
    import io

    buffer = io.BytesIO()
    good = dict(np.load(io.BytesIO(_npz())))
    good["values"] = np.array([{"evil": 1}, 2.0], dtype=object)  # needs pickle to load
    np.savez(buffer, **good)
    return buffer.getvalue()


VECTOR_CASES = [
    Case("vectors", "truncated file", _npz()[:-40], "unreadable SparseBatch file", None),
    Case("vectors", "not an npz file", b'{"not": "npz"}\n', "not an .npz zip archive", None),
    Case("vectors", "object array (pickle)", _pickled_values(), "allow_pickle", None),
    Case("vectors", "NaN weight", _npz(values=(1.0, float("nan"))), "NaN or infinite", None),
    Case("vectors", "infinite weight", _npz(values=(float("inf"), 1.0)), "NaN or infinite", None),
    Case("vectors", "negative weight", _npz(values=(1.0, -0.5)), "negative weight", None),
    Case("vectors", "non-numeric weights", _npz(values=("1", "2")), "must be numbers", None),
    Case("vectors", "fractional term ids", _npz(indices=(0.0, 1.5)), "must be integers", None),
    Case(
        "vectors",
        "term id outside the vocabulary",
        _npz(indices=(0, 7)),
        "outside the vocabulary",
        None,
    ),
    Case("vectors", "duplicate vocabulary token", _npz(vocab=("a", "a")), "twice", None),
    Case("vectors", "missing ids array", _npz(drop=("ids",)), "missing ['ids']", None),
    Case("vectors", "duplicate id", _npz(indptr=(0, 1, 2), ids=("d0", "d0")), "duplicate id", None),
    Case("vectors", "empty id", _npz(ids=("",)), "empty id", None),
    Case(
        "vectors",
        "other format version",
        _npz(meta={"format": "sparse-ir-sparse-batch", "version": 2, "rows": 1, "nnz": 2}),
        "version 2 is not supported (this sparse_ir reads version 1)",
        None,
    ),
]
# Valid SparseBatch files whose vocabulary Lucene cannot take: refused when indexed.
INDEX_CASES = [
    Case("index", "term with whitespace", _npz(vocab=("a", "b c")), "contains whitespace", None),
    Case(
        "index",
        "term of 256 characters",
        _npz(vocab=("a", "x" * 256)),
        "cuts tokens longer than 255",
        None,
    ),
    Case(
        "index", "term over 32,766 UTF-8 bytes", _npz(vocab=("a", "\u00e9" * 16_384)), "32766", None
    ),
]


# -- readers -------------------------------------------------------------------------------------

SUFFIX = {
    "corpus": ".jsonl",
    "queries.jsonl": ".jsonl",
    "queries.tsv": ".tsv",
    "qrels": ".tsv",
    "run": ".trec",
    "vectors": ".npz",
    "index": ".npz",
}


def read(reader: str, path: Path, **options):
    if reader == "corpus":
        return list(read_corpus(path, **options))
    if reader.startswith("queries"):
        return list(read_queries(path, **options))
    if reader == "qrels":
        return [(q, d) for q, docs in read_qrels(path, **options).items() for d in docs]
    if reader == "run":
        return [(q, h.doc_id) for q, hits in Run.read_trec(path, **options).items() for h in hits]
    if reader == "vectors":
        return SparseBatch.load(path)
    raise AssertionError(reader)


def write(case: Case, directory: Path) -> Path:
    path = directory / (case.name.replace(" ", "-").replace(",", "") + SUFFIX[case.reader])
    path.write_bytes(case.content)
    return path


@pytest.mark.parametrize("case", CASES + VECTOR_CASES, ids=lambda c: f"{c.reader}: {c.name}")
def test_reader_names_file_line_and_reason(case, tmp_path):
    path = write(case, tmp_path)
    with pytest.raises(InputError) as caught:
        read(case.reader, path)
    error = caught.value
    assert error.path == str(path)
    assert error.line == case.line
    assert case.reason in error.reason, error.reason
    assert str(error).startswith(f"{path}:{case.line}: " if case.line else f"{path}: ")
    message = str(error).replace(str(tmp_path) + os.sep, "")
    record("bad input", reader=case.reader, case=case.name, message=message)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.good], ids=lambda c: f"{c.reader}: {c.name}"
)
def test_skip_invalid_counts_and_keeps_the_good_records(case, tmp_path):
    path = write(case, tmp_path)
    report = SkipReport()
    records = read(case.reader, path, skip_invalid=True, report=report)
    assert report.total == 1, report.summary()
    assert len(records) == case.good
    assert case.reason in report.examples[0]
    assert f"{path}:{case.line}" in report.summary()


def test_skip_invalid_without_a_report_still_tells(tmp_path, caplog):
    path = write(CASES[0], tmp_path)
    assert len(read("corpus", path, skip_invalid=True)) == 1
    assert "skipped 1 invalid record" in caplog.text


# -- the index builder -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", INDEX_CASES, ids=lambda c: c.name)
def test_index_refuses_terms_lucene_cannot_take(case, tmp_path):
    from sparse_ir.index.impact_index import ImpactIndex

    batch = SparseBatch.load(write(case, tmp_path))  # a valid SparseBatch file
    with pytest.raises(InputError, match=case.reason) as caught:
        ImpactIndex.build(batch, tmp_path / "index", show_progress=False)
    assert not (tmp_path / "index" / "CURRENT").exists()
    record("bad input", reader=case.reader, case=case.name, message=str(caught.value))


def test_unused_odd_tokens_do_not_block_an_index(tmp_path):
    from sparse_ir.index.impact_index import ImpactIndex

    batch = SparseBatch.from_dicts([{"a": 1.0}], ["a", "has space", "x" * 300], ids=["d0"])
    index = ImpactIndex.build(batch, tmp_path / "index", show_progress=False)
    assert [h.doc_id for h in index.search({"a": 1.0})] == ["d0"]


def test_index_refuses_duplicate_and_invalid_ids_across_shards(tmp_path):
    from sparse_ir.index.impact_index import ImpactIndex

    vocab = ["a"]
    first = SparseBatch.from_dicts([{"a": 1}], vocab, ids=["d0"])
    again = SparseBatch.from_dicts([{"a": 2}], vocab, ids=["d0"])
    with pytest.raises(InputError, match="duplicate document id 'd0'"):
        ImpactIndex.build(iter([first, again]), tmp_path / "i", show_progress=False)
    bad = SparseBatch.from_dicts([{"a": 2}], vocab, ids=["d\x011"])
    with pytest.raises(
        InputError, match="invalid id: document 1: id 'd.x011' contains a control character"
    ):
        ImpactIndex.build(iter([first, bad]), tmp_path / "i", show_progress=False)


def test_in_memory_vectors_are_checked_too():
    vocab = ["a", "b"]
    for weights, reason in (
        ({"a": float("nan")}, "NaN or infinite"),
        ({"a": -1.0}, "negative weight"),
        ({"a": "x"}, "not a number"),
    ):
        with pytest.raises(InputError, match=reason):
            SparseBatch.from_dicts([weights], vocab)
    with pytest.raises(InputError, match="does not fit in int32"):
        SparseBatch(np.array([0, 1]), np.array([2**40]), np.array([1.0]), vocab)


# -- the same through the command line -------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", CASES + VECTOR_CASES + INDEX_CASES, ids=lambda c: f"{c.reader}: {c.name}"
)
def test_cli_exits_non_zero_and_prints_file_line_reason(case, tmp_path, capsys, tiny_bert_dir):
    path = write(case, tmp_path)
    output = tmp_path / "out"
    model = ("--model", tiny_bert_dir)
    if case.reader == "corpus":
        argv = ("index", "--input", path, "--output", output, *model)
    elif case.reader.startswith("queries"):
        argv = ("encode", "--queries", "--input", path, "--output", output, *model)
    elif case.reader in ("qrels", "run"):
        good = tmp_path / ("good.trec" if case.reader == "qrels" else "good-qrels.tsv")
        good.write_bytes(b"q1 Q0 d1 1 3.5 t\n" if case.reader == "qrels" else b"q1\td1\t1\n")
        run, qrels = (good, path) if case.reader == "qrels" else (path, good)
        argv = ("evaluate", "--run", run, "--qrels", qrels)
    else:
        shards = tmp_path / "shards"
        shards.mkdir()
        (shards / "shard-00000.npz").write_bytes(case.content)
        path = shards / "shard-00000.npz"
        argv = ("index", "--vectors", shards, "--output", output)
    code, printed = _cli(capsys, *argv)
    assert code == 1, printed
    where = f"{path}:{case.line}: " if case.line else f"{path}: "
    assert where in printed and case.reason in printed, printed
    assert not (output / "CURRENT").exists()  # nothing half-built was published
    if case.good:
        code, printed = _cli(capsys, *argv, "--skip-invalid")
        assert code == 0, printed
        assert "skipped 1 invalid record(s)" in printed and where in printed, printed


@pytest.mark.slow
def test_cli_bad_input_leaves_the_previous_index(tmp_path, capsys, tiny_bert_dir):
    good = tmp_path / "good.jsonl"
    good.write_bytes(GOOD_DOC + b'{"_id": "d1", "text": "another good one"}\n')
    output = tmp_path / "index"
    assert (
        _cli(capsys, "index", "--input", good, "--output", output, "--model", tiny_bert_dir)[0] == 0
    )
    bad = write(CASES[0], tmp_path)
    code, printed = _cli(
        capsys, "index", "--input", bad, "--output", output, "--model", tiny_bert_dir
    )
    assert code == 1 and f"{bad}:2: invalid UTF-8" in printed
    from sparse_ir.index.impact_index import ImpactIndex

    assert ImpactIndex.open(output, verify=True).doc_ids == ["d0", "d1"]
    assert _cli(capsys, "verify", output)[0] == 0


def test_write_trec_refuses_what_read_trec_would_refuse(tmp_path):
    from sparse_ir.results import Hit

    for hits, reason in (
        ([Hit("d 1", 1.0)], "contains whitespace"),
        ([Hit("d1", float("nan"))], "score nan"),
    ):
        with pytest.raises(ValueError, match=reason):
            Run({"q1": hits}).write_trec(tmp_path / "run.trec")
        assert not list(tmp_path.iterdir())  # no partial file, no temporary
    Run({"q1": [Hit("d1", 2), Hit("d2", 1.5)]}).write_trec(tmp_path / "run.trec")
    assert Run.read_trec(tmp_path / "run.trec").to_dict() == {"q1": {"d1": 2.0, "d2": 1.5}}
