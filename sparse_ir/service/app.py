"""The search service: a FastAPI app over a :class:`~sparse_ir.search.Searcher` (and optionally
a :class:`~sparse_ir.search.DenseSearcher` for hybrid search).

The app adds no search logic: every ranking comes from the library's searchers, so the API's
hits are the Python API's hits. What it adds is HTTP: JSON bodies checked at the boundary,
tokens, limits, request ids and an access log, micro-batched query encoding, searches on
worker threads, reloading, metrics, and the search page at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparse_ir.errors import InputError
from sparse_ir.fusion import Fusion
from sparse_ir.index.filters import parse_filter
from sparse_ir.index.modes import resolve_mode
from sparse_ir.search import DenseSearcher, Searcher
from sparse_ir.service.batching import QueryBatcher
from sparse_ir.service.engine import Engine, Loaded, set_torch_threads, snippet
from sparse_ir.service.metrics import Metrics
from sparse_ir.service.models import (
    CommitResponse,
    DeleteResponse,
    DocumentResponse,
    DocumentsRequest,
    DocumentsResponse,
    EncodeRequest,
    EncodeResponse,
    ErrorResponse,
    HybridRequest,
    HybridResponse,
    SearchRequest,
    SearchResponse,
)
from sparse_ir.service.settings import ServiceSettings
from sparse_ir.service.writes import NewDocument, WriteError, Writes
from sparse_ir.sparse_batch import SparseBatch

__all__ = ["ServiceError", "create_app"]

logger = logging.getLogger(__name__)
#: One JSON object per request (method, path, status, ms, request id, client); never a header,
#: a token or a query text.
access_logger = logging.getLogger("sparse_ir.service.access")

STATIC = Path(__file__).with_name("static")
_ERRORS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
    504: "timeout",
}
_ERROR_RESPONSES = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 422, 500, 504)
}
_WRITE_RESPONSES = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 409, 413, 422, 500, 503)
}
_REQUEST_ID = "sparse_ir.request_id"
_DEADLINE = "sparse_ir.deadline"


class ServiceError(Exception):
    """A request the service refuses: an HTTP status, a short code and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        problems: list | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code or _ERRORS.get(status, "error")
        self.message = message
        self.headers = headers
        self.problems = problems


def _error_body(code: str, message: str, request_id: str, problems=None) -> dict:
    body = {"error": code, "message": message, "request_id": request_id}
    if problems is not None:
        body["problems"] = problems
    return body


def _request_id(request: Request) -> str:
    return request.scope.get(_REQUEST_ID, "-")


# -- the middleware: request ids, body limit and upload timeout, access log, metrics, 500s -------


