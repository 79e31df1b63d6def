"""The service's writes (POST /documents, DELETE /documents/{id}, POST /commit) against REAL
uvicorn servers on free 127.0.0.1 ports.

The indexes are real: 30 SciFact documents indexed by ``sparse-ir index`` (splade-tiny, with
titles and texts) and ``sparse-ir dense-index`` (the default dense model, for the hybrid
pair); each test writes to its own copy. Documents added through the API must equal documents
added by an :class:`IndexWriter` with the index's document encoder (same hits, same scores).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import in_ci
from test_live_index import brute_force_filter
from test_service import ADMIN, ADMIN_TOKEN, READ, READ_TOKEN, ThreadServer, assert_error

from sparse_ir.cli import main
from sparse_ir.errors import IndexBusyError
from sparse_ir.hybrid import pair_stamp
from sparse_ir.index.dense import DenseIndex
from sparse_ir.index.filters import parse_filter
from sparse_ir.index.impact_index import ImpactIndex
from sparse_ir.index.writer import DenseIndexWriter, IndexWriter
from sparse_ir.search import DenseSearcher, Searcher
from sparse_ir.service import ServiceSettings, create_app
from sparse_ir.sparse_batch import SparseBatch

pytestmark = [pytest.mark.service, pytest.mark.slow]

FIRST = 30  # documents in the indexes at the start; the next ones are added by the tests
QUERY_TEXTS = [
    "vitamin D deficiency and tuberculosis",
    "stem cells differentiate into bone",
    "gene expression in breast cancer tumors",
]


def corpus_lines(docs, rows) -> str:
    return "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in rows)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, scifact_docs) -> dict[str, Path]:
    """A splade-tiny impact index and a dense index of the first 30 SciFact documents."""
    root = tmp_path_factory.mktemp("writes")
    corpus = root / "corpus.jsonl"
    corpus.write_text(corpus_lines(scifact_docs, scifact_docs[:FIRST]))
    paths = {"sparse": root / "sparse", "dense": root / "dense", "bm25": root / "bm25"}
    assert main(["-q", "index", "--input", str(corpus), "--output", str(paths["sparse"])]) == 0
    assert (
        main(["-q", "index", "--bm25", "--input", str(corpus), "--output", str(paths["bm25"])]) == 0
    )
    if main(["-q", "dense-index", "--input", str(corpus), "--output", str(paths["dense"])]) != 0:
        if in_ci():
            pytest.fail("the dense model is not available")
        paths.pop("dense")
    return paths


@pytest.fixture()
def fresh(pristine, tmp_path) -> dict[str, Path]:
    """This test's own copy of the indexes."""
    return {kind: Path(shutil.copytree(path, tmp_path / kind)) for kind, path in pristine.items()}


@pytest.fixture(scope="module")
def dense_encoder(pristine):
    if "dense" not in pristine:
        pytest.skip("no dense model available offline")
    return DenseSearcher.from_index(pristine["dense"]).encoder


@pytest.fixture()
def new_docs(scifact_docs):
    return scifact_docs[FIRST : FIRST + 8]


def settings(**options) -> ServiceSettings:
    return ServiceSettings(
        read_token=READ_TOKEN, admin_token=ADMIN_TOKEN, max_batch=8, max_body_bytes=64_000,
        **options,
    )  # fmt: skip


def sparse_server(path: Path, encoder, **options) -> ThreadServer:
    return ThreadServer(
        create_app(Searcher(ImpactIndex.open(path), encoder), settings=settings(**options))
    )


def as_json(docs) -> list[dict]:
    return [{"id": d.id, "title": d.title, "text": d.text} for d in docs]


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def search_ids(http, text: str, k: int = 50) -> list[str]:
    return ids_of(http.post("/search", json={"text": text, "k": k}))


# -- the tokens ----------------------------------------------------------------------------------


