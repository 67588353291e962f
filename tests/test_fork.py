"""Fork safety: GNU OpenMP's thread pool does not survive fork(), so a child forked after its
parent ran multi-threaded kernels must run them serially instead of blocking forever.

Each scenario runs in its own interpreter with a timeout, so that a hang fails the test
instead of blocking the suite.
"""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A training step on 2 threads (the conv kernels always open a parallel region), then the
# scenario under test.
PRELUDE = """
import os, sys, time
import numpy as np
import fastconv
from fastconv import nn
from fastconv.train import Trainer, homework_trainer

def data(seed):
    r = np.random.default_rng(seed)
    return r.standard_normal((16, 1, 32, 32)).astype(np.float32), r.integers(0, 10, 16)

def train(seed, threads=None):
    model = nn.build_model("convnet", seed=seed)
    x, y = data(seed)
    homework_trainer(model, batch_size=8, lr=0.01, threads=threads, verbose=False).fit(x, y, epochs=1)
    return model

fastconv.set_num_threads(2)
model = train(0, threads=2)
"""

CHILD = PRELUDE + """
pid = os.fork()
if pid == 0:
    x, y = data(1)
    model.train()
    out = model.forward(x[:4])
    model.backward(np.ones_like(out))
    os._exit(0 if fastconv.get_num_threads() == 1 else 3)
deadline = time.time() + 10
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child status", status)
        sys.exit(0 if status == 0 else 1)
    time.sleep(0.05)
os.kill(pid, 9)
os.waitpid(pid, 0)
print("child still running after 10 s: deadlocked")
sys.exit(1)
"""

POOL = PRELUDE + """
import multiprocessing as mp

def work(seed):
    model = train(seed)     # 16 samples in batches of 8: 2 steps
    return fastconv.get_num_threads(), float(np.abs(model.params()[0]).sum())

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, [1, 2], chunksize=1))
"""


def _run(code, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no result after {timeout} s: deadlocked") from None
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_child_forked_after_threaded_training_step_runs_serially():
    """A forward and backward pass in the child finishes within 10 s, on one thread."""
    assert "child status 0" in _run(CHILD, timeout=60)


def test_fork_start_pool_over_training_steps_completes():
    """A fork-start multiprocessing Pool of 2 workers, each training 2 steps."""
    out = _run(POOL, timeout=60)
    assert out.startswith("[(1, ") and out.count("(1, ") == 2, out


def test_child_forked_before_any_threaded_kernel_keeps_its_threads():
    """Only a parent that may have started OpenMP threads makes its children serial."""
    code = """
    import os, sys
    import fastconv
    fastconv.set_num_threads(2)
    import fastconv._threads as t
    t._teams_started = False        # as if no multi-threaded kernel had run yet
    pid = os.fork()
    if pid == 0:
        os._exit(0 if fastconv.get_num_threads() == 2 else 1)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """
    _run(code, timeout=60)
