"""The environment matrix's verdict in bench/compare_torch.py (no PyTorch needed)."""
import pytest

from bench.compare_torch import SLOWER_MARGIN, env_verdict


def entry(paired):
    ordered = sorted(paired)
    return {"vs_set_num_threads_1": ordered[len(ordered) // 2],
            "paired_vs_set_num_threads_1": paired}


def test_faster_or_equal_is_ok():
    assert env_verdict(entry([1.0, 1.1, 0.9]), entry([1.2, 1.0, 1.05])) == "ok"


def test_losing_some_rounds_is_noise():
    v = env_verdict(entry([0.9, 1.02, 0.95, 1.01, 0.97]), entry([1.0] * 5))
    assert v.startswith("ok within noise (3/5, 0/5 rounds slower")


def test_losing_every_round_by_less_than_the_margin_is_noise():
    small = 1 - SLOWER_MARGIN / 3
    v = env_verdict(entry([1.0] * 5), entry([small] * 5))
    assert v.startswith("ok within noise (0/5, 5/5 rounds slower")


def test_losing_every_round_by_more_than_the_margin_is_slower():
    v = env_verdict(entry([0.85, 0.9, 0.8, 0.88, 0.86]), entry([1.0] * 5))
    assert v.startswith("SLOWER than 1 thread in every round")


@pytest.mark.slow
def test_busy_host_scenarios_run_and_are_recorded(tmp_path):
    """`compare_torch.py --busy` measures every scenario in fresh processes (numbers here are
    meaningless: quick settings on a shared test machine); the JSON holds paired fractions."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "busy.json"
    done = subprocess.run([sys.executable, os.path.join(root, "bench", "compare_torch.py"),
                           "--busy", "--quick", "--no-torch", "--busy-batches", "1",
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    busy = json.loads(out.read_text())["busy"]["1"]["fastconv"]
    assert set(busy["samples_per_s"]) == {"alone", "neighbour", "two"}
    assert all(len(v) == 1 and v[0] > 0 for v in busy["samples_per_s"].values())
    runs = busy["samples_per_s"]
    assert busy["two_fraction"] == runs["two"][0] / runs["alone"][0]
    assert "| 1 | fastconv |" in done.stdout
