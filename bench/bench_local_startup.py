"""Time from `auto-repair local up` to ready (target <= 5 s). Prints one line per run and the median."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "auto-repair"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run() -> float:
    with tempfile.TemporaryDirectory() as state:
        start = time.monotonic()
        subprocess.run(
            [str(CLI), "local", "up", "--state-dir", state, "--port", str(free_port())],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - start
        subprocess.run(
            [str(CLI), "local", "down", "--state-dir", state], check=True, stdout=subprocess.DEVNULL
        )
        return elapsed


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    times = []
    for i in range(runs):
        times.append(one_run())
        print(f"run {i + 1}: up -> ready {times[-1]:.2f}s")
    median = statistics.median(times)
    print(f"median up -> ready: {median:.2f}s (target <= 5.00s) {'OK' if median <= 5 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
