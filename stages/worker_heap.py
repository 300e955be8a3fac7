"""Keep freed image buffers in a Dask worker's heap instead of giving them back to the kernel.

A 1024 px RGB image is a 3-5 MB buffer. glibc serves blocks that large with ``mmap`` and
unmaps them on free, unless its dynamic threshold has learnt to serve them from the heap; but
setting any malloc threshold turns that learning off (mallopt(3)), and Dask's nanny sets
``MALLOC_TRIM_THRESHOLD_=65536`` in every worker (distributed's "automatically trim memory").
Every image then page-faults its buffers in again: decoding a 1024 px JPEG took 28 ms per image
under that setting against 13 ms with the thresholds below (development machine, one process),
and the whole filter stage ran at 0.79x a plain loop over the same chain; with them, 1.02x
(``bench/filter.py``). glibc reads the ``MALLOC_*_`` variables only at process start, so the
stage sets the thresholds at run time (``mallopt``); the heap then keeps at most ``keep_mib``
of freed memory at its top for the next batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

# glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps M_MMAP_THRESHOLD at HEAP_MAX_SIZE / 2 (32 MiB on 64-bit systems; mallopt(3)).
_MMAP_THRESHOLD_MAX = 32 * 2**20


@functools.cache
def keep_freed_heap(keep_mib: int) -> bool:
    """Set this process's malloc thresholds for ``keep_mib`` (0: leave them); False where the
    C library is not glibc (nothing changes there). Once per process and value."""
    if keep_mib <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: malloc thresholds unchanged")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    keep = keep_mib * 2**20
    return bool(mallopt(_M_MMAP_THRESHOLD, min(keep, _MMAP_THRESHOLD_MAX))) and bool(
        mallopt(_M_TRIM_THRESHOLD, keep)
    )
