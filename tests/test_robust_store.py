"""bench/run_all.py and fastconv.experiments against damage and a hostile machine.

Damaged run files are listed as damaged and repaired or retrained by a rerun; a full disk or
an unwritable folder stops a sitting in one line, exit 1, recording nothing as failed, and a
rerun once it is fixed finishes every run; every numeric option is checked. The fuzz over
damaged stores is ``tests/fuzz_store.py``.
"""
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from bench import run_all
from bench.experiments import PRESETS, Run, base_config, build_matrix, unique_runs
from fastconv.experiments import RunDir, execute_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests.test_run_all:fake_train"
FULL_DISK = "tests.test_robust_store:full_disk_train"
# Touching this file (its path in the variable) makes full_disk_train's writes fail.
FULL_DISK_MARKER = "FASTCONV_TEST_FULL_DISK"


def full_disk_train(config, run_dir, threads, on_epoch):
    """fake_train, but the disk is full (ENOSPC) from its second epoch on while the marker
    file named by $FASTCONV_TEST_FULL_DISK exists."""
    from tests.test_run_all import fake_train

    def full(history):
        if len(history) >= 2 and os.path.exists(os.environ[FULL_DISK_MARKER]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                          os.path.join(run_dir, "metrics.csv"))
        on_epoch(history)
    return fake_train(config, run_dir, threads, full)


def _finish(out, runs):
    for run in unique_runs(runs):
        assert execute_run(run.config, out, run.key, 1, FAKE)["status"] == "ok"


def _main(args, capsys):
    code = run_all.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# The damage of defect 7: each crashed --list, a rerun and --report-only.
DAMAGE = {
    "final-invalid": ("final.json", b'{"status": "ok", '),
    "final-empty": ("final.json", b""),
    "final-list": ("final.json", b"[1, 2, 3]"),
    "final-bad-status": ("final.json", b'{"status": 3}'),
    "metrics-garbage": ("metrics.csv", b"\x00\xff garbage,\n1,2,3\n"),
    "metrics-truncated": ("metrics.csv", None),
    "config-garbage": ("config.json", b"\xde\xad\xbe\xef"),
    "config-other-run": ("config.json", b'{"seed": 12345}'),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_file_is_listed_and_a_rerun_repairs_it(tmp_path, capsys, case):
    out = str(tmp_path)
    args = ["--preset", "smoke", "--only", "rotation", "--out", out, "--train-fn", FAKE,
            "--no-progress", "--no-report"]
    runs = unique_runs(build_matrix("smoke", ["rotation"]))
    _finish(out, runs)
    damaged = RunDir(out, runs[0].key)
    name, data = DAMAGE[case]
    if data is None:    # cut in the middle of the last row
        data = open(damaged.file(name), "rb").read()[:-7]
    with open(damaged.file(name), "wb") as f:
        f.write(data)

    code, listing, err = _main(args + ["--list"], capsys)
    assert code == 0 and err == ""
    assert f"{len(runs) - 1} ok, 1 damaged" in listing
    lines = [line for line in listing.splitlines() if line.startswith("damaged:")]
    assert len(lines) == 1
    assert damaged.file(name) in lines[0] and runs[0].label in lines[0]
    assert "rerun without --list" in lines[0]

    assert _main(["--preset", "smoke", "--only", "rotation", "--out", out,
                  "--report-only"], capsys)[0] == 0

    code, text, err = _main(args, capsys)
    assert code == 0, err
    assert f"{len(runs) - 1} already finished, 1 to run" in text
    assert damaged.damaged() == [] and damaged.final["status"] == "ok"
    assert os.path.exists(damaged.file(name + ".damaged"))   # the bytes are kept
    # Repaired from the run's own record: no epoch trained again.
    epochs = open(damaged.file("epochs.log")).read().split()[::2]
    assert epochs == [str(e) for e in range(1, runs[0].config["epochs"] + 1)]
    assert f"{len(runs)} ok" in _main(args + ["--list"], capsys)[1]


def test_damaged_sittings_log_is_skipped(tmp_path, capsys):
    out = str(tmp_path)
    args = ["--preset", "smoke", "--only", "rotation", "--out", out, "--train-fn", FAKE,
            "--no-progress"]
    with open(os.path.join(out, "sittings.jsonl"), "wb") as f:
        f.write(b'[1]\n{"started": 5}\n\xff\xfe\n{"wall_s": "x", "runs_finished": 1,')
    assert _main(args, capsys)[0] == 0
    code, listing, _ = _main(args + ["--list"], capsys)
    assert code == 0 and "sittings.jsonl: 4 line(s) are not sitting records" in listing
    # The cut last line did not swallow this sitting's record.
    assert json.loads(open(os.path.join(out, "sittings.jsonl"), "rb").read().splitlines()[-1])
    assert _main(args + ["--report-only"], capsys)[0] == 0
    assert "| sitting started |" in open(os.path.join(out, "report.md")).read()


def test_out_naming_a_file_or_an_unwritable_folder_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, listing in ((afile, True), (afile, False), (afile / "sub", False),
                         (afile / "sub", True)):
        with pytest.raises(SystemExit) as stop:
            run_all.main(["--preset", "smoke", "--out", str(out), "--train-fn", FAKE]
                         + ["--list"] * listing)
        message = str(stop.value.code)
        assert message.startswith(f"run_all.py: --out {out}: ") and "\n" not in message
        assert "pass another --out folder" in message


def test_unwritable_out_of_a_finished_matrix_is_one_line(tmp_path, capsys, monkeypatch):
    out = str(tmp_path)
    runs = build_matrix("smoke", ["rotation"])
    _finish(out, runs)
    # Root writes anywhere: simulate the folder's refusal where the check writes.
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), out)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(SystemExit) as stop:
        run_all.main(["--preset", "smoke", "--only", "rotation", "--out", out,
                      "--report-only"])
    assert "cannot be written (Permission denied)" in str(stop.value.code)
    # Listing needs no writing.
    assert run_all.main(["--preset", "smoke", "--only", "rotation", "--out", out,
                         "--list"]) == 0


