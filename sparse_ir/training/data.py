"""Training data: (query, positives, hard negatives, [teacher scores]) examples and their sources.

Two sources:

* a BEIR split (``corpus.jsonl``, ``queries.jsonl``, ``qrels/train.tsv``): one example per
  judged query, every document judged relevant (> 0) a positive; hard negatives are mined
  separately (:mod:`sparse_ir.training.negatives`);
* a JSONL file, one object per line::

      {"query": "...", "positive": "..." | ["...", ...], "negatives": ["...", ...],
       "teacher_scores": [s(positive), s(neg 1), ...], "query_id": "..."}

  ``negatives``, ``teacher_scores`` and ``query_id`` are optional; teacher scores need exactly
  one positive and one score per (positive, negative).

Batches are drawn in a fixed order derived from the seed and the epoch alone, so a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sparse_ir.corpus import Document, Query
from sparse_ir.errors import InputError

__all__ = [
    "Batch",
    "BatchSampler",
    "TrainingExample",
    "ValidationSet",
    "examples_from_beir",
    "read_examples",
    "split_validation",
    "validation_corpus",
]


class TrainingExample(NamedTuple):
    """One training query.

    Attributes:
        query_id: the query's id (for BEIR data, its id in ``queries.jsonl``).
        query: the query text.
        positives: texts of the relevant documents (one is drawn per epoch).
        negatives: texts of hard negatives, best-ranked first (n are drawn per step).
        teacher_scores: the teacher's scores of ``(positives[0], *negatives)``, or None.
        positive_ids, negative_ids: document ids of the texts when known (BEIR data).
    """

    query_id: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    teacher_scores: tuple[float, ...] | None = None
    positive_ids: tuple[str, ...] = ()
    negative_ids: tuple[str, ...] = ()


@dataclass
class ValidationSet:
    """Held-out queries with their judgements and the documents searched for them.

    ``corpus`` may be a sample of the full collection (see :func:`validation_corpus`): nDCG@10
    on a sample is higher than on the full corpus and is meant for comparing checkpoints.
    """

    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    corpus: list[Document]


class Batch(NamedTuple):
    """The texts of one step: B queries, their B positives and B·n negatives (query-major)."""

    queries: list[str]
    positives: list[str]
    negatives: list[str]
    teacher_scores: list[list[float]] | None


def examples_from_beir(
    queries: Sequence[Query],
    qrels: Mapping[str, Mapping[str, int]],
    corpus: Mapping[str, Document],
    negatives: Mapping[str, Sequence[str]] | None = None,
) -> list[TrainingExample]:
    """One example per judged query with at least one relevant document in ``corpus``.

    Args:
        queries: the split's queries.
        qrels: ``{query_id: {doc_id: relevance}}``; relevance > 0 marks a positive.
        corpus: ``{doc_id: Document}``.
        negatives: ``{query_id: [doc_id, ...]}`` mined hard negatives, best first (positives
            are removed again here, whatever the miner did).

    Raises:
        InputError: when a judged document is missing from the corpus.
    """
    examples = []
    for query in queries:
        judged = qrels.get(query.id, {})
        positive_ids = tuple(d for d, r in judged.items() if r > 0)
        if not positive_ids:
            continue
        missing = [d for d in positive_ids if d not in corpus]
        if missing:
            raise InputError(
                f"query {query.id}: relevant document(s) {missing[:3]} are not in the corpus"
            )
        negative_ids = tuple(
            d for d in (negatives or {}).get(query.id, ()) if d not in judged and d in corpus
        )
        examples.append(
            TrainingExample(
                query.id,
                query.text,
                tuple(corpus[d].full_text for d in positive_ids),
                tuple(corpus[d].full_text for d in negative_ids),
                None,
                positive_ids,
                negative_ids,
            )
        )
    return examples


def read_examples(path: str | os.PathLike) -> list[TrainingExample]:
    """Read training examples from JSONL (format in the module docstring).

    Raises:
        InputError: naming the file, the line and the rule broken (missing or empty query or
            positive, non-string texts, teacher scores of the wrong length or not finite).
    """
    from sparse_ir.jsonl import read_jsonl

    examples = []
    for line, record in read_jsonl(path):

        def fail(reason: str, line: int = line) -> InputError:
            return InputError(reason, path=path, line=line)

        unknown = set(record) - {
            "query",
            "positive",
            "positives",
            "negatives",
            "teacher_scores",
            "query_id",
        }
        if unknown:
            raise fail(
                f"unknown field(s) {sorted(unknown)}; expected query, positive, "
                "negatives, teacher_scores, query_id"
            )
        query = record.get("query")
        if not isinstance(query, str) or not query.strip():
            raise fail("'query' must be a non-empty string")
        positive = record.get("positive", record.get("positives"))
        positives = [positive] if isinstance(positive, str) else positive
        if (
            not isinstance(positives, list)
            or not positives
            or not all(isinstance(p, str) and p.strip() for p in positives)
        ):
            raise fail("'positive' must be a non-empty string or a list of them")
        negatives = record.get("negatives", [])
        if not isinstance(negatives, list) or not all(
            isinstance(n, str) and n.strip() for n in negatives
        ):
            raise fail("'negatives' must be a list of non-empty strings")
        teacher = record.get("teacher_scores")
        if teacher is not None:
            if len(positives) != 1:
                raise fail("'teacher_scores' needs exactly one positive")
            if not isinstance(teacher, list) or len(teacher) != 1 + len(negatives):
                raise fail(
                    f"'teacher_scores' must list {1 + len(negatives)} numbers (the "
                    "positive's, then one per negative)"
                )
            if not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s)
                for s in teacher
            ):
                raise fail("'teacher_scores' must be finite numbers")
            teacher = tuple(float(s) for s in teacher)
        query_id = record.get("query_id", str(line))
        if not isinstance(query_id, (str, int)) or isinstance(query_id, bool):
            raise fail("'query_id' must be a string or an integer")
        examples.append(
            TrainingExample(str(query_id), query, tuple(positives), tuple(negatives), teacher)
        )
    if not examples:
        raise InputError("no training examples", path=path)
    return examples


def split_validation(
    examples: Sequence[TrainingExample], size: float, seed: int
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Hold out ``size`` examples (a count, or a fraction when < 1) chosen by ``seed``.

    Returns ``(train, validation)``, each in the input order.
    """
    count = round(size * len(examples)) if isinstance(size, float) and size < 1 else int(size)
    if not 0 <= count < len(examples):
        raise ValueError(f"cannot hold out {count} of {len(examples)} examples for validation")
    chosen = set(
        np.random.default_rng([seed, 7]).choice(len(examples), count, replace=False).tolist()
    )
    train = [e for i, e in enumerate(examples) if i not in chosen]
    validation = [e for i, e in enumerate(examples) if i in chosen]
    return train, validation


