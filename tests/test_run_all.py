"""bench/run_all.py: run keys, atomic state, resume after kill, Dask, report, smoke preset.

Most tests swap the real trainer for :func:`fake_train` (through ``train_fn``, an import path,
exactly as a user's custom trainer would be plugged in), so the scheduling, recording and
resuming logic is tested in seconds; ``test_smoke_preset_end_to_end`` trains for real.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bench import run_all
from bench._runner import LocalExecutor, Progress, threads_per_job
from bench._report import collect, write_report
from bench.experiments import (FAMILIES, PRESETS, Run, base_config, build_matrix,
                               keep_epochs, unique_runs)
from fastconv.experiments import (RunDir, RunLock, branch_compatible, config_key,
                                  execute_run, read_metrics)
from fastconv.serialization import atomic_write_text
from .waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.test_run_all:fake_train"

# Seeds that make fake_train misbehave.
SEED_RAISES, SEED_DIVERGES, SEED_SEGFAULTS, SEED_KILL_ONCE, SEED_KILL_ALWAYS = 13, 99, 11, 66, 67


class TrainingDiverged(RuntimeError):
    """Same name as fastconv.train.TrainingDiverged, which the runner matches by name."""


def fake_train(config, run_dir, threads, on_epoch):
    """A stand-in trainer: resumable, counts its epochs, misbehaves on request.

    Accuracy is a deterministic function of the config. Each executed epoch appends a line to
    ``epochs.log``; ``checkpoint.json`` is the resume point. ``FAKE_EPOCHS`` overrides the
    number of epochs and ``FAKE_EPOCH_SECONDS`` makes each epoch take that long.
    """
    epochs = int(os.environ.get("FAKE_EPOCHS", config["epochs"]))
    pause = float(os.environ.get("FAKE_EPOCH_SECONDS", "0"))
    seed = config["seed"]
    marker = os.path.join(run_dir, "killed-once")
    if seed == SEED_KILL_ONCE and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if seed == SEED_KILL_ALWAYS:
        os.kill(os.getpid(), signal.SIGKILL)
    if seed == SEED_SEGFAULTS:
        os.kill(os.getpid(), signal.SIGSEGV)
    ck = os.path.join(run_dir, "checkpoint.json")
    history = json.load(open(ck)) if os.path.exists(ck) else []
    if history:
        on_epoch(history)
    base = 0.5 + 0.4 * (1.0 / config["batch_size"]) - 0.1 * config["momentum"]
    for epoch in range(len(history) + 1, epochs + 1):
        with open(os.path.join(run_dir, "epochs.log"), "a") as f:
            f.write(f"{epoch} {os.getpid()}\n")
        time.sleep(pause)
        if seed == SEED_RAISES:
            raise ValueError("fake failure in epoch 1")
        if seed == SEED_DIVERGES:
            raise TrainingDiverged("loss is nan")
        acc = min(0.99, base + 0.02 * epoch)
        history.append({"epoch": epoch, "loss": 1 - acc, "accuracy": acc,
                        "mean_class_accuracy": acc, "seconds": 0.01,
                        "test_loss": 1 - acc, "test_accuracy": acc - 0.01,
                        "test_mean_class_accuracy": acc - 0.01})
        atomic_write_text(ck, json.dumps(history))
        on_epoch(history)
    return {"threads_seen": threads}


def _runs(*seeds, family="t"):
    p = PRESETS["smoke"]
    return [Run(family, f"seed {s}", base_config(p, seed=s)) for s in seeds]


def _quiet():
    return Progress([], enabled=False)


# -- keys, files, matrix ---------------------------------------------------------------------

def test_config_key_is_canonical():
    p = PRESETS["quick"]
    a = base_config(p, lr=0.001, batch_size=32)
    b = dict(reversed(list(base_config(p, batch_size=32, lr=1e-3).items())))
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key(base_config(p, lr=0.002, batch_size=32))
    assert config_key(a) != config_key(base_config(PRESETS["full"], lr=0.001, batch_size=32))
    with pytest.raises(ValueError, match="unknown settings"):
        base_config(p, learning_rate=1)


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "a" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path / "a") == ["f.txt"]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_declares_every_family(preset):
    runs = build_matrix(preset)
    assert {r.family for r in runs} == set(FAMILIES)
    p = PRESETS[preset]
    # The homework's default run is shared by several families and trained once.
    assert len(unique_runs(runs)) < len(runs)
    # Every branch is sound (the child computes the parent's first epochs), the default is
    # the longest run of its settings, and parents come before their children.
    order = [r.key for r in unique_runs(runs)]
    for run in runs:
        if run.branch is not None:
            parent, epoch = run.branch
            assert branch_compatible(parent.config, run.config, epoch), run.label
            assert order.index(parent.key) < order.index(run.key)
    assert max(r.config["epochs"] for r in runs
               if r.config.get("switch_to_lbfgs_after") is None
               and r.config == base_config(p, epochs=r.config["epochs"])) \
        == p.epochs["default"]
    with pytest.raises(ValueError, match="unknown family"):
        build_matrix(preset, ["nope"])


def test_quick_and_full_cover_the_homework_grids():
    for name in ("quick", "full"):
        runs = build_matrix(name)
        batch = {r.config["batch_size"] for r in runs if r.family == "batch"}
        assert batch == {1, 32, 64, 128}
        grid = {(r.config["momentum"], r.config["lr"]) for r in runs if r.family == "momentum"}
        assert len(grid) == 12
        assert {r.config["optimizer"] for r in runs if r.family != "best"} == \
            {"sgd", "asgd", "cg", "lbfgs"}
        assert {r.config["loss"] for r in runs} == {"nll", "mse", "margin"}
    assert {r.config["switch_to_lbfgs_after"] for r in build_matrix("full", ["lbfgs-switch"])} \
        == {5, 7, 15, 30, None}


def test_run_lock_is_exclusive_and_released(tmp_path):
    a, b = RunLock(tmp_path), RunLock(tmp_path)
    assert a.acquire()
    assert b.held_elsewhere() and not b.acquire()
    a.release()
    assert not b.held_elsewhere()


def test_threads_never_exceed_cores():
    assert threads_per_job(1, cores=2) == 2
    assert threads_per_job(2, cores=2) == 1
    assert threads_per_job(3, cores=2) == 1
    assert threads_per_job(2, cores=8) == 4


# -- execution ---------------------------------------------------------------------------------

def test_execute_run_records_ok_failed_and_diverged(tmp_path):
    for run, status in zip(_runs(1, SEED_RAISES, SEED_DIVERGES), ["ok", "failed", "diverged"]):
        record = execute_run(run.config, str(tmp_path), run.key, 3, FAKE)
        stored = RunDir(tmp_path, run.key)
        assert record["status"] == status == stored.final["status"]
        assert stored.config == run.config
    failed = RunDir(tmp_path, _runs(SEED_RAISES)[0].key).final
    assert "ValueError: fake failure" in failed["error"]
    assert "Traceback" in failed["traceback"]
    ok = RunDir(tmp_path, _runs(1)[0].key)
    assert ok.final["threads_seen"] == 3
    assert [r["epoch"] for r in ok.metrics] == [1, 2]


def test_execute_run_refuses_a_locked_run(tmp_path):
    run = _runs(1)[0]
    lock = RunLock(RunDir(tmp_path, run.key).path)
    assert lock.acquire()
    try:
        assert execute_run(run.config, str(tmp_path), run.key, 1, FAKE) is None
        assert RunDir(tmp_path, run.key).final is None
    finally:
        lock.release()


def test_local_executor_survives_crashing_workers(tmp_path):
    runs = _runs(1, 2, SEED_RAISES, SEED_SEGFAULTS, SEED_DIVERGES, 3)
    results = LocalExecutor(jobs=2, train_fn=FAKE).run(runs, str(tmp_path), _quiet())
    status = {r.config["seed"]: results[r.key]["status"] for r in runs}
    assert status == {1: "ok", 2: "ok", 3: "ok", SEED_RAISES: "failed",
                      SEED_SEGFAULTS: "failed", SEED_DIVERGES: "diverged"}
    segv = RunDir(tmp_path, runs[3].key).final
    assert "SIGSEGV" in segv["error"]
    assert RunDir(tmp_path, runs[0].key).final["threads_seen"] == threads_per_job(2)


def _mtimes(out):
    root = os.path.join(out, "runs")
    return {k: os.stat(os.path.join(root, k, "final.json")).st_mtime_ns
            for k in os.listdir(root) if os.path.exists(os.path.join(root, k, "final.json"))}


@pytest.mark.slow
def test_rerun_of_a_finished_matrix_executes_nothing(tmp_path, capsys):
    out = str(tmp_path / "out")
    args = ["--preset", "smoke", "--only", "optimizers", "rotation", "--out", out,
            "--train-fn", FAKE, "--no-progress", "--jobs", "2"]
    assert run_all.main(args) == 0
    first = _mtimes(out)
    n = len(unique_runs(build_matrix("smoke", ["optimizers", "rotation"])))
    assert len(first) == n
    capsys.readouterr()
    assert run_all.main(args) == 0
    assert f"{n} already finished, 0 to run" in capsys.readouterr().out
    assert _mtimes(out) == first
    for key in first:
        log = open(os.path.join(out, "runs", key, "epochs.log")).read()
        assert log.count("\n") == RunDir(out, key).config["epochs"]
    run_all.main(args[:-3] + ["--list"])
    listing = capsys.readouterr().out
    assert f"{n} distinct runs" in listing and f"{n} ok" in listing
    assert "ASGD" in listing


def test_retry_failed_reruns_only_failed_runs(tmp_path):
    runs = _runs(1, SEED_RAISES)
    LocalExecutor(1, FAKE).run(runs, str(tmp_path), _quiet())
    todo = run_all.runs_to_execute(runs, str(tmp_path), retry_failed=False)
    assert todo == []
    todo = run_all.runs_to_execute(runs, str(tmp_path), retry_failed=True)
    assert [r.config["seed"] for r in todo] == [SEED_RAISES]
    assert os.path.exists(RunDir(tmp_path, todo[0].key).file("final.previous.json"))


@pytest.mark.slow
def test_killed_matrix_resumes_without_redoing_finished_runs(tmp_path):
    out = str(tmp_path / "out")
    env = {**os.environ, "FAKE_EPOCHS": "4", "FAKE_EPOCH_SECONDS": "0.3",
           "PYTHONPATH": ROOT}
    cmd = [sys.executable, os.path.join(ROOT, "bench", "run_all.py"), "--preset", "smoke",
           "--only", "architecture", "--out", out, "--train-fn", FAKE, "--no-progress",
           "--no-report", "--jobs", "1"]
    runs = unique_runs(build_matrix("smoke", ["architecture"]))
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: RunDir(out, runs[0].key).final is not None, 60, "the first run")
        # Kill while the second run is between its first and last epoch.
        wait_for(lambda: len(RunDir(out, runs[1].key).metrics) >= 2, 60, "the second run")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = _mtimes(out)
    assert list(before) == [runs[0].key]
    # The orphaned worker dies with the driver: its lock is free at once.
    wait_for(lambda: RunDir(out, runs[1].key).status() == "partial", 10, "the worker to die")
    epochs_before_kill = len(RunDir(out, runs[1].key).metrics)

    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(runs)} distinct runs, 1 already finished" in done.stdout
    after = _mtimes(out)
    assert set(after) == {r.key for r in runs}
    assert after[runs[0].key] == before[runs[0].key]
    for run in runs:
        log = open(RunDir(out, run.key).file("epochs.log")).read().split("\n")[:-1]
        epochs = [int(line.split()[0]) for line in log]
        if run is runs[1]:
            # Resumed: the epochs stored before the kill are not trained again; at most the
            # epoch in progress is.
            assert epochs[:epochs_before_kill] == list(range(1, epochs_before_kill + 1))
            assert len(epochs) <= 4 + 1 and sorted(set(epochs)) == [1, 2, 3, 4]
            assert len({line.split()[1] for line in log}) == 2  # two processes
        else:
            assert epochs == [1, 2, 3, 4]
        assert RunDir(out, run.key).final["status"] == "ok"


@pytest.mark.parametrize("shared", [True, False], ids=["shared-storage", "no-shared-storage"])
def test_dask_local_cluster_survives_raising_task_and_killed_worker(tmp_path, shared):
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask.distributed is not installed (pip install -e .[dask])")
    import dask
    from bench._runner import DaskExecutor

    out = str(tmp_path / "out")
    runs = _runs(1, 2, 3, SEED_RAISES, SEED_KILL_ONCE, SEED_KILL_ALWAYS)
    # The scheduler gives up on a task at its first worker death and the driver resubmits it
    # (twice at most): KILL_ONCE succeeds on its second task, KILL_ALWAYS fails for good.
    # worker-saturation 1.0 queues tasks on the scheduler, so a dying worker holds only the
    # task that killed it and no other run is charged for its death.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            results = DaskExecutor(client, threads=1, train_fn=FAKE,
                                   shared_storage=shared).run(runs, out, _quiet())
    status = {r.config["seed"]: RunDir(out, r.key).final["status"] for r in runs}
    assert status == {1: "ok", 2: "ok", 3: "ok", SEED_RAISES: "failed", SEED_KILL_ONCE: "ok",
                      SEED_KILL_ALWAYS: "failed"}
    assert {k: r["status"] for k, r in results.items()} == \
        {r.key: status[r.config["seed"]] for r in runs}
    assert "KilledWorker" in RunDir(out, runs[-1].key).final["error"]
    # With shared storage the workers trained in the client's folder; without, elsewhere.
    assert os.path.exists(RunDir(out, runs[4].key).file("killed-once")) == shared
    for run in runs[:3]:
        assert [m["epoch"] for m in RunDir(out, run.key).metrics] == [1, 2]


# -- report ------------------------------------------------------------------------------------

def test_report_from_stored_results(tmp_path):
    out = str(tmp_path)
    runs = build_matrix("smoke")
    for run in unique_runs(runs):  # in-process: this test is about the report only
        execute_run(run.config, out, run.key, 1, FAKE)
    path = write_report(runs, out, "smoke")
    text = open(path).read()
    for name in FAMILIES:
        assert f"(`{name}`)" in text
    assert "| run | homework reported | fastconv test accuracy | epochs | seconds | status |" \
        in text
    assert "78%" in text  # the homework's batch-32 number
    # The fake's accuracy falls with the batch size, like the homework's.
    assert "agrees with the homework's fall" in text
    figures = os.listdir(os.path.join(out, "figures"))
    assert set(figures) == {"best_model.png", "architecture.png", "optimizers.png",
                            "batch_size.png", "momentum_lr.png", "lbfgs_switch.png",
                            "rotation.png"}
    for name in figures:
        with open(os.path.join(out, "figures", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}" in text
    results = collect(runs, out)
    assert all(r["status"] == "ok" for r in results.values())
    # The report depends on the stored results only: written again, the same bytes.
    pictures = {n: open(os.path.join(out, "figures", n), "rb").read() for n in figures}
    assert open(write_report(runs, out, "smoke")).read() == text
    for name, data in pictures.items():
        assert open(os.path.join(out, "figures", name), "rb").read() == data


def test_report_only_runs_nothing(tmp_path, capsys):
    out = str(tmp_path)
    assert run_all.main(["--preset", "smoke", "--out", out, "--report-only",
                         "--train-fn", "no.such:module"]) == 0
    assert not os.path.exists(os.path.join(out, "runs"))
    text = open(os.path.join(out, "report.md")).read()
    assert "pending" in text and "Not enough finished runs" in text


# -- the real thing ------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    """Every family, real training on the committed MNIST subset, 2 jobs x 1 thread."""
    out = str(tmp_path / "smoke")
    start = time.time()
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"),
                           "--preset", "smoke", "--out", out, "--jobs", "2", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = build_matrix("smoke")
    results = collect(runs, out)
    bad = {k: (r["status"], RunDir(out, k).final.get("error")) for k, r in results.items()
           if r["status"] != "ok"}
    # Momentum 0.9 at lr 0.1 may legitimately diverge; nothing may fail.
    assert all(status == "diverged" for status, _ in bad.values()), bad
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert all(r["epochs"] >= 1 and 0.0 <= r["test_accuracy"] <= 1.0 for r in ok)
    baseline = results[Run("x", "", base_config(PRESETS["smoke"])).key]
    assert baseline["test_accuracy"] > 0.3  # 200 real images, one epoch: far above chance
    assert os.path.exists(os.path.join(out, "report.md"))
    assert len(os.listdir(os.path.join(out, "figures"))) == 7
    for key in results:
        files = set(os.listdir(RunDir(out, key).path))
        assert {"config.json", "final.json"} <= files
        if results[key]["status"] == "ok":
            assert {"metrics.csv", "checkpoint.npz", "model.npz"} <= files
    assert read_metrics(RunDir(out, runs[0].key).file("metrics.csv"))
    # Reported, not asserted: a shared CI machine's minute is no measure of fastconv.
    print(f"smoke preset: {time.time() - start:.0f} s")


# -- branching ---------------------------------------------------------------------------------

def test_branch_compatibility_rules():
    p = PRESETS["smoke"]
    parent = base_config(p, epochs=5)
    assert branch_compatible(parent, base_config(p, epochs=3), 3)
    assert branch_compatible(parent, base_config(p, epochs=7, switch_to_lbfgs_after=5), 5)
    assert branch_compatible(parent, base_config(p, epochs=7, switch_to_lbfgs_after=5,
                                                 lbfgs_mode="batch"), 4)
    assert not branch_compatible(parent, base_config(p, epochs=7, switch_to_lbfgs_after=3), 5)
    assert not branch_compatible(parent, base_config(p, epochs=5, lr=0.01), 3)
    assert not branch_compatible(parent, base_config(p, epochs=9), 6)   # parent too short
    lbfgs = base_config(p, epochs=5, optimizer="lbfgs")
    assert not branch_compatible(lbfgs, dict(lbfgs, lbfgs_mode="batch"), 3)


def test_branching_child_equals_training_from_scratch(tmp_path):
    """A run started from its parent's epoch-k checkpoint ends bitwise where it would alone."""
    import numpy as np

    p = PRESETS["smoke"]
    data = {"source": "sample", "size": [60, 20], "dtype": "float32"}
    parent = Run("t", "parent", base_config(p, model="mlp", epochs=2, data=data))
    child = Run("t", "child", base_config(p, model="mlp", epochs=3, switch_to_lbfgs_after=1,
                                          data=data), branch=(parent, 1))
    assert keep_epochs([parent, child]) == {parent.key: [1]}
    branched, scratch = str(tmp_path / "branched"), str(tmp_path / "scratch")
    import fastconv
    setting = fastconv._threads._num_threads     # train_run sets the threads; put them back
    try:
        execute_run(parent.config, branched, parent.key, 1, keep_epochs=[1])
        assert os.path.exists(RunDir(branched, parent.key).snapshot(1))
        record = execute_run(child.config, branched, child.key, 1,
                             branch=child.branch_spec())
        alone = execute_run(child.config, scratch, child.key, 1)
    finally:
        fastconv.set_num_threads(setting)
    assert record["branched_from"] == {"key": parent.key, "epoch": 1}
    assert alone["branched_from"] is None
    assert record["history"][0]["test_accuracy"] == alone["history"][0]["test_accuracy"]
    a = np.load(RunDir(branched, child.key).file("checkpoint.npz"))["params"]
    b = np.load(RunDir(scratch, child.key).file("checkpoint.npz"))["params"]
    assert np.array_equal(a, b)


