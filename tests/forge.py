"""Forging indexes as an attacker would: values rewritten, every checksum recomputed.

CRCs detect accidents, not intent: these helpers rewrite a built index's manifest fields and
array files and then recompute the array footers and the manifest's sizes, CRC32s and own
checksum, so every integrity check passes and only validation can refuse the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from sparse_ir.index.storage import (
    IndexDirectory,
    file_crc32,
    open_array,
    read_array_header,
    write_array,
    write_manifest,
)


def generation_of(path: Path) -> Path:
    return IndexDirectory(path).current()


def manifest_body(generation: Path) -> dict:
    body = json.loads((generation / "manifest.json").read_text())
    body.pop("manifest_crc32", None)
    return body


def read(generation: Path, name: str) -> np.ndarray:
    """A copy of an array file's values (``name`` without ``.bin``)."""
    return np.array(open_array(generation / f"{name}.bin"))


def forge(
    path: Path,
    *,
    arrays: Mapping[str, np.ndarray] | None = None,
    manifest: Callable[[dict], None] | None = None,
    raw_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Rewrite arrays (``{name: values}`` in the file's dtype, or ``{name: (values, dtype)}``),
    raw files (``{file name: bytes}``) and manifest fields (``manifest(body)`` edits the
    body in place), then recompute every checksum. Returns the generation directory."""
    generation = generation_of(path)
    body = manifest_body(generation)
    for name, values in (arrays or {}).items():
        target = generation / f"{name}.bin"
        header = read_array_header(target)
        values, dtype = values if isinstance(values, tuple) else (values, header.dtype)
        values = np.asarray(values)
        target.unlink()
        record = write_array(target, header.name, values.astype(dtype, copy=False))
        body["files"][target.name] = record.to_dict()
    for name, data in (raw_files or {}).items():
        target = generation / name
        target.write_bytes(data)
        body["files"][name] = {"size": len(data), "crc32": file_crc32(target)}
    if manifest is not None:
        manifest(body)
    rewrite_manifest(generation, body)
    return generation


def rewrite_manifest(generation: Path, body: dict) -> None:
    (generation / "manifest.json").unlink()
    write_manifest(generation, {k: v for k, v in body.items() if k != "manifest_crc32"})
