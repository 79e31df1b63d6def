"""Shared fixtures: a tiny random BERT built from a config, the bundled splade-tiny, SciFact."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from sparse_ir.eval import find_scifact
from sparse_ir.sparse_batch import SparseBatch

TINY_WORDS = (
    "the a of and to in is for on with as by at from that this it be are was "
    "cell cells protein gene genes cancer tumor patients disease risk blood brain "
    "study results increased decreased treatment effect effects human mice expression "
    "search index query document sparse dense vector term weight model learning "
    "python file read write data time number list string error value"
).split()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A random-init BertForMaskedLM (2 layers, hidden 32) with a small WordPiece vocabulary,
    saved as safetensors with its fast tokenizer: the model plumbing without the real weights."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-()")
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + TINY_WORDS
        + letters
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    )
    tokenizer = BertTokenizerFast(
        vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True
    )
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForMaskedLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def splade_tiny():
    """The bundled splade-tiny encoder (loaded once per test session)."""
    from sparse_ir.encoders.splade import SpladeEncoder

    return SpladeEncoder.from_pretrained("splade-tiny")


def in_ci() -> bool:
    """True under CI (``CI`` set, as every CI service and ``.ci/run`` do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_data(message: str) -> None:
    """Data a test needs is absent: fail in CI (which has it), skip elsewhere."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: the data must be there)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """SciFact in BEIR layout (../shared/data/scifact or $SPARSE_IR_SCIFACT)."""
    found = find_scifact()
    if found is None:
        missing_data(
            "SciFact not found: set SPARSE_IR_SCIFACT or place it at ../shared/data/scifact"
        )
    return found


class ScifactVectors(NamedTuple):
    """splade-tiny's float vectors of SciFact: the corpus and the 300 test queries."""

    documents: SparseBatch
    queries: SparseBatch


@pytest.fixture(scope="session")
def scifact_vectors(scifact_dir) -> ScifactVectors:
    """The pre-encoded splade-tiny vectors beside SciFact (``scifact-splade-tiny``: documents
    at 256 tokens, test queries at 64), as float SparseBatches over splade-tiny's vocabulary
    (the sorted tokens of the vectors when the model is not installed). Quantize as needed."""
    directory = scifact_dir.parent / "scifact-splade-tiny"
    if not (directory / "doc_vectors.json.gz").is_file():
        missing_data(f"pre-encoded splade-tiny vectors not found at {directory}")
    with gzip.open(directory / "doc_vectors.json.gz", "rt", encoding="utf-8") as handle:
        docs = json.load(handle)
    with gzip.open(directory / "query_vectors.json.gz", "rt", encoding="utf-8") as handle:
        queries = json.load(handle)
    tokens = {t for v in docs.values() for t in v} | {t for v in queries.values() for t in v}
    vocab = _splade_tiny_vocab(tokens)
    return ScifactVectors(
        SparseBatch.from_dicts(docs.values(), vocab, ids=list(docs)),
        SparseBatch.from_dicts(queries.values(), vocab, ids=list(queries)),
    )


def _splade_tiny_vocab(tokens: set[str]) -> tuple[str, ...]:
    """splade-tiny's vocabulary (from its tokenizer file), or the sorted tokens without it."""
    from sparse_ir.errors import MissingDependencyError

    try:
        from tokenizers import Tokenizer

        from sparse_ir.encoders.registry import resolve_model

        path = os.path.join(resolve_model("splade-tiny"), "tokenizer.json")
        by_id = {i: t for t, i in Tokenizer.from_file(path).get_vocab().items()}
        return tuple(by_id[i] for i in range(len(by_id)))
    except (MissingDependencyError, ImportError):
        return tuple(sorted(tokens))


@pytest.fixture(scope="session")
def scifact_docs(scifact_dir):
    """The SciFact corpus as a list of Documents."""
    from sparse_ir.corpus import load_corpus

    return load_corpus(scifact_dir / "corpus.jsonl")


def random_batch(
    rng: np.random.Generator,
    rows: int,
    vocab_size: int,
    max_terms: int,
    integer: bool = False,
    ids: bool = True,
):
    """A random SparseBatch (float weights in (0, 3], or integer impacts in [1, 300])."""
    indptr = [0]
    indices, values = [], []
    for _ in range(rows):
        n = int(rng.integers(0, max_terms + 1))
        terms = np.sort(rng.choice(vocab_size, size=min(n, vocab_size), replace=False))
        indices.extend(terms.tolist())
        if integer:
            values.extend(rng.integers(1, 301, size=len(terms)).tolist())
        else:
            values.extend((rng.random(len(terms)) * 3 + 1e-3).tolist())
        indptr.append(len(indices))
    vocab = tuple(f"t{i}" for i in range(vocab_size))
    return SparseBatch(
        np.array(indptr),
        np.array(indices, np.int32),
        np.array(values, np.int32 if integer else np.float32),
        vocab,
        tuple(f"doc{i}" for i in range(rows)) if ids else None,
    )


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
