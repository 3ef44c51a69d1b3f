"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""

from __future__ import annotations

import time


def best_of(repeat: int, fn, clock=time.perf_counter):
    """(best seconds, last result) over ``repeat`` calls; ``clock=time.process_time`` counts
    this process's CPU time (steady on a loaded machine when torch runs one thread)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = clock()
        result = fn()
        best = min(best, clock() - t0)
    return best, result
