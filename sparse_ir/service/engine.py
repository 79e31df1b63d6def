"""What the service searches: the open indexes and their encoders, swapped whole on reload.

A request takes :attr:`Engine.current` once and uses that :class:`Loaded` to the end, so a
reload (which builds a new ``Loaded`` and replaces the reference) never changes an index under
a running request; the old index stays mapped until its last request finishes.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sparse_ir.search import DenseSearcher, Searcher

__all__ = ["Engine", "Loaded", "TextTerms", "set_torch_threads", "snippet", "text_words"]

logger = logging.getLogger(__name__)


@dataclass
class Loaded:
    """One consistent set of searchers (a generation of each index)."""

    sparse: Searcher
    dense: DenseSearcher | None = None
    hybrids: dict = field(default_factory=dict)  # Fusion -> HybridSearcher, built when first used

    @property
    def generation(self) -> str:
        """The sparse index's generation directory name (e.g. ``gen-000003``)."""
        return self.sparse.index.directory.name

    def hybrid(self, fusion):
        """The :class:`~sparse_ir.hybrid.HybridSearcher` of these searchers and ``fusion``."""
        from sparse_ir.hybrid import HybridSearcher

        searcher = self.hybrids.get(fusion)
        if searcher is None:
            if len(self.hybrids) > 64:  # requests choose the fusion: keep the cache bounded
                self.hybrids.clear()
            searcher = self.hybrids[fusion] = HybridSearcher([self.sparse, self.dense], fusion)
        return searcher


def index_root(directory: Path) -> Path:
    """The index directory holding ``CURRENT`` above a generation directory (or itself)."""
    directory = Path(directory)
    return directory.parent if (directory.parent / "CURRENT").is_file() else directory


