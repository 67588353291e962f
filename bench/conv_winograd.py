"""Time a 3x3 stride-1 convolution's forward pass by im2col + GEMM, Winograd F(2x2, 3x3) and
F(4x4, 3x3) side by side, over a grid of shapes (float32, alternating calls, medians); prints
the times and im2col / F(2x2, 3x3), F(2x2, 3x3) / F(4x4, 3x3) per shape::

    python bench/conv_winograd.py --threads 2

:func:`fastconv.functional.conv_algorithm`'s rule was read from this grid
(bench/RESULTS.md). ``--shapes nets`` times only the 3x3 layers of the benchmark nets
(convnet-bn and the CIFAR-shaped nets, their input gradients' forward form included).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastconv._kernels import _conv2d, _winograd  # noqa: E402


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(n, c, f, size, pad, threads, rng, budget=0.2):
    """(im2col, F(2x2, 3x3), F(4x4, 3x3) seconds) of one shape, alternating calls, medians."""
    x = rng.standard_normal((n, c, size, size)).astype(np.float32)
    weight = rng.standard_normal((f, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    out = size + 2 * pad - 2
    y = np.empty((n, f, out, out), np.float32)

    def im2col():
        _conv2d.conv2d_forward(x, weight, bias, y, 1, 1, pad, pad, threads, None)

    def winograd():
        _winograd.winograd_forward(x, weight, bias, y, pad, pad, threads, 2)

    def winograd4():
        _winograd.winograd_forward(x, weight, bias, y, pad, pad, threads, 4)

    fns = (im2col, winograd, winograd4)
    once = max(max(_seconds(fn) for fn in fns), 1e-5)
    repeats = int(min(41, max(5, budget / once)))
    times = [[], [], []]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t.append(_seconds(fn))
    return tuple(float(np.median(t)) for t in times)


# (C, F, size, pad) of the benchmark nets' 3x3 layers: convnet-bn's forward passes and its
# input gradients' forward form (C and F swapped), the CIFAR-shaped nets' forward passes.
NET_SHAPES = ((1, 32, 32, 1), (32, 32, 32, 1), (32, 64, 16, 1), (64, 64, 16, 1),
              (64, 32, 16, 1), (3, 32, 32, 1), (32, 64, 16, 1), (64, 128, 8, 1),
              (128, 64, 8, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shapes", choices=("grid", "nets"), default="grid")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.shapes == "nets":
        shapes = NET_SHAPES
    else:
        shapes = [(c, f, size, pad) for c, f in ((3, 32), (16, 16), (32, 32), (32, 64),
                                                 (64, 64), (128, 128))
                  for size in (8, 16, 24, 32) for pad in (1, 0)]
    print("batch    C    F  size  pad  im2col ms  F2 ms   F4 ms  im2col/F2  F2/F4")
    for n in args.batches:
        for c, f, size, pad in shapes:
            a, b, d = compare(n, c, f, size, pad, args.threads, rng)
            print(f"{n:5d} {c:4d} {f:4d} {size:5d} {pad:4d} {a * 1e3:10.3f} {b * 1e3:6.3f} "
                  f"{d * 1e3:7.3f} {a / b:10.2f} {b / d:6.2f}", flush=True)


if __name__ == "__main__":
    main()
