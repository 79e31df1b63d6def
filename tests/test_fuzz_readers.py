"""Fuzzing every reader of user input (bounded here; ``scripts/fuzz.py --minutes N`` for longer).

Each input gives a result or :class:`~sparse_ir.errors.InputError` /
:class:`~sparse_ir.errors.IndexFormatError`, never another exception: the targets, seeds and
mutations are those of ``scripts/fuzz.py``, driven by hypothesis (which shrinks a failure to a
small input). Every crash the long runs found is a case below.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzz import DICTIONARY, TARGETS, mutate, run_one, target_seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 200
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _inputs(seeds: tuple[bytes, ...]):
    lines = sorted({line for seed in seeds for line in seed.split(b"\n")})
    mutated = st.builds(
        mutate, st.sampled_from(seeds), st.randoms(use_true_random=False), st.just(seeds)
    )
    spliced = st.lists(st.sampled_from(lines + DICTIONARY), max_size=12).map(b"\n".join)
    return st.one_of(mutated, spliced, st.binary(max_size=200))


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_reader_gives_a_result_or_a_clear_error(target):
    seeds = target_seeds(target)

    @FUZZ_SETTINGS
    @given(data=_inputs(seeds), skip_invalid=st.booleans())
    def check(data, skip_invalid):
        with tempfile.TemporaryDirectory() as directory:
            run_one(target, data, Path(directory), skip_invalid)

    check()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_seeds_are_read(target):
    with tempfile.TemporaryDirectory() as directory:
        for seed in target_seeds(target):
            path = Path(directory) / target.file_name
            path.write_bytes(seed)
            assert target.read(path, False) is not None


# Crashes found by scripts/fuzz.py, kept as regression cases.
FOUND = [
    ("json-vectors", b'{"id": "d1", "vector": {"a": ' + b"9" * 400 + b"}}\n"),  # OverflowError
    ("json-vectors", b'{"id": "d1", "vector": {"a": 1e400}}\n'),  # inf weight
]


@pytest.mark.parametrize("name, data", FOUND)
@pytest.mark.parametrize("skip_invalid", [False, True])
def test_found_crashes_stay_fixed(name, data, skip_invalid):
    [target] = [t for t in TARGETS if t.name == name]
    with tempfile.TemporaryDirectory() as directory:
        run_one(target, data, Path(directory), skip_invalid)


def test_sparse_batch_with_an_unsupported_compression_is_an_input_error():
    [target] = [t for t in TARGETS if t.name == "sparse-batch"]
    seed = bytearray(target_seeds(target)[0])
    central = seed.index(b"PK\x01\x02")  # the first member's central directory entry
    seed[central + 10] = 99  # its compression method: one zipfile does not implement
    with tempfile.TemporaryDirectory() as directory:
        run_one(target, bytes(seed), Path(directory), False)
