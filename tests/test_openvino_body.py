"""The transformer body on OpenVINO (``runtime="openvino"``): its vectors against PyTorch's
float32 ones on real splade-tiny and SciFact text, the content-keyed cache of converted bodies
(reuse, a changed weight, a damaged file), and the errors for what it cannot do."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys

import numpy as np
import pytest
import torch
from conftest import in_ci

from sparse_ir.corpus import load_corpus
from sparse_ir.encoders.openvino_body import OpenVinoBody, cache_root, model_key
from sparse_ir.encoders.splade import SpladeEncoder
from sparse_ir.errors import MissingDependencyError


@pytest.fixture(scope="module", autouse=True)
def openvino_installed():
    if importlib.util.find_spec("openvino") is None:
        message = "openvino is not installed (pip install 'sparse-ir[openvino]')"
        if in_ci():
            pytest.fail(f"{message}; CI installs every extra", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def scifact_texts(scifact_dir):
    return [d.full_text for d in load_corpus(scifact_dir / "corpus.jsonl")[:48]]


@pytest.fixture(scope="module")
def float32_vectors(splade_tiny, scifact_texts):
    exact = SpladeEncoder(splade_tiny.model, splade_tiny.tokenizer, precision="float32")
    return exact.encode_documents(scifact_texts, show_progress=False).to_scipy().toarray()


def encode(encoder, texts):
    return encoder.encode_documents(texts, show_progress=False).to_scipy().toarray()


def top_agreement(exact: np.ndarray, fast: np.ndarray, k: int = 64) -> np.ndarray:
    """Per document: the share of its k heaviest exact terms among its k heaviest fast ones."""
    shares = []
    for a, b in zip(exact, fast):
        depth = min(k, int((a > 0).sum()))
        top_a = set(np.argsort(-a, kind="stable")[:depth].tolist())
        top_b = set(np.argsort(-b, kind="stable")[:depth].tolist())
        shares.append(len(top_a & top_b) / max(depth, 1))
    return np.array(shares)


def test_float32_body_equals_pytorch_on_splade_tiny(
    splade_tiny, scifact_texts, float32_vectors, tmp_path
):
    """A float32 OpenVINO body gives the float32 weights to float32 rounding (measured 5.6e-6
    on 48 SciFact documents at 256 tokens), the same active terms, in "float32" and "mixed"."""
    for precision in ("float32", "mixed"):
        encoder = SpladeEncoder(
            splade_tiny.model,
            splade_tiny.tokenizer,
            precision=precision,
            runtime="openvino",
            cache_dir=tmp_path,
        )
        assert encoder.runtime == "openvino" and encoder._body.hint == "f32"
        vectors = encode(encoder, scifact_texts)
        assert np.abs(vectors - float32_vectors).max() < 1e-4
        changed = (vectors > 0) != (float32_vectors > 0)
        assert changed.sum() <= 1e-3 * (float32_vectors > 0).sum()


def test_bfloat16_body_stays_close_to_float32(
    splade_tiny, scifact_texts, float32_vectors, tmp_path
):
    """bfloat16 products in the body: every weight within 0.1 of float32's (measured 0.041;
    weights reach ~3), and on average >= 97% of each document's 64 heaviest float32 terms
    among its own 64 heaviest (lowest document >= 85%)."""
    encoder = SpladeEncoder(
        splade_tiny.model,
        splade_tiny.tokenizer,
        precision="bfloat16",
        runtime="openvino",
        cache_dir=tmp_path,
    )
    assert encoder._body.hint == "bf16"
    vectors = encode(encoder, scifact_texts)
    assert np.abs(vectors - float32_vectors).max() < 0.1
    shares = top_agreement(float32_vectors, vectors)
    assert shares.mean() >= 0.97 and shares.min() >= 0.85, (shares.mean(), shares.min())


def test_one_query_runs_on_one_thread(splade_tiny, tmp_path):
    """A one-query batch runs the body compiled for one thread (as PyTorch's one_thread)."""
    encoder = SpladeEncoder(
        splade_tiny.model, splade_tiny.tokenizer, runtime="openvino", cache_dir=tmp_path
    )
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batch = encoder.encode_queries(["what causes muscle cramps"], show_progress=False)
    finally:
        torch.set_num_threads(previous)
    assert set(encoder._body._compiled) == {1} and batch.indptr[1] > 0


def test_cache_is_reused_and_keyed_by_content(tiny_bert_dir, tmp_path, caplog):
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    first = OpenVinoBody(model, "float32", cache_dir=tmp_path)
    second = OpenVinoBody(model, "bfloat16", cache_dir=tmp_path)
    assert first.entry.converted and not second.entry.converted
    assert first.entry.directory == second.entry.directory
    ids = torch.tensor([[2, 20, 21, 3], [2, 22, 3, 0]])
    mask = (ids != 0).long()
    before = first(ids, mask)

    # A changed weight is another model: a new entry, and hidden states of the new weights.
    weight = model.bert.encoder.layer[0].output.dense.weight
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = original + 1.0
    changed = OpenVinoBody(model, "float32", cache_dir=tmp_path)
    assert changed.entry.converted and changed.entry.directory != first.entry.directory
    assert not torch.allclose(changed(ids, mask), before)
    with torch.no_grad():
        weight[0, 0] = original

    # A damaged file is never read: the entry is converted again, with a warning.
    data = first.entry.directory / "body.bin"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="sparse_ir.encoders.openvino_body"):
        repaired = OpenVinoBody(model, "float32", cache_dir=tmp_path)
    assert repaired.entry.converted and repaired.entry.directory == first.entry.directory
    assert "does not match its recorded SHA-256" in caplog.text
    assert torch.allclose(repaired(ids, mask), before, atol=1e-6)
    # No staging or stale directories are left beside the entries.
    assert sorted(p.name.startswith(".") for p in tmp_path.iterdir()) == [False, False]


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("body.bin", "/dev/zero", "body.bin"),
        ("manifest.json", "/dev/zero", "unreadable manifest"),
    ],
)
def test_a_hostile_cache_entry_is_rebuilt_not_read(
    tiny_bert_dir, tmp_path, caplog, name, target, message
):
    # A symbolic link to /dev/zero would never finish hashing or parsing: it is refused by a
    # stat() before anything is opened, and the entry is converted again.
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    first = OpenVinoBody(model, "float32", cache_dir=tmp_path)
    path = first.entry.directory / name
    path.unlink()
    path.symlink_to(target)
    with caplog.at_level(logging.WARNING, logger="sparse_ir.encoders.openvino_body"):
        repaired = OpenVinoBody(model, "float32", cache_dir=tmp_path)
    assert repaired.entry.converted and message in caplog.text
    assert not (repaired.entry.directory / name).is_symlink()


