"""How distributed encoding cuts a corpus into parts (no Ray needed): exact parts from any
block boundaries, the "auto" part size, and the plan a re-run keeps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparse_ir.distributed.encode import (
    ENCODE_MANIFEST,
    ENCODE_PLAN,
    EncodeJob,
    _cut_parts,
    _planned_part_size,
    read_encode_result,
    resolve_part_size,
)
from sparse_ir.errors import InputError


@pytest.mark.parametrize("rows", [[10], [3, 4, 0, 9], [1] * 17, [0], [25, 1, 1]])
@pytest.mark.parametrize("part_size", [1, 4, 5, 100])
def test_parts_cover_every_row_once_in_order_whatever_the_blocks(rows, part_size):
    parts = _cut_parts(rows, part_size)
    covered = [(block, row) for part in parts for block, a, b in part for row in range(a, b)]
    assert covered == [(block, row) for block, count in enumerate(rows) for row in range(count)]
    sizes = [sum(b - a for _, a, b in part) for part in parts]
    if not sum(rows):
        assert parts == []
        return
    assert all(size == part_size for size in sizes[:-1]) and 0 < sizes[-1] <= part_size
    # The same documents in other blocks give parts of the same sizes (what resuming needs).
    assert sizes == [sum(b - a for _, a, b in p) for p in _cut_parts([sum(rows)], part_size)]


def test_auto_part_size_is_four_parts_per_actor_within_bounds():
    assert resolve_part_size("auto", 2000, 1) == 500
    assert resolve_part_size("auto", 2000, 2) == 250
    assert resolve_part_size("auto", 2001, 2) == 251  # rounded up: never a ninth small part
    assert resolve_part_size("auto", 50, 2) == 100
    assert resolve_part_size("auto", 8_800_000, 16) == 1000
    assert resolve_part_size(7, 8_800_000, 16) == 7


def test_the_plan_keeps_the_auto_part_size_for_a_rerun_with_other_actors(tmp_path):
    job = EncodeJob("corpus.jsonl", tmp_path, actors=2)
    assert _planned_part_size(tmp_path, job, "/c.jsonl", 2000) == 250
    body = json.loads((tmp_path / ENCODE_PLAN).read_text())
    assert body == {"corpus": "/c.jsonl", "documents": 2000, "part_size": 250}
    one_actor = EncodeJob("corpus.jsonl", tmp_path, actors=1)
    assert _planned_part_size(tmp_path, one_actor, "/c.jsonl", 2000) == 250
    # Another corpus (or a changed one) is planned afresh; an explicit size wins.
    assert _planned_part_size(tmp_path, one_actor, "/c.jsonl", 2400) == 600
    explicit = EncodeJob("corpus.jsonl", tmp_path, actors=1, part_size=64)
    assert _planned_part_size(tmp_path, explicit, "/c.jsonl", 2400) == 64
    (tmp_path / ENCODE_PLAN).write_text("{")
    with pytest.raises(InputError, match="corrupt encoding plan"):
        _planned_part_size(tmp_path, one_actor, "/c.jsonl", 2400)


@pytest.mark.parametrize("value", [0, "big", 2.5, True])
def test_a_bad_part_size_names_the_rule(value):
    with pytest.raises(ValueError, match='part_size must be an integer >= 1 or "auto"'):
        EncodeJob("corpus.jsonl", "out", part_size=value)


@pytest.mark.parametrize(
    "body, rule",
    [
        ("[1, 2]", "not an object"),
        ('{"corpus": "/c.jsonl", "documents": 2000, "part_size": true}', "not an integer"),
        ('{"corpus": "/c.jsonl", "documents": 2000, "part_size": -5}', "not an integer"),
        ("[" * 100_000, "corrupt encoding plan"),
        (" " * (70 * 1024) + "{}", "corrupt encoding plan"),
    ],
)
def test_a_hostile_plan_is_refused_naming_the_file(tmp_path, body, rule):
    (tmp_path / ENCODE_PLAN).write_text(body)
    job = EncodeJob("corpus.jsonl", tmp_path, actors=2)
    with pytest.raises(InputError, match=rule) as caught:
        _planned_part_size(tmp_path, job, "/c.jsonl", 2000)
    assert caught.value.path == str(tmp_path / ENCODE_PLAN)


def test_a_plan_linked_to_an_endless_file_is_refused_not_read_forever(tmp_path):
    (tmp_path / ENCODE_PLAN).symlink_to("/dev/zero")
    job = EncodeJob("corpus.jsonl", tmp_path, actors=2)
    with pytest.raises(InputError, match="corrupt encoding plan"):
        _planned_part_size(tmp_path, job, "/c.jsonl", 2000)


@pytest.mark.parametrize(
    "body, rule",
    [
        ("[]", "not an encoding manifest"),
        ('{"format": 0}', "not an encoding manifest"),
        ("{" * 100_000, "corrupt encoding manifest"),
    ],
)
def test_a_hostile_encoding_manifest_is_refused_naming_the_file(tmp_path, body, rule):
    (tmp_path / ENCODE_MANIFEST).write_text(body)
    with pytest.raises(InputError, match=rule) as caught:
        read_encode_result(tmp_path)
    assert caught.value.path == str(tmp_path / ENCODE_MANIFEST)


def test_an_encoding_manifest_without_its_lists_or_linked_to_dev_zero_is_refused(tmp_path):
    from sparse_ir.distributed.encode import ENCODE_FORMAT

    (tmp_path / ENCODE_MANIFEST).write_text(json.dumps({"format": ENCODE_FORMAT, "parts": 3}))
    with pytest.raises(InputError, match="'parts' is not a list"):
        read_encode_result(tmp_path)
    (tmp_path / ENCODE_MANIFEST).unlink()
    (tmp_path / ENCODE_MANIFEST).symlink_to("/dev/zero")
    with pytest.raises(InputError, match="corrupt encoding manifest"):
        read_encode_result(tmp_path)


def test_an_encoder_process_keeps_freed_memory_and_counts_its_usage():
    # In a process of its own, as in an encoder actor (the settings must not stay in the test
    # runner's allocator): glibc (this machine's C library) takes them, and the page faults of
    # touching 64 MB of fresh memory are counted.
    code = (
        "import platform, numpy as np\n"
        "from sparse_ir.distributed.encode import _keep_freed_memory, _process_usage\n"
        "faults, system = _process_usage()\n"
        "assert _keep_freed_memory() is (platform.libc_ver()[0] == 'glibc')\n"
        "np.ones(64 << 20, np.uint8)\n"
        "later, later_system = _process_usage()\n"
        "assert later > faults > 0 and later_system >= system >= 0, (faults, later)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
