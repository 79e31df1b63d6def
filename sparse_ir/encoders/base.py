"""What a searcher and the pipeline need of an encoder, as Protocols (no torch imported here).

Any class with these members plugs in, without inheriting from anything:

* :class:`QueryEncoder`: ``vocab`` and ``encode_queries -> SparseBatch`` (SPLADE,
  the inference-free :class:`~sparse_ir.training.inference_free.IdfQueryEncoder`).
* :class:`DocumentEncoder`: ``vocab`` and ``encode_documents -> SparseBatch``.
* :class:`DenseQueryEncoder`: ``dim`` and ``encode_queries -> np.ndarray`` ``[n, dim]``.

Each accepts one ``str`` as a one-text batch, as sentence-transformers' ``encode_query`` does.

Example:
    >>> from sparse_ir.encoders.base import QueryEncoder
    >>> from sparse_ir.sparse_batch import SparseBatch
    >>> class Words:
    ...     vocab = ("cat", "dog")
    ...     def encode_queries(self, texts, *, ids=None, show_progress=None):
    ...         texts = [texts] if isinstance(texts, str) else texts
    ...         return SparseBatch.from_dicts(
    ...             [{w: 1.0 for w in t.split() if w in self.vocab} for t in texts], self.vocab)
    >>> isinstance(Words(), QueryEncoder)
    True
    >>> Words().encode_queries("cat").decode(0)
    [('cat', 1.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from sparse_ir.sparse_batch import SparseBatch

__all__ = ["DenseQueryEncoder", "DocumentEncoder", "QueryEncoder", "as_texts"]


@runtime_checkable
class QueryEncoder(Protocol):
    """Turns query texts into sparse vectors over ``vocab`` (what :class:`Searcher` needs)."""

    @property
    def vocab(self) -> tuple[str, ...]:
        """The output vocabulary: term id ``j`` is the token ``vocab[j]``."""

    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> SparseBatch:
        """One row per text, in input order (one ``str``: one row)."""


@runtime_checkable
class DocumentEncoder(Protocol):
    """Turns document texts into sparse vectors over ``vocab`` (what indexing needs)."""

    @property
    def vocab(self) -> tuple[str, ...]:
        """The output vocabulary: term id ``j`` is the token ``vocab[j]``."""

    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> SparseBatch:
        """One row per text, in input order (one ``str``: one row)."""


@runtime_checkable
class DenseQueryEncoder(Protocol):
    """Turns query texts into dense vectors (what :class:`DenseSearcher` needs)."""

    @property
    def dim(self) -> int:
        """Length of every vector."""

    def encode_queries(
        self, texts: str | Sequence[str], *, show_progress: bool | None = None
    ) -> np.ndarray:
        """A float32 ``[n, dim]`` array, one row per text (one ``str``: one row)."""


def as_texts(texts: str | Sequence[str]) -> Sequence[str]:
    """``texts``, with one ``str`` turned into a one-text list."""
    return [texts] if isinstance(texts, str) else texts