def test_writes_need_the_admin_token(fresh, splade_tiny, new_docs, caplog):
    caplog.set_level(logging.INFO, logger="sparse_ir.service")
    body = {"documents": as_json(new_docs[:1])}
    doc_id = new_docs[0].id
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client() as http:
        for method, path, payload in (
            ("POST", "/documents", body),
            ("DELETE", f"/documents/{doc_id}", None),
            ("POST", "/commit", None),
        ):

            def call(headers, method=method, path=path, payload=payload):
                return http.request(method, path, json=payload, headers=headers)

            assert_error(call({}), 401, "unauthorized", "admin token")
            assert_error(
                call({"Authorization": "Bearer wrong-token-0123456789"}), 401, "invalid_token"
            )
            assert_error(call(READ), 403, "forbidden", "admin token")
        assert http.get("/stats", headers=READ).json()["writes"]["writer_open"] is False
        response = http.post("/documents", json=body, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["added"] == 1 and response.json()["committed"] is False
        assert http.delete(f"/documents/{doc_id}", headers=ADMIN).status_code == 200
        assert http.post("/commit", headers=ADMIN).status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/documents" in logged and "/commit" in logged  # the access log has the writes
    assert ADMIN_TOKEN not in logged and READ_TOKEN not in logged


def test_writes_disabled_without_an_admin_token(fresh, splade_tiny, new_docs):
    app = create_app(
        Searcher(ImpactIndex.open(fresh["sparse"]), splade_tiny), settings=ServiceSettings()
    )
    with ThreadServer(app) as running, running.client() as http:
        for response in (
            http.post("/documents", json={"documents": as_json(new_docs[:1])}, headers=ADMIN),
            http.delete(f"/documents/{new_docs[0].id}", headers=ADMIN),
            http.post("/commit", headers=ADMIN),
        ):
            assert_error(response, 403, "forbidden", "--admin-token-file")
        assert http.post("/search", json={"text": "cancer"}).status_code == 200  # reads open
    # nothing took the write lock
    IndexWriter.open(fresh["sparse"]).close()


# -- add, upsert, delete, commit -------------------------------------------------------------------


def test_add_is_invisible_until_commit_and_equals_a_writer(fresh, splade_tiny, new_docs, tmp_path):
    from sparse_ir.cli.live import document_encoder
    from sparse_ir.corpus import Document

    reference = Path(shutil.copytree(fresh["sparse"], tmp_path / "reference"))
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(READ) as http:
        before = {text: search_ids(http, text) for text in QUERY_TEXTS}
        first_generation = http.get("/readyz").json()["generation"]
        response = http.post("/documents", json={"documents": as_json(new_docs)}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["ids"] == [d.id for d in new_docs]
        assert response.json()["pending"]["added"] == len(new_docs)
        # staged, not committed: searches and documents do not see them
        assert {text: search_ids(http, text) for text in QUERY_TEXTS} == before
        assert_error(http.get(f"/documents/{new_docs[0].id}"), 404, "not_found")
        assert http.get("/stats").json()["writes"]["pending"]["added"] == len(new_docs)
        commit = http.post("/commit", headers=ADMIN)
        assert commit.status_code == 200, commit.text
        assert commit.json()["committed"] is True and commit.json()["reloaded"] is True
        assert commit.json()["documents"] == FIRST + len(new_docs)
        assert commit.json()["generation"] != first_generation
        assert http.get("/readyz").json()["generation"] == commit.json()["generation"]
        stored = http.get(f"/documents/{new_docs[3].id}").json()
        assert (stored["title"], stored["text"]) == (new_docs[3].title, new_docs[3].text)
        after = {}
        for text in QUERY_TEXTS:
            response = http.post("/search", json={"text": text, "k": 50})
            after[text] = [(h["id"], h["score"]) for h in response.json()["hits"]]
        assert http.get("/stats").json()["index"]["documents"] == FIRST + len(new_docs)
        # a second commit with nothing staged publishes nothing
        again = http.post("/commit", headers=ADMIN).json()
        assert again["committed"] is False and again["reloaded"] is False
    # The same documents added by an IndexWriter with the index's document encoder.
    with IndexWriter.open(reference) as writer:
        encoder = document_encoder(writer)
        docs = [Document(d.id, d.title, d.text) for d in new_docs]
        vectors = encoder.encode_documents(
            [d.full_text for d in docs], ids=[d.id for d in docs], show_progress=False
        )
        writer.add(vectors, [(d.title, d.text) for d in docs])
    expected = Searcher(ImpactIndex.open(reference), splade_tiny)
    for text in QUERY_TEXTS:
        assert after[text] == [(h.doc_id, h.score) for h in expected.search(text, 50)]
    assert any(doc.id in {i for i, _ in after[t]} for t in QUERY_TEXTS for doc in new_docs)
    # what the service committed is what an opened index sees
    assert ImpactIndex.open(fresh["sparse"]).num_documents == FIRST + len(new_docs)


def test_upsert_replaces_and_delete_removes(fresh, splade_tiny, scifact_docs):
    target = scifact_docs[5]
    other = scifact_docs[40]
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(READ) as http:
        assert target.id in search_ids(http, target.title, 5)
        # add refuses an id already in the index, and stages nothing
        clash = {
            "documents": [{"id": "brand-new", "text": "x y z"}, {"id": target.id, "text": "z"}]
        }
        assert_error(
            http.post("/documents", json=clash, headers=ADMIN), 409, "already_exists", target.id
        )
        assert http.get("/stats").json()["writes"]["pending"]["added"] == 0
        # upsert: the document of this id now holds another text
        body = {
            "mode": "upsert",
            "documents": [{"id": target.id, "title": other.title, "text": other.text}],
        }
        response = http.post("/documents", json=body, headers=ADMIN)
        assert response.status_code == 200 and response.json()["upserted"] == 1, response.text
        assert http.get(f"/documents/{target.id}").json()["title"] == target.title  # not committed
        assert http.post("/commit", headers=ADMIN).json()["documents"] == FIRST
        assert http.get(f"/documents/{target.id}").json()["title"] == other.title
        assert search_ids(http, other.title, 1) == [target.id]
        # delete: gone after the commit; an unknown id is a 404
        assert_error(
            http.delete("/documents/no-such-id", headers=ADMIN), 404, "not_found", "no-such-id"
        )
        response = http.delete(f"/documents/{target.id}", headers=ADMIN)
        assert response.status_code == 200 and response.json()["deleted"] == target.id
        assert target.id in search_ids(http, other.title, 5)  # still there until the commit
        assert http.post("/commit", headers=ADMIN).json()["documents"] == FIRST - 1
        assert target.id not in search_ids(http, other.title, 50)
        assert_error(http.get(f"/documents/{target.id}"), 404, "not_found")
        # deleting a document added since the last commit (never visible)
        http.post(
            "/documents",
            json={"documents": [{"id": "tmp", "text": "bone stem cells"}]},
            headers=ADMIN,
        )
        assert http.delete("/documents/tmp", headers=ADMIN).status_code == 200
        assert http.post("/commit", headers=ADMIN).json()["documents"] == FIRST - 1
    assert ImpactIndex.open(fresh["sparse"]).num_documents == FIRST - 1


def test_pre_encoded_documents(fresh, splade_tiny):
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(READ) as http:
        floats = {
            "id": "v1",
            "title": "T",
            "text": "stored",
            "vector": {"zebra": 2.5, "horse": 1.0},
        }
        impacts = {"id": "v2", "title": "U", "vector": {"zebra": 30, "horse": 90}}
        assert (
            http.post("/documents", json={"documents": [floats]}, headers=ADMIN).status_code == 200
        )
        response = http.post(
            "/documents", json={"documents": [impacts], "impacts": True}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        http.post("/commit", headers=ADMIN)
        hits = http.post(
            "/search", json={"query": {"zebra": 1, "horse": 1}, "impacts": True, "k": 2}
        ).json()["hits"]
        index = ImpactIndex.open(fresh["sparse"])
        scores = {h["id"]: h["score"] for h in hits}
        assert scores["v2"] == 30 + 90  # impacts used as they are
        floats_quantized = index.quantizer.quantize(
            SparseBatch.from_dicts([floats["vector"]], index.vocab)
        )
        assert scores["v1"] == int(floats_quantized.values.sum())  # floats quantized
        assert [(h.doc_id, h.score) for h in index.search({"zebra": 1, "horse": 1}, 2)] == [
            (h["id"], h["score"]) for h in hits
        ]
        assert http.get("/documents/v1").json()["text"] == "stored"
        # every token must be in the vocabulary; impacts must be whole numbers; no mixing
        bad = {"documents": [{"id": "v3", "text": "a", "vector": {"zzzqqq-not-a-token": 1.0}}]}
        assert_error(
            http.post("/documents", json=bad, headers=ADMIN), 422, "invalid_request", "zzzqqq"
        )
        bad = {"documents": [{"id": "v3", "text": "a", "vector": {"zebra": 1.5}}], "impacts": True}
        assert_error(
            http.post("/documents", json=bad, headers=ADMIN), 422, "invalid_request", "whole number"
        )
        mixed = {
            "documents": [
                {"id": "v3", "text": "a", "vector": {"zebra": 1.0}},
                {"id": "v4", "text": "b"},
            ]
        }
        assert_error(
            http.post("/documents", json=mixed, headers=ADMIN),
            422,
            "invalid_request",
            "every document",
        )
        # the index stores texts: a vector alone has nothing to store
        bare = {"documents": [{"id": "v5", "vector": {"zebra": 1.0}}]}
        assert_error(
            http.post("/documents", json=bare, headers=ADMIN), 422, "invalid_request", "title"
        )


BAD_WRITES = [
    ({"documents": []}, "documents"),
    ({"documents": [{"id": "a"}]}, "no title and no text"),
    ({"documents": [{"id": 5, "text": "x"}]}, "documents.0.id"),
    ({"documents": [{"id": "a", "text": 3}]}, "documents.0.text"),
    ({"documents": [{"id": "a", "text": "x", "body": "y"}]}, "documents.0.body"),
    ({"documents": [{"id": "a", "text": "x"}], "mode": "replace"}, "mode"),
    ({"documents": [{"id": "a", "text": "x"}], "upsert": True}, "upsert"),
    ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "twice"),
    ({"documents": [{"id": "a", "text": "x", "metadata": {"tags": ["x"]}}]}, "'tags' is a list"),
    ({"documents": [{"id": "a", "text": "x", "metadata": {"bad name": 1}}]}, "document 'a'"),
    ({"documents": [{"id": "a", "text": "x", "vector": {"cancer": -1.0}}]}, "vector.cancer"),
    ({"documents": {"id": "a", "text": "x"}}, "documents"),
    ({"documents": [{"id": f"d{i}", "text": "x"} for i in range(9)]}, "--max-batch"),
    ({"documents": [{"id": "", "text": "x"}]}, "id"),
    ({"documents": [{"id": "a\nb", "text": "x"}]}, "id"),
]


def test_bad_write_bodies(fresh, splade_tiny):
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(ADMIN) as http:
        for body, mentions in BAD_WRITES:
            assert_error(http.post("/documents", json=body), 422, "invalid_request", mentions)
        for content in (b"{bad json", b'{"documents": [}', b""):
            response = http.post(
                "/documents", content=content, headers={"content-type": "application/json"}
            )
            assert_error(response, response.status_code)
            assert response.status_code in (400, 422)
        big = {"documents": [{"id": "big", "text": "cancer " * 20_000}]}
        assert_error(http.post("/documents", json=big), 413, "too_large", "--max-body-bytes")
        assert_error(http.get("/commit"), 405, "method_not_allowed")
        stats = http.get("/stats").json()
        assert stats["writes"]["pending"] == {"added": 0, "upserted": 0, "deleted": 0}
        assert http.post("/commit").json()["documents"] == FIRST  # nothing slipped through
        schema = http.get("/openapi.json").json()
        assert {"post", "delete"} <= {
            method
            for path, item in schema["paths"].items()
            if path.startswith("/documents")
            for method in item
        }
        assert "/commit" in schema["paths"] and "/reload" in schema["paths"]
        assert "DocumentsRequest" in json.dumps(schema)


# -- what cannot be written ---------------------------------------------------------------------


def test_indexes_that_cannot_take_writes(fresh, splade_tiny):
    body = {"documents": [{"id": "new", "text": "bone stem cells"}]}
    bm25 = create_app(Searcher.from_index(fresh["bm25"]), settings=settings())
    with ThreadServer(bm25) as running, running.client(ADMIN) as http:
        assert_error(http.post("/documents", json=body), 409, "not_writable", "BM25")
        assert_error(http.delete("/documents/x"), 409, "not_writable", "BM25")


def test_documents_carry_metadata_and_filters_see_it(fresh, splade_tiny, new_docs):
    # The first segment (a build without metadata) holds no field: no condition matches it.
    metadata = [{"year": 2019 + i % 4, "tenant": "ab"[i % 2]} for i in range(len(new_docs))]
    documents = [{**doc, "metadata": record} for doc, record in zip(as_json(new_docs), metadata)]
    documents[-1].pop("metadata")
    with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(ADMIN) as http:
        response = http.post("/documents", json={"documents": documents})
        assert response.status_code == 200, response.text
        http.post("/commit")
        for text in ("year>=2021", "tenant='a' AND year<2022", "year!=2020"):
            condition = parse_filter(text)
            expected = {
                d["id"]
                for d in documents
                if "metadata" in d and brute_force_filter(condition, d["metadata"])
            }
            got = ids_of(http.post("/search", json={"text": "cells", "k": 100, "filter": text}))
            hits_all = set(search_ids(http, "cells", 100))
            assert set(got) == expected & hits_all and got, (text, got, expected)
        upsert = {"mode": "upsert", "documents": [{**documents[0], "metadata": {"year": 1990}}]}
        assert http.post("/documents", json=upsert).status_code == 200
        http.post("/commit")
        got = ids_of(http.post("/search", json={"text": "cells", "k": 100, "filter": "year<2000"}))
        assert got == [documents[0]["id"]]
    index = ImpactIndex.open(fresh["sparse"])
    assert index.metadata(index.docno(documents[0]["id"])) == {"year": 1990}


def test_one_writer_per_index(fresh, splade_tiny, tmp_path):
    body = {"documents": [{"id": "new", "text": "bone stem cells"}]}
    holder = IndexWriter.open(fresh["sparse"])  # another writer holds the lock
    try:
        with sparse_server(fresh["sparse"], splade_tiny) as running, running.client(ADMIN) as http:
            assert_error(http.post("/documents", json=body), 409, "index_busy", "pid")
            holder.close()
            assert http.post("/documents", json=body).status_code == 200  # free now
            # the service holds the lock: a writer in another process is refused
            corpus = tmp_path / "more.jsonl"
            corpus.write_text(json.dumps({"_id": "cli", "title": "", "text": "bone"}) + "\n")
            root = Path(__file__).resolve().parents[1]
            command = ["add", "--index", str(fresh["sparse"]), "--input", str(corpus)]
            cli = subprocess.run(
                [sys.executable, "-m", "sparse_ir", *command],
                capture_output=True,
                text=True,
                env=dict(os.environ, PYTHONPATH=str(root)),
            )
            assert cli.returncode == 5, cli.stderr
            assert "held by pid" in cli.stderr
            with pytest.raises(IndexBusyError):
                IndexWriter.open(fresh["sparse"])
            assert http.post("/commit").json()["documents"] == FIRST + 1
    finally:
        holder.close()
    # the server stopped: the lock is free again
    IndexWriter.open(fresh["sparse"]).close()


# -- a hybrid pair --------------------------------------------------------------------------------


def test_hybrid_pair_writes_both(fresh, splade_tiny, dense_encoder, new_docs):
    # The pair was changed together before (as `sparse-ir add --dense-index` stamps it): the
    # service's commit must stamp both alike too, or the reload would refuse the pair.
    for writer_class, kind in ((IndexWriter, "sparse"), (DenseIndexWriter, "dense")):
        with writer_class.open(fresh[kind]) as writer:
            writer.commit(pair="earlier-paired-change")
    sparse = Searcher(ImpactIndex.open(fresh["sparse"]), splade_tiny)
    dense = DenseSearcher(DenseIndex.open(fresh["dense"]), dense_encoder)
    with (
        ThreadServer(create_app(sparse, dense, settings=settings())) as running,
        running.client(ADMIN) as http,
    ):
        response = http.post("/documents", json={"documents": as_json(new_docs[:4])})
        assert response.status_code == 200, response.text
        pre = {"documents": [{"id": "v", "text": "t", "vector": {"bone": 1.0}}]}
        assert_error(http.post("/documents", json=pre), 422, "invalid_request", "dense index")
        assert http.delete(f"/documents/{new_docs[0].id}").status_code == 200
        commit = http.post("/commit")
        assert commit.status_code == 200, commit.text
        hits = http.post("/hybrid", json={"text": new_docs[1].title, "k": 5}).json()["hits"]
        assert hits[0]["id"] == new_docs[1].id
        assert hits[0]["sparse_rank"] is not None and hits[0]["dense_rank"] is not None
    sparse_after, dense_after = ImpactIndex.open(fresh["sparse"]), DenseIndex.open(fresh["dense"])
    assert sparse_after.num_documents == dense_after.num_documents == FIRST + 3
    assert pair_stamp(sparse_after) == pair_stamp(dense_after) != "earlier-paired-change"
    assert pair_stamp(sparse_after)
    live = {sparse_after.doc_ids[h.docno] for h in sparse_after.search({"bone": 1}, 100)}
    assert new_docs[0].id not in live
    expected = dense_encoder.encode_documents(
        [f"{d.title} {d.text}" for d in new_docs[1:4]], show_progress=False
    )
    for doc, vector in zip(new_docs[1:4], expected):
        hit = dense_after.search(vector, 1)[0]
        assert hit.doc_id == doc.id


def test_hybrid_pair_without_a_dense_model_is_refused(fresh, splade_tiny, tmp_path):
    """A dense index recording no model cannot encode documents: the pair refuses the write
    rather than update the sparse index alone."""
    from test_service import HashedWords

    sparse = Searcher(ImpactIndex.open(fresh["sparse"]), splade_tiny)
    index = sparse.index
    texts = [" ".join(index.document(d)) for d in range(index.num_documents)]
    dense_index = DenseIndex.build(
        HashedWords().encode_queries(texts), tmp_path / "hashed", ids=index.doc_ids
    )
    dense = DenseSearcher(dense_index, HashedWords())
    with (
        ThreadServer(create_app(sparse, dense, settings=settings())) as running,
        running.client(ADMIN) as http,
    ):
        body = {"documents": [{"id": "new", "text": "bone stem cells"}]}
        assert_error(http.post("/documents", json=body), 409, "not_writable", "no document model")
        assert http.post("/commit").json()["committed"] is False
    assert ImpactIndex.open(fresh["sparse"]).num_documents == FIRST


# -- commits under load ---------------------------------------------------------------------------


def test_commits_during_searches_have_no_errors(fresh, splade_tiny, scifact_docs):
    vector = dict(splade_tiny.encode_queries(QUERY_TEXTS[0]).decode(0, top_k=None))
    statuses, generations = [], set()
    stop = threading.Event()

    def load(kind: str) -> None:
        with running.client(READ) as http:
            while not stop.is_set():
                body = (
                    {"text": QUERY_TEXTS[1]}
                    if kind == "text"
                    else {"query": vector, "explain": True}
                )
                try:
                    response = http.post("/search", json=body)
                    statuses.append(response.status_code)
                    generations.add(response.json().get("generation"))
                except httpx.HTTPError as error:
                    statuses.append(repr(error))

    with sparse_server(fresh["sparse"], splade_tiny) as running:
        with ThreadPoolExecutor(3) as pool, running.client(ADMIN) as admin:
            futures = [pool.submit(load, kind) for kind in ("text", "query", "query")]
            for round_ in range(3):
                time.sleep(0.3)
                docs = scifact_docs[FIRST + 2 * round_ : FIRST + 2 * round_ + 2]
                assert (
                    admin.post("/documents", json={"documents": as_json(docs)}).status_code == 200
                )
                assert admin.delete(f"/documents/{scifact_docs[round_].id}").status_code == 200
                commit = admin.post("/commit")
                assert commit.status_code == 200 and commit.json()["reloaded"], commit.text
            time.sleep(0.3)
            stop.set()
            for future in futures:
                future.result()
            final = admin.get("/stats").json()
    assert statuses and all(status == 200 for status in statuses), [
        s for s in statuses if s != 200
    ][:5]
    assert len(generations) >= 3
    assert final["index"]["documents"] == FIRST + 3 and final["writes"]["commits"] == 3