def test_local_executor_starts_children_after_the_parents_checkpoint(tmp_path):
    """A child waits for its parent's snapshot; without one coming, it runs from scratch."""
    p = PRESETS["smoke"]
    parent = Run("t", "parent", base_config(p, epochs=3, seed=5))
    child = Run("t", "child", base_config(p, epochs=2, seed=5), branch=(parent, 2))
    orphan = Run("t", "orphan", base_config(p, epochs=2, seed=7),
                 branch=(Run("t", "gone", base_config(p, epochs=4, seed=7)), 2))
    results = LocalExecutor(2, FAKE, poll=0.05).run([parent, child, orphan], str(tmp_path),
                                                    _quiet())
    assert {r["status"] for r in results.values()} == {"ok"}
    # fake_train writes no checkpoint.npz, so there is never a snapshot: the child started
    # only once its parent had finished, the orphan at once.
    parent_done = os.stat(RunDir(tmp_path, parent.key).file("final.json")).st_mtime
    child_start = os.stat(RunDir(tmp_path, child.key).file("config.json")).st_mtime
    assert child_start >= parent_done


# -- the driver as a user meets it ---------------------------------------------------------------

def _driver(args, **kw):
    env = {**os.environ, "PYTHONPATH": ROOT, **kw.pop("env", {})}
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "run_all.py")] + args,
                            env=env, cwd=ROOT, **kw)


