"""The search service (sparse_ir.service) against REAL uvicorn servers on free 127.0.0.1 ports.

A SciFact impact index is built in tmp from the pre-encoded splade-tiny document vectors (with
titles and texts); text queries are encoded by the bundled splade-tiny, so the API's hits can
be compared with the Python API's. A small dense index (words hashed into 64 dimensions: a
stand-in for a dense model, to keep the test fast) enables /hybrid.

Servers run in a thread of this process (uvicorn.Server), except for the SIGTERM test, which
starts ``sparse-ir serve`` as a subprocess. The browser test drives Debian's chromium with
Playwright. Select these tests with ``-m service``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import in_ci

try:
    import fastapi  # noqa: F401
except ImportError:
    if in_ci():  # CI installs every extra (make test installs .[all])
        raise
    pytest.skip(
        "the service extra is not installed (pip install 'sparse-ir[service]')",
        allow_module_level=True,
    )
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from sparse_ir.fusion import Fusion  # noqa: E402
from sparse_ir.hybrid import HybridSearcher  # noqa: E402
from sparse_ir.index.dense import DenseIndex  # noqa: E402
from sparse_ir.index.impact_index import ImpactIndex  # noqa: E402
from sparse_ir.search import DenseSearcher, Searcher  # noqa: E402
from sparse_ir.service import ServiceSettings, create_app  # noqa: E402

pytestmark = [pytest.mark.service, pytest.mark.slow]

READ_TOKEN = "read-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUERIES = [
    "0-dimensional biomaterials show inductive properties.",
    "ALDH1 expression is associated with poorer prognosis for breast cancer primary tumors.",
    "Vitamin D deficiency increases the risk of tuberculosis",
    "microRNA regulation of gene expression in cancer cells",
]
LIMITS = dict(
    max_k=100,
    max_query_chars=300,
    max_query_terms=50,
    max_body_bytes=4096,
    max_batch=8,
    request_timeout=10.0,
)


# -- fixtures: the indexes, the searchers, the servers ---------------------------------------------


class HashedWords:
    """A toy dense encoder: each lower-cased word adds 1 to dimension crc32(word) % 64; unit
    length. Fast and deterministic, so /hybrid can be tested against the Python API."""

    dim = 64

    def encode_queries(self, texts, *, show_progress=None):
        texts = [texts] if isinstance(texts, str) else list(texts)
        vectors = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)


def build_scifact_index(path: Path, vectors, docs_by_id, rows: int | None = None) -> ImpactIndex:
    documents = vectors.documents if rows is None else vectors.documents.select(range(rows))
    contents = [(docs_by_id[i].title, docs_by_id[i].text) for i in documents.ids]
    return ImpactIndex.build(
        documents,
        path,
        contents=contents,
        metadata=[
            {"bucket": row % 3, "parity": "even" if row % 2 == 0 else "odd"}
            for row in range(len(documents))
        ],
        show_progress=False,
        settings={
            "model": "splade-tiny",
            "query_encoder": "splade",
            "pooling": "max",
            "query_max_length": 64,
        },
    )


@pytest.fixture(scope="module")
def docs_by_id(scifact_docs):
    return {doc.id: doc for doc in scifact_docs}


@pytest.fixture(scope="module")
def scifact_index_path(tmp_path_factory, scifact_vectors, docs_by_id) -> Path:
    path = tmp_path_factory.mktemp("service") / "scifact"
    build_scifact_index(path, scifact_vectors, docs_by_id)
    return path


@pytest.fixture(scope="module")
def searcher(scifact_index_path, splade_tiny) -> Searcher:
    return Searcher(ImpactIndex.open(scifact_index_path), splade_tiny)


@pytest.fixture(scope="module")
def dense_searcher(tmp_path_factory, searcher) -> DenseSearcher:
    index = searcher.index
    texts = [" ".join(index.document(d)) for d in range(index.num_documents)]
    dense = DenseIndex.build(
        HashedWords().encode_queries(texts),
        tmp_path_factory.mktemp("dense") / "scifact",
        ids=index.doc_ids,
    )
    return DenseSearcher(dense, HashedWords())


class ThreadServer:
    """A real uvicorn server for ``app`` on a free 127.0.0.1 port, run in a thread."""

    def __init__(self, app):
        self.app = app
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        # ready = verified and warmed up (the kernels compiled): minutes on a busy machine
        deadline = time.monotonic() + 600
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        while httpx.get(f"{self.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "server not ready within 600 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, headers=None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(searcher, dense_searcher):
    """Reads need the read token; /reload the admin token; small limits."""
    settings = ServiceSettings(read_token=READ_TOKEN, admin_token=ADMIN_TOKEN, **LIMITS)
    with ThreadServer(create_app(searcher, dense_searcher, settings=settings)) as running:
        yield running


@pytest.fixture(scope="module")
def open_server(searcher, dense_searcher):
    """No tokens: reads are open, administration disabled."""
    with ThreadServer(create_app(searcher, dense_searcher, settings=ServiceSettings())) as s:
        yield s


@pytest.fixture()
def client(server):
    with server.client(READ) as http:
        yield http


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, mentions: str | None = None
) -> dict:
    """A JSON error: the status, a code, a message naming the problem, the request id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"}, body
    assert body["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert body["error"] == code, body
    if mentions is not None:
        assert mentions in body["message"], body
    assert "Traceback" not in response.text
    return body


# -- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "exhaustive", "pruned", "approximate"])
def test_search_text_equals_python_api(client, searcher, mode):
    for text in QUERIES:
        body = {"text": text, "k": 20} | ({"mode": mode} if mode else {})
        response = client.post("/search", json=body)
        assert response.status_code == 200, response.text
        got = [(hit["id"], hit["score"], hit["docno"]) for hit in response.json()["hits"]]
        expected = [
            (hit.doc_id, hit.score, hit.docno) for hit in searcher.search(text, 20, mode=mode)
        ]
        assert got == expected
        assert response.json()["mode"] == (mode or "pruned")
        titles = [hit["title"] for hit in response.json()["hits"]]
        assert titles == [searcher.index.document(d)[0] for _, _, d in got]


def test_search_pre_encoded_equals_python_api(client, searcher):
    vector = dict(searcher.encoder.encode_queries(QUERIES[1]).decode(0, top_k=None))
    response = client.post("/search", json={"query": vector, "k": 15})
    assert response.status_code == 200, response.text
    assert [(h["id"], h["score"]) for h in response.json()["hits"]] == [
        (h.doc_id, h.score) for h in searcher.index.search(vector, 15)
    ]
    impacts = {"cancer": 120, "breast": 80, "tumor": 50}
    response = client.post("/search", json={"query": impacts, "impacts": True, "k": 5})
    assert [(h["id"], h["score"]) for h in response.json()["hits"]] == [
        (h.doc_id, h.score) for h in searcher.index.search(impacts, 5)
    ]
    # tokens outside the vocabulary are dropped, as in the library
    response = client.post("/search", json={"query": {"cancer": 1.0, "zzzqqq": 2.0}, "k": 3})
    assert [h["id"] for h in response.json()["hits"]] == [
        h.doc_id for h in searcher.index.search({"cancer": 1.0}, 3)
    ]


def test_search_explain(client, searcher):
    text = QUERIES[1]
    response = client.post("/search", json={"text": text, "k": 10, "explain": True})
    assert response.status_code == 200, response.text
    data = response.json()
    query = searcher.encode(text)
    for hit in data["hits"]:
        parts = searcher.index.explain(query, hit["docno"])
        assert [
            (c["token"], c["query_weight"], c["document_impact"], c["score"])
            for c in hit["contributions"]
        ] == [tuple(c) for c in parts]
        assert sum(c["score"] for c in hit["contributions"]) == hit["score"]
        title, body = searcher.index.document(hit["docno"])
        pieces = set(searcher.encoder.tokenizer.tokenize(f"{title}\n{body}"))
        assert set(hit["matched_terms"]) <= pieces  # the text holds them (as word pieces)
        assert not set(hit["expansion_terms"]) & pieces  # matched through the expansion
        assert sorted(hit["matched_terms"] + hit["expansion_terms"]) == sorted(
            c["token"] for c in hit["contributions"]
        )
        words = set(re.findall(r"[^\W_]+", f"{title} {body}".lower()))
        assert hit["highlight"] and set(hit["highlight"]) <= words
        assert hit["snippet"] and len(hit["snippet"]) <= 300
    terms = {t["token"]: t for t in data["query_terms"]}
    assert terms["breast"]["in_text"] is True and terms["##dh"]["in_text"] is True  # ALDH1
    assert any(t["in_text"] is False for t in data["query_terms"])  # SPLADE's expansion
    assert sorted((t["token"], t["impact"]) for t in data["query_terms"]) == sorted(
        (searcher.index.vocab[t], w)
        for t, w in zip(*[a.tolist() for a in searcher.index.prepare_query(query)])
    )


@pytest.mark.parametrize(
    "fusion",
    [
        {},
        {"method": "rrf"},
        {"method": "convex", "weights": [0.7, 0.3], "normalization": "z-score", "depth": 200},
        {"method": "rrf", "weights": [1.0, 2.0], "rrf_k": 10},
    ],
)
def test_hybrid_equals_python_api(client, searcher, dense_searcher, fusion):
    text = QUERIES[2]
    response = client.post("/hybrid", json={"text": text, "k": 12, "fusion": fusion})
    assert response.status_code == 200, response.text
    options = {"weights": tuple(fusion["weights"])} if "weights" in fusion else {}
    rule = Fusion(**{**fusion, **options})
    expected = HybridSearcher([searcher, dense_searcher], rule).search(text, 12)
    hits = response.json()["hits"]
    assert [h["id"] for h in hits] == [h.doc_id for h in expected]
    for hit, fused in zip(hits, expected):
        assert math.isclose(hit["score"], fused.score, rel_tol=1e-12)
        assert (hit["sparse_score"], hit["dense_score"]) == pytest.approx(fused.components)
        assert (hit["sparse_rank"], hit["dense_rank"]) == fused.ranks
    assert response.json()["fusion"] == rule.describe()


def test_filter_equals_python_api(client, searcher, dense_searcher):
    """``filter`` on /search (text and pre-encoded) and /hybrid: the Python API's hits with the
    same filter; a bad filter is a 422 naming the problem."""
    where = "bucket>=1 AND parity=even"
    for text in QUERIES[:2]:
        response = client.post("/search", json={"text": text, "k": 10, "filter": where})
        assert response.status_code == 200, response.text
        expected = searcher.search(text, 10, filter=where)
        assert [hit["id"] for hit in response.json()["hits"]] == [h.doc_id for h in expected]
        assert all(searcher.index.metadata(h.docno)["bucket"] >= 1 for h in expected)
        assert expected != searcher.search(text, 10)  # the filter changed the hits
    query = {"cancer": 1.5, "cell": 0.7, "tumor": 1.1}
    response = client.post("/search", json={"query": query, "k": 5, "filter": "bucket=0"})
    assert response.status_code == 200, response.text
    expected = searcher.index.search(query, 5, filter="bucket=0")
    assert [(hit["id"], hit["score"]) for hit in response.json()["hits"]] == [
        (h.doc_id, h.score) for h in expected
    ]
    response = client.post("/hybrid", json={"text": QUERIES[2], "k": 5, "filter": where})
    assert response.status_code == 200, response.text
    fused = HybridSearcher([searcher, dense_searcher], Fusion()).search(QUERIES[2], 5, filter=where)
    assert [hit["id"] for hit in response.json()["hits"]] == [h.doc_id for h in fused]
    assert_error(
        client.post("/search", json={"text": "cancer", "filter": "bucket>>1"}),
        422,
        "invalid_request",
        "position",
    )
    assert_error(
        client.post("/search", json={"text": "cancer", "filter": "year>=2020"}),
        422,
        "invalid_request",
        "year",
    )
    assert_error(
        client.post("/hybrid", json={"text": "cancer", "filter": "year>=2020"}),
        422,
        "invalid_request",
        "year",
    )
    assert_error(
        client.post("/search", json={"text": "cancer", "filter": 3}), 422, "invalid_request"
    )


def test_hybrid_refusals(client, searcher):
    assert_error(
        client.post("/hybrid", json={"text": "x", "fusion": {"method": "borda"}}),
        422,
        "invalid_request",
        "fusion.method",
    )
    assert_error(
        client.post("/hybrid", json={"text": "x", "fusion": {"weights": [0.9, 0.9]}}),
        422,
        "invalid_request",
        "weights",
    )
    assert_error(
        client.post("/hybrid", json={"text": "x", "fusion": {"weights": [1.0]}}),
        422,
        "invalid_request",
        "fusion.weights",
    )
    assert_error(
        client.post("/hybrid", json={"text": "x", "fusion": {"alpha": 0.5}}),
        422,
        "invalid_request",
        "fusion.alpha",
    )
    app = create_app(searcher, settings=ServiceSettings())  # no dense index
    with ThreadServer(app) as sparse_only, sparse_only.client() as http:
        assert_error(http.post("/hybrid", json={"text": "x"}), 404, "not_found", "--dense-index")


def test_encode(client, searcher):
    response = client.post("/encode", json={"text": QUERIES[0]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    expected = dict(searcher.encoder.encode_queries(QUERIES[0]).decode(0, top_k=None))
    assert result["vector"].keys() == expected.keys()
    assert all(math.isclose(result["vector"][t], w, rel_tol=1e-6) for t, w in expected.items())
    weights = list(result["vector"].values())
    assert weights == sorted(weights, reverse=True)
    quantized = searcher.encode(QUERIES[0])
    assert result["impacts"] == dict(quantized.decode(0, top_k=None))
    response = client.post("/encode", json={"texts": QUERIES[:3], "top_k": 5})
    results = response.json()["results"]
    assert len(results) == 3 and all(len(r["vector"]) == 5 for r in results)
    assert_error(
        client.post("/encode", json={"texts": ["a"] * 9}), 422, "invalid_request", "--max-batch"
    )
    assert_error(client.post("/encode", json={"texts": []}), 422, "invalid_request")
    assert_error(
        client.post("/encode", json={"text": "a", "texts": ["b"]}),
        422,
        "invalid_request",
        "exactly one",
    )


def test_documents(client, searcher):
    index = searcher.index
    for docno in (0, 17, index.num_documents - 1):
        doc_id = index.doc_ids[docno]
        response = client.get(f"/documents/{doc_id}")
        assert response.status_code == 200, response.text
        title, text = index.document(docno)
        assert response.json() == {"id": doc_id, "docno": docno, "title": title, "text": text}
    assert_error(client.get("/documents/no-such-doc"), 404, "not_found", "no-such-doc")


def test_health_ready_stats_metrics(server, client, searcher):
    with server.client() as anonymous:  # probes need no token
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert ready.json()["generation"] == searcher.index.directory.name
    client.post("/search", json={"text": QUERIES[0]})
    stats = client.get("/stats").json()
    assert stats["index"]["documents"] == searcher.index.num_documents
    assert stats["index"]["model"] == "splade-tiny"
    assert stats["dense_index"]["dim"] == 64
    assert stats["limits"]["max_k"] == LIMITS["max_k"]
    assert stats["micro_batching"]["encoder_calls"] >= 1
    assert stats["latency"]["/search"]["p50_ms"] > 0
    assert any(r["route"] == "/search" and r["status"] == 200 for r in stats["requests"])
    assert READ_TOKEN not in json.dumps(stats) and ADMIN_TOKEN not in json.dumps(stats)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$')
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert any(
        line.startswith('sparse_ir_requests_total{method="POST",route="/search",status="200"}')
        for line in lines
    )
    assert f"sparse_ir_index_documents {searcher.index.num_documents}" in lines
    assert any(line.startswith("sparse_ir_request_duration_seconds_bucket") for line in lines)
    schema = client.get("/openapi.json").json()
    assert {
        "/search",
        "/hybrid",
        "/encode",
        "/documents/{doc_id}",
        "/healthz",
        "/readyz",
        "/stats",
        "/metrics",
        "/reload",
    } <= {p.replace(":path", "") for p in schema["paths"]}


# -- tokens --------------------------------------------------------------------------------------

READS = [
    ("POST", "/search", {"text": "cancer"}),
    ("POST", "/hybrid", {"text": "cancer"}),
    ("POST", "/encode", {"text": "cancer"}),
    ("GET", "/documents/{doc}", None),
    ("GET", "/stats", None),
    ("GET", "/metrics", None),
]


@pytest.mark.parametrize("method,path,body", READS)
def test_read_tokens(server, searcher, method, path, body, caplog):
    path = path.replace("{doc}", searcher.index.doc_ids[0])
    caplog.set_level(logging.INFO, logger="sparse_ir.service")
    with server.client() as http:

        def call(headers):
            return http.request(method, path, json=body, headers=headers)

        missing = assert_error(call({}), 401, "unauthorized", "Bearer")
        assert call({}).headers["www-authenticate"] == "Bearer"
        assert_error(call({"Authorization": "Bearer wrong-token-0123456789"}), 401, "invalid_token")
        assert_error(call({"Authorization": f"Basic {READ_TOKEN}"}), 401, "unauthorized")
        assert_error(call({"Authorization": "Bearer " + READ_TOKEN[:-1]}), 401, "invalid_token")
        assert call(READ).status_code == 200
        assert call(ADMIN).status_code == 200  # the admin token reads too
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert READ_TOKEN not in logged and ADMIN_TOKEN not in logged
    assert missing["request_id"] in logged  # the access log has every request


def test_admin_token(server, open_server, searcher):
    with server.client() as http:
        assert_error(http.post("/reload"), 401, "unauthorized", "admin token")
        assert_error(
            http.post("/reload", headers={"Authorization": "Bearer nope-nope-nope"}),
            401,
            "invalid_token",
        )
        assert_error(http.post("/reload", headers=READ), 403, "forbidden", "admin token")
        response = http.post("/reload", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json() == {"reloaded": False, "generation": searcher.index.directory.name}
    with open_server.client() as http:
        assert http.post("/search", json={"text": "cancer"}).status_code == 200  # open reads
        assert_error(http.post("/reload", headers=ADMIN), 403, "forbidden", "--admin-token-file")


def test_token_files(tmp_path):
    (tmp_path / "read").write_text(READ_TOKEN + "\n")
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "empty").write_text("\n")
    settings = ServiceSettings.from_token_files(read_token_file=tmp_path / "read")
    assert settings.read_token == READ_TOKEN and settings.admin_token is None
    assert READ_TOKEN not in repr(settings)
    with pytest.raises(ValueError, match="at least 16"):
        ServiceSettings.from_token_files(admin_token_file=tmp_path / "short")
    with pytest.raises(ValueError, match="empty"):
        ServiceSettings.from_token_files(admin_token_file=tmp_path / "empty")
    with pytest.raises(ValueError, match="max_k must be an integer > 0"):
        ServiceSettings(max_k=0)
    with pytest.raises(ValueError, match="batch_window_ms"):
        ServiceSettings(batch_window_ms=-1)
    with pytest.raises(ValueError, match="inline_search_ms"):
        ServiceSettings(inline_search_ms=-0.5)
    with pytest.raises(ValueError, match="encoder_batch_size must be an integer > 0"):
        ServiceSettings(encoder_batch_size=0)
    with pytest.raises(ValueError, match="encoder_threads must be an integer > 0"):
        ServiceSettings(encoder_threads=0)
    assert ServiceSettings(encoder_threads=None).encoder_threads is None


def test_short_searches_run_on_the_event_loop():
    """A search runs on the loop's own thread once searches have been short, on a worker
    otherwise: the first one (no average yet), an explained one, after slow ones, and every
    one with inline_search_ms=0."""
    import asyncio
    import types

    from sparse_ir.service.app import _DEADLINE, _State

    def where() -> threading.Thread:
        return threading.current_thread()

    async def run(settings: ServiceSettings) -> list[bool]:
        with ThreadPoolExecutor(1) as executor:
            state = _State(None, settings, None, executor, None)
            request = types.SimpleNamespace(
                scope={_DEADLINE: asyncio.get_running_loop().time() + 30}
            )
            on_loop = []
            for inline in (True, True, False, True):
                thread = await state.search(request, inline, where)
                on_loop.append(thread is threading.current_thread())
                assert state.search_cpu is not None and state.search_cpu < 1
            state.search_cpu = 1.0  # searches became slow (seconds of CPU each)
            thread = await state.search(request, True, where)
            on_loop.append(thread is threading.current_thread())
            return on_loop

    assert asyncio.run(run(ServiceSettings(inline_search_ms=50))) == [
        False,  # no average yet
        True,
        False,  # explained searches: always on a worker
        True,
        False,  # the average is above the limit
    ]
    assert asyncio.run(run(ServiceSettings(inline_search_ms=0))) == [False] * 5


def test_micro_batch_passes_equal_single_texts(searcher):
    """A micro-batch encoded in length-sorted passes gives each text the vector it gets alone."""
    from sparse_ir.encoders.bm25 import BM25Encoder
    from sparse_ir.service.app import _encode_texts, _takes_passes
    from sparse_ir.service.engine import Engine

    assert _takes_passes(searcher.encoder)
    assert not _takes_passes(BM25Encoder())
    texts = [QUERIES[i % len(QUERIES)] * (1 + i % 3) for i in range(9)]
    rows = _encode_texts(Engine(searcher), texts, ServiceSettings(encoder_batch_size=2))
    for text, row in zip(texts, rows, strict=True):
        alone = searcher.encoder.encode_queries([text], show_progress=False)
        assert np.array_equal(row.indices, alone.indices)
        # float32 rounding of another padding shape (as in any batch), no more
        np.testing.assert_allclose(row.values, alone.values, rtol=1e-4, atol=1e-5)


def test_batcher_window_only_with_concurrent_texts():
    """A text alone after a batch of one (a single client) is encoded at once, without the
    window; concurrent texts share one call; after a shared call the next text waits for the
    window, since others are likely coming."""
    import asyncio

    from sparse_ir.service.batching import QueryBatcher

    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return [text.upper() for text in texts]

    async def run() -> None:
        with ThreadPoolExecutor(1) as executor:
            # a 60 s window: were it awaited, the wait_for below would fail
            lone = QueryBatcher(encode, executor, window=60.0, max_batch=8)
            lone.start()
            for text in ("a", "b", "c"):
                assert await asyncio.wait_for(lone.encode(text), 30) == text.upper()
            assert lone.waited == 0 and calls == [["a"], ["b"], ["c"]]
            await lone.stop()
            calls.clear()
            shared = QueryBatcher(encode, executor, window=0.05, max_batch=8)
            shared.start()
            rows = await asyncio.gather(*(shared.encode(t) for t in "pqrst"))
            assert rows == list("PQRST") and calls == [list("pqrst")] and shared.waited == 1
            assert await shared.encode("u") == "U"  # after a shared call: waits the window
            assert await shared.encode("v") == "V"  # after a call of one: does not
            assert shared.waited == 2 and calls[1:] == [["u"], ["v"]]
            await shared.stop()

    asyncio.run(run())


# -- limits and malformed requests ---------------------------------------------------------------


def test_limits(client):
    assert_error(
        client.post("/search", json={"text": "x", "k": 101}), 422, "invalid_request", "--max-k"
    )
    assert client.post("/search", json={"text": "cancer", "k": 100}).status_code == 200
    assert_error(client.post("/search", json={"text": "x", "k": 0}), 422, "invalid_request", "k")
    assert_error(
        client.post("/hybrid", json={"text": "x", "k": 101}), 422, "invalid_request", "--max-k"
    )
    assert_error(
        client.post("/search", json={"text": "y" * 301}),
        422,
        "invalid_request",
        "--max-query-chars",
    )
    assert_error(client.post("/search", json={"text": "   "}), 422, "invalid_request", "empty")
    assert_error(
        client.post("/encode", json={"text": "y" * 301}),
        422,
        "invalid_request",
        "--max-query-chars",
    )
    many = {f"t{i}": 1.0 for i in range(51)}
    assert_error(
        client.post("/search", json={"query": many}), 422, "invalid_request", "limit is 50"
    )
    # the body limit, from Content-Length and from a streamed (chunked) body
    big = json.dumps({"text": "cancer " * 1000}).encode()
    assert_error(
        client.post("/search", content=big, headers={"content-type": "application/json"}),
        413,
        "too_large",
        "--max-body-bytes",
    )

    def chunks():
        for _ in range(10):
            yield b" " * 1000

    assert_error(
        client.post("/search", content=chunks(), headers={"content-type": "application/json"}),
        413,
        "too_large",
        "--max-body-bytes",
    )
    ok = client.post(
        "/search",
        content=json.dumps({"text": "cancer"}).encode(),
        headers={"content-type": "application/json"},
    )
    assert ok.status_code == 200


BAD_BODIES = [
    ({"text": "x", "k": "10"}, "k"),
    ({"text": "x", "k": 2.5}, "k"),
    ({"text": "x", "k": True}, "k"),
    ({"text": 5}, "text"),
    ({"text": ["a"]}, "text"),
    ({"text": "x", "explain": "yes"}, "explain"),
    ({"text": "x", "mode": "fastest"}, "mode"),
    ({"query": {"cancer": "high"}}, "query.cancer"),
    ({"query": {"cancer": -1.0}}, "query.cancer"),
    ({"query": ["cancer"]}, "query"),
    ({"query": {"cancer": 1.5}, "impacts": True}, "whole number"),
    ({"text": "x", "query": {"cancer": 1.0}}, "exactly one"),
    ({}, "exactly one"),
    ({"text": "x", "top_k": 3}, "top_k"),
    ({"text": "x", "K": 3}, "K"),
]


@pytest.mark.parametrize("body,mentions", BAD_BODIES)
def test_wrong_types_and_unknown_fields(client, body, mentions):
    assert_error(client.post("/search", json=body), 422, "invalid_request", mentions)


@pytest.mark.parametrize(
    "content", [b"{bad json", b'{"text": "x",}', b"", b"\xff\xfe", b'{"text": "x"} trailing']
)
def test_malformed_json(client, content):
    response = client.post("/search", content=content, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code)


def test_not_json_and_wrong_routes(client):
    response = client.post(
        "/search", content=b"text=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_error(response, 422, "invalid_request")
    assert_error(client.post("/search", json=[1, 2]), 422, "invalid_request")
    assert_error(client.get("/search"), 405, "method_not_allowed")
    assert_error(client.get("/nowhere"), 404, "not_found", "/nowhere")


class TroubleEncoder:
    """splade-tiny that sleeps ``delay`` seconds per call or fails with a secret message."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.vocab = encoder.vocab
        self.delay = 0.0
        self.fail = False

    def encode_queries(self, texts, **options):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internal detail 42")
        return self.encoder.encode_queries(texts, **options)


@pytest.fixture(scope="module")
def trouble(searcher):
    encoder = TroubleEncoder(searcher.encoder)
    settings = ServiceSettings(request_timeout=0.5, read_token=READ_TOKEN)
    with ThreadServer(create_app(Searcher(searcher.index, encoder), settings=settings)) as s:
        yield s, encoder


def test_handler_exception_is_500_with_request_id(trouble, caplog):
    running, encoder = trouble
    caplog.set_level(logging.ERROR, logger="sparse_ir.service")
    encoder.fail = True
    try:
        with running.client(READ) as http:
            body = assert_error(
                http.post("/search", json={"text": "cancer"}), 500, "internal_error", "request id"
            )
    finally:
        encoder.fail = False
    assert "secret" not in json.dumps(body) and "RuntimeError" not in json.dumps(body)
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the stack trace is in the log only


def test_request_timeout(trouble):
    running, encoder = trouble
    encoder.delay = 1.0
    try:
        with running.client(READ) as http:
            started = time.monotonic()
            assert_error(
                http.post("/search", json={"text": "cancer"}), 504, "timeout", "--request-timeout"
            )
            assert time.monotonic() - started < 0.95
            # a pre-encoded query needs no encoder: still answered
            assert http.post("/search", json={"query": {"cancer": 1.0}}).status_code == 200
    finally:
        time.sleep(1.0)
        encoder.delay = 0.0
    # a body that does not arrive in time: 408
    with socket.create_connection(("127.0.0.1", running.port)) as raw:
        head = (
            "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {READ_TOKEN}\r\nContent-Length: 100\r\n\r\n"
        )
        raw.sendall(head.encode() + b'{"text": ')
        raw.settimeout(5)
        # The server closes the connection after the reply: read to the end (headers and
        # body may come in separate segments on a loaded machine).
        chunks = []
        while chunk := raw.recv(4096):
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"error":"request_timeout"' in reply


# -- faults: reload under load, slow clients, SIGTERM ----------------------------------------------


def test_reload_during_load_has_no_errors(tmp_path, scifact_vectors, docs_by_id, splade_tiny):
    path = tmp_path / "live"
    first = build_scifact_index(path, scifact_vectors, docs_by_id, rows=600)
    settings = ServiceSettings(admin_token=ADMIN_TOKEN)
    vector = dict(splade_tiny.encode_queries(QUERIES[1]).decode(0, top_k=None))
    statuses, generations = [], set()
    stop = threading.Event()

    def load(kind: str) -> None:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            while not stop.is_set():
                body = (
                    {"text": QUERIES[1], "k": 10}
                    if kind == "text"
                    else {"query": vector, "k": 10, "explain": True}
                )
                try:
                    response = http.post("/search", json=body)
                    statuses.append(response.status_code)
                    generations.add(response.json().get("generation"))
                except httpx.HTTPError as error:
                    statuses.append(repr(error))

    with ThreadServer(create_app(Searcher(first, splade_tiny), settings=settings)) as running:
        with ThreadPoolExecutor(4) as pool, running.client(ADMIN) as admin:
            futures = [pool.submit(load, kind) for kind in ("text", "query", "query", "text")]
            reloads = []
            for rows in (800, 1000, 600):
                time.sleep(0.5)
                build_scifact_index(path, scifact_vectors, docs_by_id, rows=rows)
                response = admin.post("/reload")
                assert response.status_code == 200, response.text
                reloads.append(response.json())
            time.sleep(0.5)
            stop.set()
            for future in futures:
                future.result()
            final = admin.get("/stats").json()
    assert statuses and all(status == 200 for status in statuses), [
        s for s in statuses if s != 200
    ][:5]
    assert [r["reloaded"] for r in reloads] == [True, True, True]
    assert len(generations) >= 3  # requests were answered by several generations
    assert final["index"]["documents"] == 600 and final["reloads"] == 3


def test_slow_clients_do_not_block_others(server):
    """Slowloris, bounded: 6 sockets trickle their headers for ~3 s; others are served."""
    sockets = []
    for _ in range(6):
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\n")
        sockets.append(raw)
    header = b"X-Slow: " + b"a" * 12
    latencies = []
    try:
        with server.client(READ) as http:
            for step in range(len(header)):
                for raw in sockets:
                    raw.sendall(header[step : step + 1])
                started = time.monotonic()
                assert http.get("/healthz").status_code == 200
                response = http.post("/search", json={"query": {"cancer": 1.0}, "k": 5})
                assert response.status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.25)
    finally:
        for raw in sockets:
            raw.close()
    assert max(latencies) < 2.0, latencies


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sigterm_drains_in_flight_requests(tmp_path, scifact_index_path):
    """``sparse-ir serve`` in a subprocess: SIGTERM while requests wait in a long (1 s)
    batching window and load loops run: every request the server accepted is answered, and
    the server exits with status 0."""
    (tmp_path / "read").write_text(READ_TOKEN)
    (tmp_path / "admin").write_text(ADMIN_TOKEN)
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    command = [
        sys.executable,
        "-m",
        "sparse_ir",
        "serve",
        "--index",
        str(scifact_index_path),
        "--port",
        str(port),
        "--batch-window-ms",
        "1000",
        "--no-verify",
        "--read-token-file",
        str(tmp_path / "read"),
        "--admin-token-file",
        str(tmp_path / "admin"),
    ]
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, stderr_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 600 s"
            time.sleep(0.2)
        outcomes: list[str] = []
        stop = threading.Event()

        def one_request(text: str) -> str:
            # a fresh connection per request: a refused connection was never accepted
            try:
                response = httpx.post(
                    f"{url}/search", json={"text": text, "k": 10}, headers=READ, timeout=30
                )
            except httpx.ConnectError:
                return "refused"
            except httpx.HTTPError as error:
                return f"lost: {error!r}"
            return "ok" if response.status_code == 200 else f"status {response.status_code}"

        def load_loop() -> None:
            while not stop.is_set():
                outcomes.append(one_request(QUERIES[3]))

        with ThreadPoolExecutor(10) as pool, httpx.Client(base_url=url, headers=READ) as http:
            loops = [pool.submit(load_loop) for _ in range(2)]
            try:
                time.sleep(0.5)
                in_flight = [pool.submit(one_request, text) for text in QUERIES * 2]
                # SIGTERM once the server holds every one of them not answered yet (waiting in
                # the 1 s batching window; the first may be encoded at once, as a text arriving
                # alone after a batch of one is): in flight, besides them, are this /stats call
                # and at most one request of each load loop
                deadline = time.monotonic() + 20
                while True:
                    pending = sum(not future.done() for future in in_flight)
                    held = http.get("/stats").json()["in_flight"]
                    if pending > 0 and held >= pending + 1 + len(loops):
                        break
                    assert time.monotonic() < deadline, "the requests were not accepted"
                    time.sleep(0.02)
                process.send_signal(signal.SIGTERM)
                drained = [future.result() for future in in_flight]
                status = process.wait(timeout=120)
            finally:
                stop.set()
                for loop in loops:
                    loop.result()
        assert status == 0, stderr_path.read_text()[-2000:]
        assert drained == ["ok"] * len(drained), drained  # every one was accepted
        assert outcomes.count("ok") >= 1
        # A loop's last request may be refused, or reset if its connection was opened but
        # its request not yet read when the server stopped (never accepted, so never lost).
        assert all(
            outcome in ("ok", "refused") or "reset" in outcome or "Disconnected" in outcome
            for outcome in outcomes
        ), outcomes
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = stderr_path.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(
        1 for e in entries if e["path"] == "/search" and e["status"] == 200
    ) >= drained.count("ok")
    assert READ_TOKEN not in log and ADMIN_TOKEN not in log


def test_serve_help_shows_defaults():
    from sparse_ir.cli import build_parser

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    text = serve.format_help()
    for option in (
        "--index",
        "--dense-index",
        "--host",
        "--port",
        "--read-token-file",
        "--admin-token-file",
        "--max-k",
        "--max-query-chars",
        "--max-body-bytes",
        "--batch-window-ms",
        "--max-batch",
        "--request-timeout",
        "--inline-search-ms",
        "--encoder-batch-size",
        "--encoder-threads",
    ):
        assert option in text
    assert "127.0.0.1" in text and "8000" in text and "(default: 1000)" in text
    args = parser.parse_args(["serve", "--index", "x"])
    assert (args.host, args.port, args.max_k, args.micro_batching) == (
        "127.0.0.1",
        8000,
        1000,
        True,
    )


# -- the search page in real headless Chromium ---------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


def test_search_page_in_chromium(open_server, tmp_path):
    if not os.path.exists(CHROMIUM) and not in_ci():
        pytest.skip(
            f"Debian's chromium is not installed at {CHROMIUM} (apt-get install "
            "chromium); under CI this test runs"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci():
            raise
        pytest.skip("playwright is not installed (pip install 'sparse-ir[dev]')")
    query = "ALDH1 expression and breast cancer prognosis"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(open_server.url + "/")
            page.wait_for_selector("#index-info:has-text('documents')")
            page.fill("#q", query)
            page.press("#q", "Enter")
            page.wait_for_selector("li.hit >> nth=9", timeout=30_000)
            hits = page.locator("li.hit")
            assert hits.count() >= 10
            assert page.locator("li.hit .title").first.inner_text().strip()
            marks = [m.lower() for m in page.locator("li.hit mark").all_inner_texts()]
            assert len(marks) >= 10 and {"breast", "cancer"} & set(marks), marks
            first = hits.first
            assert first.locator(".bar-row").count() >= 3  # the contribution chart
            widths = first.locator(".bar-row .bar").evaluate_all(
                "bars => bars.map(b => b.getBoundingClientRect().width)"
            )
            assert widths[0] > 0 and widths == sorted(widths, reverse=True)
            assert page.locator("#query-vector .chip.exp").count() >= 1  # query expansion
            assert page.locator("li.hit .expansion .chip.exp").count() >= 1
            assert "hits in" in page.locator("#status").inner_text()
            shot = tmp_path / "search-page.png"
            page.screenshot(path=str(shot), full_page=False)
            # the hybrid toggle: sparse and dense ranks side by side
            page.check("#hybrid")
            page.wait_for_selector("li.hit .ranks", timeout=30_000)
            assert "dense rank" in page.locator("li.hit .ranks").first.inner_text()
            hybrid_shot = tmp_path / "search-page-hybrid.png"
            page.screenshot(path=str(hybrid_shot), full_page=False)
        finally:
            browser.close()
            artifacts = os.environ.get("SPARSE_IR_ARTIFACTS")
            if artifacts:
                Path(artifacts).mkdir(parents=True, exist_ok=True)
                for path in tmp_path.glob("*.png"):
                    shutil.copy(path, Path(artifacts) / path.name)
    assert not errors, errors
    assert shot.stat().st_size > 10_000
