"""What machine a benchmark ran on: shared by the benchmark scripts' headers and JSON."""
import os
import platform

__all__ = ["cpu_model", "usable_cores"]


def usable_cores():
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what platform reports. (fastconv has
    its own, fastconv._cpuload.cpu_model; the benchmarks must not import fastconv before
    they choose which tree to import it from, see bench/_ab.py.)"""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