def _sigint_as_in_a_terminal():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path):
    out = str(tmp_path / "out")
    args = ["--preset", "smoke", "--only", "architecture", "--out", out, "--train-fn", FAKE,
            "--no-report", "--jobs", "2"]
    env = {"FAKE_EPOCHS": "4", "FAKE_EPOCH_SECONDS": "0.5"}
    runs = unique_runs(build_matrix("smoke", ["architecture"]))
    # A terminal sends SIGINT to the whole foreground process group: so does this test. The
    # driver starts with SIGINT's default disposition, unblocked, as in a terminal's
    # foreground: a suite run where SIGINT is ignored or blocked would hand that to the
    # driver, which then rightly ignores a Ctrl-C (in two full-suite runs here it did).
    proc = _driver(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                   start_new_session=True,
                   preexec_fn=_sigint_as_in_a_terminal)
    try:
        wait_for(lambda: any(len(RunDir(out, r.key).metrics) >= 2 for r in runs), 60,
                  "a run's second epoch")
        os.killpg(proc.pid, signal.SIGINT)
        start = time.time()
        stdout, stderr = proc.communicate(timeout=30)
        elapsed = time.time() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert proc.returncode == 130
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "interrupted" in lines[0] and "nothing is lost" in lines[0]
    assert "python bench/run_all.py --preset smoke --only architecture" in lines[0]
    # No worker outlives the driver, and nothing stored is lost: the rerun resumes.
    wait_for(lambda: all(RunDir(out, r.key).status() != "running" for r in runs), 10,
              "the workers to stop")
    stored = {r.key: len(RunDir(out, r.key).metrics) for r in runs}
    assert any(stored.values())
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py")] + args,
                          env={**os.environ, "PYTHONPATH": ROOT, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for run in runs:
        log = open(RunDir(out, run.key).file("epochs.log")).read().split()
        epochs = [int(x) for x in log[::2]]
        # Epochs stored before the interruption are not trained again.
        assert epochs[:stored[run.key]] == list(range(1, stored[run.key] + 1))
        assert sorted(set(epochs)) == [1, 2, 3, 4]


def test_progress_without_a_terminal_is_one_line_per_run(tmp_path):
    out = str(tmp_path / "out")
    proc = _driver(["--preset", "smoke", "--only", "optimizers", "--out", out, "--train-fn",
                    FAKE, "--no-report", "--jobs", "2"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "\r" not in stdout + stderr
    n = len(unique_runs(build_matrix("smoke", ["optimizers"])))
    finished = [line for line in stdout.splitlines() if line.startswith("[")]
    assert len(finished) == n
    assert finished[-1].startswith(f"[{n}/{n}] ok: optimizers: ")


def test_estimate_is_printed_and_a_terminal_user_is_asked_first(tmp_path):
    """The full preset on a fake terminal: estimate in hours, a question, 'n' runs nothing."""
    import pty

    out = str(tmp_path / "full")
    master, slave = pty.openpty()
    proc = _driver(["--preset", "full", "--out", out, "--jobs", "2"], stdin=slave,
                   stdout=slave, stderr=slave, env={"FASTCONV_DATA": str(tmp_path / "none")})
    os.close(slave)
    seen = b""
    deadline = time.time() + 120
    while b"[y/N]" not in seen and time.time() < deadline:
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
    assert b"[y/N]" in seen, seen.decode(errors="replace")
    os.write(master, b"n\n")
    assert proc.wait(timeout=60) == 1
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    except OSError:
        pass
    os.close(master)
    text = seen.decode(errors="replace")
    n = len(unique_runs(build_matrix("full")))
    assert f"{n} to run" in text and "estimated wall time: about" in text and " h " in text
    assert "Nothing was run" in text
    assert not os.path.exists(os.path.join(out, "runs"))


def test_no_question_without_a_terminal_and_the_budget_holds_runs_back(tmp_path):
    out = str(tmp_path / "full")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"),
                           "--preset", "full", "--out", out, "--budget", "0", "--no-report"],
                          env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[y/N]" not in done.stdout
    n = len(unique_runs(build_matrix("full")))
    assert done.stdout.count("not started (time budget)") == n
    assert "ran 0 runs" in done.stdout
    # The sitting is logged: what it was estimated to take, what it took.
    sitting = json.loads(open(os.path.join(out, "sittings.jsonl")).read().splitlines()[-1])
    assert sitting["runs_to_do"] == n and sitting["runs_finished"] == 0
    assert sitting["estimate_all_s"] > 3600 and sitting["estimate_finished_s"] == 0


def test_estimator_uses_stored_epochs_and_schedules_branches(tmp_path):
    from bench._estimate import Estimator, format_duration
    from fastconv.experiments import write_metrics

    p = PRESETS["full"]
    runs = unique_runs(build_matrix("full"))
    est = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1e-3)
    assert est.source == "measured now"
    default = runs[0]
    assert default.branch is None and default.config["epochs"] == p.epochs["default"]
    one = est.epoch_seconds(default.config, 1)
    # 60,000 training samples at 1 ms plus 10,000 evaluated at 0.44 ms.
    assert one == pytest.approx(60 + 4.4)
    cg = base_config(p, optimizer="cg", epochs=3)
    assert est.epoch_seconds(cg, 1) > 3 * one
    # One slot: the sum of everything; two slots: about half, never less.
    serial = est.wall_seconds(runs, 1)
    parallel = est.wall_seconds(runs, 2)
    assert serial / 2 <= parallel < 0.6 * serial
    assert 3600 < parallel < 8 * 3600, format_duration(parallel)   # the preset's budget
    # A stored epoch of the default run: 2 ms per unit sample measured -> its class doubles.
    write_metrics(RunDir(tmp_path, default.key).file("metrics.csv"),
                  [{"epoch": 1, "seconds": 120.0, "test_seconds": 8.8}])
    again = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1 / 0)
    assert again.source == "stored"
    assert again.epoch_seconds(default.config, 1) == pytest.approx(2 * one)


