"""Dense side: exact top-k vs brute force, the on-disk index, the encoder, hybrid search, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_ir.errors import IndexCorruptError, IndexFormatError, InputError
from sparse_ir.index.dense import DenseIndex, HnswOptions, exact_top_k, reference_top_k


def batches(matrix: np.ndarray, size: int, prefix: str = "doc"):
    for start in range(0, len(matrix), size):
        rows = matrix[start : start + size]
        yield [f"{prefix}{start + i}" for i in range(len(rows))], rows


# -- top-k selection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, dim, k, chunk_rows",
    [
        (500, 8, 10, 64),
        (500, 8, 10, 7),
        (257, 16, 1, 1000),
        (50, 4, 80, 9),
        (1000, 32, 100, 128),
    ],
)
def test_exact_top_k_equals_brute_force(n, dim, k, chunk_rows):
    rng = np.random.default_rng(n + dim + k)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    queries = rng.standard_normal((6, dim)).astype(np.float32)
    docs, scores = exact_top_k(vectors, queries, k, chunk_rows=chunk_rows)
    for q in range(len(queries)):
        ref_docs, ref_scores = reference_top_k(vectors, queries[q], k)
        assert docs[q].tolist() == ref_docs.tolist()
        np.testing.assert_allclose(scores[q], ref_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk_rows", [1, 3, 5, 1000])
def test_ties_break_by_document_number(chunk_rows):
    # Small integers: every dot product is exact, so duplicate rows tie exactly.
    rng = np.random.default_rng(11)
    base = rng.integers(-2, 3, size=(6, 5)).astype(np.float32)
    vectors = np.concatenate([base, base[::-1], base, np.zeros((3, 5), np.float32)])
    query = rng.integers(-2, 3, size=5).astype(np.float32)
    for k in (1, 4, 7, len(vectors)):
        docs, scores = exact_top_k(vectors, query[None], k, chunk_rows=chunk_rows)
        ref_docs, ref_scores = reference_top_k(vectors, query, k)
        assert docs[0].tolist() == ref_docs.tolist()
        assert scores[0].tolist() == ref_scores.tolist()
        for a, b, sa, sb in zip(docs[0], docs[0][1:], scores[0], scores[0][1:]):
            assert sa > sb or (sa == sb and a < b)


def test_top_k_validation():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        exact_top_k(np.zeros((3, 2), np.float32), np.zeros((1, 2), np.float32), 0)


# -- the index on disk ----------------------------------------------------------------------------


@pytest.fixture
def matrix():
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((300, 24)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def built(tmp_path, matrix):
    return DenseIndex.build(batches(matrix, 64), tmp_path / "dense", settings={"model": "test"})


def test_build_open_search(built, matrix, tmp_path):
    index = DenseIndex.open(tmp_path / "dense", verify=True)
    assert index.num_documents == 300 and index.dim == 24
    assert index.manifest.normalized is True and index.settings["model"] == "test"
    assert index.doc_ids[:2] == ["doc0", "doc1"] and index.docno("doc7") == 7
    np.testing.assert_array_equal(np.asarray(index.vectors), matrix)
    rng = np.random.default_rng(9)
    queries = rng.standard_normal((5, 24)).astype(np.float32)
    run = index.search_batch(queries, 20, query_ids=[f"q{i}" for i in range(5)])
    for i, query in enumerate(queries):
        hits = index.search(query, 20)
        reference = index.reference_search(query, 20)
        assert [h.docno for h in hits] == [h.docno for h in reference]
        assert [h.doc_id for h in hits] == [f"doc{h.docno}" for h in hits]
        assert [h.doc_id for h in run[f"q{i}"]] == [h.doc_id for h in hits]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in reference], atol=1e-5)
    assert len(index.search(queries[0], 1000)) == 300
    small = index.search(queries[0], 20, chunk_rows=7)
    assert [h.docno for h in small] == [h.docno for h in index.search(queries[0], 20)]


def test_single_array_build(tmp_path, matrix):
    index = DenseIndex.build(matrix[:10], tmp_path / "one")
    assert index.doc_ids == [str(i) for i in range(10)]
    index = DenseIndex.build(matrix[:10], tmp_path / "named", ids=[f"x{i}" for i in range(10)])
    assert index.search(matrix[3], 1)[0].doc_id == "x3"


def test_query_validation(built):
    with pytest.raises(InputError, match="dimension 24"):
        built.search(np.zeros(5, np.float32))
    with pytest.raises(InputError, match="finite"):
        built.search(np.full(24, np.nan, np.float32))
    with pytest.raises(InputError, match="one query vector"):
        built.search(np.zeros((2, 24), np.float32))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        built.search(np.zeros(24, np.float32), 0)
    with pytest.raises(ValueError, match="mode must be one of"):
        built.search_batch(np.zeros((1, 24), np.float32), mode="ivf")
    with pytest.raises(ValueError, match="no HNSW graph"):
        built.search(np.zeros(24, np.float32), mode="hnsw")
    with pytest.warns(DeprecationWarning, match="method= is deprecated"):
        old = built.search(np.ones(24, np.float32), 3, method="exact")
    assert old == built.search(np.ones(24, np.float32), 3, mode="exact")


@pytest.mark.parametrize(
    "bad, message",
    [
        ([(["a", "b"], np.array([[1.0, np.nan], [0.0, 1.0]]))], "NaN or infinity"),
        ([(["a"], np.ones((1, 3))), (["a"], np.ones((1, 3)))], "duplicate document id 'a'"),
        ([(["a"], np.ones((1, 3))), (["b"], np.ones((1, 4)))], "dimension 4 after"),
        ([(["a", "b"], np.ones((1, 3)))], "2 ids for 1 vectors"),
        ([(["a"], np.ones(3))], "2-d"),
        ([([""], np.ones((1, 3)))], "invalid id: document 0: empty id"),
        ([], "no documents"),
    ],
)
def test_bad_input_is_refused_and_publishes_nothing(tmp_path, bad, message):
    with pytest.raises(InputError, match=message):
        DenseIndex.build(iter(bad), tmp_path / "bad")
    assert not (tmp_path / "bad" / "CURRENT").exists()
    assert not [p for p in (tmp_path / "bad").iterdir() if p.name.startswith(("gen-", ".tmp"))]


def test_interrupted_rebuild_keeps_the_old_index(built, tmp_path, matrix):
    def failing():
        yield ["n0"], matrix[:1]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DenseIndex.build(failing(), tmp_path / "dense")
    index = DenseIndex.open(tmp_path / "dense", verify=True)
    assert index.num_documents == 300
    rebuilt = DenseIndex.build(batches(matrix[:50], 20, "new"), tmp_path / "dense")
    assert rebuilt.doc_ids[0] == "new0" and rebuilt.directory.name == "gen-000002"


class _FullDisk:
    """A file that raises ENOSPC once the whole build has written ``budget`` bytes."""

    def __init__(self, handle, state):
        self.handle, self.state = handle, state

    def write(self, data):
        size = len(memoryview(data).cast("B"))
        if self.state["written"] + size > self.state["budget"]:
            import errno
            import os

            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.state["written"] += size
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_full_disk_at_any_byte_keeps_the_old_index(built, tmp_path, matrix, monkeypatch):
    import errno

    from sparse_ir.index import storage

    real_open = storage._open_for_write
    total = sum(r.size for r in built.manifest.files.values())
    for budget in (0, 1, 100, 4096, total // 3, total // 2, total - 200):
        state = {"written": 0, "budget": budget}
        monkeypatch.setattr(
            storage, "_open_for_write", lambda path, state=state: _FullDisk(real_open(path), state)
        )
        with pytest.raises(OSError) as caught:
            DenseIndex.build(batches(matrix, 64, "other"), tmp_path / "dense")
        assert caught.value.errno == errno.ENOSPC
        monkeypatch.setattr(storage, "_open_for_write", real_open)
        index = DenseIndex.open(tmp_path / "dense", verify=True)
        assert index.doc_ids[0] == "doc0"
        assert not [p for p in (tmp_path / "dense").iterdir() if p.name.startswith(".tmp")]


def test_flipped_byte_is_detected(built):
    path = built.directory / "vectors.bin"
    data = bytearray(path.read_bytes())
    data[200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="vectors.bin"):
        DenseIndex.open(built.directory.parent, verify=True)


def test_truncated_or_missing_file_is_detected(built):
    path = built.directory / "vectors.bin"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IndexCorruptError, match="vectors.bin"):
        DenseIndex.open(built.directory.parent)
    (built.directory / "doc_ids.bytes.bin").unlink()
    with pytest.raises(IndexCorruptError, match="doc_ids.bytes.bin"):
        DenseIndex.open(built.directory.parent)


def test_other_format_and_version_refused(built, tmp_path, monkeypatch):
    from sparse_ir.index.manifest import DenseManifest

    monkeypatch.setattr(DenseManifest, "FORMAT_VERSION", 2)
    with pytest.raises(IndexFormatError, match="version 1.*reads version 2"):
        DenseIndex.open(built.directory.parent)
    monkeypatch.setattr(DenseManifest, "FORMAT", "sparse-ir-impact-index")
    with pytest.raises(IndexFormatError, match="not 'sparse-ir-impact-index'"):
        DenseIndex.open(built.directory.parent)


def test_hnsw_backend(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    index = DenseIndex.build(
        batches(vectors, 500),
        tmp_path / "hnsw",
        hnsw=HnswOptions(m=16, ef_construction=100, ef_search=64),
    )
    assert index.has_hnsw
    index = DenseIndex.open(tmp_path / "hnsw", verify=True)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    exact = index.search_batch(queries, 10)
    approx = index.search_batch(queries, 10, mode="hnsw", ef_search=200)
    recall = np.mean(
        [len({h.docno for h in exact[q]} & {h.docno for h in approx[q]}) / 10 for q in exact]
    )
    assert recall >= 0.9
    for q in approx:
        scores = [h.score for h in approx[q]]
        assert scores == sorted(scores, reverse=True)
    path = index.directory / "hnsw.bin"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError):
        DenseIndex.open(tmp_path / "hnsw", verify=True)


# -- the encoder ----------------------------------------------------------------------------------


def test_sentence_transformers_config(tmp_path):
    from sparse_ir.encoders.dense import read_sentence_transformers_config

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
            ]
        )
    )
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": False,
            }
        )
    )
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 77}')
    (tmp_path / "config_sentence_transformers.json").write_text(
        '{"prompts": {"query": "query: ", "passage": "passage: "}}'
    )
    config = read_sentence_transformers_config(tmp_path)
    assert (config.pooling, config.normalize, config.max_length) == ("cls", False, 77)
    assert (config.query_prompt, config.document_prompt) == ("query: ", "passage: ")
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode": "lasttoken"}')
    with pytest.raises(ValueError, match="lasttoken"):
        read_sentence_transformers_config(tmp_path)
    assert read_sentence_transformers_config(tmp_path / "absent").pooling is None


@pytest.fixture(scope="module")
def tiny_dense(tiny_bert_dir):
    from sparse_ir.encoders.dense import DenseEncoder

    return DenseEncoder.from_pretrained(tiny_bert_dir, max_length=16, batch_size=3)


def test_pooling_rules_by_hand(tiny_dense):
    import torch

    texts = ["the cell protein", "a gene", "the blood brain study of mice in python data", "tumor"]
    tokenizer, model = tiny_dense.tokenizer, tiny_dense.model
    with torch.inference_mode():
        for pooling in ("mean", "cls", "max"):
            tiny_dense.pooling = pooling
            ours = tiny_dense.encode_documents(texts, show_progress=False)
            for text, row in zip(texts, ours):
                ids = tokenizer(text, return_tensors="pt")
                hidden = model(**ids).last_hidden_state[0]
                expected = {"mean": hidden.mean(0), "cls": hidden[0], "max": hidden.max(0).values}[
                    pooling
                ]
                expected = (expected / expected.norm()).numpy()
                np.testing.assert_allclose(row, expected, atol=1e-5)
    tiny_dense.pooling = "mean"


def test_encoder_counts_and_order(tiny_dense):
    from sparse_ir.encoders.dense import DenseEncodeStats

    stats = DenseEncodeStats()
    texts = ["gene", "", "cancer " * 40, "  ", "cell"]
    vectors = tiny_dense.encode_documents(texts, stats=stats, show_progress=False)
    assert vectors.shape == (5, tiny_dense.dim) and vectors.dtype == np.float32
    assert (stats.texts, stats.empty_texts, stats.truncated_texts) == (5, 2, 1)
    assert not vectors[1].any() and not vectors[3].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2, 4]], axis=1), 1.0, atol=1e-6)
    alone = tiny_dense.encode_documents(["cell"], show_progress=False)
    np.testing.assert_allclose(vectors[4], alone[0], atol=1e-6)
    with pytest.raises(TypeError, match="not one string"):
        tiny_dense.encode("gene", max_length=8)
    np.testing.assert_allclose(
        tiny_dense.encode_queries("gene", show_progress=False),
        tiny_dense.encode_queries(["gene"], show_progress=False),
    )


def test_query_and_document_prompts(tiny_bert_dir):
    from sparse_ir.encoders.dense import DenseEncoder

    encoder = DenseEncoder.from_pretrained(
        tiny_bert_dir, query_prompt="search ", document_prompt="document "
    )
    plain = DenseEncoder.from_pretrained(tiny_bert_dir)
    np.testing.assert_allclose(
        encoder.encode_queries(["gene data"], show_progress=False),
        plain.encode_documents(["search gene data"], show_progress=False),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        encoder.encode_documents(["gene"], show_progress=False),
        plain.encode_documents(["document gene"], show_progress=False),
        atol=1e-6,
    )
    assert encoder.settings()["query_prompt"] == "search "


def test_bfloat16_precision_is_close(tiny_bert_dir, tiny_dense):
    from sparse_ir.encoders.dense import DenseEncoder

    texts = ["the cell protein", "a gene expression study of mice", "tumor"]
    half = DenseEncoder.from_pretrained(tiny_bert_dir, max_length=16, precision="bfloat16")
    low = half.encode_documents(texts, show_progress=False)
    full = tiny_dense.encode_documents(texts, show_progress=False)
    assert low.dtype == np.float32
    assert np.min(np.sum(low * full, axis=1)) > 0.99  # cosine of unit vectors


def test_encoder_options_validated(tiny_bert_dir):
    from sparse_ir.encoders.dense import DenseEncoder

    with pytest.raises(ValueError, match="pooling must be one of"):
        DenseEncoder.from_pretrained(tiny_bert_dir, pooling="weighted")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DenseEncoder.from_pretrained(tiny_bert_dir, batch_size=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        DenseEncoder.from_pretrained(tiny_bert_dir, precision="float16")


@pytest.mark.slow
def test_minilm_agrees_with_sentence_transformers(scifact_docs):
    st = pytest.importorskip("sentence_transformers")
    from sparse_ir.encoders.dense import DenseEncoder
    from sparse_ir.encoders.registry import resolve_model

    encoder = DenseEncoder.from_pretrained("minilm")
    assert (encoder.pooling, encoder.normalize, encoder.document_max_length) == ("mean", True, 256)
    texts = [d.full_text for d in scifact_docs[:24]] + [
        "What is the role of p53 in cancer?",
        "  leading and trailing spaces  ",
        "x",
    ]
    reference = st.SentenceTransformer(resolve_model("minilm"), device="cpu").encode(
        texts, batch_size=8, convert_to_numpy=True
    )
    ours = encoder.encode_documents(texts, show_progress=False)
    assert np.abs(ours - reference).max() < 1e-5
    queries = encoder.encode_queries(texts[-3:], show_progress=False)
    assert np.abs(queries - reference[-3:]).max() < 1e-5


# -- hybrid search and the CLI --------------------------------------------------------------------

TINY_CORPUS = [
    ("d1", "Cancer cells", "tumor cells grow in the brain of mice"),
    ("d2", "Gene expression", "gene expression increased in human blood"),
    ("d3", "Search", "a sparse index and a dense vector model for search"),
    ("d4", "Risk", "disease risk of patients after treatment"),
    ("d5", "Python", "read a data file in python and write the results"),
]


@pytest.fixture(scope="module")
def tiny_indexes(tmp_path_factory, tiny_bert_dir):
    from sparse_ir.cli import main

    root = tmp_path_factory.mktemp("hybrid")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in TINY_CORPUS)
    )
    assert (
        main(
            [
                "-q",
                "index",
                "--input",
                str(corpus),
                "--output",
                str(root / "sparse"),
                "--model",
                str(tiny_bert_dir),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "dense-index",
                "--input",
                str(corpus),
                "--output",
                str(root / "dense"),
                "--model",
                str(tiny_bert_dir),
                "--hnsw",
            ]
        )
        == 0
    )
    return root


def test_cli_dense_and_hybrid_search(tiny_indexes, capsys):
    from sparse_ir.cli import main

    capsys.readouterr()
    assert (
        main(
            [
                "dense-search",
                "--index",
                str(tiny_indexes / "dense"),
                "-k",
                "3",
                "gene",
                "expression",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("score") == 3
    for fusion in (["--fusion", "convex", "--alpha", "0.3"], ["--fusion", "rrf"]):
        assert (
            main(
                [
                    "hybrid-search",
                    "--sparse-index",
                    str(tiny_indexes / "sparse"),
                    "--dense-index",
                    str(tiny_indexes / "dense"),
                    "-k",
                    "5",
                    *fusion,
                    "tumor cells in mice",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "fusion:" in out and sum(f"d{i}" in out for i in range(1, 6)) == 5
    for option in (["--dense-mode", "hnsw"], ["--method", "hnsw"], ["--sparse-mode", "exhaustive"]):
        assert (
            main(
                [
                    "hybrid-search",
                    "--sparse-index",
                    str(tiny_indexes / "sparse"),
                    "--dense-index",
                    str(tiny_indexes / "dense"),
                    "-k",
                    "3",
                    *option,
                    "tumor cells",
                ]
            )
            == 0
        )
        assert "fusion:" in capsys.readouterr().out
    assert (
        main(
            [
                "dense-search",
                "--index",
                str(tiny_indexes / "dense"),
                "-k",
                "3",
                "--mode",
                "hnsw",
                "gene",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count("score") == 3
    assert (
        main(
            [
                "hybrid-search",
                "--sparse-index",
                str(tiny_indexes / "sparse"),
                "--dense-index",
                str(tiny_indexes / "dense"),
                "--alpha",
                "2",
                "x",
            ]
        )
        == 1
    )
    assert "alpha must be within" in capsys.readouterr().err
    assert (
        main(
            [
                "dense-index",
                "--input",
                str(tiny_indexes / "absent.jsonl"),
                "--output",
                str(tiny_indexes / "other"),
                "--model",
                "minilm",
            ]
        )
        == 1
    )


def test_hybrid_searcher_equals_fusing_the_components(tiny_indexes):
    from sparse_ir.fusion import Fusion, fuse_hits
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.search import DenseSearcher

    searcher = HybridSearcher.from_indexes(
        tiny_indexes / "sparse", tiny_indexes / "dense", fusion=Fusion.convex(0.4, depth=3)
    )
    sparse_searcher, dense_searcher = searcher.searchers
    assert isinstance(dense_searcher, DenseSearcher)
    text = "gene expression in blood"
    hits = searcher.search(text, 4)
    sparse = sparse_searcher.search(text, 3)
    dense = dense_searcher.index.search(dense_searcher.encoder.encode_queries([text])[0], 3)
    assert dense == dense_searcher.search(text, 3)
    assert hits == fuse_hits([sparse, dense], weights=(0.4, 0.6), depth=3, k=4)
    assert searcher.timings.total > 0
    assert set(searcher.timings.stages()) == {
        "sparse_encode",
        "sparse_search",
        "dense_encode",
        "dense_search",
        "fusion",
    }
    fused, (sparse_run, dense_run) = searcher.search_batch_components(
        [text, "python file"], 4, query_ids=["a", "b"]
    )
    # Batched query encoding pads the queries together: scores agree to float precision.
    assert [h.doc_id for h in fused["a"]] == [h.doc_id for h in hits]
    assert [h.score for h in fused["a"]] == pytest.approx([h.score for h in hits], abs=1e-5)
    assert list(sparse_run.results) == ["a", "b"] and list(dense_run.results) == ["a", "b"]
    assert (sparse_run.name, dense_run.name) == ("sparse", "dense")
    assert (
        searcher.search_batch([text, "python file"], 4, query_ids=["a", "b"]).results
        == fused.results
    )
    with pytest.warns(DeprecationWarning, match="query_ids"):
        old = searcher.search_batch([text, "python file"], 4, ids=["a", "b"])
    assert old.results == fused.results
    sequential = HybridSearcher(searcher.searchers, Fusion.convex(0.4, depth=3), parallel=False)
    assert sequential.search(text, 4) == hits
    assert sequential.timings.elapsed >= sequential.timings.total * 0.99
    with HybridSearcher.from_indexes(
        tiny_indexes / "sparse", tiny_indexes / "dense", dense_mode="hnsw", parallel=True
    ) as approx:
        assert len(approx.search(text, 5)) == 5
    with pytest.warns(DeprecationWarning, match="dense_mode"):
        HybridSearcher.from_indexes(
            tiny_indexes / "sparse", tiny_indexes / "dense", dense_method="exact"
        )


def test_hybrid_searcher_refuses_mismatched_indexes(tiny_indexes, tmp_path):
    from sparse_ir.fusion import Fusion
    from sparse_ir.hybrid import HybridSearcher
    from sparse_ir.search import DenseSearcher, Searcher

    sparse = Searcher.from_index(tiny_indexes / "sparse")
    good = DenseIndex.open(tiny_indexes / "dense")
    fewer = DenseIndex.build(np.asarray(good.vectors)[:4], tmp_path / "fewer", ids=good.doc_ids[:4])
    other = DenseIndex.build(
        np.asarray(good.vectors),
        tmp_path / "other",
        ids=[f"x{i}" for i in range(good.num_documents)],
    )

    class Encoder:
        dim = good.dim

    with pytest.raises(ValueError, match="5 documents, the index .* 4"):
        HybridSearcher([sparse, DenseSearcher(fewer, Encoder())])
    with pytest.raises(ValueError, match="hold different documents"):
        HybridSearcher([sparse, DenseSearcher(other, Encoder())])
    with pytest.raises(ValueError, match="at least 2 searchers"):
        HybridSearcher([sparse])
    with pytest.raises(ValueError, match="2 weights .* for 3 searchers"):
        HybridSearcher([sparse, DenseSearcher(good, Encoder()), sparse], Fusion.convex(0.5))
    Encoder.dim = 7
    with pytest.raises(ValueError, match="7-d vectors"):
        DenseSearcher(good, Encoder())


def test_hybrid_search_script_end_to_end(tmp_path, tiny_bert_dir, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "hybrid_search.py"
    spec = importlib.util.spec_from_file_location("hybrid_search_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = tmp_path / "tiny-beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in TINY_CORPUS)
    )
    queries = {
        "1": "tumor cells",
        "2": "gene expression",
        "3": "python data file",
        "4": "disease risk",
    }
    (data / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n2\td2\t1\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n3\td5\t1\n4\td4\t1\n")
    argv = [
        "--data",
        str(data),
        "--sparse-model",
        str(tiny_bert_dir),
        "--dense-model",
        str(tiny_bert_dir),
        "--sparse-index",
        str(tmp_path / "s"),
        "--dense-index",
        str(tmp_path / "d"),
        "--runs",
        str(tmp_path / "runs"),
        "--step",
        "0.25",
    ]
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert "tuned on train (2 queries" in out and "RRF, k 60" in out
    assert len(list((tmp_path / "runs").glob("*.trec"))) == 5
    assert module.main([*argv, "--reuse"]) == 0
    with pytest.raises(SystemExit):
        module.main([*argv, "--tune-split", "test"])
