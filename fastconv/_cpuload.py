"""How many cores other processes leave free, measured from the kernel's CPU accounting.

On a busy machine an OpenMP region of T threads is as slow as its slowest thread: when another
process holds one of the cores, the thread that shares that core is preempted for whole
scheduler slices and every barrier of every training step waits for it (a batch-1 step went
from 0.7 ms to 3-30 ms beside one busy loop on 2 cores). Running on the cores that are free
avoids the wait. This module measures them: over a short window, the CPU time all processes
spent on the cores this process may use (``/proc/stat``), minus this process's own CPU time
(``os.times``), is what the others took; ``cores - others`` are free.

Only Linux exposes ``/proc/stat``; elsewhere every core counts as free.
"""
import os
import platform
import time

__all__ = ["CoreUsage", "FreeCores", "read_proc_stat", "cpu_model"]


def _affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def read_proc_stat(cpus, path="/proc/stat"):
    """Busy and total CPU seconds since boot, summed over ``cpus`` (``cpuN`` lines).

    Busy is everything but ``idle`` and ``iowait``. Returns None when the file is missing.
    """
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wanted = {f"cpu{c}" for c in cpus}
    busy = total = 0
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(" ")
                if name not in wanted:
                    continue
                ticks = [int(v) for v in rest.split()[:8]]
                idle = ticks[3] + ticks[4]
                total += sum(ticks)
                busy += sum(ticks) - idle
    except (OSError, ValueError, IndexError):
        return None
    return busy / hz, total / hz


class CoreUsage:
    """One reading: wall clock, the cores' busy seconds and this process's CPU seconds."""

    __slots__ = ("wall", "busy", "own")

    def __init__(self, wall, busy, own):
        self.wall, self.busy, self.own = wall, busy, own


class FreeCores:
    """Cores free of other processes' work, re-measured at most every ``window`` seconds.

    Parameters
    ----------
    cores : int, optional
        Cores this process may use (default: its CPU affinity).
    window : float
        Seconds between readings; shorter windows follow load faster but see more noise
        (the kernel's accounting has a resolution of 10 ms).
    reader : callable, optional
        ``reader() -> CoreUsage or None``; default reads ``/proc/stat`` and ``os.times``.
        Tests pass a fake.

    Notes
    -----
    Another process counts as taking a core when it used at least ``1 - slack`` of it over
    the window; a core that others use in short bursts stays available. The answer moves
    down at once (waiting on a preempted thread is the expensive mistake) and up only after
    two windows agree, so that a load that comes and goes does not make the count flap.
    """

    def __init__(self, cores=None, window=0.5, reader=None, slack=0.35, clock=time.monotonic):
        self.cpus = _affinity()
        self.cores = max(1, int(cores) if cores is not None else len(self.cpus))
        self.window = float(window)
        self.slack = float(slack)
        self._reader = reader or self._read
        self._clock = clock
        self._last = self._reader()
        self._due = clock() + self.window
        self._free = self.cores
        self._pending_up = None
        self.others = 0.0

    def _read(self):
        stat = read_proc_stat(self.cpus)
        if stat is None:
            return None
        t = os.times()
        return CoreUsage(time.monotonic(), stat[0], t.user + t.system)

    def measure(self):
        """Take a reading if the window has passed; return the free cores (>= 1)."""
        if self._clock() < self._due:
            return self._free
        now = self._reader()
        self._due = self._clock() + self.window
        if now is None or self._last is None:
            self._last = now
            return self._free
        elapsed = now.wall - self._last.wall
        if elapsed <= 0:
            return self._free
        others = ((now.busy - self._last.busy) - (now.own - self._last.own)) / elapsed
        self._last = now
        self.others = max(0.0, others)
        free = self.cores - int(self.others + self.slack)
        free = min(self.cores, max(1, free))
        if free < self._free:
            self._free, self._pending_up = free, None
        elif free > self._free:
            if self._pending_up is not None and self._pending_up <= free:
                self._free, self._pending_up = self._pending_up, None
            else:
                self._pending_up = free
        else:
            self._pending_up = None
        return self._free


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
