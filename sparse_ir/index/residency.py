"""Keeping an index's memory-mapped arrays in RAM: access hints, locking, or a private copy.

An index is memory-mapped: its pages live in the operating system's page cache, shared with
every process reading the same files, and the kernel may evict them when memory runs short;
the next search then waits for the disk. ``ImpactIndex.open(path, resident=True)`` asks for the
arrays the searches read to stay in memory:

* ``"lock"``: fault every page in and ``mlock`` the mapping. The pages stay in the shared page
  cache (other readers of the same index share them) and cannot be evicted while the index is
  open. Needs the ``CAP_IPC_LOCK`` capability or a large enough ``RLIMIT_MEMLOCK`` (``ulimit
  -l``); a locked page counts in the process's resident memory.
* ``"copy"``: read each array into the process's own memory (anonymous pages: evicted only to
  swap, and there is often none). Needs no privilege; costs the arrays' size per process.
* ``True``: ``"lock"`` where permitted, else ``"copy"``, with a logged warning naming why.
* ``"auto"`` (what :meth:`Searcher.from_index <sparse_ir.search.Searcher.from_index>`, the
  service and hybrid search use): ``"copy"`` when the arrays take at most
  :data:`AUTO_RESIDENT_SHARE` of the memory available now, else mapped only (logged). A
  mapped index lives in the page cache, the first memory the kernel reclaims when another
  process needs RAM: holding 10 GB beside a 1M-document index evicted 30% of its pages and
  slowed pruned search 1.4x with hundreds of major faults per 200 queries, while an index
  in the process's own memory (Seismic's way, and ``"copy"``) kept its speed
  (docs/performance.md). A copy also gets transparent huge pages where the system allows
  them (numpy asks for them on large arrays).

:func:`advise` gives the kernel access hints (``madvise``) without keeping anything resident.

Example:
    >>> import numpy as np, tempfile, os
    >>> from sparse_ir.index.residency import copy_resident
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> np.arange(4, dtype=np.int32).tofile(path)
    >>> mapped = np.asarray(np.memmap(path, dtype=np.int32, mode="r"))
    >>> copy_resident(mapped).tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
from collections.abc import Mapping
from typing import Literal, NamedTuple

import numpy as np

__all__ = [
    "AUTO_RESIDENT_SHARE",
    "RESIDENT_HOWS",
    "ResidentHow",
    "ResidencyReport",
    "advise",
    "auto_resident",
    "copy_resident",
    "lock_resident",
    "make_resident",
    "resident_bytes",
]

logger = logging.getLogger(__name__)

#: How :func:`make_resident` keeps arrays in memory (``True`` means "lock, else copy";
#: ``"auto"``: copy if they fit, see :func:`auto_resident`).
ResidentHow = Literal["lock", "copy", "auto"]
RESIDENT_HOWS: tuple[str, ...] = ("lock", "copy", "auto")

#: ``resident="auto"`` copies the searched arrays when they take at most this share of the
#: memory available (``MemAvailable``) when the index is opened.
AUTO_RESIDENT_SHARE = 0.5

#: ``madvise`` hints by name (those of the running Python's ``mmap`` module).
_ADVICE = {
    name: getattr(mmap, f"MADV_{name.upper()}")
    for name in ("normal", "random", "sequential", "willneed", "dontneed")
    if hasattr(mmap, f"MADV_{name.upper()}")
}


class ResidencyReport(NamedTuple):
    """What :func:`make_resident` did.

    Attributes:
        how: ``"lock"`` or ``"copy"``: how the arrays were kept in memory.
        bytes: bytes of the arrays kept resident.
        fallback: why locking was not used, when ``True`` fell back to copying (else ``""``).
    """

    how: str
    bytes: int
    fallback: str = ""


def memory_available() -> int | None:
    """Bytes of memory available for new allocations (``MemAvailable`` of ``/proc/meminfo``),
    or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def auto_resident(nbytes: int, available: int | None = None) -> str | None:
    """What ``resident="auto"`` does with arrays of ``nbytes``: ``"copy"`` when they take at
    most :data:`AUTO_RESIDENT_SHARE` of ``available`` (default: :func:`memory_available`),
    else None (stay mapped); also None when the available memory cannot be read.

    Example:
        >>> auto_resident(2 << 30, available=16 << 30), auto_resident(9 << 30, available=16 << 30)
        ('copy', None)
    """
    if available is None:
        available = memory_available()
    if available is None or nbytes > AUTO_RESIDENT_SHARE * available:
        return None
    return "copy"


def _mapping(array: np.ndarray) -> mmap.mmap | None:
    """The ``mmap`` object under a memory-mapped array (through its ``base`` chain), or None."""
    node = array
    while node is not None:
        found = getattr(node, "_mmap", None)
        if isinstance(found, mmap.mmap):
            return found
        node = getattr(node, "base", None)
    return None


