"""Property: whatever an attacker writes into an index (checksums recomputed), ``open()``
refuses it with IndexFormatError, or every search answers or raises IndexCorruptError;
and when ``verify_index`` says OK, every exact search mode equals brute force.

The mutations and the judging are those of ``scripts/fuzz_index.py``; the judge runs in a
worker subprocess, so a segfault fails the test instead of killing pytest. A CI-sized number
of examples by default; ``SPARSE_IR_INDEX_FUZZ_EXAMPLES=1000`` for the long run (and
``SPARSE_IR_INDEX_FUZZ_REPORT=FILE`` writes the outcome counts as JSON).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from forge import generation_of
from fuzz_index import Worker, build_seeds, mutated_copy, random_mutation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("SPARSE_IR_INDEX_FUZZ_EXAMPLES", "40"))
OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return build_seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def worker():
    judge = Worker(timeout=300.0)
    yield judge
    judge.close()
    if report := os.environ.get("SPARSE_IR_INDEX_FUZZ_REPORT"):
        Path(report).write_text(json.dumps(dict(OUTCOMES), indent=1))


def test_mutated_indexes_are_refused_or_answered_never_crash(seeds, worker, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("fuzz-mutated")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        name=st.sampled_from(sorted(seeds)),
        seed=st.integers(0, 2**32 - 1),
        count=st.integers(1, 3),
    )
    def check(name, seed, count):
        rng = random.Random(seed)
        generation = generation_of(seeds[name])
        mutations = [random_mutation(rng, generation) for _ in range(count)]
        path = mutated_copy(seeds[name], scratch / "index", mutations)
        result = worker.judge(path)
        OUTCOMES[result["outcome"]] += 1
        OUTCOMES["examples"] += 1
        assert result["outcome"] != "finding", (result, name, mutations)

    check()
    # Both verdicts must occur, or the mutations are too weak (or too strong) to test anything.
    if EXAMPLES >= 40:
        assert OUTCOMES["refused"] and OUTCOMES["verified"] + OUTCOMES["answered, verify refused"]


def test_the_issue_cases_through_the_worker(seeds, worker, tmp_path):
    """The crafted cases of issue 14, judged in the subprocess (a segfault would fail here)."""
    cases = [
        [{"kind": "resize", "count": -1, "far": 10**8}],
        [{"kind": "resize", "count": -1, "far": 65536}],
        [{"kind": "resize", "count": 0, "far": 65536}],
        [{"kind": "field", "key": ["impact_dtype"], "value": "<f8"}],
        [{"kind": "field", "key": ["search_layout", "term_dtype"], "value": "<f8"}],
        [{"kind": "vocab", "how": "duplicate"}],
        [{"kind": "vocab", "how": "nest"}],
    ]
    for case in cases:
        for name in sorted(seeds):
            if name == "flat" and "search_layout" in json.dumps(case):
                continue  # no layout to forge
            result = worker.judge(mutated_copy(seeds[name], tmp_path / "index", case))
            assert result["outcome"] in ("refused", "answered, verify refused"), (name, case)
