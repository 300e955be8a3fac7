"""``keep_freed_heap``: image-sized blocks come from the heap and stay there once freed.

Each case runs in a fresh interpreter: malloc's thresholds are process-wide, and this one's
must stay as pytest's workers have them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# glibc's mallinfo2 (2.33+): bytes in mmap'd blocks (hblkhd) and free bytes in the heap
# (fordblks), around one 8 MiB block allocated and freed with the C library's own malloc.
PROBE = """
import ctypes, sys
from stages.worker_heap import keep_freed_heap
libc = ctypes.CDLL("libc.so.6")
names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 8 << 20
def block():
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(SIZE)
    ctypes.memset(p, 1, SIZE)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(p)
    return mapped, libc.mallinfo2().fordblks
changed = keep_freed_heap(int(sys.argv[1]))
mapped, free_after = block()
print(changed, mapped >= SIZE, free_after >= SIZE)
"""


def _probe(keep_mib: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(keep_mib)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_image_sized_blocks_stay_in_the_heap() -> None:
    assert _probe(128) == "True False True"  # from the heap, and kept there once freed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_zero_leaves_glibc_alone() -> None:
    assert _probe(0) == "False True False"  # mmap'd, and unmapped on free
