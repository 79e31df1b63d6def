"""Training: losses on hand-made tensors, schedules, the custom backward, data, the trainer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sparse_ir.errors import InputError
from sparse_ir.training import losses
from sparse_ir.training.data import (
    BatchSampler,
    TrainingExample,
    read_examples,
    split_validation,
    validation_corpus,
)
from sparse_ir.training.schedules import QuadraticWarmup, linear_warmup_decay

# -- regularizers ---------------------------------------------------------------------------------


def test_flops_of_known_matrix():
    weights = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert losses.flops(weights).item() == pytest.approx(4.0)  # mean column (2, 0) squared
    weights = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert losses.flops(weights).item() == pytest.approx(2.0**2 + 1.0**2)


def test_l1_of_known_matrix():
    weights = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    assert losses.l1(weights).item() == pytest.approx((1 + 5) / 2)


def test_idf_flops_scales_each_term():
    weights = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # column means (2, 1)
    penalty = torch.tensor([2.0, 5.0])
    assert losses.idf_flops(weights, penalty).item() == pytest.approx(2 * 4 + 5 * 1)
    with pytest.raises(ValueError, match="one value per vocabulary term"):
        losses.idf_flops(weights, torch.ones(3))


def test_idf_penalty_decreases_with_idf():
    idf = torch.tensor([0.05, 1.0, 2.0, 4.0])
    penalty = losses.idf_penalty(idf)
    # p_j = max idf / max(idf_j, 0.1 · max idf): the floor caps the stop-word penalty at 10.
    assert penalty.tolist() == pytest.approx([10.0, 4.0, 2.0, 1.0])
    assert torch.all(penalty[:-1] > penalty[1:])
    with pytest.raises(ValueError):
        losses.idf_penalty(idf, floor=0)


def test_idf_flops_pushes_common_terms_harder():
    """Same activation, different IDF: the gradient on the common term is larger."""
    weights = torch.tensor([[1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    penalty = losses.idf_penalty(torch.tensor([0.5, 5.0]))
    losses.idf_flops(weights, penalty).backward()
    assert weights.grad[0, 0] > weights.grad[0, 1] > 0


# -- ranking and distillation losses --------------------------------------------------------------


def test_in_batch_contrastive_known_value():
    scores = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = math.log(1 + math.exp(-2))
    assert losses.in_batch_contrastive_loss(scores).item() == pytest.approx(expected)
    expected_t2 = math.log(1 + math.exp(-1))
    assert losses.in_batch_contrastive_loss(scores, temperature=2.0).item() == pytest.approx(
        expected_t2
    )
    with pytest.raises(ValueError, match="temperature"):
        losses.in_batch_contrastive_loss(scores, temperature=0)


def test_in_batch_contrastive_uses_every_document():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    negatives = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    scores = losses.dot_scores(q, torch.cat([positives, negatives]))
    assert scores.tolist() == [[2, 0, 1, 0], [0, 2, 0, 0]]
    first = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1) + 1))
    second = -math.log(math.exp(2) / (1 + math.exp(2) + 1 + 1))
    assert losses.in_batch_contrastive_loss(scores).item() == pytest.approx((first + second) / 2)


def test_listwise_and_pairwise_known_values():
    positive = torch.tensor([1.0])
    negative = torch.tensor([[0.0, 0.0]])
    assert losses.listwise_loss(positive, negative).item() == pytest.approx(
        -math.log(math.e / (math.e + 2))
    )
    negative = torch.tensor([[1.0, 0.0]])
    assert losses.pairwise_loss(positive, negative).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.exp(-1))) / 2
    )


def test_margin_mse_known_value():
    value = losses.margin_mse_loss(
        torch.tensor([3.0]), torch.tensor([[1.0]]), torch.tensor([5.0]), torch.tensor([[4.0]])
    )
    assert value.item() == pytest.approx(1.0)  # ((3 - 1) - (5 - 4))²


def test_kl_distillation_known_value():
    student = torch.tensor([[math.log(3.0), 0.0]])  # softmax (0.75, 0.25)
    teacher = torch.tensor([[0.0, 0.0]])  # uniform
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert losses.kl_distillation_loss(student, teacher).item() == pytest.approx(expected)
    assert losses.kl_distillation_loss(teacher, teacher).item() == pytest.approx(0.0)


def test_splade_loss_returns_named_terms():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    neg = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss = losses.SpladeLoss(lambda_q=0.1, lambda_d=0.2, warmup_steps=10)
    result = loss(q, pos, neg, step=5)
    ranking = losses.in_batch_contrastive_loss(losses.dot_scores(q, torch.cat([pos, neg])))
    reg_q = losses.flops(q).item()
    reg_d = losses.flops(torch.cat([pos, neg])).item()
    assert set(result.terms) == {"total", "ranking", "reg_q", "reg_d", "lambda_q", "lambda_d"}
    assert result.terms["lambda_q"] == pytest.approx(0.1 * 0.25)
    assert result.terms["lambda_d"] == pytest.approx(0.2 * 0.25)
    assert result.terms["reg_q"] == pytest.approx(reg_q)
    assert result.terms["reg_d"] == pytest.approx(reg_d)
    assert result.total.item() == pytest.approx(ranking.item() + 0.025 * reg_q + 0.05 * reg_d)
    # Inference-free: the query side has no regularizer.
    result = loss(q, pos, neg, step=10, queries_trainable=False)
    assert result.terms["lambda_q"] == 0 and result.terms["reg_q"] == 0
    assert result.total.item() == pytest.approx(ranking.item() + 0.2 * reg_d)


def test_splade_loss_distillation_and_checks():
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[3.0, 0.0]])
    neg = torch.tensor([[1.0, 0.0]])
    loss = losses.SpladeLoss(ranking="margin-mse", lambda_q=0, lambda_d=0)
    result = loss(q, pos, neg, step=0, teacher_scores=torch.tensor([[5.0, 4.0]]))
    assert result.terms["ranking"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="teacher scores"):
        loss(q, pos, neg, step=0)
    with pytest.raises(ValueError, match="ranking loss must be one of"):
        losses.SpladeLoss(ranking="hinge")
    with pytest.raises(ValueError, match="idf_penalty"):
        losses.SpladeLoss(document_regularizer="idf-flops")
    with pytest.raises(ValueError, match="lambda_d"):
        losses.SpladeLoss(lambda_d=-1)


# -- schedules ------------------------------------------------------------------------------------


def test_quadratic_warmup():
    schedule = QuadraticWarmup(2.0, 10)
    assert [schedule(t) for t in (0, 5, 10, 20)] == pytest.approx([0.0, 0.5, 2.0, 2.0])
    assert QuadraticWarmup(3.0, 0)(0) == 3.0
    with pytest.raises(ValueError):
        QuadraticWarmup(-1.0, 10)
    with pytest.raises(ValueError):
        schedule(-1)


def test_linear_warmup_decay():
    values = [linear_warmup_decay(t, 2, 6) for t in range(7)]
    assert values == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert linear_warmup_decay(0, 0, 4) == 1.0
    with pytest.raises(ValueError):
        linear_warmup_decay(0, 5, 4)


# -- the custom backward --------------------------------------------------------------------------


@pytest.fixture
def tiny_mlm():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=300,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():  # a spread of biases: some terms open, most closed, like SPLADE
        model.cls.predictions.bias.normal_(-0.5, 1.0)
        # BERT initialises the [PAD] row to zeros: that term's logit would then be the same at
        # every token, a tie where autograd's amax splits the gradient and ours picks one token
        # (both valid subgradients). Real weights have no such ties.
        model.bert.embeddings.word_embeddings.weight[0].normal_(0, 0.02)
    ids = torch.randint(5, 300, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 3:] = 0
    return model, ids, mask


def _weights_and_grads(model, ids, mask, **options):
    from sparse_ir.training.representation import splade_weights

    model.zero_grad()
    weights = splade_weights(model, ids, mask, **options)
    # A loss touching every weight non-linearly, FLOPS-like and per-text.
    ((weights**2).sum() + losses.flops(weights) * 3).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return weights.detach(), grads


def test_chunked_projection_matches_reference_values_and_gradients(tiny_mlm):
    model, ids, mask = tiny_mlm
    reference, reference_grads = _weights_and_grads(model, ids, mask, implementation="reference")
    chunked, chunked_grads = _weights_and_grads(
        model, ids, mask, implementation="chunked", vocab_chunk=64
    )
    assert (reference > 0).sum() > 100 and (reference == 0).sum() > 100
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-6)
    assert set(chunked_grads) == set(reference_grads)
    scale = max(g.abs().max().item() for g in reference_grads.values())
    for name, grad in reference_grads.items():
        torch.testing.assert_close(
            chunked_grads[name],
            grad,
            rtol=1e-4,
            atol=1e-5 * scale,
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.mark.parametrize("compute_dtype", [torch.bfloat16, torch.int8])
def test_chunked_screen_gives_float32_values_and_gradients(tiny_mlm, compute_dtype):
    """The screen only rules out certain zeros; what survives is recomputed in float32."""
    model, ids, mask = tiny_mlm
    reference, reference_grads = _weights_and_grads(model, ids, mask, implementation="reference")
    low, grads = _weights_and_grads(
        model, ids, mask, implementation="chunked", vocab_chunk=64, compute_dtype=compute_dtype
    )
    assert torch.equal(low > 0, reference > 0)
    torch.testing.assert_close(low, reference, rtol=1e-5, atol=1e-6)
    scale = max(g.abs().max().item() for g in reference_grads.values())
    for name, grad in reference_grads.items():
        torch.testing.assert_close(
            grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_chunked_projection_keeps_no_logits(tiny_mlm):
    """Autograd keeps no [batch, length, vocab] tensor for the chunked path."""
    from sparse_ir.training.representation import splade_weights

    model, ids, mask = tiny_mlm
    vocab = model.config.vocab_size
    shapes = []

    def pack(tensor):
        shapes.append(tuple(tensor.shape))
        return tensor

    for implementation in ("reference", "chunked"):
        shapes.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            splade_weights(model, ids, mask, implementation=implementation, vocab_chunk=64)
        full = [s for s in shapes if s == (ids.shape[0], ids.shape[1], vocab)]
        assert bool(full) == (implementation == "reference")


# -- data -----------------------------------------------------------------------------------------


def _examples(count: int = 12, negatives: int = 3) -> list[TrainingExample]:
    return [
        TrainingExample(
            f"q{i}",
            f"query {i}",
            (f"pos {i}", f"pos {i} bis"),
            tuple(f"neg {i}.{j}" for j in range(negatives)),
        )
        for i in range(count)
    ]


def test_batch_sampler_is_a_function_of_seed_and_step():
    sampler = BatchSampler(_examples(), batch_size=4, negatives=2, seed=3)
    again = BatchSampler(_examples(), batch_size=4, negatives=2, seed=3)
    other = BatchSampler(_examples(), batch_size=4, negatives=2, seed=4)
    assert sampler.steps_per_epoch == 3
    batches = [sampler.batch(s) for s in range(6)]
    assert [again.batch(s) for s in reversed(range(6))] == batches[::-1]
    assert [other.batch(s) for s in range(6)] != batches
    for batch in batches:
        assert len(batch.queries) == len(batch.positives) == 4 and len(batch.negatives) == 8
        for q, p, n in zip(batch.queries, batch.positives, zip(*[iter(batch.negatives)] * 2)):
            i = q.split()[1]
            assert p.startswith(f"pos {i}") and all(x.startswith(f"neg {i}.") for x in n)
    # One epoch visits every example once.
    assert sorted(q for b in batches[:3] for q in b.queries) == sorted(
        f"query {i}" for i in range(12)
    )


def test_batch_sampler_completes_short_negative_lists():
    examples = _examples(4, negatives=3) + [TrainingExample("x", "query x", ("pos x",))]
    sampler = BatchSampler(examples, batch_size=5, negatives=2, seed=0)
    batch = sampler.batch(0)
    assert len(batch.negatives) == 10
    with pytest.raises(ValueError, match="mine them"):
        BatchSampler([TrainingExample("x", "q", ("p",))], batch_size=1, negatives=1, seed=0)


def test_split_validation_is_disjoint_and_seeded():
    examples = _examples(20)
    train, held = split_validation(examples, 0.25, seed=1)
    assert len(held) == 5 and len(train) == 15
    assert not {e.query_id for e in train} & {e.query_id for e in held}
    assert split_validation(examples, 5, seed=1) == (train, held)
    with pytest.raises(ValueError):
        split_validation(examples, 20, seed=1)


def test_validation_corpus_keeps_positives_then_negatives():
    from sparse_ir.corpus import Document

    corpus = [Document(f"d{i}", "", f"text {i}") for i in range(50)]
    examples = [
        TrainingExample("q1", "a", ("t",), ("n1", "n2"), None, ("d3",), ("d7", "d8")),
        TrainingExample("q2", "b", ("t",), ("n",), None, ("d4",), ("d9",)),
    ]
    sample = validation_corpus(corpus, examples, size=4, seed=0)
    assert [d.id for d in sample] == ["d3", "d4", "d7", "d9"]
    sample = validation_corpus(corpus, examples, size=10, seed=0)
    assert len(sample) == 10 and {"d3", "d4", "d7", "d8", "d9"} <= {d.id for d in sample}
    assert validation_corpus(corpus, examples, size=None, seed=0) == corpus


def test_read_examples_and_errors(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps(
            {
                "query": "q",
                "positive": "p",
                "negatives": ["n1", "n2"],
                "teacher_scores": [3, 1, 0.5],
            }
        )
        + "\n"
        + json.dumps({"query": "r", "positive": ["p1", "p2"]})
        + "\n"
    )
    examples = read_examples(path)
    assert examples[0] == TrainingExample("1", "q", ("p",), ("n1", "n2"), (3.0, 1.0, 0.5))
    assert examples[1].positives == ("p1", "p2") and examples[1].query_id == "2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"query": "q", "positive": "p"})
        + "\n"
        + json.dumps({"query": "q", "positive": "p", "negatives": ["n"], "teacher_scores": [1.0]})
        + "\n"
    )
    with pytest.raises(InputError, match=r"bad.jsonl:2: 'teacher_scores' must list 2"):
        read_examples(bad)
    bad.write_text(json.dumps({"query": "", "positive": "p"}) + "\n")
    with pytest.raises(InputError, match=r":1: 'query' must be a non-empty string"):
        read_examples(bad)
    bad.write_text(json.dumps({"query": "q", "positive": "p", "negative": ["n"]}) + "\n")
    with pytest.raises(InputError, match="unknown field"):
        read_examples(bad)


def test_bm25_negatives_skip_judged_documents():
    pytest.importorskip("bm25s")
    from sparse_ir.corpus import Document, Query
    from sparse_ir.training.negatives import mine_bm25_negatives

    corpus = [
        Document("a", "", "protein expression in tumor cells"),
        Document("b", "", "tumor cells grow in mice"),
        Document("c", "", "protein folding"),
        Document("d", "", "weather report for tomorrow"),
    ]
    mined = mine_bm25_negatives(
        [Query("q", "tumor cells protein")], corpus, {"q": {"a": 1}}, depth=2
    )
    assert mined == {"q": ["b", "c"]}


# -- inference-free query side --------------------------------------------------------------------


def test_idf_query_encoder(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from sparse_ir.training.inference_free import IdfQueryEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    texts = ["cancer risk", "cancer cells", "brain study"]
    size = len(tokenizer)
    encoder = IdfQueryEncoder.from_corpus(tokenizer, texts, size)
    cancer, brain = (tokenizer.convert_tokens_to_ids(t) for t in ("cancer", "brain"))

    def idf(df):
        return math.log(1 + (3 - df + 0.5) / (df + 0.5))

    assert encoder.idf[cancer] == pytest.approx(idf(2))
    assert encoder.idf[brain] == pytest.approx(idf(1))
    batch = encoder.encode_queries(["brain cancer cancer", ""], ids=["x", "y"])
    assert batch.to_dicts() == [
        {"cancer": pytest.approx(idf(2)), "brain": pytest.approx(idf(1))},
        {},
    ]
    dense = encoder.query_tensor(["brain cancer"])
    assert dense[0, cancer].item() == pytest.approx(idf(2)) and (dense > 0).sum() == 2
    tokenizer.save_pretrained(tmp_path)
    encoder.save(tmp_path)
    loaded = IdfQueryEncoder.from_pretrained(tmp_path)
    assert np.array_equal(loaded.idf, encoder.idf) and loaded.vocab == encoder.vocab
    with pytest.raises(FileNotFoundError, match="not an inference-free checkpoint"):
        IdfQueryEncoder.from_pretrained(tiny_bert_dir)


# -- the trainer ----------------------------------------------------------------------------------

TOPICS = [
    ("cancer", "tumor", "patients"),
    ("brain", "study", "mice"),
    ("gene", "expression", "protein"),
    ("blood", "risk", "disease"),
    ("search", "index", "query"),
    ("sparse", "dense", "vector"),
    ("python", "file", "read"),
    ("data", "time", "number"),
]


def _tiny_examples() -> list[TrainingExample]:
    examples = []
    for i, words in enumerate(TOPICS):
        others = [" ".join(TOPICS[(i + k) % len(TOPICS)]) for k in (1, 2, 3)]
        examples.append(
            TrainingExample(
                f"q{i}",
                f"{words[0]} {words[1]}",
                (f"the {words[0]} {words[1]} {words[2]} cells",),
                tuple(f"the {o} cells" for o in others),
            )
        )
    return examples


def _config(tmp_path, **options):
    from sparse_ir.training.trainer import TrainingConfig

    settings = {
        "output_dir": str(tmp_path),
        "max_steps": 3,
        "batch_size": 4,
        "negatives": 1,
        "learning_rate": 1e-3,
        "lambda_q": 1e-3,
        "lambda_d": 1e-3,
        "seed": 0,
        "precision": "float32",
        "eval_at_start": False,
        "document_max_length": 16,
        "query_max_length": 8,
    }
    settings.update(options)
    return TrainingConfig(**settings)


def _trainer(tiny_bert_dir, config, examples=None, **options):
    from sparse_ir.training.trainer import Trainer, load_model

    model, tokenizer = load_model(str(tiny_bert_dir))
    return Trainer(
        config,
        examples or _tiny_examples(),
        model=model,
        tokenizer=tokenizer,
        show_progress=False,
        **options,
    )


def _fixed_loss(trainer) -> float:
    trainer.model.eval()
    with torch.no_grad():
        total = sum(trainer.batch_loss(100, m).terms["ranking"] for m in range(2))
    trainer.model.train()
    return total / 2


def test_twenty_steps_lower_the_loss(tiny_bert_dir, tmp_path):
    trainer = _trainer(tiny_bert_dir, _config(tmp_path, max_steps=20))
    before = _fixed_loss(trainer)
    result = trainer.train()
    after = _fixed_loss(trainer)
    assert result.steps == 20 and result.stopped == "max_steps"
    assert after < 0.85 * before, (before, after)
    records = [json.loads(line) for line in (tmp_path / "history.jsonl").open()]
    assert {"total", "ranking", "reg_q", "reg_d", "lambda_q", "lambda_d", "lr"} <= set(records[0])


def test_seeded_runs_give_identical_weights(tiny_bert_dir, tmp_path):
    states = []
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        trainer = _trainer(tiny_bert_dir, _config(tmp_path / run, seed=seed))
        trainer.train()
        states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_interrupt_then_resume_matches_uninterrupted_run(tiny_bert_dir, tmp_path):
    from sparse_ir.training.trainer import Trainer

    straight = _trainer(tiny_bert_dir, _config(tmp_path / "straight", max_steps=4))
    straight.train()

    config = _config(tmp_path / "cut", max_steps=4)
    first = _trainer(tiny_bert_dir, config)
    original = Trainer._optimizer_step

    def step_then_interrupt(self):
        terms = original(self)
        if self.step == 1:  # the step being taken is the second: a Ctrl-C arrives during it
            self._interrupted = True
        return terms

    Trainer._optimizer_step = step_then_interrupt
    try:
        result = first.train()
    finally:
        Trainer._optimizer_step = original
    assert result.stopped == "interrupt" and result.steps == 2
    assert result.last_checkpoint.name == "checkpoint-2"
    second = _trainer(tiny_bert_dir, config)
    result = second.train(resume=True)
    assert result.steps == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    changed = _config(tmp_path / "cut", max_steps=4, learning_rate=5e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        _trainer(tiny_bert_dir, changed).train(resume=True)


def test_checkpoint_loads_as_splade_encoder(tiny_bert_dir, tmp_path):
    from sparse_ir.encoders.splade import SpladeEncoder

    trainer = _trainer(tiny_bert_dir, _config(tmp_path, max_steps=2))
    result = trainer.train()
    encoder = SpladeEncoder.from_pretrained(result.last_checkpoint)
    batch = encoder.encode_documents(["the cancer tumor cells"])
    trainer.model.eval()
    from sparse_ir.training.representation import splade_weights

    tokens = trainer.tokenizer(["the cancer tumor cells"], return_tensors="pt")
    with torch.no_grad():
        expected = splade_weights(trainer.model, tokens["input_ids"], tokens["attention_mask"])[0]
    terms, values = batch.row(0)
    assert np.allclose(values, expected[terms].numpy(), atol=1e-5)
    state_dir = result.last_checkpoint / "trainer_state"
    config = json.loads((state_dir / "training_config.json").read_text())
    assert config["learning_rate"] == 1e-3 and config["format"] == 1


def test_inference_free_training_and_search(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from sparse_ir.corpus import Document, Query
    from sparse_ir.encoders.splade import SpladeEncoder
    from sparse_ir.search import Searcher
    from sparse_ir.training.data import ValidationSet
    from sparse_ir.training.inference_free import IdfQueryEncoder

    examples = _tiny_examples()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    texts = [t for e in examples for t in (*e.positives, *e.negatives)]
    with pytest.raises(ValueError, match="IDF table has"):
        _trainer(
            tiny_bert_dir,
            _config(tmp_path, mode="inference-free"),
            query_encoder=IdfQueryEncoder.from_corpus(tokenizer, texts, 7),
        )
    rows = json.loads((tiny_bert_dir / "config.json").read_text())["vocab_size"]
    query_encoder = IdfQueryEncoder.from_corpus(tokenizer, texts, rows)
    corpus = [Document(f"d{i}", "", e.positives[0]) for i, e in enumerate(examples)]
    validation = ValidationSet(
        [Query(e.query_id, e.query) for e in examples[:4]],
        {e.query_id: {f"d{i}": 1} for i, e in enumerate(examples[:4])},
        corpus,
    )
    config = _config(
        tmp_path,
        mode="inference-free",
        max_steps=3,
        document_regularizer="idf-flops",
        eval_document_max_length=16,
    )
    trainer = _trainer(tiny_bert_dir, config, validation=validation, query_encoder=query_encoder)
    result = trainer.train()
    assert [h["step"] for h in result.history] == [3]
    assert 0 <= result.history[0]["ndcg_at_10"] <= 1
    checkpoint = result.best_checkpoint
    loaded = IdfQueryEncoder.from_pretrained(checkpoint)
    from sparse_ir.pipeline import index_corpus

    index, _ = index_corpus(
        SpladeEncoder.from_pretrained(checkpoint), corpus, tmp_path / "index", show_progress=False
    )
    searcher = Searcher(index, loaded)
    hits = searcher.search("cancer tumor", k=3)
    assert hits and all(h.doc_id.startswith("d") for h in hits)


def test_optimizer_state_round_trip():
    from sparse_ir.training.checkpoint import (
        optimizer_state_from_tensors,
        optimizer_state_to_tensors,
    )

    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([parameter], lr=0.1)
    parameter.grad = torch.tensor([1.0, -2.0, 0.5])
    optimizer.step()
    tensors, meta = optimizer_state_to_tensors(optimizer)
    meta = json.loads(json.dumps(meta))
    again = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    again.load_state_dict(optimizer_state_from_tensors(tensors, meta))
    for key, value in optimizer.state[parameter].items():
        assert torch.equal(value, again.state[again.param_groups[0]["params"][0]][key])
    assert again.param_groups[0]["lr"] == 0.1


def test_cli_train_on_jsonl(tiny_bert_dir, tmp_path):
    from sparse_ir.cli import main

    path = tmp_path / "train.jsonl"
    with path.open("w") as handle:
        for example in _tiny_examples():
            handle.write(
                json.dumps(
                    {
                        "query": example.query,
                        "positive": example.positives[0],
                        "negatives": list(example.negatives),
                    }
                )
                + "\n"
            )
    out = tmp_path / "out"
    status = main(
        [
            "-q",
            "train",
            "--train-jsonl",
            str(path),
            "--model",
            str(tiny_bert_dir),
            "--output",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "3",
            "--holdout",
            "2",
            "--precision",
            "float32",
            "--document-max-length",
            "16",
            "--eval-document-max-length",
            "16",
        ]
    )
    assert status == 0
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert (out / "best" / "trainer_state" / "trainer_state.json").is_file()
    assert (out / "checkpoint-2" / "modules.json").is_file()
    assert not (out / "checkpoint-2" / "trainer_state.json").exists()
    with pytest.raises(SystemExit):  # argparse: usage error
        main(["-q", "train", "--train-jsonl", str(path), "--output", str(out), "--holdout", "1.5"])


class _TableEncoder:
    """A stand-in encoder returning fixed vectors per text (for measuring, mining)."""

    name, pooling, precision = "table", "max", "float32"
    document_max_length, query_max_length = 256, 64

    def __init__(self, table: dict[str, dict[str, float]]):
        self.table = table
        self.vocab = ("a", "b", "c")

    def _encode(self, texts, ids=None, **_):
        from sparse_ir.sparse_batch import SparseBatch

        return SparseBatch.from_dicts([self.table[t] for t in texts], self.vocab, ids)

    encode_documents = encode_queries = _encode


def test_measure_reports_known_sparsity_figures(tmp_path):
    from sparse_ir.corpus import Document, Query
    from sparse_ir.training.validation import measure

    encoder = _TableEncoder({"d1": {"a": 1.0, "b": 1.0}, "d2": {"a": 2.0}, "q": {"a": 1.0}})
    corpus = [Document("1", "", "d1"), Document("2", "", "d2")]
    result = measure(
        encoder, encoder, corpus, [Query("q1", "q")], {"q1": {"2": 1}}, work_dir=tmp_path
    )
    assert result.document_terms == 1.5 and result.query_terms == 1
    # FLOPS = Σ_j p_q(j)·p_d(j) = 1·1 (a) + 0·0.5 (b); postings scored per query = df(a) = 2.
    assert result.flops == pytest.approx(1.0) and result.postings_per_query == 2
    assert result.ndcg_at_10 == pytest.approx(1.0)  # d2 (a: 2) outranks d1 (a: 1)
    assert not any(tmp_path.iterdir())  # the temporary index is gone


def test_index_negatives_follow_the_model_and_skip_judged(tmp_path):
    from sparse_ir.corpus import Document, Query
    from sparse_ir.training.negatives import mine_index_negatives

    encoder = _TableEncoder(
        {
            "d1": {"a": 3.0},
            "d2": {"a": 2.0},
            "d3": {"a": 1.0, "b": 1.0},
            "d4": {"c": 1.0},
            "q": {"a": 1.0},
        }
    )
    corpus = [Document(str(i), "", f"d{i}") for i in range(1, 5)]
    mined = mine_index_negatives(
        encoder, encoder, [Query("q1", "q")], corpus, {"q1": {"1": 1}}, depth=5, work_dir=tmp_path
    )
    assert mined == {"q1": ["2", "3"]}  # by score; d4 never matches; d1 is judged