class Engine:
    """The searchers of a service and how to reload them.

    Args:
        sparse: the sparse searcher.
        dense: an optional dense searcher over the same documents (enables ``/hybrid``).
    """

    def __init__(self, sparse: Searcher, dense: DenseSearcher | None = None):
        self.current = Loaded(sparse, dense)
        self.sparse_root = index_root(sparse.index.directory)
        self.dense_root = index_root(dense.index.directory) if dense is not None else None
        #: One encoder call at a time: fast tokenizers refuse concurrent use of one instance.
        self.encoder_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        #: "starting", "verifying", "ready" or "failed: <reason>".
        self.status = "starting"

    @classmethod
    def from_paths(
        cls,
        index: str | os.PathLike,
        dense_index: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
    ) -> Engine:
        """Open the indexes and load the models their settings record."""
        sparse = Searcher.from_index(index, device=device)
        dense = DenseSearcher.from_index(dense_index, device=device) if dense_index else None
        return cls(sparse, dense)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def verify(self, loaded: Loaded | None = None) -> None:
        """Check every byte of the indexes (raises IndexCorruptError on damage)."""
        loaded = loaded or self.current
        loaded.sparse.index.verify()
        if loaded.dense is not None:
            loaded.dense.index.verify()

    def startup_check(self, verify: bool) -> None:
        """Set :attr:`status` after checking the open indexes and warming them up (run on a
        worker thread): the first search compiles the kernels, the first encoding loads
        the encoder's lazy parts; neither should fall on a client's request."""
        try:
            if verify:
                self.status = "verifying"
                self.verify()
            self.status = "warming up"
            self.warm_up()
        except Exception as error:
            logger.error("the index is not ready: %s", error)
            self.status = f"failed: {error}"
        else:
            self.status = "ready"

    def warm_up(self) -> None:
        """One search in each mode the index has, one encoder call."""
        loaded = self.current
        index = loaded.sparse.index
        modes = (
            ["exhaustive", "pruned", "approximate"] if index.has_search_layout else ["exhaustive"]
        )
        with self.encoder_lock:
            query = loaded.sparse.encode("warm up")
        for mode in modes:
            index.search(query, 10, mode=mode)
        if loaded.dense is not None:
            with self.encoder_lock:
                loaded.dense.search("warm up", 10)

    def reload(self, *, verify: bool) -> dict:
        """Open each index's current generation; swap them in when any changed.

        The encoders are kept (a new generation must use the same vocabulary; the searchers'
        constructors check it). Raises on an unreadable or damaged generation, leaving the
        old one in service.
        """
        from sparse_ir.index.dense import DenseIndex
        from sparse_ir.index.impact_index import ImpactIndex

        with self._reload_lock:
            old = self.current
            sparse_index = ImpactIndex.open(self.sparse_root)
            changed = sparse_index.directory != old.sparse.index.directory
            sparse = (
                Searcher(sparse_index, old.sparse.encoder, mode=old.sparse.mode)
                if changed
                else old.sparse
            )
            dense = old.dense
            if old.dense is not None:
                dense_index = DenseIndex.open(self.dense_root)
                if dense_index.directory != old.dense.index.directory:
                    changed = True
                    dense = DenseSearcher(dense_index, old.dense.encoder, mode=old.dense.mode)
            if not changed:
                return {"reloaded": False, "generation": old.generation}
            loaded = Loaded(sparse, dense)
            if verify:
                self.verify(loaded)
            if loaded.dense is not None:
                loaded.hybrid(None)  # the hybrid's checks: same documents in both indexes
            self.current = loaded
            logger.info("reloaded: %s -> %s", old.generation, loaded.generation)
            return {
                "reloaded": True,
                "generation": loaded.generation,
                "previous_generation": old.generation,
            }

    def text_terms(self, text: str) -> TextTerms:
        """The vocabulary tokens of a text, with the words they come from (see
        :class:`TextTerms`)."""
        tokenizer = getattr(self.current.sparse.encoder, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            return TextTerms.of_words(text)
        with self.encoder_lock:  # a fast tokenizer refuses concurrent use
            encoded = tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
            tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        return TextTerms.of_pieces(text, tokens, encoded["offset_mapping"])


def set_torch_threads(threads: int | None) -> None:
    """PyTorch's intra-op threads for the calls that follow (when an encoder uses PyTorch)."""
    torch = sys.modules.get("torch")  # loaded by a model's encoder; never imported here
    if threads is not None and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# -- text helpers of the page: which terms occur in a text, and the snippet showing them ---------

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


class TextTerms:
    """Which vocabulary tokens occur in a text, and the (lower-cased) words holding each.

    With the encoder's tokenizer the tokens are its word pieces: "ALDH1" holds ``al``,
    ``##dh`` and ``##1``, so each counts as in the text and highlights the word "aldh1".
    Without one (an encoder that is not a fast Hugging Face tokenizer), whole words only.
    """

    def __init__(self, by_token: dict[str, set[str]]):
        self.by_token = by_token

    @classmethod
    def of_words(cls, text: str) -> TextTerms:
        return cls({word: {word} for word in text_words(text)})

    @classmethod
    def of_pieces(cls, text: str, tokens, offsets) -> TextTerms:
        spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
        starts = [start for start, _ in spans]
        by_token: dict[str, set[str]] = {}
        for token, (start, end) in zip(tokens, offsets):
            i = bisect.bisect_right(starts, start) - 1
            if i >= 0 and spans[i][0] <= start < spans[i][1]:
                word = text[spans[i][0] : spans[i][1]].lower()
            else:
                word = text[start:end].lower()
            by_token.setdefault(token, set()).add(word)
        return cls(by_token)

    def __contains__(self, token: str) -> bool:
        return token in self.by_token

    def words(self, tokens) -> set[str]:
        """The words holding any of ``tokens``."""
        return set().union(*(self.by_token.get(token, ()) for token in tokens))


def text_words(text: str) -> set[str]:
    """The lower-cased words of a text (split like BERT's basic tokenizer: at punctuation)."""
    return set(_WORD.findall(text.lower()))


def snippet(text: str, terms: set[str], *, width: int = 260) -> str:
    """About ``width`` characters of ``text`` around the densest run of ``terms``' words."""
    if len(text) <= width:
        return text
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text) if m.group().lower() in terms]
    best_start, best_count = 0, 0
    for i, (start, _) in enumerate(spans):
        count = sum(1 for s, _ in spans[i:] if s < start + width - 40)
        if count > best_count:
            best_start, best_count = max(0, start - 40), count
    end = min(len(text), best_start + width)
    if end == len(text):
        best_start = max(0, end - width)
    # cut at word boundaries
    if best_start > 0:
        space = text.find(" ", best_start)
        best_start = space + 1 if 0 <= space < best_start + 30 else best_start
    if end < len(text):
        space = text.rfind(" ", best_start, end)
        end = space if space > best_start + width // 2 else end
    return (
        ("… " if best_start > 0 else "")
        + text[best_start:end].strip()
        + (" …" if end < len(text) else "")
    )
