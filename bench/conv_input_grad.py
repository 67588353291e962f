"""Time the two forms of a convolution's input gradient side by side, over a grid of shapes.

``col2im`` (the transposed filters times grad_out, scattered into grad_x) against
``transposed`` (a forward convolution of grad_out with the flipped, transposed filters),
float32, alternating, medians; prints col2im time / transposed time per shape::

    python bench/conv_input_grad.py --threads 2

:func:`fastconv.functional.input_grad_algorithm`'s rule (stride 1, "same" padding, output
plane of at least 576 pixels) was read from this grid (bench/RESULTS.md).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastconv._kernels import _conv2d  # noqa: E402
from fastconv.functional._conv import transposed_filters  # noqa: E402


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compare(n, c, f, size, k, pad, threads, rng, budget=0.15):
    """(col2im seconds, transposed seconds) of one shape, alternating calls."""
    weight = rng.standard_normal((f, c, k, k)).astype(np.float32)
    out = size + 2 * pad - k + 1
    grad_y = rng.standard_normal((n, f, out, out)).astype(np.float32)
    grad_x = np.empty((n, c, size, size), np.float32)
    flipped = transposed_filters(weight)

    def col2im():
        _conv2d.conv2d_backward_input(grad_y, weight, grad_x, 1, 1, pad, pad, threads)

    def transposed():
        _conv2d.conv2d_forward(grad_y, flipped, None, grad_x, 1, 1, k - 1 - pad, k - 1 - pad,
                               threads, None)

    once = max(_median_seconds(col2im, 1), _median_seconds(transposed, 1), 1e-5)
    repeats = int(min(41, max(5, budget / once)))
    a, b = [], []
    for _ in range(repeats):
        a.append(_median_seconds(col2im, 1))
        b.append(_median_seconds(transposed, 1))
    return float(np.median(a)), float(np.median(b))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print("batch  C   F   size  k  pad  col2im ms  transposed ms  col2im/transposed")
    for n in (1, 32, 128):
        for c, f in ((16, 16), (32, 32), (32, 64), (64, 64)):
            for size in (8, 16, 20, 24, 28, 32):
                for k, pad in ((3, 1), (5, 2), (5, 0)):
                    if size + 2 * pad - k + 1 < 2:
                        continue
                    a, b = compare(n, c, f, size, k, pad, args.threads, rng)
                    print(f"{n:5d} {c:3d} {f:3d} {size:5d} {k:2d} {pad:4d} {a * 1e3:10.3f} "
                          f"{b * 1e3:14.3f} {a / b:18.2f}", flush=True)


if __name__ == "__main__":
    main()
