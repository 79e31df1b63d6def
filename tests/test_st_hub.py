"""A hub id naming a sentence-transformers SPLADE model is read with its modules.json (from the
Hugging Face cache here: no network), not loaded as a plain masked-LM with default settings."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture()
def cached_hub_model(tmp_path, tiny_bert_dir, monkeypatch):
    """``acme/st-tiny`` in a Hugging Face cache: sum pooling, max_seq_length 64."""
    from huggingface_hub import constants
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from sparse_ir.encoders.st_format import save_splade

    source = tmp_path / "st"
    save_splade(
        source,
        AutoModelForMaskedLM.from_pretrained(tiny_bert_dir),
        AutoTokenizer.from_pretrained(tiny_bert_dir),
        max_seq_length=64,
        pooling="sum",
    )
    repo = tmp_path / "hub" / "models--acme--st-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo / "snapshots" / commit


def test_hub_id_reads_the_st_module_configs(cached_hub_model):
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.encoders.st_format import hub_snapshot

    assert hub_snapshot("acme/st-tiny") == str(cached_hub_model)
    encoder = SpladeEncoder.from_pretrained("acme/st-tiny")
    assert (encoder.pooling, encoder.document_max_length) == ("sum", 64)
    local = SpladeEncoder.from_pretrained(str(cached_hub_model))
    text = ["cancer cells grow"]
    assert encoder.encode_documents(text).to_dicts() == local.encode_documents(text).to_dicts()


def test_other_names_are_left_alone(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from sparse_ir.encoders.st_format import hub_snapshot

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_snapshot("acme/not-cached") == "acme/not-cached"
    assert hub_snapshot(str(tmp_path)) == str(tmp_path)
    assert hub_snapshot("bert-base-uncased") == "bert-base-uncased"
