"""Time fastconv's kernels against plain NumPy at the homework ConvNet's sizes.

Usage (from the repository root)::

    python bench/kernels.py                         # batch 1 and 128, default threads
    python bench/kernels.py --threads 1 --repeats 9
    python bench/kernels.py --batch 1 --csv kernels.csv

For every kernel of :mod:`fastconv.functional` at the shapes the homework's ConvNet uses
(conv 5x5 1->64 on 1x32x32, tanh, 2x2 pooling, conv 5x5 64->64 on 64x14x14, linear 1600->128,
128->10, log-softmax + NLL over 10 classes, rotation of 1x32x32 inputs, subtractive
normalization, dropout), float32, the script prints the forward and the backward time of
fastconv and of a plain NumPy implementation (:mod:`bench._numpy_kernels`) measured in the same
run, and their ratio ``numpy / fastconv`` (> 1: fastconv is faster).

Method
------
* Before any timing, each baseline's outputs are checked against fastconv's with
  ``assert_allclose`` at float32 tolerance, so a wrong baseline cannot produce a ratio.
* Each case is warmed up, then the number of calls per sample is chosen so that one sample
  lasts about ``--min-sample-ms``. Samples alternate fastconv, NumPy, fastconv, NumPy, ... so that
  load from other processes hits both sides alike. The table gives the median over
  ``--repeats`` samples and, for each side, the minimum; the ratio is of the medians.
* fastconv runs with ``--threads`` OpenMP threads (default: its own default) and NumPy's BLAS
  is pinned with threadpoolctl to the same count. NumPy's elementwise code is single-threaded
  whatever the setting: that is part of what is being compared.
* Backward passes take what their forward saved (the output y for activations, the arg-max for
  max pooling, the mask for dropout, log-probabilities for the loss); convolution backward
  returns grad_x, grad_weight and grad_bias, and rebuilds its columns from x on both sides.
"""
import argparse
import csv
import gc
import math
import os
import platform
import statistics
import sys
import time

if __package__ in (None, ""):
    # Run as a script: make the repository root importable for `bench` and `fastconv`.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Idle OpenBLAS threads otherwise keep spinning for about 2**28 cycles after each NumPy GEMM;
# on a 2-core machine that stalls the OpenMP threads of the next fastconv sample (measured:
# 0.03 ms kernels took 12-19 ms right after a 2-thread NumPy GEMM). With 2**4 cycles they go to
# sleep at once. OpenBLAS reads the variable when it loads, so it must be set before numpy is
# imported; a value already in the environment wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from threadpoolctl import ThreadpoolController  # noqa: E402

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from bench import _numpy_kernels as NP  # noqa: E402
from bench._machine import cpu_model, usable_cores  # noqa: E402

__all__ = ["Case", "build_cases", "check_case", "time_case", "main", "parse_args"]

DTYPE = np.float32
# Float32 agreement: relative to each output's largest magnitude, so sums over thousands of
# terms (grad_weight sums 12,800 products at batch 128) are judged against their scale.
RTOL = 2e-4
CSV_FIELDS = ["op", "shape", "dtype", "n_threads", "pass", "fastconv_ms", "numpy_ms", "ratio",
              "fastconv_min_ms", "numpy_min_ms", "repeats"]


class Case:
    """One kernel at one shape: a forward and a backward callable per implementation.

    ``fc_fwd``/``np_fwd`` and ``fc_bwd``/``np_bwd`` are argument-free callables returning a
    tuple of arrays (or floats) to compare; the backward ones use state saved by one earlier
    forward call of the same implementation.
    """

    def __init__(self, op, shape, fc_fwd, np_fwd, fc_bwd, np_bwd):
        self.op, self.shape = op, shape
        self.fc = {"fwd": fc_fwd, "bwd": fc_bwd}
        self.np = {"fwd": np_fwd, "bwd": np_bwd}


def _tuple(r):
    return r if isinstance(r, tuple) else (r,)


def _shape_str(*shapes):
    return " ".join("x".join(str(s) for s in shape) for shape in shapes)


