"""The crafted inputs of issue 14 that concern readers, queries and the CLI, as regression tests.

Each case is a clear error naming the file (and line, value or term) or a correct answer; never
a hang, a traceback, a ``SystemError`` or a silently wrong score: a BOM at the start of a
run/topics/qrels file, U+FEFF inside an id, a relevance of 10^23, query weights of 2^62 and
10^30, JSON nested 100,000 deep (also with ``skip_invalid``), ``/dev/zero`` and a FIFO given
as input files, a line with no end; the CLI's one-line errors and exit codes; the run written
in chunks; long documents cut before tokenizing without changing the tokens.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sparse_ir import jsonl
from sparse_ir.cli import EXIT_CODES, describe_error, main
from sparse_ir.corpus import load_corpus, load_queries
from sparse_ir.errors import IndexBusyError, IndexCorruptError, InputError, MissingDependencyError
from sparse_ir.eval import MAX_RELEVANCE, evaluate, read_qrels
from sparse_ir.export.queries import read_encoded_queries
from sparse_ir.jsonl import SkipReport, read_json_file
from sparse_ir.results import Hit, Run, TrecRunWriter
from sparse_ir.validation import check_query_weights

BOM = b"\xef\xbb\xbf"
DOC = b'{"_id": "d1", "text": "good document"}\n'


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


READERS = {
    "run.trec": (lambda p, **o: Run.read_trec(p, **o), b"q1 Q0 d1 1 3 tag\n"),
    "qrels.tsv": (lambda p, **o: read_qrels(p, **o), b"q1\td1\t1\n"),
    "topics.tsv": (lambda p, **o: load_queries(p, **o), b"q1\tsome text\n"),
    "queries.jsonl": (lambda p, **o: load_queries(p, **o), b'{"_id": "q1", "text": "x"}\n'),
    "corpus.jsonl": (lambda p, **o: load_corpus(p, **o), DOC),
    "encoded.tsv": (lambda p, **o: read_encoded_queries(p, **o), b"q1\ta a b\n"),
    "encoded.jsonl": (
        lambda p, **o: read_encoded_queries(p, **o),
        b'{"id": "q1", "vector": {"a": 2}}\n',
    ),
}


# -- byte order marks -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_bom_is_refused_naming_the_file(tmp_path, name, skip_invalid):
    reader, good = READERS[name]
    path = write(tmp_path, name, BOM + good + good.replace(b"1", b"2"))
    assert reader(write(tmp_path, "ok-" + name, good))  # the same without BOM reads
    with pytest.raises(InputError, match="byte order mark") as error:
        reader(path, skip_invalid=skip_invalid, report=SkipReport())
    assert error.value.path == str(path) and error.value.line == 1


def test_a_bom_inside_a_file_is_an_invalid_id(tmp_path):
    path = write(tmp_path, "run.trec", b"q1 Q0 d1 1 3 t\n\xef\xbb\xbfq2 Q0 d1 1 3 t\n")
    with pytest.raises(InputError, match="U\\+FEFF") as error:
        Run.read_trec(path)
    assert error.value.line == 2


def test_a_bom_before_json_is_refused(tmp_path):
    path = write(tmp_path, "q.json", BOM + b'{"q1": {"a": 1}}')
    with pytest.raises(InputError, match="byte order mark"):
        read_encoded_queries(path)


# -- qrels relevance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["100000000000000000000000", "-2147483648", "2147483647", "1000001", "1_0", "١"]
)
def test_relevance_out_of_range_is_refused(tmp_path, value):
    path = write(tmp_path, "qrels.tsv", f"q1\td1\t1\nq1\td2\t{value}\n".encode())
    with pytest.raises(InputError) as error:
        read_qrels(path)
    assert error.value.line == 2 and value in str(error.value)


def test_relevance_at_the_limit_evaluates(tmp_path):
    path = write(
        tmp_path, "qrels.tsv", f"q1\td1\t{MAX_RELEVANCE}\nq1\td2\t-{MAX_RELEVANCE}\n".encode()
    )
    qrels = read_qrels(path)
    scores = evaluate(Run({"q1": [Hit("d1", 2.0), Hit("d2", 1.0)]}), qrels, ["nDCG@10"])
    assert scores["nDCG@10"] == pytest.approx(1.0)


def test_queries_judged_only_negative_do_not_crash_the_evaluator(tmp_path):
    # pytrec_eval crashed (SIGSEGV) evaluating a query whose judgments were all below -1 after
    # any earlier evaluation in the same process: run in a child, so a crash fails the test.
    import subprocess

    code = (
        "from sparse_ir.eval import evaluate\n"
        "from sparse_ir.results import Hit, Run\n"
        "print(evaluate(Run({'a': [Hit('d1', 1.0)]}), {'a': {'d1': 1}, 'b': {'d1': 0}}))\n"
        "for rel in (-2, -61, -1000000):\n"
        "    print(evaluate(Run({'q': [Hit('d3', 1.0)]}), {'q': {'d3': rel}, 'r': {'d1': 1}}))\n"
        "print(evaluate(Run({'q': [Hit('d3', 1.0)]}), {'q': {'d3': -5, 'd4': 2}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
            ),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("nDCG@10") == 5


def test_in_memory_qrels_with_a_huge_relevance_are_refused():
    with pytest.raises(InputError, match="relevance"):
        evaluate(Run({"q": [Hit("d1", 1.0)]}), {"q": {"d1": 10**23}})


def test_relevance_of_ten_to_the_23_through_the_cli(tmp_path, capsys):
    qrels = write(tmp_path, "qrels.tsv", b"q1\td1\t100000000000000000000000\n")
    run = write(tmp_path, "run.trec", b"q1 Q0 d1 1 3 t\n")
    assert main(["evaluate", "--run", str(run), "--qrels", str(qrels)]) == 1
    err = capsys.readouterr().err
    assert f"{qrels}:1: invalid relevance: 100000000000000000000000" in err
    assert err.count("\n") == 1 and err.startswith("sparse-ir: error: ")


# -- query weights ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    from sparse_ir.index.impact_index import ImpactIndex
    from sparse_ir.quantize import Quantizer
    from sparse_ir.sparse_batch import SparseBatch

    batch = SparseBatch(
        np.array([0, 2, 3]),
        np.array([0, 1, 1], np.int32),
        np.array([3, 5, 7], np.int32),
        ("a", "b", "c"),
        ("d1", "d2"),
    )
    path = tmp_path_factory.mktemp("hostile") / "index"
    return ImpactIndex.build(batch, path, quantizer=Quantizer(max_impact=255))


@pytest.mark.parametrize("weight", [2**62, 2**63 - 1])
def test_a_weight_that_would_overflow_is_refused_naming_the_term(small_index, weight):
    with pytest.raises(InputError, match=r"query weight \d+ of 'b' is above"):
        small_index.search({"a": 1, "b": weight})
    with pytest.raises(InputError, match="of 'a' is above"):
        small_index.search((np.array([0]), np.array([weight], np.int64)))


def test_the_largest_allowed_weight_scores_exactly(small_index):
    limit = (2**63 - 1) // (255 * 1)
    hits = small_index.search({"b": limit}, k=2)
    assert [(h.doc_id, h.score) for h in hits] == [("d2", 7 * limit), ("d1", 5 * limit)]
    with pytest.raises(InputError, match=f"above {limit:,}"):
        small_index.search({"b": limit + 1})


@pytest.mark.parametrize("weight", [10**30, np.uint64(2**63 + 5)])
def test_a_weight_beyond_64_bits_in_a_dict_is_refused(small_index, weight):
    with pytest.raises(InputError, match="of 'b' is above"):
        small_index.search({"a": 1, "b": weight})


def test_a_uint64_weight_above_int64_is_refused(small_index):
    with pytest.raises(InputError, match="is above"):
        small_index.search((np.array([1]), np.array([2**63 + 5], np.uint64)))


def test_check_query_weights_ignores_floats():
    check_query_weights(np.array([0]), np.array([1e30]), max_impact=255)  # the quantizer clips


@pytest.mark.parametrize(
    "weight", [b"1000000000000000000000000000000", b"4611686018427387904", b"1e400"]
)
def test_query_files_refuse_huge_weights(tmp_path, weight):
    path = write(tmp_path, "q.jsonl", b'{"id": "q1", "vector": {"a": 1, "tok": ' + weight + b"}}\n")
    with pytest.raises(InputError, match="'tok'") as error:
        read_encoded_queries(path)
    assert error.value.line == 1
    report = SkipReport()
    assert read_encoded_queries(path, skip_invalid=True, report=report) == []
    assert report.total == 1


def test_search_encoded_refuses_a_weight_of_ten_to_the_30(tmp_path, small_index, capsys):
    path = write(tmp_path, "q.json", b'{"q1": {"b": 1000000000000000000000000000000}}')
    status = main(
        [
            "search-encoded",
            "--index",
            str(small_index.directory),
            "--queries",
            str(path),
            "--output",
            str(tmp_path / "run.trec"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and "'b'" in err and "2147483647" in err
    assert not (tmp_path / "run.trec").exists()


# -- nested JSON -----------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_json_nested_100000_deep_is_an_input_error(tmp_path):
    path = write(tmp_path, "corpus.jsonl", DOC + b'{"_id": "d2", "text": ' + DEEP + b"}\n")
    with pytest.raises(InputError, match="nested") as error:
        load_corpus(path)
    assert error.value.path == str(path) and error.value.line == 2
    report = SkipReport()
    assert [d.id for d in load_corpus(path, skip_invalid=True, report=report)] == ["d1"]
    assert report.total == 1


def test_nesting_inside_strings_is_not_counted():
    text = b'{"_id": "d2", "text": "' + b"[" * 1000 + b'\\" {{{"}'
    assert jsonl.parse_json_line(text)["text"].startswith("[[[")


def test_json_nested_exactly_to_the_limit_parses():
    depth = jsonl.MAX_JSON_DEPTH
    assert jsonl.parse_json(b"[" * depth + b"]" * depth) == eval("[" * depth + "]" * depth)
    with pytest.raises(InputError, match="nested"):
        jsonl.parse_json(b"[" * (depth + 1) + b"]" * (depth + 1))


def test_deep_json_in_whole_file_readers(tmp_path):
    with pytest.raises(InputError, match="nested"):
        read_encoded_queries(write(tmp_path, "q.json", b'{"q1": ' + DEEP + b"}"))
    with pytest.raises(InputError, match="nested"):
        read_json_file(write(tmp_path, "v.json", DEEP))


def test_deep_json_vocabulary_through_the_cli(tmp_path, capsys):
    vocab = write(tmp_path, "vocab.json", DEEP)
    vectors = write(tmp_path, "v.jsonl", b'{"id": "d1", "vector": {"a": 1}}\n')
    status = main(
        [
            "import",
            "lucene",
            "--input",
            str(vectors),
            "--output",
            str(tmp_path / "ix"),
            "--vocab",
            str(vocab),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and "nested" in err and str(vocab) in err


# -- devices, FIFOs, endless lines ----------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", sorted(READERS))
def test_dev_zero_is_refused_at_once(tmp_path, name):
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="character device"):
        READERS[name][0](link)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["run.trec", "qrels.tsv", "corpus.jsonl", "encoded.jsonl"])
def test_a_fifo_is_refused_without_hanging(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    outcome = []

    def read():
        try:
            READERS[name][0](path)
        except InputError as error:
            outcome.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "reading a FIFO with no writer hung"
    assert outcome and "FIFO" in str(outcome[0])


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(InputError, match="directory"):
        Run.read_trec(tmp_path)


def test_a_line_with_no_end_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1000)
    path = write(tmp_path, "run.trec", b"q1 Q0 d1 1 3 t\n" + b"\0" * 5000)
    with pytest.raises(InputError, match="line longer than 1,000 bytes") as error:
        Run.read_trec(path, skip_invalid=True)
    assert error.value.line == 2


def test_a_gzip_bomb_line_is_refused(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 1 << 16)
    path = tmp_path / "qrels.tsv.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\0" * (1 << 20))
    with pytest.raises(InputError, match="line longer than"):
        read_qrels(path)


def test_a_damaged_gzip_is_an_input_error(tmp_path):
    path = write(tmp_path, "run.trec.gz", b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(InputError, match="unreadable"):
        Run.read_trec(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_as_a_run_through_the_cli(tmp_path, capsys):
    qrels = write(tmp_path, "qrels.tsv", b"q1\td1\t1\n")
    assert main(["evaluate", "--run", "/dev/zero", "--qrels", str(qrels)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "sparse-ir: error: /dev/zero: is a character device, not a regular file "
        "(sparse-ir reads its inputs from regular files: save the stream to a file "
        "first)\n"
    )


# -- the CLI: one line, one exit status per kind ---------------------------------------------------


@pytest.mark.parametrize(
    "error, code",
    [
        (InputError("bad value", path="f.tsv", line=3), 1),
        (FileNotFoundError(2, "No such file or directory", "nope.tsv"), 1),
        (OSError(28, "No space left on device"), 1),
        (IndexCorruptError("x: checksum mismatch"), 3),
        (MissingDependencyError("evaluation", "ir-measures", "eval"), 4),
        (IndexBusyError("another build is writing ix right now"), 5),
        (TypeError("unsupported operand"), 70),
        (RecursionError("maximum recursion depth exceeded"), 70),
        (KeyboardInterrupt(), 130),
    ],
)
def test_every_exception_becomes_one_line_and_a_documented_code(monkeypatch, capsys, error, code):
    import sparse_ir.cli.evaluate as command

    def fail(args):
        raise error

    monkeypatch.setattr(command, "run_evaluate", fail)
    assert main(["evaluate", "--run", "r", "--qrels", "q"]) == code
    err = capsys.readouterr().err
    assert err.startswith("sparse-ir: error: ") and err.count("\n") == 1, err
    assert code in EXIT_CODES
    if code == 70:
        assert "rerun with -v" in err and type(error).__name__ in err
    assert describe_error(error)[0] == code


def test_internal_error_traceback_with_verbose(monkeypatch, capsys):
    import sparse_ir.cli.evaluate as command

    def fail(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(command, "run_evaluate", fail)
    assert main(["-v", "evaluate", "--run", "r", "--qrels", "q"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err


def test_a_multi_line_message_is_printed_on_one_line(monkeypatch, capsys):
    import sparse_ir.cli.evaluate as command

    def fail(args):
        raise ValueError("first\nsecond\n  third")

    monkeypatch.setattr(command, "run_evaluate", fail)
    assert main(["evaluate", "--run", "r", "--qrels", "q"]) == 1
    assert capsys.readouterr().err == "sparse-ir: error: first second third\n"


def test_exit_codes_are_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    for code in EXIT_CODES:
        assert f"  {code} " in out


def test_readme_documents_every_exit_code():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"| {code} |" in readme


# -- runs written in chunks ------------------------------------------------------------------------


def test_trec_run_writer_publishes_only_complete_runs(tmp_path):
    path = tmp_path / "run.trec"
    with pytest.raises(ValueError, match="contains whitespace"):
        with TrecRunWriter(path, tag="t") as writer:
            writer.write_hits("q1", [Hit("d1", 3)])
            writer.write_hits("q 2", [Hit("d1", 3)])
    assert list(tmp_path.iterdir()) == []
    with TrecRunWriter(path, tag="t") as writer:
        writer.write_hits("q1", [Hit("d1", 3), Hit("d2", 2.5)])
    assert path.read_text() == "q1 Q0 d1 1 3 t\nq1 Q0 d2 2 2.5 t\n"
    assert (writer.queries, writer.hits) == (1, 2)


def test_search_encoded_in_chunks_equals_one_batch(tmp_path, small_index, monkeypatch, capsys):
    import sparse_ir.cli.lucene as command

    monkeypatch.setattr(command, "SEARCH_CHUNK", 2)
    lines = [
        json.dumps({"id": f"q{i}", "vector": {"a": i % 3, "b": 1 + i, "zz": 1}}) for i in range(7)
    ]
    queries = write(tmp_path, "q.jsonl", ("\n".join(lines) + "\n").encode())
    output = tmp_path / "run.trec"
    assert (
        main(
            [
                "search-encoded",
                "--index",
                str(small_index.directory),
                "--queries",
                str(queries),
                "--output",
                str(output),
                "-k",
                "2",
            ]
        )
        == 0
    )
    expected = small_index.search_batch(
        [q.vector for q in read_encoded_queries(queries)], 2, query_ids=[f"q{i}" for i in range(7)]
    )
    expected.write_trec(tmp_path / "expected.trec")
    assert output.read_text() == (tmp_path / "expected.trec").read_text()
    assert "7 queries searched" in capsys.readouterr().out


# -- long documents cut before tokenizing ----------------------------------------------------------


def test_cutting_long_texts_never_changes_the_tokens(tiny_bert_dir):
    from transformers import AutoTokenizer

    from sparse_ir.encoders.truncation import CHARS_PER_TOKEN, cut_for_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir, use_fast=True)
    rng = np.random.default_rng(0)
    pieces = [
        "cancer",
        "cell",
        "tumor",
        "a",
        "xyzzy" * 30,
        " ",
        "  ",
        "\n",
        "\t",
        ".",
        ",",
        "caf\u00e9",
        "\u00c9t\u00e9",
        "\x1f",
        "\u3000",
        "qu'il",
        "(x)",
    ]
    for trial in range(60):
        max_tokens = int(rng.integers(3, 40))  # room for [CLS] and [SEP]
        size = int(rng.integers(1, 4000))
        text = "".join(rng.choice(pieces, size))
        if trial % 10 == 0:
            text = " " * 3000 + text  # a long blank start: the first prefix holds no token
        [cut] = cut_for_tokenizer(tokenizer, [text], max_tokens)
        full = tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]
        assert tokenizer(cut, truncation=True, max_length=max_tokens)["input_ids"] == full
        if len(text) > (max_tokens + 2) * CHARS_PER_TOKEN * 64:
            assert len(cut) < len(text)


def test_a_long_document_encodes_as_its_prefix(tiny_bert_dir):
    from sparse_ir.encoders.splade import SpladeEncoder

    encoder = SpladeEncoder.from_pretrained(str(tiny_bert_dir), document_max_length=32)
    head = " ".join(["cancer cell growth"] * 20)
    batch = encoder.encode_documents([head, head + " tumor" * 200_000])
    first, second = batch.row(0), batch.row(1)
    assert np.array_equal(first[0], second[0]) and np.allclose(first[1], second[1])


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="POSIX devices and FIFOs")


@pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX")
def test_a_second_concurrent_build_is_one_line_and_status_5(tmp_path, capsys):
    import fcntl

    vectors = write(tmp_path, "v.jsonl", b'{"id": "d1", "vector": {"a": 1}}\n')
    output = tmp_path / "ix"
    output.mkdir()
    with open(output / ".lock", "a+b") as held:  # as a first build holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        status = main(["import", "lucene", "--input", str(vectors), "--output", str(output)])
    err = capsys.readouterr().err
    assert status == 5, err
    assert err.startswith("sparse-ir: error: another build is writing") and err.count("\n") == 1