def test_estimator_trusts_the_most_recent_runs_of_a_class(tmp_path):
    from bench._estimate import RECENT_RUNS, Estimator, _phases, cost_class
    from fastconv.experiments import write_json, write_metrics

    runs = unique_runs(build_matrix("full"))
    est = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1e-3)

    def cls(run):
        return cost_class(run.config, *_phases(run.config)[0][2:])

    default = runs[0]
    same = [r for r in runs if cls(r) == cls(default) and r.branch is None
            and r.config["data"] == default.config["data"]]
    assert len(same) > RECENT_RUNS + 1, "the test needs more runs of one class than are kept"
    one = est.epoch_seconds(default.config, 1)

    def store(run, factor, finished_at=None):
        write_metrics(RunDir(tmp_path, run.key).file("metrics.csv"),
                      [{"epoch": 1, "seconds": factor * 60.0, "test_seconds": factor * 4.4}])
        if finished_at:
            write_json(RunDir(tmp_path, run.key).file("final.json"),
                       {"finished_at": finished_at, "error": None})

    # An old sitting on a busy machine (4x), then RECENT_RUNS newer runs at 2x: the old one
    # no longer counts, whatever the order the runs are declared in.
    store(same[0], 4.0, "2026-01-01T00:00:00+0000")
    for i, run in enumerate(same[1:RECENT_RUNS + 1]):
        store(run, 2.0, f"2026-02-0{i + 1}T00:00:00+0000")
    again = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1 / 0)
    assert again.epoch_seconds(default.config, 1) == pytest.approx(2 * one)
    # A run under way is the newest evidence of all: it displaces the oldest of those three.
    store(same[RECENT_RUNS + 1], 3.0)
    third = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1 / 0)
    # Seconds per unit sample: f * 64.4 s over 60,000 + 10,000 x 0.44 units = f ms.
    assert sorted(third.measured[cls(default)]) == pytest.approx(
        [2e-3] * (RECENT_RUNS - 1) + [3e-3])


