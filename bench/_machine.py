"""What machine a benchmark ran on: shared by the benchmark scripts' headers and JSON."""
import os

from fastconv._cpuload import cpu_model

__all__ = ["cpu_model", "usable_cores"]


def usable_cores():
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
