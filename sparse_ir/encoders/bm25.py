"""BM25 as an impact index: per-(document, term) weights computed once, searched by our kernels.

BM25's score of a document d for a query q is a sum over the query's terms t of one number per
(d, t) pair::

    s(q, d) = Σ_{t ∈ q} w_q(t) · w(d, t)
    w(d, t) = idf(t) · tf · (k1 + 1) / (tf + k1 · (1 − b + b · dl / avgdl))
    idf(t)  = log(1 + (N − df + 0.5) / (df + 0.5))                (Lucene's idf)

with tf the count of t in d, dl the number of analyzed tokens of d, avgdl their mean over the
corpus, N the number of documents and df(t) the number of documents containing t. So BM25 is
an impact index: :class:`BM25Encoder` turns documents into those weights (a float
:class:`~sparse_ir.sparse_batch.SparseBatch`), the index's :class:`~sparse_ir.quantize.Quantizer`
turns them into integers, and every search mode, explanation and the Lucene export apply as
they do to SPLADE vectors.

The ``(k1 + 1)`` factor (Robertson's form; Lucene dropped it in version 8) multiplies every
weight by the same constant, so rankings are those of Lucene and of bm25s's ``method="lucene"``;
it keeps the weights in ``[0, (k1 + 1) · idf]``, about 0–15 on collections of 10^4–10^6 documents.

Query terms weigh **1 each, once per distinct term** by default (``query_weighting="distinct"``):
``s(q, d)`` is the sum of ``w(d, t)`` over the distinct analyzed terms of the query.
``query_weighting="count"`` weighs a term by its number of occurrences in the query, as
Lucene's BooleanQuery of repeated term clauses, Anserini and bm25s do.

Quantization: impact = round(w × 1000) (:data:`BM25_SCALE`). BM25 weights are small floats, so
the scale 100 of SPLADE indexes would round a weight of 0.3 by up to 1.7%; at 1000 the rounding
is at most 0.0005 per term, far below the score gaps that decide a ranking, and the impacts still
fit 16 bits (the largest weight, (k1 + 1) · log(1 + (N − 0.5) / 1.5), is 15.4 for k1 = 0.9 at
N = 5,000 and 29.9 at N = 10^7). When a larger k1 would push the largest weight past 65.535, the
scale shrinks so that it maps to 65,535 (:meth:`BM25Encoder.quantizer`).

The analyzer (:class:`Analyzer`) is bm25s's: lowercase, split with the token pattern
``(?u)\\b\\w\\w+\\b``, drop bm25s's English stop-words (Lucene's 33-word English stop set), stem
with PyStemmer's Snowball ``english`` stemmer. Its whole description, stop-words included, is
saved with the encoder and in the index manifest, so an index is searched with the analyzer it
was built with even if bm25s changes its list. numpy + PyStemmer only (bm25s is read for its
stop-word list when an analyzer is first created from the name ``"en"``); no torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from sparse_ir.errors import InputError, MissingDependencyError
from sparse_ir.quantize import Quantizer
from sparse_ir.sparse_batch import SparseBatch
from sparse_ir.validation import LUCENE_MAX_TOKEN_CHARS

__all__ = [
    "Analyzer",
    "BM25Encoder",
    "QueryWeighting",
    "bm25_document_weights",
    "lucene_idf",
    "build_bm25_index",
    "BM25_SCALE",
    "DEFAULT_K1",
    "DEFAULT_B",
    "BM25_FORMAT",
    "BM25_FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

QueryWeighting = Literal["distinct", "count"]
#: Anserini's (and Pyserini's) defaults, tuned on MS MARCO; bm25s's are 1.5 / 0.75.
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
#: impact = round(weight × BM25_SCALE): rounding ≤ 0.0005 per term, impacts within 16 bits.
BM25_SCALE = 1000.0
BM25_FORMAT = "sparse-ir-bm25-encoder"
BM25_FORMAT_VERSION = 1
_SETTINGS_FILE = "bm25.json"
_DF_FILE = "document_frequencies.npy"
_MAX_16_BIT = 65_535
_STEM_CACHE_LIMIT = 1 << 20
_SHARD_SIZE = 4096
_PROGRESS_MIN_TEXTS = 1000


def _bm25s_stopwords(name: str) -> tuple[str, ...]:
    """bm25s's stop-word list of a language name ("en", "english", "en_plus", ...)."""
    bm25s_logger = logging.getLogger("bm25s")
    level = bm25s_logger.level
    try:
        # bm25s sets its own logger's level at import: put it back (no side effect on users).
        from bm25s.tokenization import _infer_stopwords
    except ImportError:
        raise MissingDependencyError("BM25's English stop-word list", "bm25s", "train") from None
    finally:
        bm25s_logger.setLevel(level)
    try:
        return tuple(_infer_stopwords(name))
    except ValueError as exc:
        raise ValueError(
            f"unknown stop-word list {name!r} ({exc}); pass a list of words or 'en'"
        ) from None


