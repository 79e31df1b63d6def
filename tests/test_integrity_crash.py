"""kill -9 during builds, at random moments: the index is always the old one or the new one.

A fork server (``crash_worker.py``) builds a 3,000-document index (spilled runs, stored
contents) over an existing one in a child process and SIGKILLs it after a random delay drawn
from the whole duration of a build (two times in five from around its end, where the new
generation is renamed into place and CURRENT replaced); every sixth build runs to completion,
which measures how long a build takes on the machine as it is and must remove what the killed
builds left behind. After every kill the index must open, pass ``verify()`` and
``verify_index``, and answer exactly like the old or the new collection (brute force); the next
build must remove what the killed one left behind.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from index_kinds import KINDS, MEDIUM
from integrity_figures import record

from sparse_ir.errors import IndexCorruptError
from sparse_ir.index.check import verify_index
from sparse_ir.index.storage import IndexDirectory

KILLS = int(os.environ.get("SPARSE_IR_KILLS", "50"))
NO_KILL = 120.0  # seconds: a build that should complete and has not by then has hung
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", params=sorted(KINDS))
def worker(request):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(HERE.parent)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    process = subprocess.Popen(
        [sys.executable, str(HERE / "crash_worker.py"), request.param],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["ready"]
        yield KINDS[request.param], process, ready["build_seconds"]
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def build(process, path: Path, seed: int, kill_after: float) -> dict:
    process.stdin.write(
        json.dumps({"path": str(path), "seed": seed, "size": "MEDIUM", "kill_after": kill_after})
        + "\n"
    )
    process.stdin.flush()
    return json.loads(process.stdout.readline())


@cache
def expected(kind_name: str, seed: int) -> tuple:
    return KINDS[kind_name].expected(seed, MEDIUM)


def test_kill_9_during_rebuild_leaves_old_or_new(worker, tmp_path):
    kind, process, seconds = worker
    path = tmp_path / "index"
    assert build(process, path, 0, kill_after=NO_KILL)["status"] == 0
    live = 0
    rng = random.Random(20261122)
    outcomes: Counter = Counter()
    durations = [seconds]
    seed = 0
    while outcomes["killed"] < KILLS:
        seed += 1
        if seed % 6 == 0:
            # An uninterrupted build, now and then: it must remove what the killed ones left,
            # and its duration keeps the kill delays spread over a whole build on a busy machine.
            result = build(process, path, seed, kill_after=NO_KILL)
            assert result["status"] == 0, result
            durations.append(result["elapsed"])
            assert IndexDirectory(path).leftovers() == []
            assert kind.answers(kind.open(path)) == expected(kind.name, seed)
            live = seed
            outcomes["complete builds"] += 1
            continue
        seconds = statistics.median(durations[-5:])
        # Uniform over the whole build, and more often near its end, where the switch happens.
        window = (0, 1.1) if seed % 2 else (0.75, 1.15)
        result = build(process, path, seed, kill_after=rng.uniform(*window) * seconds)
        assert result["status"] in (0, -9), f"build {seed} failed on its own: {result}"
        outcomes[result["outcome"]] += 1
        leftovers = IndexDirectory(path).leftovers()
        if leftovers:
            outcomes["left temporaries"] += 1
        if any(p.name.startswith("gen-") for p in leftovers):
            outcomes["killed between rename and CURRENT"] += 1
        index = kind.open(path)
        kind.verify(index)
        report = verify_index(path)
        assert report.ok, report.summary()
        answers = kind.answers(index)
        if answers == expected(kind.name, live):
            outcomes["old index after"] += 1
        else:
            assert answers == expected(kind.name, seed), f"build {seed}: neither old nor new"
            outcomes["new index after"] += 1
            live = seed
        del index
    print(f"\n{kind.name}: {dict(outcomes)} (a build takes {seconds:.2f}s)")
    record(
        "kill -9 rebuild", kind=kind.name, outcomes=dict(outcomes), build_seconds=round(seconds, 2)
    )
    assert outcomes["old index after"] and outcomes["left temporaries"]
    # The next build removes what the killed ones left.
    assert build(process, path, seed + 1, kill_after=NO_KILL)["status"] == 0
    directory = IndexDirectory(path)
    assert directory.leftovers() == []
    assert not [p for p in path.iterdir() if p.name.startswith(".tmp-")]
    assert len(directory.generations()) <= 2
    assert kind.answers(kind.open(path)) == expected(kind.name, seed + 1)


def test_kill_9_during_first_build_leaves_no_index(worker, tmp_path):
    kind, process, seconds = worker
    rng = random.Random(7)
    outcomes: Counter = Counter()
    for attempt in range(8):
        path = tmp_path / f"index-{attempt}"
        result = build(process, path, 100 + attempt, kill_after=rng.uniform(0, 0.9 * seconds))
        if result["outcome"] == "exited":
            assert kind.answers(kind.open(path)) == expected(kind.name, 100 + attempt)
            outcomes["completed before the kill"] += 1
            continue
        outcomes["killed"] += 1
        try:
            index = kind.open(path)
        except (IndexCorruptError, FileNotFoundError) as error:
            assert "no CURRENT" in str(error) or "no index" in str(error)
            outcomes["no index after (refused to open)"] += 1
        else:  # killed after CURRENT was written, while deleting nothing: complete
            assert kind.answers(index) == expected(kind.name, 100 + attempt)
            outcomes["complete new index after"] += 1
        assert build(process, path, 200, kill_after=NO_KILL)["status"] == 0
        assert IndexDirectory(path).leftovers() == []
        assert kind.answers(kind.open(path)) == expected(kind.name, 200)
    record("kill -9 first build", kind=kind.name, outcomes=dict(outcomes))
