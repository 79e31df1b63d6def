"""Encoding with worker processes: the same vectors and counts as one process, from the API
and from the ``--processes`` option of the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_ir.cli import main
from sparse_ir.encoders.parallel import ParallelSpladeEncoder
from sparse_ir.encoders.splade import EncodeStats, SpladeEncoder
from sparse_ir.index.impact_index import ImpactIndex

TEXTS = [
    "the cancer cells in mice",
    "",
    "blood risk of the disease increased " * 9,
    "python file read error",
    "gene expression in human brain",
    "a",
    "   ",
    "study results of patients with cancer",
    "human brain cells",
]


def _dense(batch):
    return batch.to_scipy().toarray()


def test_workers_give_the_single_process_vectors_and_counts(tiny_bert_dir):
    single = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32")
    expected_stats = EncodeStats()
    expected = single.encode(
        TEXTS,
        max_length=16,
        ids=[f"d{i}" for i in range(len(TEXTS))],
        max_active_dims=5,
        show_progress=False,
        stats=expected_stats,
    )
    with ParallelSpladeEncoder(
        str(tiny_bert_dir), processes=2, threads=1, chunk_size=2, precision="float32"
    ) as parallel:
        assert parallel.precision == "float32" and parallel.pooling == "max"
        assert parallel.vocab == single.vocab
        stats = EncodeStats()
        got = parallel.encode(
            TEXTS,
            max_length=16,
            ids=[f"d{i}" for i in range(len(TEXTS))],
            max_active_dims=5,
            show_progress=False,
            stats=stats,
        )
        assert got.ids == expected.ids
        np.testing.assert_allclose(_dense(got), _dense(expected), atol=1e-5)
        assert stats == expected_stats  # texts, empty and truncated texts, tokens
        assert stats.empty_texts == 2 and stats.truncated_texts == 1
        queries = parallel.encode_queries(["cancer cells"], show_progress=False)
        np.testing.assert_allclose(
            _dense(queries),
            _dense(single.encode_queries(["cancer cells"], show_progress=False)),
            atol=1e-5,
        )
        assert len(parallel.encode_documents([], show_progress=False)) == 0
        with pytest.raises(ValueError, match="2 ids for 1 texts"):
            parallel.encode(["x"], max_length=8, ids=["a", "b"])
        with pytest.raises(TypeError, match="not one string"):
            parallel.encode("one string", max_length=8)


def test_index_command_with_processes_builds_the_same_index(tmp_path, tiny_bert_dir, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"c{i}", "title": "", "text": t}) + "\n"
            for i, t in enumerate(TEXTS)
            if t.strip()
        )
    )
    common = [
        "index",
        "--input",
        str(corpus),
        "--model",
        str(tiny_bert_dir),
        "--precision",
        "float32",
    ]
    assert main(common + ["--output", str(tmp_path / "one")]) == 0
    assert main(common + ["--output", str(tmp_path / "two"), "--processes", "2"]) == 0
    one, two = ImpactIndex.open(tmp_path / "one"), ImpactIndex.open(tmp_path / "two")
    assert one.doc_ids == two.doc_ids
    assert one.num_postings == two.num_postings
    assert one.search({"cancer": 1.0, "brain": 1.0}, 3) == two.search(
        {"cancer": 1.0, "brain": 1.0}, 3
    )
    capsys.readouterr()
    assert (
        main(common + ["--output", str(tmp_path / "gpu"), "--processes", "2", "--device", "cuda"])
        != 0
    )
    assert "--processes runs CPU workers" in capsys.readouterr().err