def test_longest_first_puts_parents_first_and_never_lengthens_the_schedule(tmp_path):
    from bench._estimate import Estimator

    runs = unique_runs(build_matrix("full"))
    est = Estimator(runs, str(tmp_path), calibrate=lambda threads: 1e-3)
    order = est.longest_first(runs)
    assert sorted(r.key for r in order) == sorted(r.key for r in runs)
    position = {r.key: i for i, r in enumerate(order)}
    for r in order:
        if r.branch is not None:
            assert position[r.branch[0].key] < position[r.key]
    # Runs free to start at once come longest first, the default run (that the branching
    # runs wait for) among them at its place.
    free = [r for r in order if r.branch is None]
    costs = [est.run_seconds(r.config) for r in free]
    assert costs == sorted(costs, reverse=True)
    first_branch = min(i for i, r in enumerate(order) if r.branch is not None)
    assert position[runs[0].key] < first_branch
    for jobs in (2, 3):
        assert est.wall_seconds(order, jobs) <= est.wall_seconds(runs, jobs) * 1.001
    # Runs under way come first, longest remaining first among them.
    under_way = {runs[0].key: 3, order[-1].key: 1}
    resumed = est.longest_first(runs, under_way)
    assert {r.key for r in resumed[:2]} == set(under_way)
    # With the parent finished, its children are ordered by their own remaining cost.
    done = {runs[0].key: runs[0].config["epochs"]}
    todo = [r for r in runs if r.key != runs[0].key]
    order = est.longest_first(todo, done)
    assert est.run_seconds(order[0].config) == max(est.run_seconds(r.config) for r in todo
                                                    if r.branch is None)


def test_missing_data_stops_before_the_first_run_in_one_line(tmp_path):
    out = str(tmp_path / "full")
    env = {**os.environ, "PYTHONPATH": ROOT, "FASTCONV_DATA": str(tmp_path / "none"),
           "FASTCONV_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py"),
                           "--preset", "full", "--out", out, "--yes", "--only", "momentum"],
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "FASTCONV_DATA" in lines[0] and "Nothing was run" in lines[0]
    assert not os.path.exists(os.path.join(out, "runs"))
