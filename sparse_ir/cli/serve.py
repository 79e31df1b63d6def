"""``sparse-ir serve``: the search service (HTTP API and search page) over an index."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(subparsers) -> None:
    """Add the serve subcommand."""
    from sparse_ir.service.settings import ServiceSettings

    defaults = ServiceSettings()
    parser = subparsers.add_parser(
        "serve",
        help="serve an index over HTTP: JSON API and a search page",
        description="Serve an impact index (and optionally a dense index for hybrid search) "
        "over HTTP: POST /search, /hybrid, /encode, GET /documents/{id}, "
        "/healthz, /readyz, /stats, /metrics, POST /reload, the writes (POST "
        "/documents, DELETE /documents/{id}, POST /commit), and a search page "
        "at /. Binds to localhost unless --host says otherwise. SIGTERM or ^C "
        "finishes the requests in flight, then exits. See docs/service.md.",
    )
    _add_address_options(parser)
    _add_limit_options(parser, defaults)
    _add_runtime_options(parser)
    parser.set_defaults(handler=run_serve)


def _add_address_options(parser) -> None:
    """What to serve, where, and with which tokens."""
    parser.add_argument("--index", required=True, help="the impact index directory")
    parser.add_argument(
        "--dense-index",
        default=None,
        help="a dense index over the same documents (enables POST /hybrid) (default: none)",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default: %(default)s; 0.0.0.0: every interface, then set tokens)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    parser.add_argument(
        "--read-token-file",
        default=None,
        help="file holding the token every read request must carry "
        "(Authorization: Bearer ...); default: reads are open",
    )
    parser.add_argument(
        "--admin-token-file",
        default=None,
        help="file holding the admin token (POST /reload, POST /documents, DELETE "
        "/documents/{id}, POST /commit); default: reloads and writes disabled",
    )


def _add_limit_options(parser, defaults) -> None:
    """Request limits, micro-batching and threads (defaults from ServiceSettings)."""
    parser.add_argument(
        "--max-k",
        type=int,
        default=defaults.max_k,
        help="largest k a request may ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--max-query-chars",
        type=int,
        default=defaults.max_query_chars,
        help="longest query text, in characters (default: %(default)s)",
    )
    parser.add_argument(
        "--max-query-terms",
        type=int,
        default=defaults.max_query_terms,
        help="most terms of a pre-encoded query (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help="largest request body, checked before parsing (default: %(default)s bytes)",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=defaults.batch_window_ms,
        help="how long a text query waits for others to share its encoder "
        "call (default: %(default)s ms)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        help="most texts per encoder call: micro-batches, POST /encode (default: %(default)s)",
    )
    parser.add_argument(
        "--no-micro-batching",
        dest="micro_batching",
        action="store_false",
        help="encode each text query alone (default: micro-batching on)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout,
        help="seconds a request may take, 504 after (default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.search_threads,
        help="worker threads for searches and encoder calls (default: %(default)s)",
    )
    parser.add_argument(
        "--inline-search-ms",
        type=float,
        default=defaults.inline_search_ms,
        help="run a search on the event loop, without a hand-over to a worker thread, while "
        "searches have taken less CPU time than this on average; 0: always on a worker "
        "(default: %(default)s ms)",
    )
    parser.add_argument(
        "--encoder-batch-size",
        type=int,
        default=defaults.encoder_batch_size,
        help="texts per encoder pass within a micro-batch, sorted by length so that "
        "short texts are not padded to long ones (default: %(default)s)",
    )
    parser.add_argument(
        "--encoder-threads",
        type=int,
        default=defaults.encoder_threads,
        help="PyTorch threads of each query-encoder call; 0 keeps PyTorch's own "
        "setting (default: %(default)s)",
    )


def _add_runtime_options(parser) -> None:
    """Index check, device, access log and browser."""
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the full check of the index before /readyz says ready",
    )
    parser.add_argument(
        "--device", default="cpu", help="device of the query encoders (default: %(default)s)"
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no JSON access-log line per request on stderr",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="open the search page in a web browser once the index is ready",
    )


def run_serve(args: argparse.Namespace) -> int:
    from sparse_ir.errors import MissingDependencyError
    from sparse_ir.service.settings import ServiceSettings

    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("sparse-ir serve", "uvicorn", "service") from None
    from sparse_ir.service import create_app

    settings = ServiceSettings.from_token_files(
        read_token_file=args.read_token_file,
        admin_token_file=args.admin_token_file,
        max_k=args.max_k,
        max_query_chars=args.max_query_chars,
        max_query_terms=args.max_query_terms,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        batch_window_ms=args.batch_window_ms,
        micro_batching=args.micro_batching,
        request_timeout=args.request_timeout,
        verify=args.verify,
        search_threads=args.threads,
        inline_search_ms=args.inline_search_ms,
        encoder_batch_size=args.encoder_batch_size,
        encoder_threads=args.encoder_threads or None,
    )
    log = logging.getLogger("sparse_ir.service")
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.read_token is None:
        log.warning(
            "serving on %s with open reads: anyone who reaches this address can "
            "search (set --read-token-file)",
            args.host,
        )
    if args.access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("sparse_ir.service.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    app = create_app(args.index, args.dense_index, settings=settings, device=args.device)
    print(
        f"sparse-ir serve: http://{args.host}:{args.port}/ (API schema: /openapi.json)",
        file=sys.stderr,
        flush=True,
    )
    if args.open:
        threading.Thread(target=_open_when_ready, args=(args.host, args.port), daemon=True).start()
    # uvicorn answers SIGTERM and ^C by draining the requests in flight, then raises the
    # signal again under the handlers it found: these make that a normal exit (status 0).
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, _drained)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=max(settings.request_timeout, 1.0) + 5,
        server_header=False,
    )
    return 0


def _open_when_ready(host: str, port: int, timeout: float = 600) -> None:
    """Open the page in a browser once ``/readyz`` says ready."""
    import http.client
    import time
    import webbrowser

    address = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(address, port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                webbrowser.open(f"http://{address}:{port}/")
                return
        except OSError:
            pass
        time.sleep(0.5)


def _drained(signal_number, frame) -> None:
    """The signal that stopped the server, raised again after it drained: nothing to do."""
