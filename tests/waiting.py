"""Polling helper for tests that drive other processes."""
import time


def wait_for(predicate, timeout, what, interval=0.05):
    """Return once ``predicate()`` is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
