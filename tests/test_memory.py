"""Freed buffers keep their pages (grpc_ps.memory): a process that reallocates a message-sized
buffer stops faulting fresh pages in, the way calibration then measures the roles."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grpc_ps.memory import keep_freed_pages

FAULTS = """
import resource, sys
from grpc_ps.memory import keep_freed_pages
if sys.argv[1] == "kept":
    assert keep_freed_pages()
def messages():  # a stream's chunks in flight at once, then freed (zeroed: pages touched)
    chunks = [bytearray(8_000_000) for _ in range(3)]
    del chunks
for _ in range(3):
    messages()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    messages()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_buffer(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def test_freed_message_buffers_fault_fresh_pages_only_by_default() -> None:
    if not keep_freed_pages():
        pytest.skip("this C library has no mallopt")
    default, kept = _faults_per_buffer("default"), _faults_per_buffer("kept")
    assert default > 1000  # glibc trimmed the heap: 24 MB of fresh 4 KB pages a round
    assert kept < default / 20
