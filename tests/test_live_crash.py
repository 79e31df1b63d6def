"""Live index under kill -9 and under concurrent readers.

Crash: a fork server (``live_crash_worker.py``) runs writer steps (add, upsert, delete,
commit, merges at commit, a force-merge every third step) in a child and SIGKILLs it after a
random delay drawn over a step's whole duration. After every kill the index must open at a
commit (the one before the step, or the one after it), pass ``verify()`` and
``verify_index``, and answer exactly like brute force over that commit's documents; a step
that ran to completion must never be lost; the next writer takes over the dead one's lock.
SPARSE_IR_LIVE_KILLS sets the number of steps per kind (default 15).

Concurrency: while a writer commits and merges, readers in threads and in another process
(``live_reader_worker.py``) open and search the index in a loop: every answer must equal brute
force over exactly one commit's documents, with no error.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from live_steps import KINDS, apply_step, check_answers, live_ids, open_index, run_step

from sparse_ir.index.check import verify_index

STEPS = int(os.environ.get("SPARSE_IR_LIVE_KILLS", "15"))
HERE = Path(__file__).resolve().parent
FIGURES: Counter = Counter()


def _env() -> dict:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(HERE.parent)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )


@pytest.fixture(scope="module", params=KINDS)
def worker(request):
    process = subprocess.Popen(
        [sys.executable, str(HERE / "live_crash_worker.py"), request.param],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["ready"]
        yield request.param, process, ready["step_seconds"]
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def run(process, path: Path, step: int, kill_after: float) -> dict:
    process.stdin.write(
        json.dumps({"path": str(path), "step": step, "kill_after": kill_after}) + "\n"
    )
    process.stdin.flush()
    return json.loads(process.stdout.readline())


@pytest.mark.slow
def test_kill_9_during_add_commit_and_merge(worker, tmp_path):
    kind, process, seconds = worker
    path = tmp_path / "live"
    rng = random.Random(f"{kind}-live")
    model: dict[str, int] = {}
    step = 0
    durations = [seconds]
    for attempt in range(STEPS):
        # Every sixth step completes; two kills in five land in a step's second half, where
        # the commit, the merges and the removal of old generations run.
        late = rng.random() < 0.4
        kill_after = (
            120.0
            if attempt % 6 == 5
            else rng.uniform(0.5 if late else 0.0, 1.1 if late else 1.0) * seconds
        )
        answer = run(process, path, step, kill_after)
        if answer["outcome"] == "exited":  # how long a step takes now (the machine's load)
            durations.append(answer["elapsed"])
            seconds = statistics.median(durations[-5:])
        after = apply_step(model, step)
        if not (path / "CURRENT").exists():  # killed before the index was first created
            assert answer["outcome"] == "killed"
            FIGURES[f"{kind} kills"] += 1
            continue
        index = open_index(kind, path)
        found = live_ids(index)
        assert found in (set(model), set(after)), f"step {step}: neither before nor after"
        if answer["outcome"] == "exited":
            assert answer["status"] == 0 and found == set(after), "a finished step was lost"
        else:
            FIGURES[f"{kind} kills"] += 1
            FIGURES[
                f"{kind} kills after the commit"
                if found == set(after)
                else f"{kind} kills before the commit"
            ] += 1
        committed = after if found == set(after) else model
        index.verify()
        report = verify_index(path)
        assert report.ok, report.summary()
        FIGURES[f"{kind} checks"] += check_answers(kind, index, committed)
        if found == set(after):
            model, step = after, step + 1
    print(f"\nlive crash figures: {dict(FIGURES)}")


# -- concurrent readers ------------------------------------------------------------------------


def states(steps: int) -> list[dict[str, int]]:
    """The model after each of the first ``steps`` steps."""
    models, model = [], {}
    for step in range(steps):
        model = apply_step(model, step)
        models.append(model)
    return models


def read_until(kind: str, path: Path, models, stop: threading.Event, tally: Counter) -> None:
    """Open and search in a loop; every answer must come from one commit."""
    by_ids = {frozenset(m): m for m in models}
    while not stop.is_set():
        try:
            index = open_index(kind, path)
            model = by_ids[frozenset(live_ids(index))]
            tally["checks"] += check_answers(kind, index, model)
            tally["opens"] += 1
        except Exception as error:  # noqa: BLE001 - counted and reported
            tally[f"error: {type(error).__name__}: {error}"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_readers_in_threads_and_a_process_see_one_commit(kind, tmp_path):
    path = tmp_path / "live"
    steps = 9
    run_step(kind, path, 0)
    models = states(steps)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "live_reader_worker.py"), kind, str(path), str(steps)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    stop = threading.Event()
    tallies = [Counter() for _ in range(2)]
    threads = [
        threading.Thread(target=read_until, args=(kind, path, models, stop, t)) for t in tallies
    ]
    for thread in threads:
        thread.start()
    try:
        # The writer starts once the other process has read a commit (else, on a loaded
        # machine, every commit could be over before that process has started).
        assert process.stdout.readline().strip() == "ready"
        for step in range(1, steps):
            run_step(kind, path, step)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        (path / "STOP").touch()
        out, _ = process.communicate(timeout=120)
    remote = Counter(json.loads(out.strip().splitlines()[-1]))
    total = sum(tallies, Counter()) + remote
    print(f"\nlive readers ({kind}): {dict(total)}")
    assert not [key for key in total if key.startswith("error")], total
    assert total["opens"] > 0 and remote["opens"] > 0
