"""Fuzz ``open()`` + search on mutated indexes whose checksums were recomputed (an attacker's
indexes: CRCs catch accidents, not intent).

Each execution copies a small built impact index (with a multi-window search layout, or
without a layout), applies one to three mutations (a manifest field set to an interesting
value, array elements overwritten, an array resized together with its count, a slice
reversed, the vocabulary forged with its hash) and recomputes every array footer, file CRC32
and the manifest checksum. A worker *subprocess* then judges it, so a segfault is a finding,
not a dead fuzzer:

* ``open()`` refuses with :class:`~sparse_ir.errors.IndexFormatError`: **refused**;
* otherwise every query is searched in every mode (exhaustive, pruned, approximate; single
  and batch): each search answers or raises :class:`~sparse_ir.errors.IndexCorruptError`;
  then ``verify_index``. When it says OK, every exact answer must equal the brute-force
  answer over the postings (**verified**); when not, answers may be wrong but nothing may
  crash (**answered, verify refused**).

Anything else (another exception, a signal, a hang past ``--timeout``, a wrong answer from
an index verify accepts) is a **finding**, counted once per kind.

    python scripts/fuzz_index.py --minutes 5
    python scripts/fuzz.py --minutes 5 --target index      # the same, from the reader fuzzer

``tests/test_index_fuzz.py`` drives the same mutations through hypothesis
(``SPARSE_IR_INDEX_FUZZ_EXAMPLES`` sets how many).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository's sparse_ir first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

VOCAB = [f"t{i}" for i in range(24)]
QUERIES = [
    {"t0": 3, "t1": 1},
    {"t2": 1, "t3": 2, "t5": 1, "t7": 4},
    {"t0": 1, "t4": 1, "t8": 1, "t9": 1, "t10": 1, "t11": 1},
    {"t23": 2},
]
MODES = ("exhaustive", "pruned", "approximate")
EXACT = ("exhaustive", "pruned")
INTERESTING = [
    -(2**63),
    -(2**31) - 1,
    -(2**31),
    -65537,
    -65536,
    -2,
    -1,
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    17,
    255,
    256,
    65535,
    65536,
    65537,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**64,
    10**30,
]
ODD_VALUES = ["12", None, 1.5, True, [], {}, "|u1", "<u2", "<u4", "<f8", "<i4", ">u2", "O", ""]
MANIFEST_KEYS = [
    ("num_documents",),
    ("num_postings",),
    ("vocab_size",),
    ("max_impact",),
    ("impact_dtype",),
    ("has_contents",),
    ("quantizer", "max_impact"),
    ("quantizer", "scale"),
    ("search_layout", "num_segments"),
    ("search_layout", "num_windows"),
    ("search_layout", "window_bits"),
    ("search_layout", "term_dtype"),
    ("search_layout", "version"),
]
#: Arrays sized by the number of documents (resized together with ``num_documents``).
PER_DOCUMENT = ("doc_ids.offsets", "forward_offsets")


# -- the seed indexes ------------------------------------------------------------------------


def build_seeds(directory: Path) -> dict[str, Path]:
    """Three small impact indexes: two with a search layout of 25 windows of 8 documents (the
    builder's window size lowered, so every window path runs), as built now (the impact order
    the only postings) and with the document-ordered postings kept (format version 1), and
    one without a layout."""
    from sparse_ir import ImpactIndex, SparseBatch
    from sparse_ir.index import layout

    rng = np.random.default_rng(7)
    rows = []
    for _ in range(200):
        terms = rng.choice(len(VOCAB), size=rng.integers(1, 7), replace=False)
        rows.append({VOCAB[t]: int(rng.integers(1, 40)) for t in terms})
    batch = SparseBatch.from_dicts(rows, VOCAB, ids=[f"d{i}" for i in range(len(rows))])
    seeds = {}
    saved = layout.WINDOW_BITS
    layout.WINDOW_BITS = 3
    try:
        seeds["layout"] = directory / "layout"
        ImpactIndex.build(batch, seeds["layout"], show_progress=False)
        seeds["layout-kept"] = directory / "layout-kept"
        ImpactIndex.build(
            batch, seeds["layout-kept"], show_progress=False, doc_ordered_postings=True
        )
    finally:
        layout.WINDOW_BITS = saved
    seeds["flat"] = directory / "flat"
    ImpactIndex.build(batch, seeds["flat"], show_progress=False, search_layout=False)
    return seeds


# -- mutations (JSON-serializable descriptions, applied with recomputed checksums) --------------


def random_mutation(rng: random.Random, generation: Path) -> dict:
    """One mutation of the index generation ``generation`` (a description, not applied)."""
    body = json.loads((generation / "manifest.json").read_text())
    arrays = sorted(n[: -len(".bin")] for n in body["files"] if n.endswith(".bin"))
    kind = rng.choice(["field", "field", "elements", "elements", "elements", "resize",
                       "reverse", "vocab"])  # fmt: skip
    if kind == "field":
        keys = [k for k in MANIFEST_KEYS if len(k) == 1 or isinstance(body.get(k[0]), dict)]
        key = list(rng.choice(keys))
        value = rng.choice(INTERESTING + ODD_VALUES) if rng.random() < 0.7 else None
        if value is None:  # near the current value
            current = body.get(key[0]) if len(key) == 1 else body[key[0]].get(key[1])
            value = current + rng.choice([-2, -1, 1, 2]) if isinstance(current, int) else 0
        return {"kind": "field", "key": key, "value": value}
    if kind == "resize":
        count = rng.choice([-1, 0, 1, 7, 199, 201, 1000])
        return {"kind": "resize", "count": count, "far": rng.choice([10**8, 65536, 201, 200])}
    if kind == "vocab":
        return {"kind": "vocab", "how": rng.choice(["duplicate", "int", "null", "drop", "nest"])}
    name = rng.choice(arrays)
    if kind == "reverse":
        return {"kind": "reverse", "array": name, "start": rng.random(), "length": rng.random()}
    picks = [
        {"at": rng.random(), "value": rng.choice(INTERESTING), "delta": rng.choice([0, 0, -1, 1])}
        for _ in range(rng.randint(1, 4))
    ]
    return {"kind": "elements", "array": name, "picks": picks}


def apply_mutation(path: Path, mutation: dict) -> None:
    """Apply a mutation to the index at ``path`` and recompute every checksum."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from forge import forge, generation_of, read

    generation = generation_of(path)
    kind = mutation["kind"]
    if kind == "field":
        key, value = mutation["key"], mutation["value"]

        def edit(body):
            if len(key) == 1:
                body[key[0]] = value
            elif isinstance(body.get(key[0]), dict):
                body[key[0]][key[1]] = value

        forge(path, manifest=edit)
    elif kind == "resize":
        count, far = mutation["count"], mutation["far"]
        names = json.loads((generation / "manifest.json").read_text())["files"]
        # Documents of the postings: their numbers, or in-window offsets (uint16) without them.
        name = "postings_docs" if "postings_docs.bin" in names else "impact_order_docs"
        docs = read(generation, name)
        docs[: max(1, len(docs) // 3)] = min(far, int(np.iinfo(docs.dtype).max))
        arrays = {name: docs}
        for name in PER_DOCUMENT:
            if f"{name}.bin" in names:
                arrays[name] = np.zeros(max(count + 1, 0), np.int64)
        forge(path, arrays=arrays, manifest=lambda body: body.update(num_documents=count))
    elif kind == "vocab":
        _forge_vocabulary(path, generation, mutation["how"])
    else:
        values = read(generation, mutation["array"])
        changed = _changed(values, mutation)
        forge(path, arrays={mutation["array"]: changed})


def _changed(values: np.ndarray, mutation: dict) -> np.ndarray:
    values = values.copy()
    if not len(values):
        return values
    if mutation["kind"] == "reverse":
        start = int(mutation["start"] * len(values))
        end = min(len(values), start + 1 + int(mutation["length"] * len(values)))
        values[start:end] = values[start:end][::-1].copy()
        return values
    info = np.iinfo(values.dtype) if values.dtype.kind in "iu" else None
    for pick in mutation["picks"]:
        position = min(int(pick["at"] * len(values)), len(values) - 1)
        value = int(values[position]) + pick["delta"] if pick["delta"] else pick["value"]
        if info is not None:
            value = min(max(value, int(info.min)), int(info.max))
        values[position] = value
    return values


def _forge_vocabulary(path: Path, generation: Path, how: str) -> None:
    from forge import forge

    from sparse_ir.index.builder import vocab_hash

    try:
        vocab = json.loads((generation / "vocab.json").read_text())
    except (ValueError, RecursionError):  # an earlier mutation nested it: leave it so
        return
    if not isinstance(vocab, list) or len(vocab) < 4:
        return
    if how == "duplicate":
        vocab[1] = vocab[0]
    elif how == "int":
        vocab[2] = 7
    elif how == "null":
        vocab[3] = None
    elif how == "drop":
        vocab = vocab[:-1]
    if how == "nest":
        data = b"[" * 5000 + b"]" * 5000
        forge(path, raw_files={"vocab.json": data})
        return
    data = json.dumps(vocab).encode()
    forge(
        path,
        raw_files={"vocab.json": data},
        manifest=lambda b: b.update(vocab_hash=vocab_hash(vocab)),
    )


# -- judging (in the worker subprocess) --------------------------------------------------------


def judge(path: str) -> dict:
    """Open, search every query in every mode, verify; the outcome as a dict (never raises
    for the expected errors; anything else propagates to the caller)."""
    from sparse_ir import ImpactIndex
    from sparse_ir.errors import IndexCorruptError, IndexFormatError
    from sparse_ir.index.check import verify_index

    try:
        index = ImpactIndex.open(path)
    except IndexFormatError as exc:
        return {"outcome": "refused", "detail": str(exc)[:300]}
    answers: dict[tuple, object] = {}
    refused_searches = 0
    modes = MODES if index.has_search_layout else ("exhaustive",)
    for q, query in enumerate(QUERIES):
        for mode in modes:
            try:
                top = index.search_arrays(query, k=5, mode=mode)
                answers[(q, mode)] = (top.docnos.tolist(), top.scores.tolist())
            except IndexCorruptError:
                refused_searches += 1
    for mode in modes:
        try:
            index.search_batch(QUERIES, k=5, mode=mode, threads=2)
        except IndexCorruptError:
            refused_searches += 1
    report = verify_index(path)
    if not report.ok:
        return {"outcome": "answered, verify refused", "refused_searches": refused_searches}
    index.verify()  # must agree with verify_index
    for q, query in enumerate(QUERIES):
        expected = [(h.docno, h.score) for h in index.reference_search(query, k=5)]
        for mode in modes:
            if mode in EXACT:
                got = answers.get((q, mode))
                if got is None or list(zip(*got)) != expected:
                    raise AssertionError(
                        f"verify OK but {mode} search of query {q} answered {got}, "
                        f"brute force {expected}"
                    )
    return {"outcome": "verified", "refused_searches": refused_searches}


def worker_main() -> int:
    """Judge one path per stdin line; one JSON line per answer on stdout."""
    import logging

    logging.getLogger("sparse_ir").setLevel(logging.CRITICAL)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write on the answer channel
    for line in sys.stdin:
        try:
            result = judge(line.strip())
        except Exception as error:  # noqa: BLE001 - a finding: reported, not fatal
            frames = traceback.extract_tb(error.__traceback__)
            ours = [f for f in frames if "sparse_ir" in f.filename] or frames
            place = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
            result = {
                "outcome": "finding",
                "key": f"{type(error).__name__} at {place}",
                "detail": f"{error}"[:500],
            }
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


class Worker:
    """A judging subprocess, restarted after it dies (a signal is a finding)."""

    def __init__(self, timeout: float = 120.0):
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
        )
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def judge(self, path: Path) -> dict:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        process = self.process
        process.stdin.write(f"{path}\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], self.timeout)
        line = process.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if not ready:
            process.kill()
            process.wait()
            self.process = None
            return {"outcome": "finding", "key": f"hang (no answer in {self.timeout:.0f} s)"}
        code = process.wait()
        self.process = None
        return {"outcome": "finding", "key": f"worker died (exit status {code})"}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def mutated_copy(seed: Path, into: Path, mutations: list[dict]) -> Path:
    """A copy of the seed index at ``into`` with the mutations applied."""
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(seed, into, symlinks=True)
    for mutation in mutations:
        try:
            apply_mutation(into, mutation)
        except (ValueError, OverflowError, TypeError, RecursionError):
            pass  # a mutation that cannot be written (e.g. a negative size): skip it
    return into


def run(seconds: float, seed: int, timeout: float = 120.0) -> dict:
    """Fuzz for ``seconds``: executions, outcomes and distinct findings (with an example)."""
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    findings: dict[str, dict] = {}
    worker = Worker(timeout)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        seeds = build_seeds(Path(directory))
        from forge import generation_of

        executions = 0
        while time.monotonic() - started < seconds:
            name = rng.choice(sorted(seeds))
            generation = generation_of(seeds[name])
            mutations = [random_mutation(rng, generation) for _ in range(rng.randint(1, 3))]
            path = mutated_copy(seeds[name], Path(directory) / "mutated", mutations)
            result = worker.judge(path)
            executions += 1
            outcomes[result["outcome"]] += 1
            if result["outcome"] == "finding" and result["key"] not in findings:
                findings[result["key"]] = {"seed": name, "mutations": mutations, **result}
    worker.close()
    return {
        "executions": executions,
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes),
        "distinct_findings": len(findings),
        "findings": findings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--minutes", type=float, default=1.0, help="how long to fuzz (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds one judgment may take before it counts as a hang (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main()
    result = run(args.minutes * 60, args.seed, args.timeout)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"index: {result['executions']} executions in {result['seconds']} s, "
            f"{result['distinct_findings']} distinct finding(s); outcomes {result['outcomes']}"
        )
        for key, finding in result["findings"].items():
            print(f"    {key}: {json.dumps(finding['mutations'])}")
    return 1 if result["distinct_findings"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    sys.exit(main())
