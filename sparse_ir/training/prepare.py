"""From files to what the trainer takes: examples with hard negatives and a validation set.

:func:`prepare_beir` reads a BEIR split, holds out validation queries (or reads a separate
validation split), mines hard negatives and samples the validation corpus;
:func:`prepare_jsonl` does the same for a JSONL file of examples.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

from sparse_ir.corpus import Document
from sparse_ir.training.data import (
    TrainingExample,
    ValidationSet,
    examples_from_beir,
    read_examples,
    split_validation,
    validation_corpus,
    validation_from_examples,
)

__all__ = ["NegativeSource", "Prepared", "prepare_beir", "prepare_jsonl"]

logger = logging.getLogger(__name__)

NegativeSource = Literal["bm25", "index", "none"]


@dataclass
class Prepared:
    """Training examples, the validation set (or None) and the corpus texts (for IDF)."""

    examples: list[TrainingExample]
    validation: ValidationSet | None
    corpus: list[Document]
    description: dict


def prepare_beir(
    data_dir: str | os.PathLike,
    *,
    split: str = "train",
    holdout: float = 0.1,
    validation_split: str | None = None,
    validation_corpus_size: int | None = None,
    negatives_from: NegativeSource = "bm25",
    negative_depth: int = 30,
    seed: int = 0,
    document_encoder=None,
    query_encoder=None,
    work_dir: str | os.PathLike | None = None,
    show_progress: bool | None = None,
) -> Prepared:
    """Examples of a BEIR split with mined negatives, and held-out validation queries.

    Args:
        data_dir: BEIR dataset directory (``corpus.jsonl``, ``queries.jsonl``, ``qrels/``).
        split: the training split (``train``). Never pass the split you report results on.
        holdout: training queries held out for validation (count, or fraction when < 1);
            ignored when ``validation_split`` is given; 0 = no validation.
        validation_split: a separate split to validate on (e.g. ``dev``).
        validation_corpus_size: search a sample of this many documents during validation
            (every judged and mined document of the validation queries is kept); None = all.
        negatives_from: ``"bm25"``, ``"index"`` (the current model, needs the encoders) or
            ``"none"``.
        negative_depth: negatives mined per query.
    """
    from sparse_ir.eval import load_beir

    dataset = load_beir(data_dir, split)
    corpus = dataset.corpus
    queries, qrels = dataset.queries, dataset.qrels
    validation_queries, validation_qrels = [], {}
    if validation_split is not None:
        if validation_split == split:
            raise ValueError(f"validation split {validation_split!r} is the training split")
        held = load_beir(data_dir, validation_split)
        validation_queries, validation_qrels = held.queries, held.qrels
    mined = _mine_negatives(
        list(queries) + list(validation_queries),
        corpus,
        {**qrels, **validation_qrels},
        negatives_from=negatives_from,
        negative_depth=negative_depth,
        document_encoder=document_encoder,
        query_encoder=query_encoder,
        work_dir=work_dir,
        show_progress=show_progress,
    )
    by_id = {d.id: d for d in corpus}
    examples = examples_from_beir(queries, qrels, by_id, mined)
    validation = None
    if validation_split is not None:
        held_examples = examples_from_beir(validation_queries, validation_qrels, by_id, mined)
    elif holdout:
        examples, held_examples = split_validation(examples, holdout, seed)
    else:
        held_examples = []
    if held_examples:
        held_ids = {e.query_id for e in held_examples}
        source_qrels = validation_qrels if validation_split is not None else qrels
        validation = ValidationSet(
            [q for q in (validation_queries or queries) if q.id in held_ids],
            {q: dict(source_qrels[q]) for q in held_ids},
            validation_corpus(corpus, held_examples, size=validation_corpus_size, seed=seed),
        )
    description = {
        "source": "beir",
        "path": str(data_dir),
        "split": split,
        "validation_split": validation_split,
        "holdout": holdout,
        "validation_queries": len(held_examples),
        "validation_documents": len(validation.corpus) if validation else 0,
        "negatives_from": negatives_from,
        "negative_depth": negative_depth,
        "training_queries": len(examples),
    }
    logger.info(
        "%d training queries, %d validation queries over %d documents",
        len(examples),
        len(held_examples),
        description["validation_documents"],
    )
    return Prepared(examples, validation, corpus, description)


def _mine_negatives(
    every_query,
    corpus,
    every_qrels,
    *,
    negatives_from,
    negative_depth,
    document_encoder,
    query_encoder,
    work_dir,
    show_progress,
) -> dict[str, list[str]]:
    """Hard negatives of every query (training and validation), as ``negatives_from`` says."""
    from sparse_ir.training.negatives import mine_bm25_negatives, mine_index_negatives

    mined: dict[str, list[str]] = {}
    if negatives_from == "bm25":
        mined = mine_bm25_negatives(
            every_query, corpus, every_qrels, depth=negative_depth, show_progress=show_progress
        )
    elif negatives_from == "index":
        if document_encoder is None or query_encoder is None:
            raise ValueError("negatives_from='index' needs the document and query encoders")
        mined = mine_index_negatives(
            document_encoder,
            query_encoder,
            every_query,
            corpus,
            every_qrels,
            depth=negative_depth,
            work_dir=work_dir,
            show_progress=show_progress,
        )
    elif negatives_from != "none":
        raise ValueError(
            f"negatives_from must be 'bm25', 'index' or 'none', got {negatives_from!r}"
        )
    return mined


def prepare_jsonl(path: str | os.PathLike, *, holdout: float = 0.1, seed: int = 0) -> Prepared:
    """Examples from a JSONL file; the held-out ones become a validation set whose corpus is
    their own positives and negatives."""
    examples = read_examples(path)
    validation = None
    if holdout:
        examples, held = split_validation(examples, holdout, seed)
        validation = validation_from_examples(held)
    texts = {t for e in examples for t in (*e.positives, *e.negatives)}
    corpus = [Document(f"t{i}", "", t) for i, t in enumerate(sorted(texts))]
    description = {
        "source": "jsonl",
        "path": str(path),
        "holdout": holdout,
        "training_queries": len(examples),
        "validation_queries": len(validation.queries) if validation else 0,
    }
    return Prepared(examples, validation, corpus, description)
