"""Filter values, the filter text, document metadata, and filtered search through the searchers
and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_ir.errors import IndexCorruptError, InputError
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.filters import (
    AllOf,
    FieldCondition,
    FilterSyntaxError,
    IdFilter,
    MaskFilter,
    as_filter,
    parse_filter,
)
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.metadata import MAX_BYTES, MAX_FIELDS, check_metadata
from sparse_ir.sparse_batch import SparseBatch

VOCAB = ("cat", "dog", "fish", "bird")


def _docs(n, rng=None):
    rng = rng or np.random.default_rng(0)
    rows = []
    for _ in range(n):
        terms = rng.choice(len(VOCAB), size=int(rng.integers(1, 4)), replace=False)
        rows.append({VOCAB[t]: int(rng.integers(1, 9)) for t in terms})
    return SparseBatch.from_dicts(rows, VOCAB, ids=[f"d{i}" for i in range(n)])


def _ranking(hits):
    return [(h.docno, h.score) for h in hits]


# -- the filter text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("year>=2020", FieldCondition("year", ">=", 2020)),
        ("  year >= 2020 ", FieldCondition("year", ">=", 2020)),
        ("tenant=a", FieldCondition("tenant", "=", "a")),
        ("tenant == 'a b'", FieldCondition("tenant", "=", "a b")),
        ('tenant!="x\\"y"', FieldCondition("tenant", "!=", 'x"y')),
        ("score<0.5", FieldCondition("score", "<", 0.5)),
        ("score>-1e3", FieldCondition("score", ">", -1000.0)),
        ("reviewed=true", FieldCondition("reviewed", "=", True)),
        ("reviewed=FALSE", FieldCondition("reviewed", "=", False)),
        ("code='2020'", FieldCondition("code", "=", "2020")),
        ("2020<=year", FieldCondition("year", ">=", 2020)),
        ("doc.year-x>1", FieldCondition("doc.year-x", ">", 1)),
        (
            "2019<=year<2022",
            AllOf((FieldCondition("year", ">=", 2019), FieldCondition("year", "<", 2022))),
        ),
        (
            "2022>year>=2019",
            AllOf((FieldCondition("year", "<", 2022), FieldCondition("year", ">=", 2019))),
        ),
        (
            "tenant=a AND year>=2020 and x<1 && y>2, z=3",
            AllOf(
                (
                    FieldCondition("tenant", "=", "a"),
                    FieldCondition("year", ">=", 2020),
                    FieldCondition("x", "<", 1),
                    FieldCondition("y", ">", 2),
                    FieldCondition("z", "=", 3),
                )
            ),
        ),
    ],
)
def test_filter_texts(text, expected):
    parsed = parse_filter(text)
    assert parsed == expected
    assert parse_filter(str(parsed)) == parsed  # str() is a filter text again


@pytest.mark.parametrize(
    "text, position, rule",
    [
        ("", 1, "empty filter"),
        ("   ", 1, "empty filter"),
        ("year", 5, "expected an operator"),
        ("year>=", 7, "expected a value after '>='"),
        ("year>>2020", 6, "expected a value after '>'"),
        ("year>=2020 tenant=a", 12, "expected AND after a condition"),
        ("year>=2020 AND", 15, "expected a condition after AND"),
        ("AND year>1", 1, "expected a field or a value"),
        ("tenant>=a", 1, ">= compares numbers"),
        ("flag<true", 1, "< compares numbers"),
        ("2019<=year>2022", 11, "a range uses < or <= twice"),
        ("2019<=2020", 7, "expected a field name"),
        ("a=b=c", 4, "a range reads low <= field < high"),
        ("year>=20x0", 7, "expected a field, a number"),
        ("year>=2020 # note", 12, "expected a field, a number"),
        ("x=99999999999999999999", 1, "exact up to ±2^53"),
        ("tenant='open", 8, "expected a field, a number"),
    ],
)
def test_filter_syntax_errors_name_text_position_and_rule(text, position, rule):
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    message = str(caught.value)
    assert message.startswith(f"filter {text!r}: position {position}: ")
    assert rule in message
    assert isinstance(caught.value, InputError)


def test_filter_values_and_their_errors():
    assert as_filter(None) is None
    assert as_filter({"a", "b"}) == IdFilter({"b", "a"})
    assert isinstance(as_filter(np.array([True])), MaskFilter)
    combined = FieldCondition("year", ">", 1) & "tenant=a" & {"d1"}
    assert isinstance(combined, AllOf) and len(combined.parts) == 3
    with pytest.raises(TypeError, match="not one string"):
        IdFilter("d1")
    with pytest.raises(InputError, match="operator must be one of"):
        FieldCondition("year", "~", 1)
    with pytest.raises(InputError, match="must be finite"):
        FieldCondition("year", "<", float("nan"))
    with pytest.raises(InputError, match="1-d bool or uint8"):
        MaskFilter(np.array([1.0, 0.0]))
    with pytest.raises(TypeError, match="filter must be a Filter"):
        as_filter(3)


# -- metadata values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, rule",
    [
        ([1], "must be a JSON object"),
        ({"tags": ["x"]}, "field 'tags' is a list"),
        ({"x": None}, "field 'x' is a null"),
        ({"x": {"y": 1}}, "field 'x' is a dict"),
        ({"x": float("inf")}, "numbers must be finite"),
        ({"x": 2**60}, "exact up to ±2^53"),
        ({"1year": 1}, "must start with a letter"),
        ({"a b": 1}, "must start with a letter"),
        ({f"f{i}": i for i in range(MAX_FIELDS + 1)}, f"at most {MAX_FIELDS} are allowed"),
        ({"text": "x" * MAX_BYTES}, f"at most {MAX_BYTES} are allowed"),
    ],
)
def test_bad_metadata_is_refused_naming_the_document(value, rule, tmp_path):
    with pytest.raises(InputError, match="metadata of document 'd1'") as caught:
        check_metadata(value, "d1")
    assert rule in str(caught.value)
    records = [{}, value, {}]
    with pytest.raises(InputError, match=r"metadata of document 'd1' \(document 1\)"):
        ImpactIndex.build(_docs(3), tmp_path / "index", metadata=records, show_progress=False)
    assert not (tmp_path / "index" / "CURRENT").exists()  # nothing published


def test_metadata_round_trips_and_verifies(tmp_path):
    records = [
        {"year": 2021, "tenant": "a", "score": 0.5, "ok": True},
        None,
        {"year": 2019, "tenant": "ü", "ok": False},
        {"year": "unknown"},
    ]
    index = ImpactIndex.build(_docs(4), tmp_path / "index", metadata=records, show_progress=False)
    index = ImpactIndex.open(tmp_path / "index", verify=True)
    assert index.has_metadata
    assert [index.metadata(d) for d in range(4)] == [r or {} for r in records]
    assert index.metadata_fields == ("ok", "score", "tenant", "year")
    with pytest.raises(IndexError):
        index.metadata(4)
    dense = DenseIndex.build(
        np.eye(4, dtype=np.float32),
        tmp_path / "dense",
        ids=[f"d{i}" for i in range(4)],
        metadata=records,
    )
    dense = DenseIndex.open(tmp_path / "dense", verify=True)
    assert [dense.metadata(d) for d in range(4)] == [r or {} for r in records]
    # Batches of vectors take their share of the metadata, in order.
    batches = [(["a", "b"], np.eye(4, dtype=np.float32)[:2]), (["c"], np.ones((1, 4), "f4"))]
    dense = DenseIndex.build(batches, tmp_path / "batches", metadata=[{"n": 1}, {}, {"n": 3}])
    assert [dense.metadata(d) for d in range(3)] == [{"n": 1}, {}, {"n": 3}]
    with pytest.raises(InputError, match="metadata ended before the vectors did"):
        ImpactIndex.build(_docs(4), tmp_path / "short", metadata=[{}], show_progress=False)


def test_empty_metadata_writes_no_files_and_old_indexes_refuse_field_filters(tmp_path):
    plain = ImpactIndex.build(_docs(3), tmp_path / "plain", show_progress=False)
    empty = ImpactIndex.build(
        _docs(3), tmp_path / "empty", metadata=[{}, None, {}], show_progress=False
    )
    assert sorted(plain.manifest.files) == sorted(empty.manifest.files)
    for index in (plain, empty):
        assert not index.has_metadata and index.metadata(0) == {}
        with pytest.raises(InputError, match="stores no document metadata"):
            index.search({"cat": 1}, 3, filter="year>=2020")
    # Ids and masks need no metadata.
    assert [h.doc_id for h in plain.search({"cat": 1, "dog": 1}, 3, filter={"d1"})] in (
        [],
        ["d1"],
    )


def test_damaged_metadata_columns_are_found_by_verify(tmp_path):
    import shutil

    records = [{"year": 2000 + i} for i in range(5)]
    ImpactIndex.build(_docs(5), tmp_path / "a", metadata=records, show_progress=False)
    ImpactIndex.build(_docs(5), tmp_path / "b", metadata=records[::-1], show_progress=False)
    a = ImpactIndex.open(tmp_path / "a")
    b = ImpactIndex.open(tmp_path / "b")
    # Columns of another build (valid files, checksums listed in b's manifest): the index
    # opens, and verify() finds that the columns disagree with the documents' JSON.
    for name in ("metadata_values.bin",):
        (a.directory / name).chmod(0o644)
        shutil.copyfile(b.directory / name, a.directory / name)
    manifest = json.loads((a.directory / "manifest.json").read_text())
    manifest_b = json.loads((b.directory / "manifest.json").read_text())
    manifest["files"]["metadata_values.bin"] = manifest_b["files"]["metadata_values.bin"]
    from sparse_ir.index.storage import write_manifest

    body = {key: value for key, value in manifest.items() if key != "manifest_crc32"}
    (a.directory / "manifest.json").unlink()
    write_manifest(a.directory, body)
    damaged = ImpactIndex.open(tmp_path / "a")
    with pytest.raises(IndexCorruptError, match="metadata column 'year' disagrees"):
        damaged.verify()


# -- field conditions against the dicts ---------------------------------------------------------

_VALUES = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0]),
    st.sampled_from(["a", "b", "ü", "2"]),
    st.booleans(),
)
_RECORD = st.dictionaries(st.sampled_from(["x", "y", "tenant"]), _VALUES, max_size=3)


def _python_match(record, condition):
    if condition.field not in record:
        return False
    value, target = record[condition.field], condition.value

    def kind(v):
        return "bool" if isinstance(v, bool) else "str" if isinstance(v, str) else "num"

    if kind(value) != kind(target):
        return False
    return {
        "=": value == target,
        "!=": value != target,
        "<": kind(value) == "num" and value < target,
        "<=": kind(value) == "num" and value <= target,
        ">": kind(value) == "num" and value > target,
        ">=": kind(value) == "num" and value >= target,
    }[condition.op]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(_RECORD, min_size=1, max_size=30),
    conditions=st.lists(
        st.tuples(
            st.sampled_from(["x", "y", "tenant"]),
            st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
            _VALUES,
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_field_conditions_equal_python_over_the_dicts(tmp_path_factory, records, conditions):
    n = len(records)
    batch = SparseBatch.from_dicts([{"cat": 1}] * n, VOCAB, ids=[f"d{i}" for i in range(n)])
    index = ImpactIndex.build(
        batch, tmp_path_factory.mktemp("m") / "index", metadata=records, show_progress=False
    )
    for field, op, value in conditions:
        try:
            condition = FieldCondition(field, op, value)
        except InputError:
            continue  # a range on a string or boolean: refused when made
        want = np.array([_python_match(r, condition) for r in records])
        try:
            got = condition.mask(index)
        except InputError as error:
            # Only a field absent everywhere, or never holding the compared kind.
            holders = [r[field] for r in records if field in r]
            assert all(not _python_match(r, condition) for r in records)
            assert field in str(error)
            if holders:
                assert "holds no" in str(error)
            continue
        assert got.tolist() == want.tolist(), (condition, records)
        # The filter text of the condition means the same.
        assert parse_filter(str(condition)).mask(index).tolist() == want.tolist()


def test_filtered_search_by_metadata_equals_the_mask(tmp_path):
    rng = np.random.default_rng(4)
    n = 400
    records = [
        {"year": int(rng.integers(2010, 2025)), "tenant": str(rng.choice(["a", "b", "c"]))}
        for _ in range(n)
    ]
    docs = _docs(n, rng)
    index = ImpactIndex.build(docs, tmp_path / "index", metadata=records, show_progress=False)
    text = "tenant=a AND 2015<=year<2021"
    mask = np.array([r["tenant"] == "a" and 2015 <= r["year"] < 2021 for r in records])
    assert parse_filter(text).mask(index).tolist() == mask.tolist()
    query = {"cat": 3, "dog": 1}
    for mode in ("exhaustive", "pruned", "approximate"):
        assert index.search(query, 20, mode=mode, filter=text) == index.search(
            query, 20, mode=mode, filter=mask
        )
    expected = [h for h in index.search(query, n, mode="exhaustive") if mask[h.docno]][:20]
    assert index.search(query, 20, filter=text) == expected
    with pytest.raises(InputError, match=r"filter field 'yaer' is not in the metadata .*year"):
        index.search(query, 5, filter="yaer>=2020")
    with pytest.raises(InputError, match="field 'tenant' .* holds no numbers"):
        index.search(query, 5, filter="tenant>1")
    run = index.search_batch([query, {"fish": 2}], 5, filter=text)
    assert all(mask[h.docno] for hits in run.results.values() for h in hits)


# -- the corpus reader and the searchers ------------------------------------------------------


def test_corpus_records_carry_their_metadata(tmp_path):
    from sparse_ir.corpus import read_corpus

    path = tmp_path / "corpus.jsonl"
    path.write_text(
        json.dumps({"_id": "a", "text": "x", "metadata": {"year": 2020}})
        + "\n"
        + json.dumps({"_id": "b", "text": "y", "metadata": {}})
        + "\n"
        + json.dumps({"_id": "c", "text": "z"})
        + "\n"
    )
    assert [d.metadata for d in read_corpus(path)] == [{"year": 2020}, {}, None]
    path.write_text(json.dumps({"_id": "a", "text": "x", "metadata": {"y": [1]}}) + "\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:1: metadata of document 'a'"):
        list(read_corpus(path))


class _Words:
    """A toy query encoder: each known word weighs 1 (sparse) or counts along its axis
    (dense)."""

    vocab, dim = VOCAB, len(VOCAB)

    def encode_queries(self, texts, *, ids=None, show_progress=None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return SparseBatch.from_dicts(
            [{w: 1.0 for w in t.split() if w in VOCAB} for t in texts], VOCAB, ids
        )


class _Vectors(_Words):
    def encode_queries(self, texts, *, show_progress=None):
        return super().encode_queries(texts).to_scipy().toarray().astype(np.float32)


def test_searchers_and_hybrid_apply_one_filter_to_every_branch(tmp_path):
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.search import DenseSearcher, Searcher

    rng = np.random.default_rng(7)
    n = 60
    docs = _docs(n, rng)
    records = [{"year": 2000 + i % 10} for i in range(n)]
    sparse = ImpactIndex.build(docs, tmp_path / "s", metadata=records, show_progress=False)
    # The dense index numbers the documents in reverse: the filter follows the ids.
    matrix = docs.to_scipy().toarray().astype(np.float32)[::-1]
    ids = list(docs.ids)[::-1]
    dense = DenseIndex.build(matrix, tmp_path / "d", ids=ids, metadata=records[::-1])
    text = "year>=2006"
    allowed_ids = {f"d{i}" for i in range(n) if records[i]["year"] >= 2006}
    searchers = [Searcher(sparse, _Words()), DenseSearcher(dense, _Vectors())]
    for searcher in searchers:
        hits = searcher.search("cat dog", 10, filter=text)
        assert hits and {h.doc_id for h in hits} <= allowed_ids
        assert hits == searcher.search("cat dog", 10, filter=allowed_ids)
        run = searcher.search_batch(["cat dog", "fish"], 10, filter=text)
        assert run["0"] == hits
    for fusion in (Fusion.rrf(depth=20), Fusion.convex(0.3, depth=20)):
        hybrid = HybridSearcher(searchers, fusion)
        fused = hybrid.search("cat dog bird", 8, filter=text)
        assert fused and {h.doc_id for h in fused} <= allowed_ids
        # The same as fusing the branches' filtered runs.
        components = hybrid.search_batch_components(["cat dog bird"], 20, filter=text)
        branch_runs = [
            searchers[0].search_batch(["cat dog bird"], 20, filter=text),
            searchers[1].search_batch(["cat dog bird"], 20, filter=text),
        ]
        for run, branch in zip(components.components, branch_runs):
            assert [h.doc_id for h in run["0"]] == [h.doc_id for h in branch["0"]]
        expected = fusion.fuse(list(components.components), k=8)
        assert [h.doc_id for h in fused] == [h.doc_id for h in expected["0"]]
        assert [h.doc_id for h in hybrid.search_batch(["cat dog bird"], 8, filter=text)["0"]] == [
            h.doc_id for h in fused
        ]
        # A mask is over the first index's document numbers, carried to the others by id.
        mask = np.zeros(n, bool)
        mask[::3] = True
        masked = hybrid.search("cat dog bird", 8, filter=mask)
        assert {h.doc_id for h in masked} <= {f"d{i}" for i in range(0, n, 3)}