@dataclass(frozen=True)
class Analyzer:
    """How text becomes BM25 terms: lowercase, split, drop stop-words, stem.

    The order is bm25s's: stop-words are matched on the lowercased words before stemming.

    Args:
        lowercase: lowercase the text first.
        token_pattern: a regular expression; every match is a word (default: scikit-learn's and
            bm25s's ``(?u)\\b\\w\\w+\\b``, words of two or more word characters).
        stopwords: a name of one of bm25s's lists (``"en"``: Lucene's 33 English stop-words) or
            the words themselves; ``()`` keeps every word. Stored resolved, as the word tuple.
        stemmer: a PyStemmer (Snowball) algorithm, ``"english"`` by default (``"porter"``:
            the original Porter stemmer); None for no stemming.
        max_token_length: words longer than this many UTF-16 units are dropped (Lucene's
            whitespace tokenizer would cut them, so they could not be exported as one term).
    """

    lowercase: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"
    stopwords: str | tuple[str, ...] = "en"
    stemmer: str | None = "english"
    max_token_length: int = LUCENE_MAX_TOKEN_CHARS
    _split: object = field(default=None, init=False, repr=False, compare=False)
    _stopset: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    _stem: object = field(default=None, init=False, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.lowercase, bool):
            raise ValueError(f"lowercase must be True or False, got {self.lowercase!r}")
        try:
            split = re.compile(self.token_pattern).findall
        except (re.error, TypeError) as exc:
            raise ValueError(
                f"token_pattern {self.token_pattern!r} is not a regular expression ({exc})"
            ) from None
        words = self.stopwords
        if isinstance(words, str):
            words = _bm25s_stopwords(words)
        elif words is None:
            words = ()
        words = tuple(words)
        if not all(isinstance(w, str) for w in words):
            raise ValueError("stopwords must be a list name such as 'en' or a list of strings")
        if (
            isinstance(self.max_token_length, bool)
            or not isinstance(self.max_token_length, int)
            or self.max_token_length < 1
        ):
            raise ValueError(
                f"max_token_length must be an integer >= 1, got {self.max_token_length!r}"
            )
        stem = None
        if self.stemmer is not None:
            try:
                import Stemmer
            except ImportError:
                raise MissingDependencyError(
                    "BM25's Snowball stemmer", "PyStemmer", "train"
                ) from None
            if self.stemmer not in Stemmer.algorithms():
                raise ValueError(
                    f"unknown stemmer {self.stemmer!r}; PyStemmer has "
                    f"{', '.join(Stemmer.algorithms())} (or None: no stemming)"
                )
            stem = Stemmer.Stemmer(self.stemmer).stemWords
        object.__setattr__(self, "stopwords", words)
        object.__setattr__(self, "_split", split)
        object.__setattr__(self, "_stopset", frozenset(words))
        object.__setattr__(self, "_stem", stem)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` that are kept (lowercased, no stop-words), before stemming."""
        if self.lowercase:
            text = text.lower()
        stop, limit = self._stopset, self.max_token_length
        words = [w for w in self._split(text) if w not in stop]
        if words and max(map(len, words)) > limit:
            words = [w for w in words if len(w) <= limit or _utf16_units(w) <= limit]
        return words

    def stem_words(self, words: list[str]) -> list[str]:
        """The stems of distinct words (the words themselves when there is no stemmer)."""
        return words if self._stem is None else self._stem(words)

    def analyze(self, text: str) -> list[str]:
        """The terms of one text, in order, repeats kept."""
        words = self.words(text)
        if self._stem is None:
            return words
        cache = self._cache
        missing = list(set(words).difference(cache))
        if missing:
            if len(cache) > _STEM_CACHE_LIMIT:
                cache.clear()
            cache.update(zip(missing, self._stem(missing)))
        return list(map(cache.__getitem__, words))

    def to_dict(self) -> dict:
        """A JSON-ready description (the stop-words spelled out), stored with every index."""
        return {
            "lowercase": self.lowercase,
            "token_pattern": self.token_pattern,
            "stopwords": list(self.stopwords),
            "stemmer": self.stemmer,
            "max_token_length": self.max_token_length,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Analyzer:
        """The analyzer described by :meth:`to_dict` output."""
        known = {"lowercase", "token_pattern", "stopwords", "stemmer", "max_token_length"}
        if not isinstance(data, dict) or set(data) - known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else data
            raise InputError(f"unknown analyzer settings {extra!r}")
        options = dict(data)
        if isinstance(options.get("stopwords"), list):
            options["stopwords"] = tuple(options["stopwords"])
        return cls(**options)


def _utf16_units(word: str) -> int:
    return len(word.encode("utf-16-le")) // 2


def lucene_idf(document_frequencies: np.ndarray, num_documents: int) -> np.ndarray:
    """idf(t) = log(1 + (N − df + 0.5) / (df + 0.5)), float64 (Lucene's BM25Similarity)."""
    df = np.asarray(document_frequencies, np.float64)
    return np.log1p((num_documents - df + 0.5) / (df + 0.5))


def bm25_document_weights(
    term_frequencies: np.ndarray,
    document_lengths: np.ndarray,
    document_frequencies: np.ndarray,
    *,
    num_documents: int,
    average_length: float,
    k1: float,
    b: float,
) -> np.ndarray:
    """w(d, t) = idf(t) · tf · (k1 + 1) / (tf + k1 · (1 − b + b · dl / avgdl)), float64.

    The three arrays are aligned: one entry per (document, term) pair, giving that pair's
    term frequency tf, the document's length dl (analyzed tokens) and the term's df.
    """
    tf = np.asarray(term_frequencies, np.float64)
    dl = np.asarray(document_lengths, np.float64)
    norm = k1 * (1.0 - b + b * dl / (average_length if average_length > 0 else 1.0))
    return lucene_idf(document_frequencies, num_documents) * tf * (k1 + 1.0) / (tf + norm)


class _Counts:
    """Term counts of analyzed texts as CSR arrays: row i has terms[indptr[i]:indptr[i+1]]
    (ascending term ids) with their counts, and ``lengths[i]`` analyzed tokens in all."""

    def __init__(
        self, indptr: np.ndarray, terms: np.ndarray, counts: np.ndarray, lengths: np.ndarray
    ):
        self.indptr, self.terms, self.counts, self.lengths = indptr, terms, counts, lengths

    @classmethod
    def of(cls, rows: Sequence[np.ndarray], lengths: Sequence[int], vocab_size: int) -> _Counts:
        """From each text's term ids (repeats kept; unknown terms already removed)."""
        if len(rows) == 1:  # one query: the common case of a search, kept cheap
            terms, counts = np.unique(rows[0], return_counts=True)
            return cls(
                np.asarray([0, len(terms)], np.int64),
                terms.astype(np.int32),
                counts.astype(np.int64),
                np.asarray(lengths, np.int64),
            )
        sizes = np.fromiter((len(r) for r in rows), np.int64, len(rows))
        flat = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        row_of = np.repeat(np.arange(len(rows), dtype=np.int64), sizes)
        keys, counts = np.unique(row_of * max(vocab_size, 1) + flat, return_counts=True)
        row_of_key = keys // max(vocab_size, 1)
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(np.bincount(row_of_key, minlength=len(rows)), out=indptr[1:])
        return cls(
            indptr,
            (keys % max(vocab_size, 1)).astype(np.int32),
            counts.astype(np.int64),
            np.asarray(lengths, np.int64),
        )

    def rows(self, start: int, end: int) -> _Counts:
        low, high = self.indptr[start], self.indptr[end]
        return _Counts(
            self.indptr[start : end + 1] - low,
            self.terms[low:high],
            self.counts[low:high],
            self.lengths[start:end],
        )

    def row_of_entry(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))


class BM25Encoder:
    """BM25 document weights and query vectors over the analyzed terms of a corpus.

    Create, :meth:`fit` on the corpus (document frequencies, average length, vocabulary), then
    :meth:`encode_documents` gives float BM25 weights and :meth:`encode_queries` integer query
    weights (1 per distinct term, or counts). Nothing is fitted on queries.

    Args:
        k1: term-frequency saturation (≥ 0). Default 0.9, Anserini's (bm25s's default is 1.5).
        b: length normalization in [0, 1]. Default 0.4, Anserini's (bm25s: 0.75).
        analyzer: how text becomes terms (default: :class:`Analyzer()`, bm25s's English).
        query_weighting: ``"distinct"`` (default: each distinct query term weighs 1) or
            ``"count"`` (a term weighs its number of occurrences in the query, as Lucene).

    Example::

        encoder = BM25Encoder().fit(texts)
        index = ImpactIndex.build(encoder.encode_documents(texts, ids=ids), "indexes/bm25",
                                  quantizer=encoder.quantizer(), settings=encoder.settings())
        hits = index.search(encoder.encode_queries("a query"), k=10)
    """

    kind = "bm25"

    def __init__(
        self,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        analyzer: Analyzer | None = None,
        query_weighting: QueryWeighting = "distinct",
    ):
        if (
            isinstance(k1, bool)
            or not isinstance(k1, (int, float))
            or not math.isfinite(k1)
            or k1 < 0
        ):
            raise ValueError(f"k1 must be a finite number >= 0, got {k1!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
            raise ValueError(f"b must be a number in [0, 1], got {b!r}")
        if query_weighting not in get_args(QueryWeighting):
            raise ValueError(
                f"query_weighting must be one of {get_args(QueryWeighting)}, "
                f"got {query_weighting!r}"
            )
        if analyzer is not None and not isinstance(analyzer, Analyzer):
            raise TypeError(f"analyzer must be an Analyzer, got {type(analyzer).__name__}")
        self.k1 = float(k1)
        self.b = float(b)
        self.analyzer = analyzer if analyzer is not None else Analyzer()
        self.query_weighting: QueryWeighting = query_weighting
        self._vocab: tuple[str, ...] | None = None
        self._term_ids: dict[str, int] = {}
        self._word_ids: dict[str, int] = {}
        self.document_frequencies = np.zeros(0, np.int64)
        self.num_documents = 0
        self.average_length = 0.0

    # -- fitting ----------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """True once :meth:`fit` (or a load) has set the corpus statistics."""
        return self._vocab is not None

    @property
    def vocab(self) -> tuple[str, ...]:
        """The analyzed terms of the fitted corpus, sorted: ``vocab[term_id]``."""
        self._require_fitted()
        return self._vocab

    @property
    def idf(self) -> np.ndarray:
        """Lucene's idf of every vocabulary term (float64)."""
        self._require_fitted()
        return lucene_idf(self.document_frequencies, self.num_documents)

    def fit(self, texts: str | Iterable[str], *, show_progress: bool | None = None) -> BM25Encoder:
        """Read the corpus: vocabulary, document frequencies, N and average length. Returns self."""
        self._fit_counts(texts, show_progress=show_progress)
        return self

    def _fit_counts(
        self,
        texts: str | Iterable[str],
        *,
        show_progress: bool | None = None,
        total: int | None = None,
    ) -> _Counts:
        """Fit and return the corpus's term counts (so a build analyzes the text once)."""
        if isinstance(texts, str):
            texts = [texts]
        seen: dict[str, int] = {}  # stem -> first-seen id
        word_ids: dict[str, int] = {}  # word -> its stem's first-seen id
        rows: list[np.ndarray] = []
        lengths: list[int] = []
        for text in self._progress(texts, "analyzing", show_progress, total):
            words = self.analyzer.words(_text(text, len(rows)))
            missing = list(set(words).difference(word_ids))
            if missing:
                for word, stem in zip(missing, self.analyzer.stem_words(missing)):
                    word_ids[word] = seen.setdefault(stem, len(seen))
            rows.append(np.fromiter(map(word_ids.__getitem__, words), np.int64, len(words)))
            lengths.append(len(words))
        vocab = tuple(sorted(seen))
        new_id = np.empty(len(vocab), np.int64)  # first-seen id -> id in the sorted vocabulary
        new_id[np.fromiter((seen[t] for t in vocab), np.int64, len(vocab))] = np.arange(len(vocab))
        counts = _Counts.of([new_id[r] for r in rows], lengths, len(vocab))
        self._set_statistics(
            vocab,
            np.bincount(counts.terms, minlength=len(vocab)).astype(np.int64),
            len(rows),
            float(np.mean(lengths)) if lengths else 0.0,
        )
        return counts

    def _set_statistics(
        self,
        vocab: tuple[str, ...],
        document_frequencies: np.ndarray,
        num_documents: int,
        average_length: float,
    ) -> None:
        df = np.asarray(document_frequencies, np.int64)
        if df.shape != (len(vocab),):
            raise InputError(f"{len(df)} document frequencies for {len(vocab)} terms")
        if len(df) and (df.min() < 0 or df.max() > num_documents):
            raise InputError(f"document frequencies must be in [0, {num_documents}]")
        if not (math.isfinite(average_length) and average_length >= 0):
            raise InputError(f"average length must be a finite number >= 0, got {average_length!r}")
        self._vocab = vocab
        self._term_ids = {t: i for i, t in enumerate(vocab)}
        self._word_ids = {}
        self.document_frequencies = df
        self.num_documents = int(num_documents)
        self.average_length = float(average_length)

    # -- encoding ---------------------------------------------------------------------------------

    def encode_documents(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> SparseBatch:
        """BM25 weights w(d, t) of each text (float32), with the fitted corpus statistics.

        Terms the fitted corpus never saw have no df and are left out (fit again to add them);
        they still count in the document's length.
        """
        texts = self._texts(texts, ids)
        return self._weights(self._count(texts, show_progress), ids)

    def encode_queries(
        self,
        texts: str | Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> SparseBatch:
        """Query vectors with integer weights: 1 per distinct term, or counts
        (``query_weighting="count"``). Terms outside the vocabulary are dropped."""
        texts = self._texts(texts, ids)
        counts = self._count(texts, show_progress)
        values = (
            counts.counts
            if self.query_weighting == "count"
            else np.ones(len(counts.counts), np.int64)
        )
        return SparseBatch(
            counts.indptr,
            counts.terms,
            values.astype(np.int32),
            self.vocab,
            None if ids is None else tuple(str(i) for i in ids),
        )

    def _count(self, texts: Sequence[str], show_progress: bool | None) -> _Counts:
        self._require_fitted()
        term_ids = self._term_ids
        word_ids = self._word_ids  # word -> term id or -1; replaced (never cleared) when full
        if len(word_ids) > _STEM_CACHE_LIMIT:
            word_ids = self._word_ids = {}
        rows, lengths = [], []
        for position, text in enumerate(
            self._progress(texts, "analyzing", show_progress, len(texts))
        ):
            words = self.analyzer.words(_text(text, position))
            missing = list(set(words).difference(word_ids))
            if missing:
                for word, stem in zip(missing, self.analyzer.stem_words(missing)):
                    word_ids[word] = term_ids.get(stem, -1)
            found = np.fromiter(map(word_ids.__getitem__, words), np.int64, len(words))
            rows.append(found[found >= 0])
            lengths.append(len(words))
        return _Counts.of(rows, lengths, len(self.vocab))

    def _weights(self, counts: _Counts, ids: Sequence[str] | None) -> SparseBatch:
        lengths = counts.lengths[counts.row_of_entry()]
        weights = bm25_document_weights(
            counts.counts,
            lengths,
            self.document_frequencies[counts.terms],
            num_documents=self.num_documents,
            average_length=self.average_length,
            k1=self.k1,
            b=self.b,
        )
        return SparseBatch(
            counts.indptr,
            counts.terms,
            weights.astype(np.float32),
            self.vocab,
            None if ids is None else tuple(str(i) for i in ids),
        )

    # -- quantization and records ---------------------------------------------------------------

    @property
    def max_weight(self) -> float:
        """An upper bound of every document weight: (k1 + 1) · max idf."""
        self._require_fitted()
        df = self.document_frequencies[self.document_frequencies > 0]
        return float((self.k1 + 1.0) * lucene_idf(df.min(), self.num_documents)) if len(df) else 0.0

    def quantizer(self, bits: int | None = None) -> Quantizer:
        """The quantizer of this encoder's documents.

        Default: scale :data:`BM25_SCALE` (1000), or a smaller one if :attr:`max_weight` × 1000
        would pass 65,535; ``bits=8`` or ``16``: the scale that maps :attr:`max_weight` to the
        top of that range.
        """
        top = self.max_weight
        if bits is not None:
            return Quantizer.for_max_weight(top if top > 0 else 1.0, bits)
        if top * BM25_SCALE <= _MAX_16_BIT:
            return Quantizer(scale=BM25_SCALE)
        return Quantizer.for_max_weight(top, 16)

    def settings(self) -> dict:
        """What an index records about its BM25 vectors (the manifest's build settings)."""
        self._require_fitted()
        return {
            "query_encoder": self.kind,
            "bm25": {
                "k1": self.k1,
                "b": self.b,
                "idf": "lucene",
                "tf": "tf*(k1+1)/(tf+k1*(1-b+b*dl/avgdl))",
                "query_weighting": self.query_weighting,
                "num_documents": self.num_documents,
                "average_length": self.average_length,
                "analyzer": self.analyzer.to_dict(),
            },
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the encoder to the directory ``path``: ``bm25.json`` (settings, vocabulary) and
        ``document_frequencies.npy`` (no pickle)."""
        self._require_fitted()
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        record = {
            "format": BM25_FORMAT,
            "format_version": BM25_FORMAT_VERSION,
            **self.settings(),
            "vocab": list(self.vocab),
        }
        tmp = f".tmp-{os.getpid()}"
        _write_atomic(
            directory / _DF_FILE,
            tmp,
            lambda handle: np.save(handle, self.document_frequencies, allow_pickle=False),
        )
        _write_atomic(
            directory / _SETTINGS_FILE,
            tmp,
            lambda handle: handle.write(
                json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")
            ),
        )

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device: str | None = None, **options
    ) -> BM25Encoder:
        """Load an encoder written by :meth:`save` (``options``: e.g. ``query_weighting``).

        ``device`` is accepted for the call shape every query encoder shares, and ignored:
        BM25 runs on the CPU.
        """
        directory = Path(path)
        settings_file = directory / _SETTINGS_FILE
        if not settings_file.is_file():
            raise FileNotFoundError(
                f"{settings_file} not found: {directory} is not a saved BM25Encoder"
            )
        try:
            record = json.loads(settings_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"corrupt BM25 encoder settings ({exc})", path=settings_file) from None
        if not isinstance(record, dict) or record.get("format") != BM25_FORMAT:
            raise InputError(
                f"not a BM25 encoder (format {_get(record, 'format')!r}, expected {BM25_FORMAT!r})",
                path=settings_file,
            )
        if record.get("format_version") != BM25_FORMAT_VERSION:
            raise InputError(
                f"BM25 encoder format version {record.get('format_version')!r} is "
                f"not supported (this sparse_ir reads version "
                f"{BM25_FORMAT_VERSION})",
                path=settings_file,
            )
        vocab = record.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise InputError("vocab must be a JSON list of strings", path=settings_file)
        try:
            df = np.load(directory / _DF_FILE, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"unreadable document frequencies ({exc})", path=directory / _DF_FILE
            ) from None
        if df.ndim != 1 or df.dtype.kind not in "iu":
            raise InputError(
                f"document frequencies must be a 1-d integer array, got {df.dtype} {df.shape}",
                path=directory / _DF_FILE,
            )
        return cls._from_settings(record, tuple(vocab), df, settings_file, options)

    @classmethod
    def from_index_settings(
        cls, index_path, settings: dict | None = None, **options
    ) -> BM25Encoder:
        """The encoder of a BM25 impact index, from its build ``settings`` and vocabulary.

        ``index_path`` is the index directory (or an open
        :class:`~sparse_ir.index.impact_index.ImpactIndex`); ``settings`` its ``settings``
        (read from the index when None). Queries are encoded exactly as at build time. The
        document frequencies are counted from the index's postings: exact, except for a term
        whose every weight rounded to 0 (one in nearly every document: idf ≈ 0); they only
        matter to :meth:`encode_documents`.
        """
        from sparse_ir.index.impact_index import ImpactIndex

        index = index_path if isinstance(index_path, ImpactIndex) else ImpactIndex.open(index_path)
        settings = index.settings if settings is None else settings
        if settings.get("query_encoder") != cls.kind or "bm25" not in settings:
            raise InputError(
                f"the index {index.directory} was not built by BM25Encoder "
                f"(query_encoder {settings.get('query_encoder')!r})"
            )
        record = {"query_encoder": cls.kind, **settings}
        return cls._from_settings(
            record, index.vocab, index.document_frequency(), index.directory, options
        )

    @classmethod
    def _from_settings(
        cls, record: dict, vocab: tuple[str, ...], df: np.ndarray, where: object, options: dict
    ) -> BM25Encoder:
        bm25 = record.get("bm25")
        if not isinstance(bm25, dict):
            raise InputError("missing the 'bm25' settings", path=where)
        try:
            encoder = cls(
                k1=bm25["k1"],
                b=bm25["b"],
                analyzer=Analyzer.from_dict(bm25["analyzer"]),
                query_weighting=options.pop(
                    "query_weighting", bm25.get("query_weighting", "distinct")
                ),
            )
            encoder._set_statistics(vocab, df, bm25["num_documents"], bm25["average_length"])
        except KeyError as exc:
            raise InputError(f"the BM25 settings lack {exc}", path=where) from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(exc.reason, path=where) from None
            raise InputError(f"invalid BM25 settings ({exc})", path=where) from None
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        return encoder

    # -- helpers ----------------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self._vocab is None:
            raise ValueError(
                "the BM25Encoder is not fitted: call fit(corpus_texts) first, or "
                "load one with BM25Encoder.from_pretrained(path)"
            )

    @staticmethod
    def _texts(texts: str | Sequence[str], ids: Sequence[str] | None) -> Sequence[str]:
        if isinstance(texts, str):
            texts = [texts]
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        return texts

    @staticmethod
    def _progress(texts, desc: str, show_progress: bool | None, total: int | None):
        # A bar only where it can matter: not for a query or a few (its setup costs more).
        if show_progress is False or (
            show_progress is None and total is not None and total < _PROGRESS_MIN_TEXTS
        ):
            return texts
        from tqdm.auto import tqdm

        return tqdm(
            texts,
            desc=desc,
            unit="text",
            total=total,
            leave=False,
            disable=None if show_progress is None else not show_progress,
        )

    def __repr__(self) -> str:
        fitted = (
            f"{len(self._vocab)} terms, {self.num_documents} documents"
            if self._vocab is not None
            else "not fitted"
        )
        return f"BM25Encoder(k1={self.k1}, b={self.b}, {fitted})"


def build_bm25_index(
    documents: Iterable,
    path: str | os.PathLike,
    *,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    analyzer: Analyzer | None = None,
    bits: int | None = None,
    memory_budget: int | str = "1GB",
    store_contents: bool = True,
    settings: dict | None = None,
    show_progress: bool | None = None,
    total: int | None = None,
    doc_ordered_postings: bool | None = None,
):
    """Fit BM25 on a corpus and build its :class:`~sparse_ir.index.impact_index.ImpactIndex`.

    Args:
        documents: :class:`~sparse_ir.corpus.Document` records (``id``, ``title``, ``text``;
            the analyzed text is ``full_text``: title and text; their ``metadata`` is stored).
        path: the index directory (published atomically, as every build).
        k1, b, analyzer: as :class:`BM25Encoder`.
        bits: quantize to 8 or 16 bits instead of the scale :data:`BM25_SCALE`.
        settings: extra facts for the manifest (the BM25 settings are always recorded).
        doc_ordered_postings: as :meth:`ImpactIndex.build` (True: format version 1 files too).

    Returns ``(index, encoder)``; the index records the encoder's :meth:`~BM25Encoder.settings`,
    so :meth:`BM25Encoder.from_index_settings` (and ``Searcher.from_index``) restores it.
    """
    from sparse_ir.index.impact_index import ImpactIndex

    documents = list(documents)
    encoder = BM25Encoder(k1=k1, b=b, analyzer=analyzer)
    counts = encoder._fit_counts(
        (d.full_text for d in documents), show_progress=show_progress, total=len(documents)
    )

    def shards() -> Iterator[SparseBatch]:
        for start in range(0, len(documents), _SHARD_SIZE):
            end = min(start + _SHARD_SIZE, len(documents))
            yield encoder._weights(counts.rows(start, end), [d.id for d in documents[start:end]])

    contents = ((d.title or "", d.text or "") for d in documents) if store_contents else None
    index = ImpactIndex.build(
        shards(),
        path,
        quantizer=encoder.quantizer(bits),
        memory_budget=memory_budget,
        contents=contents,
        settings={**encoder.settings(), **(settings or {})},
        show_progress=show_progress,
        total_documents=len(documents),
        metadata=(getattr(d, "metadata", None) for d in documents),
        doc_ordered_postings=doc_ordered_postings,
    )
    return index, encoder


def _text(text: object, position: int) -> str:
    if not isinstance(text, str):
        raise InputError(f"text {position} is a {type(text).__name__}, not a string")
    return text


def _get(record: object, key: str) -> object:
    return record.get(key) if isinstance(record, dict) else None


def _write_atomic(path: Path, suffix: str, write) -> None:
    tmp = path.with_name(path.name + suffix)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
