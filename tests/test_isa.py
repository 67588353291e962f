"""Per-ISA kernel modules of a portable build and the choice among them at import
(fastconv/_kernels/__init__.py, setup.py)."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv._kernels as kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_the_chosen_level_is_built_supported_and_installed_everywhere():
    level = kernels.ISA_LEVEL
    assert level == "generic" or (level in kernels.isa_variants()
                                  and kernels.cpu_supports(level))
    for name in kernels._ISA_MODULES:
        module = sys.modules[f"fastconv._kernels.{name}"]
        assert module is getattr(kernels, name)
        want = name if level == "generic" else f"{name}__{level}"
        assert module.__name__ == f"fastconv._kernels.{want}"


def test_the_best_supported_level_is_the_default():
    usable = [v for v in kernels.isa_variants() if kernels.cpu_supports(v)]
    if os.environ.get("FASTCONV_ISA"):
        pytest.skip("FASTCONV_ISA is set for this run")
    assert kernels.ISA_LEVEL == (usable[0] if usable else "generic")


@pytest.mark.slow
def test_a_forced_level_is_used_or_refused_with_one_warning():
    code = "import fastconv._kernels as k; print(k.ISA_LEVEL)"
    out = _run(code, FASTCONV_ISA="generic")
    assert out.returncode == 0 and out.stdout.strip() == "generic", out.stderr
    out = _run(code, FASTCONV_ISA="v9")
    assert out.returncode == 0, out.stderr
    assert "FASTCONV_ISA='v9': level not built" in out.stderr
    assert out.stderr.count("Warning") == 1


def test_cpu_supports_names_its_argument():
    with pytest.raises(ValueError, match="cpu_supports: level must be 'v3' or 'v4'"):
        kernels.cpu_supports("avx2")


def test_setup_builds_the_modules_the_dispatcher_installs():
    path = os.path.join(ROOT, "setup.py")
    if not os.path.exists(path):
        pytest.skip("no setup.py beside the tests (an installed wheel)")
    tree = ast.parse(open(path, encoding="utf-8").read())
    built = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                 if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "ISA_MODULES" for t in node.targets))
    assert tuple(built) == kernels._ISA_MODULES


@pytest.mark.skipif(not [v for v in kernels.isa_variants() if kernels.cpu_supports(v)],
                    reason="a native or debug build, or a CPU without the built levels")
def test_every_level_computes_the_same_results_to_rounding():
    """A training step of a small CNN under each level: the same numbers up to float32
    rounding (levels may contract a*b + c into one FMA, so not always the same bits)."""
    code = """
import numpy as np, fastconv
from fastconv import nn
fastconv.set_num_threads(2)
rng = np.random.default_rng(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=rng), nn.BatchNorm2d(8), nn.Tanh(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 10, rng=rng),
                      nn.LogSoftmax())
x = rng.standard_normal((6, 3, 16, 16)).astype(np.float32)
crit = nn.NLLLoss()
loss = crit.forward(model.forward(x), np.arange(6) % 10)
model.backward(crit.backward())
print(repr(float(loss)), repr([float(np.sum(np.abs(g))) for g in model.grads()]))
"""
    results = {}
    for level in ("generic",) + tuple(v for v in kernels.isa_variants()
                                      if kernels.cpu_supports(v)):
        out = _run(code, FASTCONV_ISA=level)
        assert out.returncode == 0, out.stderr
        loss, grads = out.stdout.strip().split(" ", 1)
        results[level] = np.array([float(loss)] + ast.literal_eval(grads))
    for level, values in results.items():
        # atol: the bias before BatchNorm has a gradient of rounding noise only (about 1e-8).
        np.testing.assert_allclose(values, results["generic"], rtol=1e-4, atol=1e-6,
                                   err_msg=level)
