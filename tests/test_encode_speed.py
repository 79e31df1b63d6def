"""Encoding speed options: the int8 transformer (close to float32), one thread for small
batches (the same vectors), worker processes picked by ``--processes auto``, and their
validation and help."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparse_ir.cli import main
from sparse_ir.encoders import parallel
from sparse_ir.encoders.parallel import AUTO_PROCESSES_MIN_TEXTS, auto_processes
from sparse_ir.encoders.splade import SpladeEncoder, quantized_copy

TEXTS = [
    "the cancer cells in mice",
    "blood risk of the disease increased in patients " * 9,
    "",
    "python file read error",
    "gene expression in human brain study results",
]


@pytest.fixture(scope="module")
def exact(tiny_bert_dir):
    return SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32")


def test_int8_stays_close_to_float32_on_tiny_bert(exact):
    """Dynamic int8 of the transformer: weights within 1% of the largest float32 weight, and
    at most 1% of the terms appear or vanish."""
    fast = SpladeEncoder(exact.model, exact.tokenizer, precision="int8")
    assert fast.precision == "int8" and fast.model is not exact.model
    a = exact.encode(TEXTS * 3, max_length=32, show_progress=False).to_scipy().toarray()
    b = fast.encode(TEXTS * 3, max_length=32, show_progress=False).to_scipy().toarray()
    # Measured: 1.5e-4 at most (weights up to 0.31), no term appearing or vanishing.
    assert np.abs(a - b).max() < 0.01 * a.max(), np.abs(a - b).max()
    changed = (a > 0) != (b > 0)
    assert changed.sum() <= 0.01 * (a > 0).sum()
    # The caller's model is untouched: float32 weights, same vectors as before.
    assert isinstance(exact.model.bert.encoder.layer[0].output.dense, torch.nn.Linear)
    again = exact.encode(TEXTS * 3, max_length=32, show_progress=False).to_scipy().toarray()
    assert np.array_equal(a, again)


def test_int8_quantizes_the_body_only(exact):
    fast = quantized_copy(exact.model)
    dense = fast.bert.encoder.layer[0].intermediate.dense
    assert dense.__module__.endswith("quantized.dynamic.modules.linear")
    head = fast.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight.dtype == torch.float32
    assert torch.equal(head.weight, exact.model.get_output_embeddings().weight)


def test_int8_needs_a_model_with_a_body():
    with pytest.raises(ValueError, match="base_model"):
        quantized_copy(torch.nn.Linear(4, 4))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "int8", "device": "meta"}, "CPUs only"),
        ({"single_thread_tokens": -1}, "single_thread_tokens must be an integer >= 0"),
        ({"single_thread_tokens": 1.5}, "single_thread_tokens"),
    ],
)
def test_invalid_speed_options(tiny_bert_dir, options, message):
    with pytest.raises(ValueError, match=message):
        SpladeEncoder.from_pretrained(str(tiny_bert_dir), **options)


def test_small_batches_run_on_one_thread_with_the_same_vectors(exact, monkeypatch):
    seen = []
    real = SpladeEncoder._encode_token_batch

    def spy(self, token_ids):
        seen.append(torch.get_num_threads())
        return real(self, token_ids)

    monkeypatch.setattr(SpladeEncoder, "_encode_token_batch", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = exact.encode_queries(["cancer cells in mice"], show_progress=False)
        assert seen == [1] and torch.get_num_threads() == 2  # restored after the batch
        # every thread whatever the machine does (the former default; see test_threads for
        # the threads fitted to the free cores)
        every = SpladeEncoder(
            exact.model, exact.tokenizer, single_thread_tokens=0, adapt_threads=False
        )
        every.precision, every._screened = exact.precision, exact._screened
        two = every.encode_queries(["cancer cells in mice"], show_progress=False)
        assert seen == [1, 2]
        fixed = SpladeEncoder(exact.model, exact.tokenizer, adapt_threads=False)
        fixed.precision, fixed._screened = exact.precision, exact._screened
        long = fixed.encode_documents([TEXTS[1]] * 8, show_progress=False)  # > 256 tokens
        assert seen[-1] == 2 and len(long) == 8
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(one.to_scipy().toarray(), two.to_scipy().toarray(), atol=1e-6)


def test_auto_processes_follows_the_input_size_and_the_cores(monkeypatch):
    monkeypatch.setattr(parallel, "usable_cores", lambda: 4)
    assert auto_processes(None) == 1
    assert auto_processes(AUTO_PROCESSES_MIN_TEXTS - 1) == 1
    assert auto_processes(AUTO_PROCESSES_MIN_TEXTS) == 4
    assert auto_processes(10**6, "cuda") == 1
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    assert auto_processes(10**6) == 1


def test_processes_option_validation_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto = one single-threaded worker per core" in text
    assert "(default: auto)" in text
    assert "int8 = the transformer's linear layers in int8" in text
    with pytest.raises(SystemExit):
        main(["index", "--input", "x", "--output", "y", "--processes", "many"])
    assert "must be 'auto' or a positive integer, got 'many'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["index", "--input", "x", "--output", "y", "--processes", "0"])
    assert "must be 'auto' or a positive integer" in capsys.readouterr().err


def test_index_command_accepts_int8_and_auto_processes(tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"c{i}", "title": "", "text": t}) + "\n"
            for i, t in enumerate(TEXTS)
            if t.strip()
        )
    )
    output = tmp_path / "index"
    arguments = ["index", "--input", str(corpus), "--output", str(output)]
    arguments += ["--model", str(tiny_bert_dir), "--precision", "int8", "--processes", "auto"]
    assert main(arguments) == 0
    from sparse_ir.index.impact_index import ImpactIndex

    index = ImpactIndex.open(output)
    assert index.num_documents == 4 and index.settings["precision"] == "int8"


def test_dense_queries_run_on_one_thread_with_the_same_vectors(tiny_bert_dir, monkeypatch):
    from sparse_ir.encoders.dense import DenseEncoder

    with pytest.raises(ValueError, match="single_thread_tokens must be an integer >= 0"):
        DenseEncoder.from_pretrained(tiny_bert_dir, single_thread_tokens=-2)
    one = DenseEncoder.from_pretrained(tiny_bert_dir, max_length=16)
    every = DenseEncoder.from_pretrained(
        tiny_bert_dir, max_length=16, single_thread_tokens=0, adapt_threads=False
    )
    seen = []
    real = DenseEncoder._encode_token_batch

    def spy(self, token_ids):
        seen.append(torch.get_num_threads())
        return real(self, token_ids)

    monkeypatch.setattr(DenseEncoder, "_encode_token_batch", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = one.encode_queries(["cancer cells in mice"], show_progress=False)
        b = every.encode_queries(["cancer cells in mice"], show_progress=False)
    finally:
        torch.set_num_threads(previous)
    assert seen == [1, 2]
    np.testing.assert_allclose(a, b, atol=1e-6)
