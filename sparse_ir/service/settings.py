"""The service's settings: limits, tokens and micro-batching, as one frozen value.

This module needs the standard library only (the CLI builds settings before FastAPI loads).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServiceSettings", "read_token_file"]

# Shortest token accepted from a file: a guessable token is no protection.
MIN_TOKEN_CHARS = 16


def read_token_file(path: str | os.PathLike) -> str:
    """The token stored in a file (surrounding whitespace removed).

    Raises:
        ValueError: the file is empty, has several lines, or holds fewer than 16 characters.
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(
            f"token file {path} is empty; write a random token into it, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if "\n" in text:
        raise ValueError(f"token file {path} holds several lines; it must hold one token")
    if len(text) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"the token in {path} has {len(text)} characters; use at least "
            f"{MIN_TOKEN_CHARS} (e.g. secrets.token_urlsafe(32))"
        )
    return text


def _positive(label: str, value, *, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not value > 0
        or (not integer and not math.isfinite(value))
    ):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{label} must be {kind} > 0, got {value!r}")


@dataclass(frozen=True)
class ServiceSettings:
    """How the search service limits, authenticates and batches requests.

    Attributes:
        max_k: the largest ``k`` a request may ask for.
        max_query_chars: the longest query text (characters).
        max_query_terms: the most terms of a pre-encoded ``{token: weight}`` query.
        max_body_bytes: the largest request body, checked before it is parsed (a larger
            ``Content-Length`` is refused at once, a longer streamed body when it gets there).
        max_batch: the most texts in one encoder call: micro-batches, and ``texts`` of
            ``POST /encode``.
        batch_window_ms: how long the first text query of a micro-batch waits for others
            (milliseconds; queries arriving while the encoder runs join the next batch anyway).
        micro_batching: collect concurrent text queries into one encoder call. Off: each query
            is encoded alone (one call per request, one at a time).
        request_timeout: seconds a request may take (body upload included) before it gets a
            504 (or a 408 while its body is still arriving).
        read_token: when set, every read endpoint but ``/healthz``, ``/readyz`` and the page
            itself needs ``Authorization: Bearer <read or admin token>``.
        admin_token: when set, ``POST /reload`` and the writes (``POST /documents``,
            ``DELETE /documents/{id}``, ``POST /commit``) need ``Authorization: Bearer <admin
            token>``; when unset they are refused.
        verify: check every byte of the index (``index.verify()``) before ``/readyz`` says
            ready, at start and at each reload.
        search_threads: worker threads running searches and encoder calls off the event loop.
        inline_search_ms: a search runs on the event loop itself, without the hand-over to a
            worker thread, while the searches of ``POST /search`` have been taking less CPU
            time than this (a moving average; milliseconds): the hand-over costs more than
            such a search on a busy machine, and the loop is never held longer than this.
            Explained searches always run on a worker thread. 0: every search on a worker.
        encoder_batch_size: texts per forward pass of a micro-batch: the encoder sorts the
            batch by length and encodes it in passes of this many texts, so short texts are
            not padded to the longest one (SPLADE's cost follows the padded tokens). Encoders
            without passes (BM25, IDF) take the batch whole.
        encoder_threads: the intra-op threads of the query encoder's PyTorch calls (set on
            the thread that encodes). One thread encodes a micro-batch fastest on a busy
            machine (several spin-wait on shared cores); None leaves PyTorch's own setting.
    """

    max_k: int = 1000
    max_query_chars: int = 4096
    max_query_terms: int = 1024
    max_body_bytes: int = 1 << 20
    max_batch: int = 32
    batch_window_ms: float = 2.0
    micro_batching: bool = True
    request_timeout: float = 30.0
    read_token: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    verify: bool = True
    search_threads: int = 4
    inline_search_ms: float = 2.0
    encoder_batch_size: int = 8
    encoder_threads: int | None = 1

    def __post_init__(self):
        for label in (
            "max_k",
            "max_query_chars",
            "max_query_terms",
            "max_body_bytes",
            "max_batch",
            "search_threads",
            "encoder_batch_size",
        ):
            _positive(label, getattr(self, label), integer=True)
        _positive("request_timeout", self.request_timeout, integer=False)
        if self.encoder_threads is not None:
            _positive("encoder_threads", self.encoder_threads, integer=True)
        inline = self.inline_search_ms
        if (
            isinstance(inline, bool)
            or not isinstance(inline, (int, float))
            or not math.isfinite(inline)
            or not 0 <= inline <= 1000
        ):
            raise ValueError(f"inline_search_ms must be within [0, 1000], got {inline!r}")
        window = self.batch_window_ms
        if (
            isinstance(window, bool)
            or not isinstance(window, (int, float))
            or not math.isfinite(window)
            or not 0 <= window <= 1000
        ):
            raise ValueError(f"batch_window_ms must be within [0, 1000], got {window!r}")
        for label in ("read_token", "admin_token"):
            token = getattr(self, label)
            if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS):
                raise ValueError(
                    f"{label} must be a string of at least {MIN_TOKEN_CHARS} characters (or None)"
                )

    @classmethod
    def from_token_files(
        cls,
        *,
        read_token_file: str | os.PathLike | None = None,
        admin_token_file: str | os.PathLike | None = None,
        **options,
    ) -> ServiceSettings:
        """Settings whose tokens are read from files (see :func:`read_token_file`)."""
        read = _read_token(read_token_file) if read_token_file else None
        admin = _read_token(admin_token_file) if admin_token_file else None
        return cls(read_token=read, admin_token=admin, **options)


_read_token = read_token_file