@pytest.mark.parametrize("option", [["--threads", "-5"], ["--threads", "100000"],
                                    ["--threads", "0"], ["--threads", "two"],
                                    ["--jobs", "0"], ["--jobs", "100000"],
                                    ["--budget", "nan"], ["--budget", "-1"],
                                    ["--budget", "inf"]])
def test_numeric_options_are_checked_in_one_line(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as stop:
        run_all.main(["--preset", "smoke", "--out", str(tmp_path)] + option)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument {option[0]}" in err
    assert not os.listdir(tmp_path)


def _driver(args, env):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run_all.py")] + args,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, **env},
                          capture_output=True, text=True, timeout=120)


def test_full_disk_stops_the_sitting_and_a_rerun_finishes(tmp_path):
    out = str(tmp_path / "out")
    marker = tmp_path / "disk-is-full"
    marker.touch()
    args = ["--preset", "smoke", "--only", "rotation", "--out", out, "--train-fn",
            FULL_DISK, "--no-progress", "--no-report", "--jobs", "2"]
    runs = unique_runs(build_matrix("smoke", ["rotation"]))
    env = {FULL_DISK_MARKER: str(marker), "FAKE_EPOCHS": "3"}
    done = _driver(args, env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("run_all.py: stopped: ") and "No space left" in done.stderr
    assert "resume with: python bench/run_all.py --preset smoke" in done.stderr
    assert "Traceback" not in done.stdout
    # Nothing is recorded as failed; every epoch stored before the disk filled is kept.
    assert all(RunDir(out, r.key).final is None for r in runs)
    assert any(len(RunDir(out, r.key).metrics) == 1 for r in runs)

    marker.unlink()     # space freed
    done = _driver(args, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(runs)} to run" in done.stdout and "0 not ok" in done.stdout
    assert all(RunDir(out, r.key).final["status"] == "ok" for r in runs)


def test_full_disk_in_a_run_records_nothing(tmp_path, monkeypatch):
    """ENOSPC while a run stores an epoch: raised for the driver, not recorded as failed."""
    from fastconv.experiments import worker

    run = Run("t", "seed 1", base_config(PRESETS["smoke"], seed=1))

    def full(path, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    monkeypatch.setattr(worker, "write_metrics", full)
    with pytest.raises(OSError, match="No space left"):
        execute_run(run.config, str(tmp_path), run.key, 1, FAKE)
    assert RunDir(tmp_path, run.key).final is None
    # A run that fails for real is still recorded as failed.
    monkeypatch.undo()
    bad = Run("t", "seed 13", base_config(PRESETS["smoke"], seed=13))
    assert execute_run(bad.config, str(tmp_path), bad.key, 1, FAKE)["status"] == "failed"


def _mount_tmpfs(folder, size):
    os.makedirs(folder, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                              capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


@pytest.mark.slow
def test_smoke_preset_on_a_full_tmpfs(tmp_path):
    """Two families of the real smoke preset (10 runs, every optimizer and loss) on a 12 MB
    tmpfs: one line, exit 1, nothing failed; after the tmpfs grows, a plain rerun finishes
    them all."""
    disk = str(tmp_path / "disk")
    if shutil.which("mount") is None or not _mount_tmpfs(disk, "12m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = os.path.join(disk, "smoke")
        families = ["optimizers", "architecture"]
        args = ["--preset", "smoke", "--only", *families, "--out", out, "--jobs", "2",
                "--no-progress"]
        done = _driver(args, {})
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "No space left on device" in done.stderr
        runs = unique_runs(build_matrix("smoke", families))
        assert all((RunDir(out, r.key).final or {}).get("status") in (None, "ok")
                   for r in runs)
        subprocess.run(["mount", "-o", "remount,size=400m", disk], check=True, timeout=30)
        done = _driver(args, {})
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(runs) == 10
        assert all(RunDir(out, r.key).final["status"] == "ok" for r in runs)
        assert "10 ok" in _driver(args + ["--list"], {}).stdout
    finally:
        subprocess.run(["umount", disk], timeout=30)


@pytest.mark.slow
def test_fuzz_damaged_stores_in_a_subprocess():
    """Damaged final.json, metrics.csv, config.json and sittings.jsonl (emptied, cut, bytes
    flipped or inserted, other JSON, wrong field types): listed as damaged, never a crash,
    repaired by a rerun. FASTCONV_FUZZ_EXAMPLES sets the examples (default: the CI
    profile)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_store"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_damaged_checkpoint_of_a_run_is_set_aside_and_the_run_retrained(tmp_path):
    """The real trainer: a run whose checkpoint.npz is cut trains again from scratch (same
    numbers) instead of failing."""
    config = dict(base_config(PRESETS["smoke"]), epochs=1)
    run = Run("t", "one epoch", config)
    first = execute_run(run.config, str(tmp_path), run.key, 1)
    assert first["status"] == "ok"
    stored = RunDir(tmp_path, run.key)
    checkpoint = stored.file("checkpoint.npz")
    with open(checkpoint, "r+b") as f:
        f.truncate(100)
    os.unlink(stored.file("final.json"))
    again = execute_run(run.config, str(tmp_path), run.key, 1)
    assert again["status"] == "ok", again["error"]
    assert again["history"][0]["test_accuracy"] == first["history"][0]["test_accuracy"]
    assert os.path.getsize(checkpoint + ".damaged") == 100