def test_key_covers_weights_and_versions(tiny_bert_dir):
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir).eval()
    key = model_key(model, "2026.4")
    assert key == model_key(model, "2026.4") and key != model_key(model, "2026.5")
    with torch.no_grad():
        model.cls.predictions.transform.LayerNorm.bias[0] += 1e-3
    assert model_key(model, "2026.4") != key


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSE_IR_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c" / "openvino"
    monkeypatch.delenv("SPARSE_IR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "sparse_ir" / "openvino"


def test_missing_openvino_names_the_extra(splade_tiny, monkeypatch, tmp_path):
    # A None entry in sys.modules makes `import openvino` fail as an absent package does.
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match=r"sparse-ir\[openvino\]") as raised:
        SpladeEncoder(
            splade_tiny.model, splade_tiny.tokenizer, runtime="openvino", cache_dir=tmp_path
        )
    assert isinstance(raised.value, ImportError) and raised.value.package == "openvino"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "int8", "runtime": "openvino"}, "precision 'int8' is PyTorch's"),
        ({"runtime": "onnx"}, "runtime must be one of"),
        ({"runtime": "openvino", "device": "meta"}, "CPUs only"),
    ],
)
def test_what_openvino_cannot_do_is_an_error(splade_tiny, options, message):
    with pytest.raises(ValueError, match=message):
        SpladeEncoder(splade_tiny.model, splade_tiny.tokenizer, **options)


def test_index_command_runs_the_body_on_openvino(tmp_path, tiny_bert_dir, monkeypatch):
    """``sparse-ir index --runtime openvino`` (two worker processes: each converts or reads
    the shared cache) gives the index of ``--runtime torch`` (float32 bodies)."""
    from sparse_ir.cli import main
    from sparse_ir.index.impact_index import ImpactIndex

    monkeypatch.setenv("SPARSE_IR_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl"
    texts = ["the cancer cells in mice", "blood risk of the disease", "python file read error"]
    corpus.write_text(
        "".join(json.dumps({"_id": f"c{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    postings = {}
    for runtime in ("torch", "openvino"):
        output = tmp_path / runtime
        arguments = ["index", "--input", str(corpus), "--output", str(output)]
        arguments += ["--model", str(tiny_bert_dir), "--precision", "float32"]
        assert main([*arguments, "--runtime", runtime, "--processes", "2"]) == 0
        index = ImpactIndex.open(output)
        queries = ({"cancer": 1, "mice": 1}, {"file": 1, "error": 1}, {"blood": 1})
        postings[runtime] = [index.search(q, k=3) for q in queries]
    for exact, fast in zip(postings["torch"], postings["openvino"]):
        assert [h.doc_id for h in exact] == [h.doc_id for h in fast] and exact
        # Integer impacts of weights 1e-6 apart: equal, or one rounding step apart.
        assert all(abs(a.score - b.score) <= 2 for a, b in zip(exact, fast))
    assert len(list((tmp_path / "cache" / "openvino").iterdir())) == 1


def test_ray_indexing_refuses_openvino(capsys):
    from sparse_ir.cli import main

    arguments = ["index", "--input", "x.jsonl", "--output", "y", "--ray", "local"]
    assert main([*arguments, "--runtime", "openvino"]) != 0
    assert "--ray encodes with PyTorch; --runtime openvino is not supported" in (
        capsys.readouterr().err
    )