def validation_corpus(
    corpus: Sequence[Document], examples: Sequence[TrainingExample], *, size: int | None, seed: int
) -> list[Document]:
    """The documents searched during validation: the full corpus, or a sample of ``size``.

    A sample keeps every positive of the validation queries, then their mined negatives rank by
    rank (every query's first, then every query's second, ...: the documents that compete with
    the positives) while room is left, and fills the rest with documents drawn by ``seed``. The
    sample has ``max(size, number of positives)`` documents, in corpus order.
    """
    if size is None or size >= len(corpus):
        return list(corpus)
    keep_ids = {d for e in examples for d in e.positive_ids}
    deepest = max((len(e.negative_ids) for e in examples), default=0)
    for rank in range(deepest):
        for example in examples:
            if len(keep_ids) >= size:
                break
            if rank < len(example.negative_ids):
                keep_ids.add(example.negative_ids[rank])
    rest = [i for i, d in enumerate(corpus) if d.id not in keep_ids]
    fill = max(0, size - len(keep_ids))
    drawn = np.random.default_rng([seed, 11]).choice(len(rest), min(fill, len(rest)), replace=False)
    keep = {rest[i] for i in drawn.tolist()}
    return [d for i, d in enumerate(corpus) if d.id in keep_ids or i in keep]


