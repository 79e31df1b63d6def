"""Evaluation: qrels and run readers, metrics through ir_measures, BEIR loading."""

import math

import pytest

from sparse_ir.errors import InputError
from sparse_ir.eval import evaluate, load_beir, per_query, read_qrels
from sparse_ir.results import Hit, Run


def test_metrics_on_a_hand_computed_example(tmp_path):
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}}
    run = Run({"q1": [Hit("d3", 3.0), Hit("d2", 2.0), Hit("d1", 1.0)], "q2": [Hit("d5", 1.0)]})
    scores = evaluate(run, qrels, ["nDCG@10", "MRR@10", "R@100"])
    # q1: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3); q2: 0.
    ndcg_q1 = 1.5 / (1 + 1 / math.log2(3))
    assert scores["nDCG@10"] == pytest.approx(ndcg_q1 / 2)
    assert scores["MRR@10"] == pytest.approx(0.5)
    assert scores["R@100"] == pytest.approx(0.5)


def test_judged_queries_missing_from_the_run_count_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = Run({"q1": [Hit("d1", 1.0)]})
    assert evaluate(run, qrels, ["nDCG@10"])["nDCG@10"] == pytest.approx(0.5)
    assert per_query(run, qrels, ["nDCG@10"])["nDCG@10"] == {"q1": 1.0, "q2": 0.0}


def test_read_qrels_beir_and_trec(tmp_path):
    (tmp_path / "beir.tsv").write_text("query-id\tcorpus-id\tscore\n1\t10\t1\n1\t11\t2\n")
    (tmp_path / "trec.txt").write_text("1 0 10 1\n2 0 12 0\n")
    assert read_qrels(tmp_path / "beir.tsv") == {"1": {"10": 1, "11": 2}}
    assert read_qrels(tmp_path / "trec.txt") == {"1": {"10": 1}, "2": {"12": 0}}


@pytest.mark.parametrize(
    "content, message",
    [
        ("1\t10\n", r"expected 3 \(BEIR\) or 4 \(TREC\) columns, got 2"),
        ("1\t10\thigh\n", "relevance 'high' is not an integer"),
        ("1\t10\t1\n1\t10\t0\n", "judged twice"),
    ],
)
def test_bad_qrels(tmp_path, content, message):
    path = tmp_path / "qrels.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        read_qrels(path)
    assert "qrels.tsv:" in str(error.value)


def test_trec_run_round_trip_and_errors(tmp_path):
    run = Run({"q1": [Hit("d1", 7), Hit("d2", 2.5)]}, name="mine")
    run.write_trec(tmp_path / "run.trec")
    text = (tmp_path / "run.trec").read_text()
    assert text == "q1 Q0 d1 1 7 mine\nq1 Q0 d2 2 2.5 mine\n"
    back = Run.read_trec(tmp_path / "run.trec")
    assert back.to_dict() == {"q1": {"d1": 7.0, "d2": 2.5}} and back.name == "mine"
    for bad, message in (
        ("q1 Q0 d1 1 x t\n", "not a number"),
        ("q1 Q0 d1 1\n", "6 columns"),
        ("q1 Q0 d1 1 1 t\nq1 Q0 d1 2 0 t\n", "listed twice"),
        ("q1 Q0 d1 1 nan t\n", "not finite"),
    ):
        (tmp_path / "bad.trec").write_text(bad)
        with pytest.raises(InputError, match=message):
            Run.read_trec(tmp_path / "bad.trec")


def test_load_beir_scifact(scifact_dir):
    dataset = load_beir(scifact_dir, "test")
    assert len(dataset.corpus) == 5183 and len(dataset.queries) == 300
    assert len(dataset.qrels) == 300
    train = load_beir(scifact_dir, "train")
    assert len(train.queries) == 809


def test_load_beir_missing_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a BEIR dataset"):
        load_beir(tmp_path, "test")