def _conv_case(rng, n, c, h, f, k):
    x = rng.standard_normal((n, c, h, h), dtype=DTYPE)
    bound = 1 / math.sqrt(c * k * k)
    weight = rng.uniform(-bound, bound, (f, c, k, k)).astype(DTYPE)
    bias = rng.uniform(-bound, bound, f).astype(DTYPE)
    g = rng.standard_normal((n, f, h - k + 1, h - k + 1), dtype=DTYPE)
    return Case("conv2d", _shape_str(x.shape, weight.shape),
                lambda: F.conv2d_forward(x, weight, bias),
                lambda: NP.conv2d_forward(x, weight, bias)[0],
                lambda: F.conv2d_backward(x, weight, g),
                lambda: NP.conv2d_backward(x, weight, g))


def _linear_case(rng, n, d_in, d_out):
    x = rng.standard_normal((n, d_in), dtype=DTYPE)
    bound = 1 / math.sqrt(d_in)
    weight = rng.uniform(-bound, bound, (d_out, d_in)).astype(DTYPE)
    bias = rng.uniform(-bound, bound, d_out).astype(DTYPE)
    g = rng.standard_normal((n, d_out), dtype=DTYPE)
    return Case("linear", _shape_str(x.shape, weight.shape),
                lambda: F.linear_forward(x, weight, bias),
                lambda: NP.linear_forward(x, weight, bias)[0],
                lambda: F.linear_backward(x, weight, g),
                lambda: NP.linear_backward(x, weight, g))


