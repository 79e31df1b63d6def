"""Threads fitted to the machine: the decision, the measurement, and the encoders' option."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from sparse_ir.encoders.dense import DenseEncoder
from sparse_ir.encoders.splade import SpladeEncoder
from sparse_ir.encoders.threads import BatchThreads, CoreMeter, fitted_threads


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_fitted_threads_leave_the_busy_cores_alone():
    assert fitted_threads(2, 0.0, 2) == 2
    assert fitted_threads(2, 0.4, 2) == 2  # a core mostly free
    assert fitted_threads(2, 0.6, 2) == 1
    assert fitted_threads(2, 1.0, 2) == 1  # one competing busy process on 2 cores
    assert fitted_threads(2, 7.0, 2) == 1  # never fewer than one
    assert fitted_threads(4, 1.0, 8) == 4  # never more than configured
    assert fitted_threads(8, 2.2, 8) == 6
    assert fitted_threads(2, None, 2) == 2  # nothing measured: as configured


class _Meter:
    def __init__(self, busy):
        self.busy, self.cpus = busy, [0, 1]

    def busy_elsewhere(self):
        return self.busy


def test_batch_threads_fit_large_batches_and_restore(two_threads):
    long = [[101] * 300]
    threads = BatchThreads(single_thread_tokens=256, adapt=True)
    threads.meter = _Meter(1.0)  # one core taken by another process
    with threads.batch(long):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    threads.meter = _Meter(0.0)
    with threads.batch(long):
        assert torch.get_num_threads() == 2
    with threads.batch([[101, 102]]):  # a small batch: one thread whatever the machine does
        assert torch.get_num_threads() == 1
    assert threads.chosen == [1, 2, 1]
    fixed = BatchThreads(single_thread_tokens=256, adapt=False)
    with fixed.batch(long):
        assert torch.get_num_threads() == 2
    assert fixed.meter is None and fixed.chosen == [2]
    small_only = BatchThreads(single_thread_tokens=256, adapt=True)
    with small_only.batch([[101, 102]]):
        pass
    assert small_only.meter is None  # a one-query call reads nothing from /proc


def test_core_meter_sees_a_busy_process():
    meter = CoreMeter()
    if meter.busy_elsewhere() is None:
        pytest.skip("no /proc here")
    loop = "import time\nend = time.monotonic() + 5\nwhile time.monotonic() < end:\n    pass\n"
    busy = subprocess.Popen([sys.executable, "-c", loop])
    try:
        time.sleep(0.5)  # the child is running its loop
        meter.busy_elsewhere()  # a span starts
        time.sleep(0.5)
        assert meter.busy_elsewhere() >= 0.5  # the loop's core (and whatever else runs)
    finally:
        busy.kill()
        busy.wait()


def test_core_meter_does_not_count_this_process():
    meter = CoreMeter()
    if meter.busy_elsewhere() is None:
        pytest.skip("no /proc here")
    started = time.monotonic()
    while time.monotonic() - started < 0.3:  # this process busy on one core
        pass
    busy = meter.busy_elsewhere()
    # our own core is not counted: what remains is other processes' work, at most every core
    assert 0.0 <= busy <= len(meter.cpus)


def test_adapted_and_fixed_threads_give_the_same_vectors(tiny_bert_dir, two_threads):
    # over 256 tokens in one batch (the threads are fitted), under 128 positions each
    texts = ["the cancer cells in mice " * 20, "gene expression in human brain " * 15, "a"]
    texts += ["blood risk of the disease increased " * 15]
    adapted = SpladeEncoder.from_pretrained(str(tiny_bert_dir), precision="float32")
    fixed = SpladeEncoder.from_pretrained(
        str(tiny_bert_dir), precision="float32", adapt_threads=False
    )
    assert adapted.adapt_threads and not fixed.adapt_threads
    a = adapted.encode_documents(texts, show_progress=False).to_scipy().toarray()
    b = fixed.encode_documents(texts, show_progress=False).to_scipy().toarray()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("value", [1, "yes", None])
@pytest.mark.parametrize("encoder", [SpladeEncoder, DenseEncoder])
def test_adapt_threads_must_be_a_bool(tiny_bert_dir, encoder, value):
    with pytest.raises(ValueError, match="adapt_threads must be True or False"):
        encoder.from_pretrained(str(tiny_bert_dir), adapt_threads=value)


def test_index_command_threads_option(tmp_path, tiny_bert_dir, capsys, two_threads):
    import json

    from sparse_ir.cli import main
    from sparse_ir.index.impact_index import ImpactIndex

    corpus = tmp_path / "corpus.jsonl"
    # over 256 tokens in all (one batch), under the tiny model's 128 positions each
    texts = ["the cancer cells in mice " * 18, "human brain cells", "gene expression " * 40]
    texts += ["blood risk of the disease " * 18]
    corpus.write_text(
        "".join(json.dumps({"_id": f"c{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    common = ["index", "--input", str(corpus), "--model", str(tiny_bert_dir)]
    common += ["--precision", "float32"]
    assert main(common + ["--output", str(tmp_path / "auto")]) == 0
    assert main(common + ["--output", str(tmp_path / "one"), "--threads", "1"]) == 0
    auto, one = ImpactIndex.open(tmp_path / "auto"), ImpactIndex.open(tmp_path / "one")
    assert auto.doc_ids == one.doc_ids and auto.num_postings == one.num_postings
    query = {"cancer": 1.0, "brain": 1.0}
    assert auto.search(query, 3) == one.search(query, 3)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(common + ["--output", str(tmp_path / "zero"), "--threads", "0"])
    assert "--threads" in capsys.readouterr().err