def advise(array: np.ndarray, advice: str) -> bool:
    """Give the kernel an access hint for the whole mapping under ``array``.

    ``advice``: ``"random"`` (no read-ahead around a page fault: right for arrays read at
    scattered places, like a forward index), ``"sequential"``, ``"willneed"`` (start reading
    now), ``"normal"`` or ``"dontneed"``. Returns False, doing nothing, for an array that is not
    memory-mapped or on a platform without ``madvise``.
    """
    if advice not in _ADVICE:
        raise ValueError(f"advice must be one of {sorted(_ADVICE)}, got {advice!r}")
    mapping = _mapping(array)
    if mapping is None or not hasattr(mapping, "madvise"):
        return False
    try:
        mapping.madvise(_ADVICE[advice])
    except (OSError, ValueError):
        return False
    return True


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        raise OSError("no C library found for mlock")
    library = ctypes.CDLL(name, use_errno=True)
    library.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    library.mlock.restype = ctypes.c_int
    return library


def lock_resident(array: np.ndarray) -> None:
    """Fault in and lock the pages of a memory-mapped ``array`` (``mlock``).

    The lock lasts as long as the mapping (the array and its views). Raises :class:`OSError`
    (``EPERM``: no privilege; ``ENOMEM``: over ``RLIMIT_MEMLOCK``) when the system refuses, and
    :class:`ValueError` for an array that is not memory-mapped.
    """
    if array.nbytes == 0:
        return
    if _mapping(array) is None:
        raise ValueError("lock_resident needs a memory-mapped array")
    advise(array, "willneed")
    library = _libc()
    if library.mlock(ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mlock of {array.nbytes} bytes: {os.strerror(code)}")


def copy_resident(array: np.ndarray) -> np.ndarray:
    """A read-only copy of ``array`` in the process's own memory (one sequential read)."""
    advise(array, "sequential")
    copied = np.empty_like(array)
    step = 1 << 26  # bytes per slice: the page cache can drop what was read behind
    per = max(1, step // max(1, array.itemsize))
    for start in range(0, len(array), per):
        copied[start : start + per] = array[start : start + per]
    copied.flags.writeable = False
    return copied


def make_resident(
    arrays: Mapping[str, np.ndarray], how: bool | ResidentHow = True
) -> tuple[dict[str, np.ndarray], ResidencyReport]:
    """Keep ``arrays`` in memory; returns the arrays to use from now on and a report.

    ``how``: ``"lock"`` (raise :class:`OSError` when refused), ``"copy"``, ``True`` (lock
    where permitted, else copy with a logged warning) or ``"auto"`` (copy if they fit, see
    :func:`auto_resident`; else left mapped, the report's ``how`` is ``"mapped"`` and its
    ``fallback`` says why). Locked or mapped arrays are returned as they are; copied ones are
    new arrays.
    """
    if how is True:
        try:
            return make_resident(arrays, "lock")
        except OSError as exc:
            logger.warning(
                "resident=True: could not lock the index in memory (%s); reading it into "
                "this process's memory instead",
                exc,
            )
            kept, report = make_resident(arrays, "copy")
            return kept, report._replace(fallback=str(exc))
    if how not in RESIDENT_HOWS:
        raise ValueError(f"resident must be True, False or one of {RESIDENT_HOWS}, got {how!r}")
    total = sum(int(a.nbytes) for a in arrays.values())
    if how == "auto":
        chosen = auto_resident(total)
        if chosen is None:
            reason = (
                f"{total / 2**30:.2f} GB of searched arrays is over {AUTO_RESIDENT_SHARE:.0%} "
                f"of the memory available ({(memory_available() or 0) / 2**30:.2f} GB)"
            )
            logger.info("resident='auto': the index stays mapped only: %s", reason)
            return dict(arrays), ResidencyReport("mapped", total, fallback=reason)
        return make_resident(arrays, chosen)
    if how == "lock":
        for array in arrays.values():
            if _mapping(array) is not None:
                lock_resident(array)
        return dict(arrays), ResidencyReport("lock", total)
    return {name: copy_resident(a) for name, a in arrays.items()}, ResidencyReport("copy", total)


def resident_bytes(array: np.ndarray) -> int | None:
    """Bytes of a memory-mapped ``array``'s pages now in RAM (``mincore``), or None when that
    cannot be asked (not mapped, or no ``mincore``)."""
    mapping = _mapping(array)
    if mapping is None or array.nbytes == 0:
        return None
    try:
        library = _libc()
        mincore = library.mincore
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    start = array.ctypes.data - array.ctypes.data % page
    length = array.ctypes.data + array.nbytes - start
    pages = (length + page - 1) // page
    vector = (ctypes.c_ubyte * pages)()
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    if mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vector) != 0:
        return None
    flags = np.frombuffer(vector, np.uint8)
    return int(np.count_nonzero(flags & 1)) * page
