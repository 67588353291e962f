"""Free-core measurement and set_num_threads("auto")."""
import os
import time

import pytest

import fastconv
from fastconv._cpuload import CoreUsage, FreeCores, read_proc_stat


class FakeMachine:
    """A clock and CPU accounting that the test advances by hand."""

    def __init__(self):
        self.wall = self.busy = self.own = 0.0

    def advance(self, seconds, others, own):
        """``seconds`` pass; other processes use ``others`` cores, this one ``own``."""
        self.wall += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own

    def read(self):
        return CoreUsage(self.wall, self.busy, self.own)

    def clock(self):
        return self.wall


def _monitor(machine, cores=2):
    return FreeCores(cores=cores, window=0.5, reader=machine.read, clock=machine.clock)


def test_free_cores_follow_the_load_down_at_once_and_up_after_two_windows():
    m = FakeMachine()
    f = _monitor(m)
    m.advance(0.5, others=0.02, own=2.0)
    assert f.measure() == 2                      # quiet: both cores
    m.advance(0.5, others=1.0, own=1.9)
    assert f.measure() == 1                      # a busy neighbour takes one at once
    m.advance(0.2, others=0.0, own=1.0)
    assert f.measure() == 1                      # within the window: no new reading
    m.advance(0.3, others=0.0, own=1.0)
    assert f.measure() == 1                      # the neighbour left: one window is not enough
    m.advance(0.5, others=0.05, own=1.0)
    assert f.measure() == 2                      # the second agreeing window
    m.advance(0.5, others=3.0, own=1.0)
    assert f.measure() == 1                      # never fewer than one
    m.advance(0.5, others=0.5, own=1.0)          # bursts of half a core leave it free
    m.advance(0.5, others=0.5, own=1.0)
    assert f.measure() == 1 and f.measure() == 1
    m.advance(0.5, others=0.5, own=1.0)
    assert f.measure() == 2


def test_two_trainings_settle_on_one_core_each():
    """Each process sees the other's load; both step down and stay down."""
    a, b = FakeMachine(), FakeMachine()
    fa, fb = _monitor(a), _monitor(b)
    ta = tb = 2
    for _ in range(6):
        a.advance(0.5, others=tb, own=ta)
        b.advance(0.5, others=ta, own=tb)
        ta, tb = fa.measure(), fb.measure()
    assert (ta, tb) == (1, 1)


def test_proc_stat_is_read_on_linux():
    stat = read_proc_stat([0])
    if stat is None:
        pytest.skip("no /proc/stat here")
    busy, total = stat
    assert 0 <= busy <= total
    assert read_proc_stat([0], path="/nonexistent") is None


def test_auto_threads_setting(monkeypatch):
    before = fastconv._threads._num_threads      # None: the default, kept as such
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        fastconv.set_num_threads(2)
        assert fastconv.get_thread_setting() == 2 and fastconv._threads._auto is None
        fastconv.set_num_threads(None)            # the default is "auto"
        assert fastconv.get_thread_setting() == "auto"
        assert 1 <= fastconv.get_num_threads() <= fastconv._threads._usable_cores()
        assert fastconv._threads._auto is not None
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        fastconv.set_num_threads(None)            # ... unless OMP_NUM_THREADS says otherwise
        assert fastconv.get_thread_setting() == 1 and fastconv.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        fastconv.set_num_threads("auto")
        n = fastconv.get_num_threads()
        assert 1 <= n <= fastconv._threads._usable_cores()
        time.sleep(1.2)                           # a reading or two by the monitor thread
        assert 1 <= fastconv.get_num_threads() <= fastconv._threads._usable_cores()
        with pytest.raises(TypeError, match="'auto'"):
            fastconv.set_num_threads("many")
        fastconv.set_num_threads(1)
        assert fastconv._threads._auto is None    # an explicit count stops the monitor
    finally:
        fastconv.set_num_threads(before)
    assert fastconv._threads._num_threads == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_auto_threads_restart_in_a_forked_child():
    """Only the forking thread survives a fork: the child starts its own monitor."""
    before = fastconv._threads._num_threads
    try:
        fastconv.set_num_threads("auto")
        fastconv.get_num_threads()
        pid = os.fork()
        if pid == 0:
            ok = 1 <= fastconv.get_num_threads() and fastconv._threads._auto._thread.is_alive()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        fastconv.set_num_threads(before)