class _Guard:
    """Pure ASGI middleware (outermost): every request gets an id, a deadline, a body read
    within the size limit before anything parses it, an access-log line and metrics; an
    exception escaping the app becomes a logged 500 carrying the request id."""

    _BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, app, settings: ServiceSettings, metrics: Metrics):
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        request_id = secrets.token_hex(8)
        scope[_REQUEST_ID] = request_id
        scope[_DEADLINE] = loop.time() + self.settings.request_timeout
        started = time.perf_counter()
        state = {"status": 500, "started": False, "bytes": 0}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                MutableHeaders(scope=message)["x-request-id"] = request_id
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight += 1
        try:
            if scope["method"] in self._BODY_METHODS:
                refused = await self._read_body(scope, receive)
                if isinstance(refused, ServiceError):
                    await _send_error(send_with_id, refused, request_id)
                    return
                if refused is None:  # the client went away
                    state["status"] = 499
                    return
                receive = _replay(refused, receive)
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "request %s (%s %s) failed", request_id, scope["method"], scope["path"]
            )
            if not state["started"]:
                await _send_error(
                    send_with_id,
                    ServiceError(
                        500,
                        f"internal error; the server's log has the details under request id "
                        f"{request_id}",
                        code="internal_error",
                    ),
                    request_id,
                )
        finally:
            self.metrics.in_flight -= 1
            seconds = time.perf_counter() - started
            route = scope.get("route")
            route = getattr(route, "path", None) or (
                "/static" if scope["path"].startswith("/static/") else "unmatched"
            )
            self.metrics.record(scope["method"], route, state["status"], seconds)
            if access_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_logger.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": state["status"],
                            "ms": round(seconds * 1000, 3),
                            "bytes": state["bytes"],
                            "client": client[0] if client else None,
                        }
                    )
                )

    async def _read_body(self, scope, receive) -> bytes | ServiceError | None:
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return ServiceError(400, "Content-Length is not a number")
                if length > limit:
                    return ServiceError(
                        413, f"the body has {length} bytes; the limit is {limit} (--max-body-bytes)"
                    )
        chunks, size = [], 0

        async def read() -> bytes | ServiceError | None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return ServiceError(
                        413, f"the body exceeds the limit of {limit} bytes (--max-body-bytes)"
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

        try:
            # A timeout scope, not wait_for: no task made per request.
            async with asyncio.timeout_at(scope[_DEADLINE]):
                return await read()
        except TimeoutError:
            return ServiceError(
                408,
                f"the body did not arrive within "
                f"{self.settings.request_timeout:g} s (--request-timeout)",
            )


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send, error: ServiceError, request_id: str) -> None:
    payload = json.dumps(
        _error_body(error.code, error.message, request_id, error.problems), separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if error.status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# -- the app ------------------------------------------------------------------------------------


def create_app(
    index: Searcher | str | os.PathLike,
    dense_index: DenseSearcher | str | os.PathLike | None = None,
    *,
    settings: ServiceSettings | None = None,
    device: str = "cpu",
) -> FastAPI:
    """The search service as an ASGI app (run it with uvicorn, or mount it in another app).

    Args:
        index: a :class:`~sparse_ir.search.Searcher`, or the path of an impact index (its
            query encoder is loaded from the model its settings record).
        dense_index: a :class:`~sparse_ir.search.DenseSearcher` or a dense index path over the
            same documents: enables ``POST /hybrid``.
        settings: limits, tokens and batching (default: :class:`ServiceSettings()`).
        device: where models loaded from paths run.
    """
    settings = settings if settings is not None else ServiceSettings()
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"settings must be a ServiceSettings, got {type(settings).__name__}")
    engine = _make_engine(index, dense_index, device)
    metrics = Metrics()
    executor = ThreadPoolExecutor(
        max_workers=settings.search_threads, thread_name_prefix="sparse-ir-service"
    )
    batcher = QueryBatcher(
        lambda texts: _encode_texts(engine, texts, settings),
        executor,
        window=settings.batch_window_ms / 1000 if settings.micro_batching else 0.0,
        max_batch=settings.max_batch if settings.micro_batching else 1,
    )
    writes = Writes(engine, device=device, encoder_threads=settings.encoder_threads)
    state = _State(engine, settings, metrics, executor, batcher, writes)

    app = FastAPI(
        **_telemetry_options(),
        title="sparse_ir search service",
        version=_version(),
        lifespan=_lifespan(state),
        docs_url=None,
        redoc_url=None,  # their pages load scripts from a CDN; the schema stays
        description="Learned sparse retrieval over HTTP: search with text or pre-encoded "
        "queries, hybrid (sparse + dense) search, encoding, documents, health and "
        "metrics. See docs/service.md.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.add_middleware(_Guard, settings=settings, metrics=metrics)
    _add_error_handlers(app)
    _add_page_routes(app)
    _add_search_routes(app, state)
    _add_encode_routes(app, state)
    _add_document_routes(app, state)
    _add_health_routes(app, state)
    _add_stats_routes(app, state)
    _add_metrics_routes(app, state)
    _add_admin_routes(app, state)
    _add_write_routes(app, state)
    return app


def _telemetry_options() -> dict:
    """FastAPI's native OpenTelemetry (FastAPI >= 0.160) off unless it is configured when
    the app is made (a provider set, or ``OTEL_*`` variables): otherwise it does nothing but
    check, on every request, whether it has become configured (tens of microseconds). The
    service keeps its own metrics (/stats, /metrics)."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    if any(name.startswith("OTEL_") for name in os.environ):
        return {}
    try:
        probe = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        if probe._native_telemetry.enabled():  # a provider is set
            return {}
    except Exception:  # another FastAPI's internals: leave its default
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _make_engine(index, dense_index, device: str) -> Engine:
    if isinstance(index, Searcher):
        if dense_index is not None and not isinstance(dense_index, DenseSearcher):
            dense_index = DenseSearcher.from_index(dense_index, device=device)
        engine = Engine(index, dense_index)
    elif isinstance(index, (str, os.PathLike)):
        engine = Engine.from_paths(index, dense_index, device=device)
    else:
        raise TypeError(f"index must be a Searcher or an index path, got {type(index).__name__}")
    if engine.current.dense is not None:
        engine.current.hybrid(None)  # refuse indexes over different documents now
    return engine


def _lifespan(state: _State):
    engine, settings = state.engine, state.settings
    batcher, executor, writes = state.batcher, state.executor, state.writes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        checking = asyncio.get_running_loop().run_in_executor(
            executor, engine.startup_check, settings.verify
        )
        try:
            yield
        finally:
            await batcher.stop()
            checking.cancel()
            executor.shutdown(wait=False, cancel_futures=True)
            writes.close()  # releases the write locks; uncommitted writes are discarded

    return lifespan


# -- authentication -----------------------------------------------------------------------------


def _given_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError(
            401,
            "the Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def _matches(given: str, expected: str | None) -> bool:
    if expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class _State:
    """What the route handlers share: the engine, settings, metrics, query batcher and worker
    threads, with the token checks and request limits built on them."""

    def __init__(
        self,
        engine: Engine,
        settings: ServiceSettings,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
        batcher: QueryBatcher,
        writes: Writes | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.batcher = batcher
        self.writes = writes
        # One write at a time: the asyncio lock keeps waiting writes off the worker threads,
        # the thread lock holds even when a handler is cancelled while its write runs.
        self._write_lock = asyncio.Lock()
        self._write_thread_lock = threading.Lock()
        #: The dependencies of read endpoints: none when reads are open (each dependency
        #: costs FastAPI's resolution on every request).
        self.reads = [Depends(self.require_read)] if settings.read_token is not None else []
        #: Moving average of the CPU time of /search's searches (seconds; None: none yet).
        self.search_cpu: float | None = None

    async def require_read(self, request: Request) -> None:
        settings = self.settings
        if settings.read_token is None:
            return
        given = _given_token(request)
        if given is None:
            raise ServiceError(
                401,
                "this server needs a token: send 'Authorization: Bearer <read token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        read, admin = _matches(given, settings.read_token), _matches(given, settings.admin_token)
        if not (read or admin):
            raise ServiceError(
                401,
                "the token is not valid",
                code="invalid_token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def require_admin(self, request: Request) -> None:
        settings = self.settings
        if settings.admin_token is None:
            raise ServiceError(
                403,
                "administration is disabled: start the server with --admin-token-file to allow it",
            )
        given = _given_token(request)
        if given is None:
            raise ServiceError(
                401,
                "this endpoint needs the admin token: send 'Authorization: Bearer <admin token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not _matches(given, settings.admin_token):
            if _matches(given, settings.read_token):
                raise ServiceError(403, "the read token cannot do this; it needs the admin token")
            raise ServiceError(
                401,
                "the token is not valid",
                code="invalid_token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    # -- helpers --------------------------------------------------------------------------------

    async def within_deadline(self, request: Request, awaitable):
        try:
            async with asyncio.timeout_at(request.scope[_DEADLINE]):
                return await awaitable
        except TimeoutError:
            raise ServiceError(
                504,
                f"the request took longer than {self.settings.request_timeout:g} s "
                "(--request-timeout)",
            ) from None

    async def search(self, request: Request, inline: bool, function, *args):
        """``function(*args)`` (a search): on the event loop while searches have been short
        (``inline_search_ms``; a hand-over to a worker thread costs more than they do), else
        on a worker thread."""
        limit = self.settings.inline_search_ms / 1000
        average = self.search_cpu
        if inline and average is not None and average < limit:
            return self._timed(function, *args)
        return await self.in_thread(request, self._timed, function, *args)

    def _timed(self, function, *args):
        started = time.thread_time()
        try:
            return function(*args)
        finally:
            spent = time.thread_time() - started
            average = self.search_cpu
            self.search_cpu = spent if average is None else 0.9 * average + 0.1 * spent

    async def in_thread(self, request: Request, function, *args):
        loop = asyncio.get_running_loop()
        return await self.within_deadline(
            request, loop.run_in_executor(self.executor, function, *args)
        )

    async def write(self, function, *args, **options):
        """``function(*args, **options)`` (a write) on a worker thread, one at a time. Not
        under the request deadline: a write half done is finished, not abandoned."""

        def locked():
            with self._write_thread_lock:
                return function(*args, **options)

        async with self._write_lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(self.executor, locked)
            except WriteError as error:
                raise ServiceError(error.status, error.message, code=error.code) from None

    def check_k(self, k: int) -> None:
        settings = self.settings
        if k > settings.max_k:
            raise ServiceError(
                422,
                f"k is {k}; the largest this server allows is {settings.max_k} (--max-k)",
                problems=[{"location": "k", "message": f"must be <= {settings.max_k}"}],
            )

    def check_text(self, text: str, location: str = "text") -> None:
        settings = self.settings
        if len(text) > settings.max_query_chars:
            raise ServiceError(
                422,
                f"{location} has {len(text)} characters; the limit is "
                f"{settings.max_query_chars} (--max-query-chars)",
                problems=[{"location": location, "message": "too long"}],
            )
        if not text.strip():
            raise ServiceError(
                422, f"{location} is empty", problems=[{"location": location, "message": "empty"}]
            )

    def parse_filter(self, text: str | None):
        """The :class:`~sparse_ir.index.filters.Filter` of a request's ``filter`` text."""
        if text is None:
            return None
        self.check_text(text, "filter")
        try:
            return parse_filter(text)
        except InputError as error:
            raise ServiceError(
                422, str(error), problems=[{"location": "filter", "message": str(error)}]
            ) from None

    def ensure_ready(self) -> None:
        engine = self.engine
        if engine.status.startswith("failed"):
            raise ServiceError(503, f"the index failed its check: {engine.status[8:]}")


# -- endpoints ----------------------------------------------------------------------------------


def _add_page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _add_search_routes(app: FastAPI, state: _State) -> None:
    engine, settings, batcher = state.engine, state.settings, state.batcher
    check_k, check_text, ensure_ready = state.check_k, state.check_text, state.ensure_ready
    within_deadline, in_thread = state.within_deadline, state.in_thread

    @app.post(
        "/search",
        response_model=SearchResponse,
        responses=_ERROR_RESPONSES,
        dependencies=state.reads,
        summary="Top-k documents for a text or a pre-encoded query",
    )
    async def search(body: SearchRequest, request: Request):
        check_k(body.k)
        ensure_ready()
        where = state.parse_filter(body.filter)
        started = time.perf_counter()
        loaded = engine.current
        if body.text is not None:
            check_text(body.text)
            query = await within_deadline(request, batcher.encode(body.text))
        else:
            if len(body.query) > settings.max_query_terms:
                raise ServiceError(
                    422,
                    f"the query has {len(body.query)} terms; the limit "
                    f"is {settings.max_query_terms}",
                )
            query = (
                {token: int(weight) for token, weight in body.query.items()}
                if body.impacts
                else dict(body.query)
            )
        result = await state.search(
            request, not body.explain, _search, engine, loaded, query, body, where
        )
        result["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return JSONResponse(result)

    @app.post(
        "/hybrid",
        response_model=HybridResponse,
        responses=_ERROR_RESPONSES,
        dependencies=state.reads,
        summary="Sparse and dense search of one text, fused",
    )
    async def hybrid(body: HybridRequest, request: Request):
        check_k(body.k)
        check_text(body.text)
        ensure_ready()
        loaded = engine.current
        if loaded.dense is None:
            raise ServiceError(
                404,
                "no dense index is loaded: start the server with --dense-index for hybrid search",
            )
        options = body.fusion
        if options.depth > max(settings.max_k, 1000):
            raise ServiceError(
                422, f"fusion.depth is {options.depth}; the limit is {max(settings.max_k, 1000)}"
            )
        try:
            fusion = Fusion(
                method=options.method,
                weights=tuple(options.weights) if options.weights else None,
                normalization=options.normalization,
                missing=options.missing,
                depth=options.depth,
                rrf_k=options.rrf_k,
            )
        except ValueError as error:
            raise ServiceError(422, f"fusion: {error}") from None
        where = state.parse_filter(body.filter)
        started = time.perf_counter()
        result = await in_thread(request, _hybrid, engine, loaded, fusion, body, where)
        result["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return JSONResponse(result)


def _add_encode_routes(app: FastAPI, state: _State) -> None:
    engine, settings, batcher = state.engine, state.settings, state.batcher

    @app.post(
        "/encode",
        response_model=EncodeResponse,
        responses=_ERROR_RESPONSES,
        dependencies=state.reads,
        summary="The sparse vector of a text (decoded tokens)",
    )
    async def encode(body: EncodeRequest, request: Request):
        texts = [body.text] if body.text is not None else body.texts
        if len(texts) > settings.max_batch:
            raise ServiceError(
                422, f"{len(texts)} texts; the limit is {settings.max_batch} (--max-batch)"
            )
        if not texts:
            raise ServiceError(422, "texts is empty")
        for i, text in enumerate(texts):
            state.check_text(text, "text" if body.text is not None else f"texts[{i}]")
        loaded = engine.current
        rows = await state.within_deadline(
            request, asyncio.gather(*(batcher.encode(text) for text in texts))
        )
        return JSONResponse({"results": [_decode(loaded, row, body.top_k) for row in rows]})


def _add_document_routes(app: FastAPI, state: _State) -> None:
    engine = state.engine

    @app.get(
        "/documents/{doc_id:path}",
        response_model=DocumentResponse,
        responses=_ERROR_RESPONSES,
        dependencies=state.reads,
        summary="A stored document by its id",
    )
    async def document(doc_id: str):
        index = engine.current.sparse.index
        try:
            docno = index.docno(doc_id)
        except KeyError:
            raise ServiceError(404, f"no document with id {doc_id!r}") from None
        stored = index.document(docno)
        title, text = stored if stored is not None else (None, None)
        return {"id": doc_id, "docno": docno, "title": title, "text": text}


def _add_health_routes(app: FastAPI, state: _State) -> None:
    engine = state.engine

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: the index is open and verified",
        responses={503: {"model": ErrorResponse}},
    )
    async def readyz(request: Request):
        if engine.ready:
            return {"status": "ready", "generation": engine.current.generation}
        status = 503
        return JSONResponse(
            _error_body("not_ready", f"not ready: {engine.status}", _request_id(request)),
            status_code=status,
        )


def _add_stats_routes(app: FastAPI, state: _State) -> None:
    engine, settings = state.engine, state.settings
    metrics, batcher = state.metrics, state.batcher

    @app.get(
        "/stats",
        dependencies=state.reads,
        summary="Index facts, request counts, latency percentiles",
    )
    async def stats():
        loaded = engine.current
        return {
            "status": engine.status,
            "uptime_s": round(time.time() - metrics.started, 3),
            "index": _index_facts(loaded.sparse.index),
            "dense_index": _dense_facts(loaded.dense.index) if loaded.dense else None,
            "limits": {
                "max_k": settings.max_k,
                "max_query_chars": settings.max_query_chars,
                "max_query_terms": settings.max_query_terms,
                "max_body_bytes": settings.max_body_bytes,
                "max_batch": settings.max_batch,
                "request_timeout_s": settings.request_timeout,
            },
            "micro_batching": {
                "enabled": settings.micro_batching,
                "window_ms": settings.batch_window_ms,
                "encoder_calls": batcher.batches,
                "texts": batcher.texts,
                "largest_batch": batcher.largest_batch,
                "waited_for_window": batcher.waited,
                "mean_batch": round(batcher.texts / batcher.batches, 3)
                if batcher.batches
                else None,
            },
            "auth": {
                "read_token": settings.read_token is not None,
                "admin_token": settings.admin_token is not None,
            },
            "writes": {
                "enabled": settings.admin_token is not None,
                "writer_open": state.writes.open,
                "pending": dict(state.writes.pending),
                "commits": state.writes.commits,
            },
            "reloads": metrics.reloads,
            "reload_failures": metrics.reload_failures,
            "in_flight": metrics.in_flight,
            "requests": metrics.request_counts(),
            "latency": metrics.latency_percentiles(),
        }


def _add_metrics_routes(app: FastAPI, state: _State) -> None:
    engine, metrics, batcher = state.engine, state.metrics, state.batcher

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=state.reads,
        summary="Prometheus text format",
    )
    async def prometheus():
        loaded = engine.current
        gauges = {
            "sparse_ir_ready": ("1 when the index is open and verified", float(engine.ready)),
            "sparse_ir_index_documents": (
                "documents in the sparse index",
                loaded.sparse.index.num_documents,
            ),
            "sparse_ir_index_postings": (
                "postings in the sparse index",
                loaded.sparse.index.num_postings,
            ),
            "sparse_ir_uptime_seconds": (
                "seconds since the app started",
                time.time() - metrics.started,
            ),
        }
        counters = {
            "sparse_ir_encoder_calls_total": (
                "query encoder calls (micro-batches)",
                batcher.batches,
            ),
            "sparse_ir_encoded_texts_total": ("texts encoded", batcher.texts),
            "sparse_ir_reloads_total": ("index generations swapped in", metrics.reloads),
            "sparse_ir_reload_failures_total": ("reloads refused", metrics.reload_failures),
        }
        return PlainTextResponse(
            metrics.prometheus(gauges, counters), media_type="text/plain; version=0.0.4"
        )


def _add_admin_routes(app: FastAPI, state: _State) -> None:
    engine, settings, metrics, executor = (
        state.engine,
        state.settings,
        state.metrics,
        state.executor,
    )

    @app.post(
        "/reload",
        dependencies=[Depends(state.require_admin)],
        responses=_ERROR_RESPONSES,
        summary="Open the indexes' current generation (admin token)",
    )
    async def reload(request: Request):
        loop = asyncio.get_running_loop()
        try:
            # Not under the request deadline: a reload half done is finished, not abandoned.
            result = await loop.run_in_executor(
                executor, lambda: engine.reload(verify=settings.verify)
            )
        except Exception as error:
            metrics.reload_failures += 1
            logger.error("reload failed (the old generation stays in service): %s", error)
            raise ServiceError(
                503,
                f"reload failed, the previous generation stays in service: {error}",
                code="reload_failed",
            ) from None
        if result["reloaded"]:
            metrics.reloads += 1
        engine.status = "ready"
        return result


def _add_write_routes(app: FastAPI, state: _State) -> None:
    settings, metrics, writes = state.settings, state.metrics, state.writes

    @app.post(
        "/documents",
        response_model=DocumentsResponse,
        responses=_WRITE_RESPONSES,
        dependencies=[Depends(state.require_admin)],
        summary="Add or upsert documents (admin token); searches see them after POST /commit",
    )
    async def add_documents(body: DocumentsRequest):
        if len(body.documents) > settings.max_batch:
            raise ServiceError(
                422,
                f"{len(body.documents)} documents; the limit is {settings.max_batch} per "
                "request (--max-batch)",
                problems=[{"location": "documents", "message": f"at most {settings.max_batch}"}],
            )
        documents = [
            NewDocument(d.id, d.title, d.text, d.vector, d.metadata) for d in body.documents
        ]
        result = await state.write(
            writes.add, documents, upsert=body.mode == "upsert", impacts=body.impacts
        )
        return JSONResponse(result)

    @app.delete(
        "/documents/{doc_id:path}",
        response_model=DeleteResponse,
        responses=_WRITE_RESPONSES,
        dependencies=[Depends(state.require_admin)],
        summary="Delete a document (admin token); searches stop seeing it after POST /commit",
    )
    async def delete_document(doc_id: str):
        return JSONResponse(await state.write(writes.delete, doc_id))

    @app.post(
        "/commit",
        response_model=CommitResponse,
        responses=_WRITE_RESPONSES,
        dependencies=[Depends(state.require_admin)],
        summary="Publish the writes and serve the new generation (admin token)",
    )
    async def commit():
        try:
            result = await state.write(writes.commit, verify=settings.verify)
        except ServiceError as error:
            if error.code == "reload_failed":
                metrics.reload_failures += 1
            raise
        if result["reloaded"]:
            metrics.reloads += 1
        return JSONResponse(result)


# -- handler bodies (run on worker threads) --------------------------------------------------------


def _encode_texts(engine: Engine, texts: list[str], settings: ServiceSettings) -> list[SparseBatch]:
    """One encoder call for a micro-batch: each text's float vector (a one-row batch).

    An encoder that runs a model in passes gets ``encoder_batch_size``: it sorts the texts by
    length and pads each pass only to its own longest text."""
    encoder = engine.current.sparse.encoder
    options = {"batch_size": settings.encoder_batch_size} if _takes_passes(encoder) else {}
    with engine.encoder_lock:
        set_torch_threads(settings.encoder_threads)
        batch = encoder.encode_queries(list(texts), show_progress=False, **options)
    return [batch.select([i]) for i in range(len(texts))]


def _takes_passes(encoder) -> bool:
    """True for a model encoder whose queries are encoded in passes of ``batch_size`` texts
    (SPLADE; not BM25 or IDF, nor SPLADE with a separate, inference-free query side)."""
    encode = getattr(encoder, "encode", None)
    if encode is None or getattr(encoder, "query_encoder", None) is not None:
        return False
    try:
        return "batch_size" in inspect.signature(encode).parameters
    except (TypeError, ValueError):
        return False


def _search(engine: Engine, loaded: Loaded, query, body: SearchRequest, where=None) -> dict:
    index = loaded.sparse.index
    searcher = loaded.sparse
    mode = body.mode if body.mode is not None else searcher.mode
    if isinstance(query, SparseBatch):
        vector = query
        query = index.quantizer.quantize(query)  # as Searcher.encode does
    else:
        vector = None
    try:
        hits = index.search(query, body.k, mode=mode, filter=where)
        mode_name = resolve_mode(mode, has_search_layout=index.has_search_layout).name
    except (InputError, ValueError) as error:
        raise ServiceError(422, str(error)) from None
    result: dict = {"hits": [], "mode": mode_name, "generation": loaded.generation}
    if body.explain:
        query_words = engine.text_terms(body.text) if body.text is not None else None
        terms, impacts = index.prepare_query(query)
        if vector is not None:
            row_terms, row_weights = vector.row(0)
            floats = dict(zip((vector.vocab[t] for t in row_terms.tolist()), row_weights.tolist()))
        else:
            floats = {token: float(weight) for token, weight in body.query.items()}
        query_terms = [
            {
                "token": index.vocab[t],
                "weight": floats.get(index.vocab[t], 0.0),
                "impact": w,
                "in_text": index.vocab[t] in query_words if query_words is not None else None,
            }
            for t, w in zip(terms.tolist(), impacts.tolist())
        ]
        query_terms.sort(key=lambda term: (-term["impact"], term["token"]))
        result["query_terms"] = query_terms
    for rank, hit in enumerate(hits, 1):
        stored = index.document(hit.docno)
        entry = {
            "rank": rank,
            "id": hit.doc_id,
            "docno": hit.docno,
            "score": hit.score,
            "title": stored[0] if stored else None,
        }
        if body.explain:
            terms = engine.text_terms(f"{stored[0]}\n{stored[1]}") if stored else set()
            contributions = [
                {
                    "token": c.token,
                    "query_weight": c.query_weight,
                    "document_impact": c.document_impact,
                    "score": c.score,
                    "in_text": c.token in terms,
                }
                for c in index.explain(query, hit.docno)
            ]
            matched = [c["token"] for c in contributions if c["in_text"]]
            words = terms.words(matched) if stored else set()
            entry["contributions"] = contributions
            entry["matched_terms"] = matched
            entry["expansion_terms"] = [c["token"] for c in contributions if not c["in_text"]]
            entry["highlight"] = sorted(words)
            entry["snippet"] = snippet(stored[1], words) if stored else None
        result["hits"].append(entry)
    return result


def _hybrid(
    engine: Engine, loaded: Loaded, fusion: Fusion, body: HybridRequest, where=None
) -> dict:
    searcher = loaded.hybrid(fusion)
    try:
        with engine.encoder_lock:
            fused = searcher.search(
                body.text, body.k, mode=[body.sparse_mode, body.dense_mode], filter=where
            )
    except InputError as error:  # e.g. a filter on a field the metadata lacks
        raise ServiceError(422, str(error)) from None
    index = loaded.sparse.index
    words = engine.text_terms(body.text)
    words = words.words(words.by_token)
    hits = []
    for rank, hit in enumerate(fused, 1):
        stored = index.document(hit.docno)
        hits.append(
            {
                "rank": rank,
                "id": hit.doc_id,
                "docno": hit.docno,
                "score": hit.score,
                "sparse_score": hit.components[0],
                "dense_score": hit.components[1],
                "sparse_rank": hit.ranks[0],
                "dense_rank": hit.ranks[1],
                "title": stored[0] if stored else None,
                "snippet": snippet(stored[1], words) if stored else None,
            }
        )
    return {"hits": hits, "fusion": fusion.describe(), "generation": loaded.generation}


def _decode(loaded: Loaded, row: SparseBatch, top_k: int | None) -> dict:
    terms, weights = row.row(0)
    pairs = sorted(
        zip((row.vocab[t] for t in terms.tolist()), weights.tolist()),
        key=lambda pair: (-pair[1], pair[0]),
    )[:top_k]
    quantized = loaded.sparse.index.quantizer.quantize(row)
    q_terms, q_values = quantized.row(0)
    impacts = dict(zip((quantized.vocab[t] for t in q_terms.tolist()), q_values.tolist()))
    return {
        "vector": dict(pairs),
        "impacts": {token: int(impacts[token]) for token, _ in pairs if token in impacts},
    }


def _index_facts(index) -> dict:
    return {
        "directory": str(index.directory),
        "generation": index.directory.name,
        "documents": index.num_documents,
        "postings": index.num_postings,
        "vocab_size": index.vocab_size,
        "size_bytes": index.size_bytes(),
        "has_contents": index.has_contents,
        "has_search_layout": index.has_search_layout,
        "model": index.settings.get("model"),
    }


def _dense_facts(index) -> dict:
    return {
        "directory": str(index.directory),
        "generation": index.directory.name,
        "documents": index.num_documents,
        "dim": index.dim,
        "has_hnsw": index.has_hnsw,
        "model": index.settings.get("model"),
    }


def _version() -> str:
    from sparse_ir import __version__

    return __version__


# -- error handlers: every refusal is JSON with a code, a message and the request id ---------------


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError):
        return JSONResponse(
            _error_body(error.code, error.message, _request_id(request), error.problems),
            status_code=error.status,
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = list(item.get("loc", ()))
            location = [str(part) for part in (where[1:] if where[:1] == ["body"] else where)]
            message = item.get("msg", "invalid")
            problems.append(
                {
                    "location": ".".join(location) or "body",
                    "message": message.removeprefix("Value error, "),
                    "type": item.get("type", ""),
                }
            )
        if any(p["type"] == "json_invalid" for p in problems):
            detail = next(p for p in problems if p["type"] == "json_invalid")
            return JSONResponse(
                _error_body(
                    "malformed_json",
                    f"the body is not valid JSON ({detail['message']})",
                    _request_id(request),
                ),
                status_code=400,
            )
        message = "; ".join(f"{p['location']}: {p['message']}" for p in problems)
        return JSONResponse(
            _error_body("invalid_request", message, _request_id(request), problems), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        message = error.detail if isinstance(error.detail, str) else "error"
        if error.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            _error_body(_ERRORS.get(error.status_code, "error"), message, _request_id(request)),
            status_code=error.status_code,
            headers=error.headers,
        )
