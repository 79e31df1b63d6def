"""Low-level helpers for the numba kernels: a software prefetch.

Scoring a candidate document reads its forward-index entries (~1 KB) from a random place in a
large array: a cache miss per cache line. Announcing the next few documents' entries with
``llvm.prefetch`` lets the memory system fetch them while the current one is scored (the gain
is measured in ``docs/performance.md``, "Design notes"). Where the intrinsic cannot be built
(an unusual numba/LLVM), :func:`prefetch` is a no-op with the same signature, so the kernels
stay correct either way.
"""

from __future__ import annotations

import logging

import numba

__all__ = ["prefetch"]

logger = logging.getLogger(__name__)


def _codegen_prefetch(context, builder, sig, args):
    """LLVM IR of ``prefetch(array, index)``: ``llvm.prefetch`` of ``&array[index]``."""
    from llvmlite import ir
    from numba.core import cgutils

    array_type = sig.args[0]
    array_struct = context.make_array(array_type)(context, builder, args[0])
    position = context.cast(builder, args[1], sig.args[1], numba.types.intp)
    pointer = builder.gep(array_struct.data, [position])
    byte_pointer = ir.IntType(8).as_pointer()
    function_type = ir.FunctionType(
        ir.VoidType(), [byte_pointer, ir.IntType(32), ir.IntType(32), ir.IntType(32)]
    )
    function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch.p0i8")
    # (address, rw = read, locality = 3 (keep in all cache levels), cache = data)
    builder.call(
        function,
        [
            builder.bitcast(pointer, byte_pointer),
            ir.IntType(32)(0),
            ir.IntType(32)(3),
            ir.IntType(32)(1),
        ],
    )
    return context.get_dummy_value()


def _prefetch_typing(typingctx, array, index):
    """Hint the CPU to load ``array[index]``'s cache line (read, high locality)."""
    from numba import types

    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None
    return types.void(array, index), _codegen_prefetch


def _probe(array):
    prefetch(array, 0)
    return array[0]


try:
    # Defined at module level (not in a closure), so the probe's compiled code is found in
    # numba's cache by the next process instead of being compiled at every start.
    from numba.extending import intrinsic

    prefetch = intrinsic(_prefetch_typing)
    import numpy as np

    numba.njit(cache=True, nogil=True)(_probe)(np.zeros(1, np.int64))  # fails -> no-op below
except Exception as error:  # noqa: BLE001 - any failure means "no prefetch", never wrong results
    logger.debug("software prefetch unavailable (%s); kernels run without it", error)

    @numba.njit(cache=True, nogil=True, inline="always")
    def prefetch(array, index):
        """No-op stand-in for the prefetch intrinsic."""
        return None
