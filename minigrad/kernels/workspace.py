"""Work arrays kept between steps, handed out again once nothing holds them.

A training step allocates the same large temporaries every time (conv's column
matrix is 51 MB for a 32->64 4x4 conv at batch 128). glibc gives blocks that
large back to the OS when they are freed, so every step pays for fresh pages
again: the kernel zeroes them on first touch. ``empty(be, shape, dtype)`` instead
returns an array of a previous step that nothing references any more.

"Nothing references it" is read from the reference count: the pool holds one
reference, so an array (or any view of it: a view holds its base) still used by a
graph, a saved tensor or the caller has more, and is never handed out twice.
``MINIGRAD_WORKSPACE=off`` in the environment turns the pool off (every call
allocates), for measuring it or to keep a process's memory at what it uses now.
"""
from __future__ import annotations

import math
import os
import sys

_enabled = os.environ.get("MINIGRAD_WORKSPACE", "on").strip().lower() not in (
    "off", "0", "no", "false")
_pool: dict = {}          # (backend name, shape, dtype) -> arrays of that shape
PER_SHAPE = 4             # at most this many arrays kept per shape
MIN_BYTES = 1 << 20       # smaller arrays come from the allocator's free lists anyway


def empty(be, shape, dtype):
    """An uninitialised floating-point array of ``shape`` and ``dtype``, reused when
    possible."""
    size = math.prod(shape) * be.xp.finfo(dtype).bits // 8
    if not _enabled or size < MIN_BYTES:
        return be.xp.empty(shape, dtype=dtype)
    arrays = _pool.setdefault((be.name, tuple(shape), str(dtype)), [])
    for a in arrays:
        # references: the list, the loop variable and getrefcount's argument
        if sys.getrefcount(a) == 3:
            return a
    a = be.xp.empty(shape, dtype=dtype)
    if len(arrays) < PER_SHAPE:
        arrays.append(a)
    return a


def clear():
    """Drop every kept array (the memory goes back to the allocator)."""
    _pool.clear()
