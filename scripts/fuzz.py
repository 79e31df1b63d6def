"""Fuzz every reader of user input: each input must give a result or a clear error, nothing else.

A target is a reader (corpus JSONL, queries JSONL, TSV topics, qrels, TREC run,
JsonVectorCollection, SparseBatch file, pre-encoded queries as TSV, JSONL and JSON). Inputs
are mutations of small valid files: bytes flipped, inserted or deleted, lines spliced,
duplicated or cut, and tokens that broke readers before (a BOM, deep nesting, huge numbers,
NaN, NUL, lone surrogates, very long lines). The reader passes when it returns or raises
:class:`~sparse_ir.errors.InputError` / :class:`~sparse_ir.errors.IndexFormatError`; any other
exception is a crash, counted once per (exception type, place raised).

``tests/test_fuzz_readers.py`` runs each target for a bounded number of examples through
hypothesis; this script runs them for longer::

    python scripts/fuzz.py --minutes 5            # every target, 5 minutes shared
    python scripts/fuzz.py --minutes 1 --target qrels --seed 7

and prints, per target, the executions, the distinct crashes and the seconds spent (exit
status 1 when any crash was found, with one example input saved per crash under --crashes).
The ``index`` target (``scripts/fuzz_index.py``) mutates built indexes, recomputes their
checksums and judges ``open()`` + search in a subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository's sparse_ir first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from sparse_ir.errors import IndexFormatError, InputError  # noqa: E402

#: What a reader may raise on bad input.
EXPECTED = (InputError, IndexFormatError)


@dataclass(frozen=True)
class Target:
    """One reader: the file name it is given, valid seed files, and how it is called."""

    name: str
    file_name: str
    seeds: tuple[bytes, ...]
    read: Callable[[Path, bool], object]  # (path, skip_invalid) -> anything


def _corpus(path, skip):
    from sparse_ir.corpus import load_corpus

    return load_corpus(path, skip_invalid=skip, allow_empty=skip)


def _queries(path, skip):
    from sparse_ir.corpus import load_queries

    return load_queries(path, skip_invalid=skip)


def _qrels(path, skip):
    from sparse_ir.eval import evaluate, read_qrels
    from sparse_ir.results import Hit, Run

    qrels = read_qrels(path, skip_invalid=skip)
    # The values must also be ones the metric library takes (relevance 10^23 raised
    # SystemError inside pytrec_eval).
    some = next(iter(qrels))
    run = Run({some: [Hit(doc, 1.0) for doc in list(qrels[some])[:3]]})
    return evaluate(run, qrels, ["nDCG@10"])


def _run(path, skip):
    from sparse_ir.results import Run

    run = Run.read_trec(path, skip_invalid=skip)
    run.to_dict()
    return run


def _json_vectors(path, skip):
    from sparse_ir.export.jsonvector import read_json_vectors

    return list(read_json_vectors([path], skip_invalid=skip, scale_floats=skip))


def _encoded(path, skip):
    from sparse_ir.export.queries import read_encoded_queries

    return read_encoded_queries(path, skip_invalid=skip)


def _sparse_batch(path, skip):
    from sparse_ir.sparse_batch import SparseBatch

    batch = SparseBatch.load(path)
    batch.to_dicts()
    return batch


def _npz_seed() -> bytes:
    from sparse_ir.sparse_batch import SparseBatch

    batch = SparseBatch(
        np.array([0, 2, 3]),
        np.array([0, 2, 1], np.int32),
        np.array([0.5, 1.25, 2.0], np.float32),
        ("a", "b", "c"),
        ("d1", "d2"),
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "v.npz"
        batch.save(path)
        return path.read_bytes()


TARGETS = [
    Target(
        "corpus",
        "corpus.jsonl",
        (
            b'{"_id": "d1", "title": "T", "text": "cancer cells"}\n'
            b'{"_id": 2, "text": "tumor growth", "extra": [1, {"a": null}]}\n',
            b'{"id": "p1", "contents": "pyserini style"}\n',
        ),
        _corpus,
    ),
    Target(
        "queries-jsonl",
        "queries.jsonl",
        (b'{"_id": "q1", "text": "what causes cancer"}\n{"_id": "q2", "text": "x"}\n',),
        _queries,
    ),
    Target("topics-tsv", "topics.tsv", (b"q1\twhat causes cancer\nq2\ttumor\n",), _queries),
    Target(
        "qrels",
        "qrels.tsv",
        (
            b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td1\t0\n",
            b"q1 0 d1 1\nq1 0 d3 -1\n",
        ),
        _qrels,
    ),
    Target(
        "trec-run",
        "run.trec",
        (b"q1 Q0 d1 1 12 tag\nq1 Q0 d2 2 11.5 tag\nq2 Q0 d1 1 -3e2 tag\n",),
        _run,
    ),
    Target(
        "json-vectors",
        "vectors.jsonl",
        (
            b'{"id": "d1", "contents": "x", "vector": {"a": 3, "b": 1}}\n'
            b'{"id": "d2", "vector": {"c": 7}}\n',
        ),
        _json_vectors,
    ),
    Target("encoded-tsv", "encoded.tsv", (b"q1\ta a b\nq2\tc\n",), _encoded),
    Target(
        "encoded-jsonl",
        "encoded.jsonl",
        (b'{"id": "q1", "vector": {"a": 2, "b": 0.5}}\n{"qid": 7, "vector": {}}\n',),
        _encoded,
    ),
    Target(
        "encoded-json", "encoded.json", (b'{"q1": {"a": 2, "b": 1.5}, "q2": {"c": 1}}',), _encoded
    ),
    Target("sparse-batch", "vectors.npz", (), _sparse_batch),
]

#: Byte strings that broke readers or are known troublemakers.
DICTIONARY = [
    b"\xef\xbb\xbf",
    b"\xef\xbb\xbf" * 2,
    b"[" * 2000,
    b'{"a":' * 500,
    b"100000000000000000000000",
    b"4611686018427387904",
    b"1e400",
    b"-1e400",
    b"NaN",
    b"Infinity",
    b"\x00",
    b"\\ud800",
    b"\\u0000",
    b"\xff\xfe",
    b"\r",
    b"\t",
    b" ",
    b"\n",
    b'"',
    b"9" * 400,
    b"-0",
    b"2147483648",
    b"1_0",
    b"\xd9\xa1",
    b"\xe2\x80\xa8",
    b"\x1f\x8b\x08",
    b"PK\x03\x04",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b"-",
    b"0.5",
    b"1e-400",
]


def mutate(data: bytes, rng: random.Random, seeds: tuple[bytes, ...]) -> bytes:
    """A few random edits of ``data`` (byte-level, line-level and dictionary tokens)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.randrange(9)
        position = rng.randint(0, len(out))
        if choice == 0 and out:  # flip a byte
            out[min(position, len(out) - 1)] = rng.randrange(256)
        elif choice == 1:  # insert a token
            out[position:position] = rng.choice(DICTIONARY)
        elif choice == 2 and out:  # delete a span
            del out[position : position + rng.randint(1, 16)]
        elif choice == 3:  # cut the file
            del out[position:]
        elif choice == 4:  # duplicate a line
            lines = bytes(out).split(b"\n")
            pick = rng.randrange(len(lines))
            lines.insert(pick, lines[pick])
            out = bytearray(b"\n".join(lines))
        elif choice == 5 and seeds:  # splice another seed in
            other = rng.choice(seeds)
            cut = rng.randint(0, len(other))
            out[position:] = other[cut:]
        elif choice == 6:  # replace a JSON value or a column by a token
            out[position : position + rng.randint(1, 8)] = rng.choice(DICTIONARY)
        elif choice == 7:  # a long run of one byte
            out[position:position] = bytes([rng.choice(b'a[{ "\\0')]) * rng.randint(1, 5000)
        else:  # an ASCII byte at random
            out[position:position] = bytes([rng.randrange(128)])
    return bytes(out)