def validation_from_examples(examples: Sequence[TrainingExample]) -> ValidationSet:
    """A validation set built from examples alone (JSONL data): their positives and negatives
    form the corpus, the positives are the judgements."""
    texts: dict[str, str] = {}
    queries, qrels = [], {}
    for example in examples:
        judged = qrels.setdefault(example.query_id, {})
        for relevance, group in ((1, example.positives), (0, example.negatives)):
            for text in group:
                doc_id = texts.setdefault(text, f"d{len(texts)}")
                judged[doc_id] = max(judged.get(doc_id, 0), relevance)
        queries.append(Query(example.query_id, example.query))
    corpus = [Document(doc_id, "", text) for text, doc_id in texts.items()]
    return ValidationSet(queries, qrels, corpus)


class BatchSampler:
    """Which texts form step t's batch: a pure function of (seed, step).

    Epoch e visits the examples in the order of a permutation drawn from (seed, e); each visit
    draws one of the example's positives and ``negatives`` of its hard negatives (among the
    first ``negative_depth``) from (seed, e, example). Examples with fewer hard negatives than
    needed are completed with other examples' hard negatives (random documents for them), so
    every batch has the same shape; distillation losses need teacher scores for every
    negative and so require enough negatives in every example (checked by the trainer).
    """

    def __init__(
        self,
        examples: Sequence[TrainingExample],
        *,
        batch_size: int,
        negatives: int,
        seed: int,
        negative_depth: int | None = None,
    ):
        if batch_size < 1 or batch_size > len(examples):
            raise ValueError(
                f"batch_size must be in [1, {len(examples)}] (the number of "
                f"training examples), got {batch_size}"
            )
        if negatives < 0:
            raise ValueError(f"negatives must be >= 0, got {negatives}")
        if negatives and not any(e.negatives for e in examples):
            raise ValueError(
                f"{negatives} hard negative(s) per query asked, but no example "
                "has any: mine them (negatives='bm25' or 'index') or use 0"
            )
        self.examples = list(examples)
        self.batch_size = batch_size
        self.negatives = negatives
        self.seed = seed
        self.negative_depth = negative_depth
        self.steps_per_epoch = len(self.examples) // batch_size
        self._pool = [i for i, e in enumerate(self.examples) if e.negatives]
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            }
        return self._orders[epoch]

    def batch(self, step: int) -> Batch:
        """The batch of micro-step ``step`` (0-based; the last partial batch of an epoch is
        dropped so every batch has ``batch_size`` queries)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        chosen = self._order(epoch)[position * self.batch_size : (position + 1) * self.batch_size]
        queries, positives, negatives, teacher = [], [], [], []
        for index in chosen.tolist():
            example = self.examples[index]
            rng = np.random.default_rng([self.seed, epoch, index])
            positive = int(rng.integers(len(example.positives)))
            queries.append(example.query)
            positives.append(example.positives[positive])
            picked = self._negatives(example, rng)
            negatives.extend(text for text, _ in picked)
            if example.teacher_scores is not None:
                teacher.append([example.teacher_scores[0]] + [s for _, s in picked])
        teacher_scores = teacher if len(teacher) == len(queries) else None
        return Batch(queries, positives, negatives, teacher_scores)

    def _negatives(
        self, example: TrainingExample, rng: np.random.Generator
    ) -> list[tuple[str, float]]:
        if not self.negatives:
            return []
        depth = (
            len(example.negatives)
            if self.negative_depth is None
            else min(self.negative_depth, len(example.negatives))
        )
        scores = example.teacher_scores
        picked = []
        if depth:
            for i in rng.choice(depth, min(depth, self.negatives), replace=False).tolist():
                picked.append(
                    (example.negatives[i], scores[1 + i] if scores is not None else math.nan)
                )
        while len(picked) < self.negatives:
            other = self.examples[self._pool[int(rng.integers(len(self._pool)))]]
            picked.append((other.negatives[int(rng.integers(len(other.negatives)))], math.nan))
        return picked