def _max_pool_case(rng, n, c, h):
    x = rng.standard_normal((n, c, h, h), dtype=DTYPE)
    g = rng.standard_normal((n, c, h // 2, h // 2), dtype=DTYPE)
    _, indices = F.max_pool2d_forward(x, 2, return_indices=True)
    _, arg = NP.max_pool2d_forward(x, 2)
    return Case("max_pool2d 2x2", _shape_str(x.shape),
                lambda: F.max_pool2d_forward(x, 2, return_indices=True)[0],
                lambda: NP.max_pool2d_forward(x, 2)[0],
                lambda: F.max_pool2d_backward(g, indices, x.shape),
                lambda: NP.max_pool2d_backward(g, arg, x.shape, 2))


def _lp_pool_case(rng, n, c, h):
    x = rng.standard_normal((n, c, h, h), dtype=DTYPE)
    g = rng.standard_normal((n, c, h // 2, h // 2), dtype=DTYPE)
    y_fc = F.lp_pool2d_forward(x, 2, 2)
    y_np, _ = NP.lp_pool2d_forward(x, 2)
    return Case("lp_pool2d p=2 2x2", _shape_str(x.shape),
                lambda: F.lp_pool2d_forward(x, 2, 2),
                lambda: NP.lp_pool2d_forward(x, 2)[0],
                lambda: F.lp_pool2d_backward(x, y_fc, g, 2, 2),
                lambda: NP.lp_pool2d_backward(x, y_np, g, 2))


def _activation_case(rng, name, shape):
    x = rng.standard_normal(shape, dtype=DTYPE)
    g = rng.standard_normal(shape, dtype=DTYPE)
    fc_f, fc_b = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    np_f, np_b = getattr(NP, f"{name}_forward"), getattr(NP, f"{name}_backward")
    y_fc = fc_f(x)
    y_np, _ = np_f(x)
    return Case(name, _shape_str(shape), lambda: fc_f(x), lambda: np_f(x)[0],
                lambda: fc_b(y_fc, g), lambda: np_b(y_np, g))


def _nll_case(rng, n, k):
    x = rng.standard_normal((n, k), dtype=DTYPE)
    target = rng.integers(0, k, n)
    _, logp_fc = F.log_softmax_nll_forward(x, target)
    _, logp_np = NP.log_softmax_nll_forward(x, target)
    return Case("log_softmax_nll", _shape_str(x.shape),
                lambda: F.log_softmax_nll_forward(x, target),
                lambda: NP.log_softmax_nll_forward(x, target),
                lambda: F.log_softmax_nll_backward(logp_fc, target),
                lambda: NP.log_softmax_nll_backward(logp_np, target))


def _rotate_case(rng, n, h):
    x = rng.standard_normal((n, 1, h, h), dtype=DTYPE)
    g = rng.standard_normal(x.shape, dtype=DTYPE)
    angles = rng.uniform(-math.pi, math.pi, n)
    return Case("rotate", _shape_str(x.shape),
                lambda: F.rotate_forward(x, angles),
                lambda: NP.rotate_forward(x, angles)[0],
                lambda: F.rotate_backward(g, angles),
                lambda: NP.rotate_backward(g, angles))


def _subnorm_case(rng, n, c, h):
    x = rng.standard_normal((n, c, h, h), dtype=DTYPE)
    g = rng.standard_normal(x.shape, dtype=DTYPE)
    kernel = F.gaussian_kernel_1d(7, dtype=DTYPE)
    return Case("subtractive_norm k=7", _shape_str(x.shape),
                lambda: F.spatial_subtractive_normalization_forward(x, kernel),
                lambda: NP.subtractive_normalization_forward(x, kernel)[0],
                lambda: F.spatial_subtractive_normalization_backward(x, kernel, g),
                lambda: NP.subtractive_normalization_backward(kernel, g))


def _dropout_case(rng, n, d, p=0.5, seed=1234):
    x = rng.standard_normal((n, d), dtype=DTYPE)
    g = rng.standard_normal(x.shape, dtype=DTYPE)
    _, mask_fc = F.dropout_forward(x, p, np.random.default_rng(seed))
    _, mask_np = NP.dropout_forward(x, p, np.random.default_rng(seed))
    # Forward callables reseed so that both sides draw the same mask (checked), and both pay
    # for drawing it: rng.random is part of either implementation.
    return Case(f"dropout p={p}", _shape_str(x.shape),
                lambda: F.dropout_forward(x, p, np.random.default_rng(seed)),
                lambda: NP.dropout_forward(x, p, np.random.default_rng(seed)),
                lambda: F.dropout_backward(g, mask_fc),
                lambda: NP.dropout_backward(g, mask_np))


def build_cases(n, seed=0):
    """The homework ConvNet's kernels at batch size n, float32."""
    rng = np.random.default_rng(seed)
    return [
        _conv_case(rng, n, 1, 32, 64, 5),             # conv1: 1x32x32 -> 64x28x28
        _conv_case(rng, n, 64, 14, 64, 5),            # conv2: 64x14x14 -> 64x10x10
        _max_pool_case(rng, n, 64, 28),
        _lp_pool_case(rng, n, 64, 28),
        _activation_case(rng, "tanh", (n, 64, 28, 28)),
        _activation_case(rng, "sigmoid", (n, 64, 28, 28)),
        _activation_case(rng, "relu", (n, 64, 28, 28)),
        _linear_case(rng, n, 1600, 128),
        _linear_case(rng, n, 128, 10),
        _activation_case(rng, "softmax", (n, 10)),
        _activation_case(rng, "log_softmax", (n, 10)),
        _nll_case(rng, n, 10),
        _rotate_case(rng, n, 32),
        _subnorm_case(rng, n, 64, 14),
        _dropout_case(rng, n, 1600),
    ]


def check_case(case):
    """Assert that the NumPy baseline agrees with fastconv on both passes."""
    for pass_ in ("fwd", "bwd"):
        got, want = _tuple(case.np[pass_]()), _tuple(case.fc[pass_]())
        assert len(got) == len(want), (case.op, pass_, len(got), len(want))
        for i, (a, b) in enumerate(zip(got, want)):
            b = np.asarray(b)
            scale = float(np.max(np.abs(b))) if b.size else 0.0
            np.testing.assert_allclose(
                a, b, rtol=RTOL, atol=RTOL * scale,
                err_msg=f"NumPy baseline disagrees with fastconv: {case.op} {case.shape} "
                        f"{pass_} output {i}")


def _calibrate(fn, min_sample_s):
    """Warm up fn and return how many calls make one sample last about min_sample_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    return max(1, math.ceil(min_sample_s / max(once, 1e-7)))


def _sample(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def time_case(fc_fn, np_fn, repeats, min_sample_s):
    """Alternate samples of fc_fn and np_fn; return ({median, min} ms) for each side."""
    n_fc = _calibrate(fc_fn, min_sample_s)
    n_np = _calibrate(np_fn, min_sample_s)
    fc_t, np_t = [], []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            fc_t.append(_sample(fc_fn, n_fc))
            np_t.append(_sample(np_fn, n_np))
    finally:
        if gc_was_enabled:
            gc.enable()
    return ({"median": 1e3 * statistics.median(fc_t), "min": 1e3 * min(fc_t)},
            {"median": 1e3 * statistics.median(np_t), "min": 1e3 * min(np_t)})


def _numpy_blas(controller):
    """threadpoolctl selection of the BLAS numpy itself links (not SciPy's, which fastconv
    pins to one thread for its own use)."""
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    site = os.path.dirname(numpy_dir)
    ours = [lib.filepath for lib in controller.lib_controllers
            if lib.user_api == "blas" and (
                lib.filepath.startswith(numpy_dir)
                or os.path.basename(os.path.dirname(lib.filepath)) == "numpy.libs"
                and os.path.dirname(os.path.dirname(lib.filepath)) == site)]
    return controller.select(filepath=ours) if ours else None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python bench/kernels.py",
        description="Time fastconv's kernels against plain NumPy at the homework's sizes "
                    "(float32), forward and backward, in the same run.")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastconv threads, and NumPy BLAS threads (default: fastconv's "
                             "default)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed samples per side and case (default 7; use >= 5)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 128],
                        help="batch sizes (default: 1 128)")
    parser.add_argument("--csv", metavar="PATH", help="also write the rows to this CSV file")
    parser.add_argument("--min-sample-ms", type=float, default=20.0,
                        help="target duration of one timed sample (default 20 ms)")
    parser.add_argument("--only", nargs="+", metavar="OP",
                        help="only cases whose op name contains one of these strings")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if any(b < 1 for b in args.batch):
        parser.error("--batch sizes must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    n_threads = fastconv.get_num_threads()
    controller = ThreadpoolController()
    blas = _numpy_blas(controller)
    if blas is not None:
        blas.limit(limits=n_threads)
        blas_note = (f"NumPy BLAS pinned to {n_threads} thread(s) (threadpoolctl), "
                     f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")
    else:
        blas_note = "NumPy BLAS not found by threadpoolctl: NOT pinned"

    print(f"# {cpu_model()}, {usable_cores()} usable cores (of {os.cpu_count()}); "
          f"Python {platform.python_version()}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}, fastconv {fastconv.__version__}")
    print(f"# fastconv threads {n_threads} (OpenMP {'on' if fastconv.openmp_enabled() else 'off'}"
          f"); {blas_note}; float32; median of {args.repeats} alternating samples "
          f"(>= {args.min_sample_ms:g} ms each); ratio = numpy / fastconv")
    if args.repeats < 5:
        print(f"# warning: only {args.repeats} repeats; use >= 5 for numbers worth quoting")
    header = (f"{'kernel':<20} {'shape':<22} {'pass':<4} {'fastconv ms':>11} {'(min)':>9} "
              f"{'numpy ms':>10} {'(min)':>9} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    sys.stdout.flush()

    rows = []
    t_start = time.perf_counter()
    for n in args.batch:
        for case in build_cases(n):
            if args.only and not any(s in case.op for s in args.only):
                continue
            check_case(case)
            for pass_ in ("fwd", "bwd"):
                fc, nps = time_case(case.fc[pass_], case.np[pass_], args.repeats,
                                    args.min_sample_ms / 1e3)
                ratio = nps["median"] / fc["median"]
                print(f"{case.op:<20} {case.shape:<22} {pass_:<4} {fc['median']:>11.4f} "
                      f"{fc['min']:>9.4f} {nps['median']:>10.4f} {nps['min']:>9.4f} "
                      f"{ratio:>6.2f}x", flush=True)
                rows.append({"op": case.op, "shape": case.shape, "dtype": "float32",
                             "n_threads": n_threads, "pass": pass_,
                             "fastconv_ms": f"{fc['median']:.6g}",
                             "numpy_ms": f"{nps['median']:.6g}", "ratio": f"{ratio:.4g}",
                             "fastconv_min_ms": f"{fc['min']:.6g}",
                             "numpy_min_ms": f"{nps['min']:.6g}", "repeats": args.repeats})
        print(flush=True)
    print(f"# {len(rows)} rows in {time.perf_counter() - t_start:.0f} s; every baseline "
          f"matched fastconv (rtol {RTOL:g}, atol {RTOL:g} x max|output|) before timing")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"# wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
