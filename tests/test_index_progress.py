"""The indexing progress bar moves after every forward pass, not once per shard."""

from __future__ import annotations

from sparse_ir.corpus import Document


class Recorder:
    """A progress bar that records each update (the interface tqdm offers the pipeline)."""

    def __init__(self):
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)


def test_encode_corpus_advances_per_batch(tiny_bert_dir):
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.pipeline import encode_corpus

    encoder = SpladeEncoder.from_pretrained(str(tiny_bert_dir), batch_size=2)
    documents = [Document(f"d{i}", "", "cancer cells " * (i + 1)) for i in range(5)]
    documents.append(Document("empty", "", ""))
    bar = Recorder()
    shards = list(encode_corpus(encoder, documents, shard_size=100, progress=bar, stats=None))
    assert len(shards) == 1
    # The empty text at once, then one update per forward pass of 2 texts.
    assert bar.updates == [1, 2, 2, 1] and sum(bar.updates) == len(documents)
    direct = encoder.encode_documents([d.full_text for d in documents], show_progress=False)
    assert shards[0][0].to_dicts() == direct.to_dicts()


def test_an_encoder_without_progress_moves_per_shard():
    from sparse_ir.pipeline import encode_corpus

    class Plain:
        """An encoder with the pipeline's required interface only."""

        def encode_documents(self, texts, *, ids=None, max_length=None, **options):
            return list(texts)

    bar = Recorder()
    documents = [Document(f"d{i}", "", "x") for i in range(5)]
    list(encode_corpus(Plain(), documents, shard_size=2, progress=bar))
    assert bar.updates == [2, 2, 1]