def target_seeds(target: Target) -> tuple[bytes, ...]:
    return target.seeds or (_npz_seed(),)


def run_one(target: Target, data: bytes, directory: Path, skip_invalid: bool) -> None:
    """Feed ``data`` to the target; raise only if the reader fails in an unexpected way."""
    path = directory / target.file_name
    path.write_bytes(data)
    try:
        target.read(path, skip_invalid)
    except EXPECTED:
        pass


def crash_key(error: BaseException) -> str:
    """Exception type and the innermost sparse_ir frame (or the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "sparse_ir" in f.filename] or frames
    place = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(error).__name__} at {place}"


def fuzz(
    target: Target, seconds: float, rng: random.Random, crashes_dir: Path | None
) -> tuple[int, dict[str, bytes]]:
    """Run ``target`` for ``seconds``; ``(executions, {crash key: example input})``."""
    seeds = target_seeds(target)
    crashes: dict[str, bytes] = {}
    executions = 0
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as directory:
        while time.monotonic() < deadline:
            data = mutate(rng.choice(seeds), rng, seeds)
            executions += 1
            try:
                run_one(target, data, Path(directory), skip_invalid=rng.random() < 0.5)
            except Exception as error:  # noqa: BLE001 - a crash is what we look for
                key = crash_key(error)
                if key not in crashes:
                    crashes[key] = data
                    if crashes_dir is not None:
                        crashes_dir.mkdir(parents=True, exist_ok=True)
                        name = f"{target.name}-{len(crashes)}.bin"
                        (crashes_dir / name).write_bytes(data)
    return executions, crashes


def _fuzz_index(seconds: float, seed: int) -> dict:
    """The 'index' target: scripts/fuzz_index.py (mutated indexes judged in a subprocess)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fuzz_index import run

    result = run(seconds, seed)
    return {
        "target": "index",
        "executions": result["executions"],
        "distinct_crashes": result["distinct_findings"],
        "seconds": result["seconds"],
        "crashes": sorted(result["findings"]),
        "outcomes": result["outcomes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=1.0,
        help="total time, shared by the targets (default: %(default)s)",
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=[t.name for t in TARGETS] + ["index"],
        help="fuzz only this target (repeatable; default: all; 'index': open() and search "
        "on mutated indexes with recomputed checksums, scripts/fuzz_index.py)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--crashes",
        type=Path,
        default=None,
        help="directory to save one input per distinct crash (default: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("sparse_ir").setLevel(logging.ERROR)  # skipped-record summaries
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    with_index = not args.target or "index" in args.target
    share = args.minutes * 60 / (len(chosen) + with_index)
    rng = random.Random(args.seed)
    rows = []
    if with_index:
        rows.append(_fuzz_index(share, args.seed))
    for target in chosen:
        started = time.monotonic()
        executions, crashes = fuzz(target, share, rng, args.crashes)
        rows.append(
            {
                "target": target.name,
                "executions": executions,
                "distinct_crashes": len(crashes),
                "seconds": round(time.monotonic() - started, 1),
                "crashes": sorted(crashes),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        out = io.StringIO()
        out.write(f"{'target':<16} {'executions':>10} {'crashes':>8} {'seconds':>8}\n")
        for row in rows:
            out.write(
                f"{row['target']:<16} {row['executions']:>10} "
                f"{row['distinct_crashes']:>8} {row['seconds']:>8}\n"
            )
            for key in row["crashes"]:
                out.write(f"    {key}\n")
        print(out.getvalue(), end="")
    return 1 if any(row["distinct_crashes"] for row in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
