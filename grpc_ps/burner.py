"""A process that keeps a core busy on request: the other processes of the cooling probe.

It reads a number of seconds per line on stdin, copies an 8 MiB array into another
for that long (memory traffic, as a run's streams and tensor ops make), and answers
with a line. End of input ends it. Only numpy is imported, so it starts in a moment.
"""

from __future__ import annotations

import sys
import time

import numpy as np

BURNER_BYTES = 8 << 20


def main() -> None:
    src = np.ones(BURNER_BYTES // 4, dtype=np.float32)
    dst = np.empty_like(src)
    print("ready", flush=True)
    for line in sys.stdin:
        end = time.perf_counter() + float(line)
        while time.perf_counter() < end:
            np.copyto(dst, src)
        print("done", flush=True)


if __name__ == "__main__":
    main()
