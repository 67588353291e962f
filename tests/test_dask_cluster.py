"""The experiment matrix on a real Dask cluster, started with Dask's own command-line tools.

The scheduler and two workers run as separate ``dask scheduler`` / ``dask worker`` processes,
each in a temporary folder of its own outside the repository and without ``PYTHONPATH``: all
they have is the installed fastconv. The workers share no storage with the client (runs train
in the workers' scratch folders and come back as records). One worker is SIGKILLed while
runs are in flight; every run must still finish once, with the accuracies of a local run.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bench.experiments import build_matrix, unique_runs
from fastconv.experiments import RunDir
from .waiting import wait_for

pytest.importorskip("dask.distributed", reason="dask.distributed is not installed "
                    "(pip install -e .[dask])")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ["architecture", "rotation"]


def _dask_cli():
    beside = os.path.join(os.path.dirname(sys.executable), "dask")
    return beside if os.path.exists(beside) else shutil.which("dask")


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env


def _accuracies(out, runs):
    return {r.key: [h["test_accuracy"] for h in RunDir(out, r.key).final["history"]]
            for r in runs}


@pytest.mark.slow
def test_matrix_on_a_real_cluster_survives_a_killed_worker(tmp_path):
    dask = _dask_cli()
    if dask is None:
        pytest.skip("the dask command-line tool is not installed")
    env = _clean_env()
    procs = []
    try:
        sched_dir = tmp_path / "scheduler"
        sched_dir.mkdir()
        scheduler_file = tmp_path / "scheduler.json"
        procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            cwd=sched_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(scheduler_file.exists, 60, "the scheduler")
        time.sleep(0.5)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = []
        for i in range(2):
            folder = tmp_path / f"worker{i}"
            folder.mkdir()
            # --no-nanny: the worker is this very process, so SIGKILL takes it down whole.
            worker = subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--local-directory", str(folder)],
                cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(worker)
            workers.append(worker)

        from dask.distributed import Client
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)

        out = str(tmp_path / "client-out")
        runs = unique_runs(build_matrix("smoke", FAMILIES))
        start = time.time()
        driver = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bench", "run_all.py"), "--preset", "smoke",
             "--only", *FAMILIES, "--out", out, "--dask", address, "--no-progress"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        procs.append(driver)
        finished = lambda: sum(RunDir(out, r.key).final is not None for r in runs)  # noqa: E731
        wait_for(lambda: finished() >= 2 or driver.poll() is not None, 240,
                  "two finished runs")
        assert finished() < len(runs) - 2, "runs went too fast to kill a worker mid-matrix"
        os.kill(workers[0].pid, signal.SIGKILL)
        killed_at = finished()
        output, _ = driver.communicate(timeout=300)
        elapsed = time.time() - start
        assert driver.returncode == 0, output
        assert f"ran {len(runs)} runs" in output and "0 not ok" in output, output
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Every run finished once, ok, with its whole history and small files on the client.
    for run in runs:
        stored = RunDir(out, run.key)
        assert stored.final["status"] == "ok", stored.final.get("error")
        assert [h["epoch"] for h in stored.metrics] == \
            list(range(1, run.config["epochs"] + 1))
        assert {"config.json", "metrics.csv", "final.json", "train.log", "test.log"} <= \
            set(os.listdir(stored.path))
    pids = {RunDir(out, r.key).final["pid"] for r in runs}
    assert workers[1].pid in pids
    assert killed_at < len(runs)
    assert os.path.exists(os.path.join(out, "report.md"))

    # The same runs locally, same thread count: the same numbers.
    local = str(tmp_path / "local-out")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run_all.py"), "--preset", "smoke",
         "--only", *FAMILIES, "--out", local, "--jobs", "2", "--threads", "1", "--no-progress"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _accuracies(out, runs) == _accuracies(local, runs)
    print(f"cluster matrix: {len(runs)} runs in {elapsed:.0f} s")
