"""Freed buffers keep their pages, in every process that moves tensors.

A pull of 8 MB took 1,000-1,400 minor page faults a call here, 3 ms of the client's 10:
glibc returns a big freed message buffer to the kernel (its dynamic mmap and trim
thresholds), and the next one faults fresh pages in. How often it does that depends on the
process's allocation history, so the same calibration gave a client's receive cost 0.8 or
1.6 ns a byte from one process to the next, and a run's workers whatever their history
made it. With the thresholds fixed, a pull faults about once and costs 7.4-9.0 ms, and a
calibration measures what the roles then do.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest: buffers up to this come from the heap
TRIM_THRESHOLD = 1 << 30  # freed heap memory stays mapped below this


def keep_freed_pages() -> bool:
    """Fix glibc's thresholds for this process; False where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
