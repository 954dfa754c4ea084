"""Work arrays kept between steps, handed out again once nothing holds them.

A training step allocates the same large temporaries every time (conv's column
matrix is 51 MB for a 32->64 4x4 conv at batch 128). glibc gives blocks that
large back to the OS when they are freed, so every step pays for fresh pages
again: the kernel zeroes them on first touch. ``empty(be, shape, dtype)`` instead
returns an array of a previous step that nothing references any more.

"Nothing references it" is read from the reference count: the pool holds one
reference, so an array (or any view of it: a view holds its base) still used by a
graph, a saved tensor or the caller has more, and is never handed out twice.
The same holds for every other array of a step, which the pool does not see:
glibc serves blocks above its mmap threshold (128 KiB, rising to the largest
block freed so far) with fresh pages, and gives the top of its heap back to the
OS once more than twice that is free, so the next step faults the pages in
again. ``keep_freed_memory()``, called once when the kernels are imported on,
fixes the threshold at its largest (32 MiB) and stops the trimming: freed arrays
stay in the process for the next step to reuse (the process keeps its peak
memory until it exits). Not on other C libraries: there it does nothing.

``MINIGRAD_WORKSPACE=off`` in the environment turns both off (every call
allocates; glibc's defaults), for measuring them or to keep a process's memory at
what it uses now.
"""
from __future__ import annotations

import ctypes
import math
import os
import platform
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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # mallopt's parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20                    # glibc's largest on 64-bit systems
_kept = [False]


def keep_freed_memory():
    """Have glibc keep freed memory for reuse instead of handing it back to the OS
    (see the module docstring). Returns whether it took effect; once per process."""
    if _kept[0]:
        return True
    if not _enabled or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _kept[0] = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return _kept[0]
