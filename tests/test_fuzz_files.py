"""Runs the hostile-files fuzz (``tests/fuzz_files.py``) in a subprocess, so that a crash or
a reader that exhausts the process's address space fails the test instead of pytest.
FASTCONV_FUZZ_EXAMPLES sets the examples per target (default: the CI profile, 450 in all)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_fuzz_files_in_a_subprocess():
    """Mutated model files, checkpoints, PNGs and .npy arrays: each opens, or ends in its
    kind's documented error with a one-line message."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_files"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (f"fuzz exited with {proc.returncode} (negative: killed by "
                                  f"signal)\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
