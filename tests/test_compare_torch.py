"""Smoke test of bench/compare_torch.py: the PyTorch equivalence check and a tiny measurement.

The numbers of a --quick run mean nothing; this only proves that the script runs end to end,
that both frameworks compute the same training step, and that the JSON has the issue's schema.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "compare_torch.py")

torch = pytest.importorskip(
    "torch", reason="PyTorch is an optional benchmark dependency (pip install torch==2.13.0)")


@pytest.mark.parametrize("name", ["maxpool", "convnet"])
def test_one_step_matches_torch(name):
    from bench.compare_torch import check_equivalence

    c = check_equivalence(name, batch=4)
    assert c["ok"], c
    assert c["loss_rel_err"] < 1e-4 and c["update_rel_err"] < 1e-4


def test_check_detects_a_different_model(monkeypatch):
    # The check must be able to fail: a torch twin with one tanh swapped for ReLU disagrees.
    from bench import _torch_models as TM
    from bench.compare_torch import check_equivalence

    build = TM.build_torch_model

    def wrong(name, dtype=torch.float32):
        model = build(name, dtype)
        model[1] = torch.nn.ReLU()
        return model

    monkeypatch.setattr(TM, "build_torch_model", wrong)
    assert not check_equivalence("maxpool", batch=4)["ok"]


def test_flops_match_performance_notes():
    from bench.compare_torch import build_fastconv_model, count_flops

    fwd, bwd = count_flops(build_fastconv_model("maxpool"))
    # PERFORMANCE.md: about 23.4 MFLOP forward + 44.3 backward = 67.7 per training sample.
    assert fwd == 23_400_960
    assert bwd == 44_293_120
    assert count_flops(build_fastconv_model("convnet")) == (fwd, bwd)


def test_quick_run_writes_the_schema(tmp_path):
    # One model keeps the test fast; the convnet's check runs in-process above.
    out = tmp_path / "compare_torch.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--models", "maxpool",
         "--train-batches", "1", "4", "--infer-batches", "1", "8", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout and "check:" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"maxpool"}
    for name, r in data.items():
        assert r["model"] == name and r["threads"] >= 1 and r["machine"]
        assert r["sgemm_gflops"] > 0
        assert set(r["train"]) == {"1", "4"} and set(r["infer"]) == {"1", "8"}
        for mode in ("train", "infer"):
            for e in r[mode].values():
                assert e["fastconv"] > 0 and e["torch"] > 0 and e["pct_of_ceiling"] > 0
                assert np.isclose(e["ratio"], e["fastconv"] / e["torch"])
        assert r["check"]["ok"]
        assert r["peak_rss_mib"]["fastconv"] > 0
