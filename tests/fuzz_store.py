"""Fuzz the experiment store with damaged run files (run by tests/test_robust_store.py).

A template store holds two finished runs (the stand-in trainer of tests/test_run_all.py).
Each example copies it and damages one file of the first run (final.json, metrics.csv,
config.json) or the matrix's sittings.jsonl: emptied, cut at any byte, bytes flipped or
inserted, replaced by random bytes, by another JSON value (list, number, string, deep
nesting, NaN), or by a final.json / metrics.csv whose fields have the wrong types. Then:

* ``--list`` and the report never raise, and a damaged run file is listed as damaged (a
  file that still reads as valid, such as a metrics.csv cut at a row's end, may not be);
* a rerun repairs or retrains the run: afterwards no file is damaged, the run is ok, and
  the damaged bytes are kept beside it as ``<name>.damaged``.

Run as ``python -m tests.fuzz_store``. ``FASTCONV_FUZZ_EXAMPLES`` is the number of
examples (default 300, the CI profile; any count draws new examples each run).
"""
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import run_all
from bench._report import collect, read_sittings
from bench.experiments import PRESETS, Run, base_config
from fastconv.experiments import RunDir, execute_run
from fastconv.experiments.store import RUN_FILES

EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "300"))
FAKE = "tests.test_run_all:fake_train"
RUNS = [Run("t", f"seed {s}", base_config(PRESETS["smoke"], seed=s)) for s in (1, 2)]
FILES = RUN_FILES + ("sittings.jsonl",)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)
# Damage: (kind, random bytes, position, JSON value).
damages = st.tuples(
    st.sampled_from(["empty", "cut", "flip", "insert", "bytes", "json", "deep", "fields",
                     "rows"]),
    st.binary(max_size=40), st.integers(0, 10**6), json_values)


def _damage(data, kind, noise, pos, value, name):
    """The bytes of a damaged copy of ``data`` (a file called ``name``)."""
    at = pos % (len(data) + 1)
    if kind == "empty":
        return b""
    if kind == "cut":
        return data[:at]
    if kind == "flip" and data:
        at = pos % len(data)
        return data[:at] + bytes([data[at] ^ (1 + pos % 255)]) + data[at + 1:]
    if kind == "insert":
        return data[:at] + noise + data[at:]
    if kind == "bytes":
        return noise
    if kind == "deep":
        return b"[" * 100000 + b"]" * 100000
    if kind == "fields" and name.endswith(".json"):
        obj = json.loads(data) if data.strip().startswith(b"{") else {}
        keys = sorted(obj) or ["status"]
        obj[keys[pos % len(keys)]] = value
        return json.dumps(obj).encode()
    if kind in ("fields", "rows"):
        return data
    if kind == "rows" and name.endswith(".csv"):
        lines = data.splitlines()
        i = pos % len(lines)
        cells = lines[i].split(b",")
        cells[pos % len(cells)] = json.dumps(value).encode()[:12]
        lines[i] = b",".join(cells)
        return b"\n".join(lines) + b"\n"
    return json.dumps(value, allow_nan=True).encode()


# Every store write is fsynced: in memory (tmpfs) when the machine has one, it costs nothing.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _template():
    folder = tempfile.mkdtemp(prefix="fuzz-store-", dir=SCRATCH)
    for run in RUNS:
        execute_run(run.config, folder, run.key, 1, FAKE)
    with open(os.path.join(folder, "sittings.jsonl"), "w") as f:
        f.write(json.dumps({"started": "2026-01-01T00:00:00", "runs_finished": 2,
                            "wall_s": 1.0, "estimate_finished_s": 1.0}) + "\n")
    return folder


def check(template, name, damage):
    out = tempfile.mkdtemp(prefix="fuzz-case-", dir=SCRATCH)
    try:
        shutil.rmtree(out)
        shutil.copytree(template, out)
        stored = RunDir(out, RUNS[0].key)
        path = os.path.join(out, name) if name == "sittings.jsonl" else stored.file(name)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(_damage(data, *damage, name))
        listing = io.StringIO()
        run_all.list_runs(RUNS, out, file=listing)
        collect(RUNS, out)
        read_sittings(out)
        if name == "sittings.jsonl":
            return
        damaged = stored.damaged()
        assert (stored.status() == "damaged") == bool(damaged)
        assert ("damaged:" in listing.getvalue()) == bool(damaged), listing.getvalue()
        if damaged:
            assert damaged[0][0] == name and stored.file(name) in listing.getvalue()
            assert [r.key for r in run_all.runs_to_execute(RUNS, out)] == [RUNS[0].key]
        with redirect_stdout(io.StringIO()):
            record = execute_run(RUNS[0].config, out, RUNS[0].key, 1, FAKE)
        assert record["status"] == "ok" and stored.damaged() == [], stored.damaged()
        assert stored.final["status"] == "ok" and stored.config == RUNS[0].config
        assert len(stored.metrics) == RUNS[0].config["epochs"]
        assert os.path.exists(stored.file(name + ".damaged")) == bool(damaged)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# The CI profile is derandomized (the same examples every run, no flaky CI); a count given
# in FASTCONV_FUZZ_EXAMPLES draws new examples each run.
config = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize="FASTCONV_FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))


def main():
    from fastconv.experiments import worker

    # Each recorded run asks git for the commit; a constant keeps 300 examples cheap.
    worker._code_version = lambda: {"fastconv": "fuzz"}
    template = _template()
    try:
        given(st.sampled_from(FILES), damages)(config(
            lambda name, damage: check(template, name, damage)))()
    finally:
        shutil.rmtree(template, ignore_errors=True)
    print(f"run store: {EXAMPLES} examples", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
