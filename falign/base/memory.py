"""CPU memory allocator settings for batched tensor work.

glibc's malloc serves blocks above its mmap threshold (adaptive, at most 32 MiB) with fresh
``mmap`` pages and returns them to the kernel on free. Batched rendering allocates and frees
buffers of tens of MiB many times per batch, so every batch pays the page faults again: on the
2-core machine that was a third of SynthFace's time, as system time, and made its speed vary by
+-20 % from run to run. Keeping freed memory in the heap removes both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>


@functools.cache
def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse (process-wide, once).

    Returns False where the C library has no ``mallopt`` (not glibc): nothing changes there.
    The cost is that memory freed by a large batch stays with the process until it exits.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
