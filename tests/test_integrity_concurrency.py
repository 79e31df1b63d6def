"""Readers while new generations are published: always a complete, correct index.

Deterministic races (a publish slipped in between the steps of ``open()``), a reader that keeps
an old generation open while it is deleted, and live reader threads and processes searching
while a writer publishes generation after generation. Every answer must be the brute-force
answer of one published collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from index_kinds import KINDS, SPILLING
from integrity_figures import record

from sparse_ir.index.storage import IndexDirectory

HERE = Path(__file__).resolve().parent


@pytest.fixture(params=sorted(KINDS))
def kind(request):
    return KINDS[request.param]


def test_reader_keeps_answering_after_its_generation_is_deleted(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    reader = kind.open(path)
    first = IndexDirectory(path).current()
    kind.build(path, 2, SPILLING)
    kind.build(path, 3, SPILLING)  # keep_previous=1: the first generation is now deleted
    assert not first.exists()
    assert kind.answers(reader) == kind.expected(1, SPILLING)
    assert kind.answers(kind.open(path)) == kind.expected(3, SPILLING)


def _publish_twice_once(kind, path: Path, seeds=(2, 3)):
    done = []

    def publish():
        if not done:
            done.append(True)
            for seed in seeds:
                kind.build(path, seed, SPILLING)

    return publish


def test_open_retries_when_two_publishes_land_after_current_is_read(kind, tmp_path, monkeypatch):
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    publish = _publish_twice_once(kind, path)
    real_current = IndexDirectory.current

    def current_then_publish(self):
        generation = real_current(self)
        publish()  # the generation just resolved is deleted before any file is opened
        return generation

    monkeypatch.setattr(IndexDirectory, "current", current_then_publish)
    assert kind.answers(kind.open(path)) == kind.expected(3, SPILLING)


def test_open_retries_when_two_publishes_land_inside_current(kind, tmp_path, monkeypatch):
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    publish = _publish_twice_once(kind, path)
    real_parse = IndexDirectory._parse_pointer

    def parse_then_publish(self, raw):
        name = real_parse(self, raw)
        publish()  # CURRENT was read; the generation it names vanishes before it is checked
        return name

    monkeypatch.setattr(IndexDirectory, "_parse_pointer", parse_then_publish)
    assert kind.answers(kind.open(path)) == kind.expected(3, SPILLING)


def test_damage_is_not_mistaken_for_a_publish(kind, tmp_path):
    path = tmp_path / "index"
    kind.build(path, 1, SPILLING)
    generation = IndexDirectory(path).current()
    victim = min(generation.glob("*.bin"))
    victim.write_bytes(victim.read_bytes()[:-1])
    from sparse_ir.errors import IndexCorruptError

    with pytest.raises(IndexCorruptError, match=victim.name):
        kind.open(path)


def test_reader_threads_and_processes_while_generations_are_published(kind, tmp_path):
    path = tmp_path / "index"
    seeds = list(range(10, 20))
    expected = {str(seed): json.loads(json.dumps(kind.expected(seed, SPILLING))) for seed in seeds}
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    stop = tmp_path / "stop"
    kind.build(path, seeds[0], SPILLING)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(HERE.parent)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        ),
    )
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "reader_worker.py"),
                kind.name,
                str(path),
                str(tmp_path / "expected.json"),
                str(stop),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert json.loads(process.stdout.readline())["ready"]
        finished = threading.Event()
        thread_results: list[dict] = []

        def read_in_thread():
            kept = kind.open(path)
            kept_answers = kind.answers(kept)
            opens, seen, failures = 0, set(), []
            while not finished.is_set() and not failures:
                answers = json.loads(json.dumps(kind.answers(kind.open(path))))
                if expected.get(str(answers[0])) != answers:
                    failures.append(f"thread open {opens}: answers match no collection")
                if kind.answers(kept) != kept_answers:
                    failures.append("an index kept open changed its answers")
                seen.add(answers[0])
                opens += 1
            thread_results.append({"opens": opens, "seeds": sorted(seen), "failures": failures})

        threads = [threading.Thread(target=read_in_thread) for _ in range(2)]
        for thread in threads:
            thread.start()
        for seed in seeds[1:]:
            kind.build(path, seed, SPILLING)
        finished.set()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop.touch()
        process_results = [
            json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in processes
        ]
    results = thread_results + process_results
    print(
        f"\n{kind.name}: {len(seeds) - 1} publishes; readers: "
        + "; ".join(f"{r['opens']} opens over {len(r['seeds'])} generations" for r in results)
    )
    record(
        "readers during publishes",
        kind=kind.name,
        publishes=len(seeds) - 1,
        readers=[
            {"opens": r["opens"], "generations": len(r["seeds"]), "failures": len(r["failures"])}
            for r in results
        ],
    )
    for result in results:
        assert not result["failures"], result["failures"]
        assert result["opens"] > 0
    assert max(len(r["seeds"]) for r in results) >= 2
