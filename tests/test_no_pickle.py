"""No code execution from files: no pickle anywhere, model weights only from safetensors.

The source scan covers every module of the package, so new code (a dense encoder, an
exporter) is held to the same rule as soon as it lands.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

import sparse_ir

PACKAGE = Path(sparse_ir.__file__).resolve().parent

FORBIDDEN = [
    (
        re.compile(
            r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib|shelve)\b", re.MULTILINE
        ),
        "imports a pickle-based module",
    ),
    (re.compile(r"\btorch\.load\s*\("), "torch.load unpickles"),
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"\bread_pickle\s*\("), "pandas read_pickle"),
    (re.compile(r"use_safetensors\s*=\s*False"), "use_safetensors=False"),
    (re.compile(r"weights_only\s*=\s*False"), "weights_only=False"),
]
# A model class loaded with from_pretrained must say use_safetensors=True (tokenizers need not).
MODEL_LOAD = re.compile(r"\b(Auto\w*Model\w*|\w+For\w+|\w*Model)\.from_pretrained\(")


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_pickle_in_the_package_sources():
    problems = []
    for source in _sources():
        text = source.read_text()
        for pattern, why in FORBIDDEN:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{source.relative_to(PACKAGE.parent)}:{line}: {why}")
        for match in MODEL_LOAD.finditer(text):
            call = text[match.start() : text.find(")", match.end()) + 1]
            if "use_safetensors=True" not in call:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(
                    f"{source.relative_to(PACKAGE.parent)}:{line}: model loaded "
                    "without use_safetensors=True"
                )
        for match in re.finditer(r"\bnp\.load\s*\(([^)]*)\)", text):
            if "allow_pickle=False" not in match.group(1):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(
                    f"{source.relative_to(PACKAGE.parent)}:{line}: np.load "
                    "without allow_pickle=False"
                )
    assert not problems, "\n".join(problems)


@pytest.fixture
def pickle_forbidden(monkeypatch):
    """Make every way of unpickling raise, so a test passes only if nothing unpickles."""
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    class Refusing(pickle.Unpickler):
        def __init__(self, *args, **kwargs):
            refuse()

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", Refusing)
    monkeypatch.setattr(torch, "load", refuse)


@pytest.mark.slow
def test_splade_tiny_loads_without_unpickling(pickle_forbidden):
    """splade-tiny's package directory also holds heads.pt (a pickle): it is never read."""
    from sparse_ir.encoders.registry import resolve_model
    from sparse_ir.encoders.splade import SpladeEncoder

    assert (Path(resolve_model("splade-tiny")) / "heads.pt").exists()
    encoder = SpladeEncoder.from_pretrained("splade-tiny")
    batch = encoder.encode_queries(["is the index safe"], show_progress=False)
    assert batch.nnz > 0


def test_a_model_with_only_pickled_weights_is_refused(tiny_bert_dir, tmp_path, pickle_forbidden):
    from sparse_ir.encoders.splade import SpladeEncoder

    pickled = tmp_path / "pickled-model"
    pickled.mkdir()
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        if (tiny_bert_dir / name).exists():
            (pickled / name).write_bytes((tiny_bert_dir / name).read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"a pickle we must never open")
    assert not list(pickled.glob("*.safetensors"))
    with pytest.raises(OSError, match="safetensors"):
        SpladeEncoder.from_pretrained(pickled)


def test_sparse_batch_files_never_unpickle(tmp_path, pickle_forbidden):
    from sparse_ir.sparse_batch import SparseBatch

    batch = SparseBatch.from_dicts([{"a": 1.0}], ["a", "b"], ids=["d0"])
    batch.save(tmp_path / "b.npz")
    assert SparseBatch.load(tmp_path / "b.npz").to_dicts() == [{"a": 1.0}]
