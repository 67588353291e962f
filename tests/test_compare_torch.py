"""Smoke test of bench/compare_torch.py: the PyTorch equivalence check and a tiny measurement.

The numbers of a --quick run mean nothing; this only proves that the script runs end to end,
that both frameworks compute the same training step, that the torch.compile peer is measured
or reported n/a with its reason, and that the JSON has the issue's schema. The cell, report
and alternation logic is tested without PyTorch too (CI does not install it).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "compare_torch.py")

from bench import compare_torch as CT  # noqa: E402

try:
    import torch
except ImportError:     # the tests that need it are skipped; the rest run without it
    torch = None
# PyTorch is an optional benchmark dependency (pip install torch==2.13.0), absent from CI.
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


@needs_torch
@pytest.mark.parametrize("name", list(CT.MODEL_INPUTS))
def test_one_step_matches_torch(name):
    c = CT.check_equivalence(name, batch=4)
    assert c["ok"], c
    assert c["loss_rel_err"] < 1e-4 and c["update_rel_err"] < 1e-4
    # Only the three convolution biases under batch norm have a zero gradient.
    assert c["zero_update_tensors"] == (3 if name == "cifar-bn" else 0)


@needs_torch
def test_check_detects_a_different_model(monkeypatch):
    # The check must be able to fail: a torch twin with one tanh swapped for ReLU disagrees.
    from bench import _torch_models as TM

    build = TM.build_torch_model

    def wrong(name, dtype=torch.float32):
        model = build(name, dtype)
        model[1] = torch.nn.ReLU()
        return model

    monkeypatch.setattr(TM, "build_torch_model", wrong)
    assert not CT.check_equivalence("maxpool", batch=4)["ok"]


@needs_torch
def test_check_detects_batch_norm_in_eval_mode(monkeypatch):
    # Batch norm normalizing by its running statistics (mean 0, variance 1 at the start)
    # instead of the batch's computes another function: the check must say so.
    from bench import _torch_models as TM

    build = TM.build_torch_model

    def wrong(name, dtype=torch.float32):
        model = build(name, dtype)
        model[1].eval()
        return model

    monkeypatch.setattr(TM, "build_torch_model", wrong)
    assert not CT.check_equivalence("cifar-bn", batch=4)["ok"]


@needs_torch
def test_copy_weights_follows_params_order():
    from bench import _torch_models as TM

    fc = CT.build_fastconv_model("cifar-bn")
    arrays = [np.full(a.shape, i, np.float32) for i, a in enumerate(fc.params())]
    t = TM.copy_weights(TM.build_torch_model("cifar-bn"), arrays)
    assert [type(m).__name__ for m in TM.weight_layers(t)][:3] == ["Conv2d", "BatchNorm2d",
                                                                  "Conv2d"]
    for i, p in enumerate(TM.torch_params(t)):
        assert torch.all(p == i)
    with pytest.raises(ValueError, match="14 arrays for 8 layers"):
        TM.copy_weights(TM.build_torch_model("cifar-bn"), arrays[:14])


def test_flops_match_performance_notes():
    fwd, bwd = CT.count_flops(CT.build_fastconv_model("maxpool"), CT.MODEL_INPUTS["maxpool"])
    # PERFORMANCE.md: about 23.4 MFLOP forward + 44.3 backward = 67.7 per training sample.
    assert fwd == 23_400_960
    assert bwd == 44_293_120
    assert CT.count_flops(CT.build_fastconv_model("convnet"), (1, 32, 32)) == (fwd, bwd)


@needs_torch
@pytest.mark.parametrize("name", list(CT.MODEL_INPUTS))
def test_flops_match_torch_flop_counter(name):
    # An independent count: PyTorch's FlopCounterMode counts convolutions (padding
    # included) and matrix products of one training step at batch 1, never batch norm or
    # the normalization's fixed convolution (convnet's is not a layer of fastconv's count,
    # so it is left out below by running that model's twin without it).
    from torch.utils.flop_counter import FlopCounterMode
    from bench import _torch_models as TM

    fc = CT.build_fastconv_model(name)
    model = TM.copy_weights(TM.build_torch_model(name), fc.params())
    if name == "convnet":
        model = torch.nn.Sequential(*(m for m in model
                                      if not isinstance(m, TM.SubtractiveNormalization)))
    x = torch.zeros((1,) + CT.MODEL_INPUTS[name])
    with FlopCounterMode(display=False) as fwd_count:
        out = model(x)
    with FlopCounterMode(display=False) as bwd_count:
        out.sum().backward()
    assert CT.count_flops(fc, CT.MODEL_INPUTS[name]) == (fwd_count.get_total_flops(),
                                                         bwd_count.get_total_flops())


def test_cell_reports_gflops_and_compile_failure():
    runs = {"fastconv": [100.0, 300.0, 200.0], "torch": [100.0], "compile": []}
    e = CT.cell_entry(runs, flops=1e9, gflops=400.0,
                      compile_info={"error": "InvalidBackend: Invalid backend: 'x'"})
    assert e["fastconv_gflops"] == 200.0 and e["pct_of_ceiling"] == 50.0
    assert e["torch_gflops"] == 100.0 and e["torch_pct_of_ceiling"] == 25.0
    assert e["ratio"] == 2.0 and e["compile"] is None and e["compile_ratio"] is None
    lines = CT._format_cells("cifar", {"train": {"32": e}, "infer": {}})
    assert "n/a" in lines[2] and "200.0 (50%)" in lines[2] and ">=1.5" in lines[2]
    assert lines[3] == ("  torch.compile n/a (train b=32): InvalidBackend: Invalid backend: "
                        "'x'")


class _FakeWorker:
    def __init__(self, label, replies):
        self.label, self.replies = label, list(replies)

    def run(self, model, mode, batch):
        r = self.replies.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def test_alternate_leaves_out_a_failed_optional_worker():
    ok = _FakeWorker("torch", [{"samples_per_s": 1.0, "warmup_s": 0.1}] * 3)
    failed = _FakeWorker("compile", [{"error": "CppCompileError: no compiler"}])
    died = _FakeWorker("compile2", [{"samples_per_s": 5.0, "warmup_s": 9.0},
                                    {"samples_per_s": 5.0}, RuntimeError("worker died")])
    info = {"compile": {}, "compile2": {}}
    runs = CT.alternate([ok, failed, died], "cifar", "train", 1, 2, optional=info)
    assert runs == {"torch": [1.0, 1.0], "compile": [], "compile2": []}
    assert info["compile"] == {"error": "CppCompileError: no compiler"}
    assert info["compile2"] == {"warmup_s": 9.0, "error": "worker died"}
    # A worker that is not optional must not fail quietly.
    with pytest.raises(RuntimeError, match="worker torch: boom"):
        CT.alternate([_FakeWorker("torch", [{"error": "boom"}])], "cifar", "train", 1, 1)


@pytest.mark.slow
@needs_torch
def test_compile_failure_is_one_line_from_the_worker(tmp_path):
    weights = str(tmp_path / "weights.npz")
    CT._save_weights(weights, ["maxpool"])
    args = CT.parse_args(["--quick", "--threads", "1"])
    w = CT.Worker("torch", 1, args, label="compile", dataset_size=8, weights=weights,
                  extra=["--compile-worker", "--compile-backend", "no-such-backend"])
    try:
        reply = w.run("maxpool", "infer", 2)
        assert set(reply) == {"error"} and "\n" not in reply["error"], reply
        assert reply["error"].startswith("InvalidBackend: Invalid backend: 'no-such-backend'")
        assert w.run("maxpool", "infer", 2) == reply    # remembered, not retried
    finally:
        w.close()


def test_models_option():
    assert CT.parse_args([]).models == list(CT.MODEL_NAMES)
    assert CT.parse_args(["--models", "all", "cifar"]).models == list(CT.MODEL_INPUTS)
    assert CT.parse_args(["--models", "cifar", "maxpool", "cifar"]).models == ["cifar",
                                                                                "maxpool"]


@pytest.mark.slow
@needs_torch
def test_quick_run_writes_the_schema(tmp_path):
    # One model keeps the test fast: the batch-norm net, the one with the most parts. The
    # "eager" backend runs torch.compile's Dynamo without Inductor's minute of compilation
    # per cell: the peer's whole path in seconds.
    out = tmp_path / "compare_torch.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--models", "cifar-bn", "--compile-backend",
         "eager", "--train-batches", "2", "--infer-batches", "8", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout and "check:" in proc.stdout and "GFLOP/s" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data) == {"cifar-bn"}
    for name, r in data.items():
        assert r["model"] == name and r["threads"] >= 1 and r["machine"]
        assert r["sgemm_gflops"] > 0 and r["input_shape"] == [3, 32, 32]
        assert r["compile"] == {"backend": "eager", "mode": "default", "dynamic": False}
        assert set(r["train"]) == {"2"} and set(r["infer"]) == {"8"}
        for mode in ("train", "infer"):
            flops = r["flops_per_sample"][mode]
            for e in r[mode].values():
                assert e["compile_error"] is None and e["compile_warmup_s"] > 0
                for peer in CT.PEERS:
                    assert e[peer] > 0
                    assert np.isclose(e[peer + "_gflops"], e[peer] * flops / 1e9)
                assert np.isclose(e["pct_of_ceiling"],
                                  100 * e["fastconv_gflops"] / r["sgemm_gflops"])
                assert np.isclose(e["ratio"], e["fastconv"] / e["torch"])
                assert np.isclose(e["compile_ratio"], e["fastconv"] / e["compile"])
        assert r["check"]["ok"]
        assert r["peak_rss_mib"]["fastconv"] > 0 and r["peak_rss_mib"]["compile"] > 0
